"""Per-op profile of the training step: which ops' cost per pair falls as the batch grows, and which does not.

    .venv/bin/python -m benchmarks.op_profile                      # tiny (3 blocks) and 6 blocks, batch 1, 4, 8
    .venv/bin/python -m benchmarks.op_profile --variants ours "keras layers" "oneDNN off"    # side by side
    .venv/bin/python -m benchmarks.op_profile --presets reference --blocks 0 --batches 1 2 --steps 2 --repeat 1

It builds the trainer's step (trainer/model/step.py, one replica, float32, XLA off as on any CPU) on in-memory batches,
once per variant, and at each per-replica batch:
  1. times --steps steps, best of --repeat rounds, the variants taking turns in one process (pairs/s, side by
     side); oneDNN is chosen before TensorFlow loads, so "oneDNN off" runs in a second process after the first;
  2. records --steps more steps with TensorFlow's profiler and sums its host trace by op type: time, count and
     bytes allocated for outputs, per pair. The op time is summed over TensorFlow's threads, so it exceeds the
     wall time wherever ops ran side by side.
The table per variant gives each op type's time per pair at every batch and its growth from the smallest to the
largest batch (below 1: it gets cheaper per pair, as convolutions should; near 1 or above: it does not).
Variants (--variants; the first is the one the others are compared with):
  ours          the trainer as it is: oneDNN's CPU kernels, trainer/model/networks.py's InstanceNorm and crop
  keras layers  the same nets with Keras's GroupNormalization(groups=-1) and Cropping2D in their place
  xla norm      ours with each instance norm's call, and with it its gradient, compiled by XLA on its own (the
                rest of the step as it is: whole-step XLA is slower on a CPU), to fuse the norm's passes over the pixels
  oneDNN off    ours with TF_ENABLE_ONEDNN_OPTS=0, TensorFlow's default on CPUs without AVX-512 VNNI
Run it alone on the machine: the profile of each variant is one run.
"""
import argparse
import collections
import dataclasses
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks import results

VARIANTS = {"ours": {"TF_ENABLE_ONEDNN_OPTS": "1"}, "keras layers": {"TF_ENABLE_ONEDNN_OPTS": "1"},
            "xla norm": {"TF_ENABLE_ONEDNN_OPTS": "1"},
            "oneDNN off": {"TF_ENABLE_ONEDNN_OPTS": "0"}}
CONVOLUTION = "Conv2D"  # every forward, backward and fused convolution kernel's type contains it
SHOWN = 18


def use_keras_layers():
    """Keras's own layers where trainer/model/networks.py has its own: the baseline of the "keras layers" variant."""
    from keras import layers

    from trainer.model import networks

    original = networks.norm
    networks.norm = lambda kind: (layers.GroupNormalization(groups=-1, center=False, scale=False, epsilon=1e-5,
                                                            dtype="float32") if kind == "instance" else original(kind))
    networks.DropFirstRowAndColumn = lambda: layers.Cropping2D(((1, 0), (1, 0)))


def use_xla_norm():
    """trainer/model/networks.py's InstanceNorm, its call compiled by XLA (its gradient with it): the "xla norm"
    variant."""
    import tensorflow as tf

    from trainer.model import networks

    class XlaInstanceNorm(networks.InstanceNorm):
        def build(self, shape):
            super().build(shape)
            self.compiled = tf.function(super().call, jit_compile=True, autograph=False)

        def call(self, x):
            return self.compiled(x)

    original = networks.norm
    networks.norm = lambda kind: (XlaInstanceNorm(epsilon=1e-5, dtype="float32") if kind == "instance"
                                  else original(kind))


def trace_by_op_type(logdir):
    """The profiler's host trace in `logdir` -> {op type: [picoseconds, count, bytes allocated]}."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    with open(sorted(glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb")))[-1], "rb") as f:
        space.ParseFromString(f.read())
    host = next(plane for plane in space.planes if plane.name == "/host:CPU")
    names, stat_names = host.event_metadata, host.stat_metadata
    totals, type_of, allocations = collections.defaultdict(lambda: [0, 0, 0]), {}, collections.Counter()
    for line in host.lines:
        for event in line.events:
            name = names[event.metadata_id].name
            if name == "MemoryAllocation":
                stats = {stat_names[s.metadata_id].name: s for s in event.stats}
                kind = stat_names[stats["region_type"].ref_value].name if "region_type" in stats else ""
                if kind == "output" and "tf_op" in stats:
                    allocations[stat_names[stats["tf_op"].ref_value].name] += stats["requested_bytes"].int64_value
            else:
                op, colon, kind = name.rpartition(":")  # an op kernel's own event is "op name:OpType"
                if colon and op and " " not in name and "::" not in name and kind.isidentifier():
                    type_of[op] = kind
                    totals[kind][0] += event.duration_ps
                    totals[kind][1] += 1
    for op, nbytes in allocations.items():
        if op in type_of:
            totals[type_of[op]][2] += nbytes
    return dict(totals)


def child(preset, blocks, variants, batches, steps, repeat):
    """Runs in the measured process, for variants of one oneDNN setting: one JSON line per batch and variant, with
    pairs/s (best of `repeat` rounds, the variants' steps taking turns) and the op table (one profiled run)."""
    from preprocessing.process import prepare_libraries

    prepare_libraries()
    import numpy as np
    import tensorflow as tf

    from trainer.config import PRESETS
    from trainer.model import networks
    from trainer.model.step import CycleGANTrainer, requests
    from trainer.run.strategy import distribute, mirrored

    strategy = mirrored([tf.config.list_logical_devices("CPU")[0].name])
    config = PRESETS[preset]
    config = dataclasses.replace(config, n_blocks=blocks or config.n_blocks)
    rng = np.random.default_rng(0)
    ours = networks.norm, networks.DropFirstRowAndColumn
    for batch in batches:
        shape = (batch, config.crop_size, config.crop_size, config.input_nc)
        inputs = distribute(strategy, tuple(rng.uniform(-1, 1, shape).astype(np.float32) for _ in range(2)))
        stop, trainers = requests(), {}
        for variant in variants:
            if variant == "keras layers":
                use_keras_layers()
            if variant == "xla norm":
                use_xla_norm()
            trainers[variant] = CycleGANTrainer(dataclasses.replace(config, batch_size=batch), strategy,
                                                steps_per_epoch=1000)
            networks.norm, networks.DropFirstRowAndColumn = ours

        def run(trainer, n):
            for _ in range(n):
                out = trainer.train_step(*inputs, stop)
            float(out["D_A"])

        for trainer in trainers.values():
            run(trainer, 2)  # tracing, graph optimisation
        best = dict.fromkeys(trainers, float("inf"))
        for _ in range(repeat):
            for variant, trainer in trainers.items():
                began = time.perf_counter()
                run(trainer, steps)
                best[variant] = min(best[variant], time.perf_counter() - began)
        for variant, trainer in trainers.items():
            with tempfile.TemporaryDirectory() as logdir:
                tf.profiler.experimental.start(logdir)
                run(trainer, steps)
                tf.profiler.experimental.stop()
                ops = {kind: [ps / 1e9 / steps / batch, count / steps, nbytes / steps / batch]
                       for kind, (ps, count, nbytes) in trace_by_op_type(logdir).items()}
            print(json.dumps({"variant": variant, "batch": batch, "pairs_s": steps * batch / best[variant],
                              "ops": ops}), flush=True)


def measure(preset, blocks, variants, batches, steps, repeat):
    """The child processes' lines: one process per oneDNN setting, the variants of each in one process."""
    lines = []
    for onednn in ("1", "0"):
        group = [v for v in variants if VARIANTS[v]["TF_ENABLE_ONEDNN_OPTS"] == onednn]
        if not group:
            continue
        env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn}
        done = subprocess.run([sys.executable, "-m", "benchmarks.op_profile", "--child", json.dumps(
            [preset, blocks, group, batches, steps, repeat])], env=env, capture_output=True, text=True,
            cwd=results.REPO)
        if done.returncode:
            raise SystemExit(f"{preset} {group} failed:\n{done.stderr[-3000:]}")
        lines += [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return lines


def op_table(label, by_batch, flops_per_pair):
    """Per op type: ms per pair at each batch, growth from the first batch to the last, MB per pair, share."""
    batches = sorted(by_batch)
    first, last = by_batch[batches[0]]["ops"], by_batch[batches[-1]]["ops"]
    total = sum(ms for ms, _, _ in last.values())
    print(f"\n{label}: op time per pair (ms), summed over threads; growth = last batch / first batch, per pair")
    rows = []
    for kind in sorted(last, key=lambda k: -last[k][0])[:SHOWN]:
        row = {"op": kind, "count_per_step": last[kind][1], "mb_per_pair": last[kind][2] / 1e6,
               "share": last[kind][0] / total}
        for batch in batches:
            row[f"ms_b{batch}"] = by_batch[batch]["ops"].get(kind, [None])[0]
        row["growth"] = last[kind][0] / first[kind][0] if kind in first and first[kind][0] else None
        rows.append(row)
    columns = [("op type", "op", "{}")] + [(f"b{b} ms", f"ms_b{b}", "{:.2f}") for b in batches] + [
        ("growth", "growth", "{:.2f}"), ("share", "share", "{:.1%}"), ("n/step", "count_per_step", "{:.0f}"),
        ("MB/pair", "mb_per_pair", "{:.1f}")]
    results.table(rows, columns)
    conv = {b: sum(ms for kind, (ms, _, _) in by_batch[b]["ops"].items() if CONVOLUTION in kind) for b in batches}
    rest = {b: sum(ms for ms, _, _ in by_batch[b]["ops"].values()) - conv[b] for b in batches}
    print("convolutions: " + ", ".join(f"b{b} {conv[b]:.1f} ms/pair ({flops_per_pair / conv[b] / 1e6:.0f} GFLOP/s)"
                                       for b in batches))
    print("everything else: " + ", ".join(f"b{b} {rest[b]:.1f} ms/pair" for b in batches))
    if len(batches) > 1:
        flat = [row["op"] for row in rows if row["growth"] is not None and row["growth"] > 0.9 and row["share"] > 0.01]
        print("not cheaper per pair at a larger batch (growth > 0.9, over 1% of the time): "
              + (", ".join(flat) or "none"))
    return rows


def main(argv=None):
    parser = results.parser(__doc__)
    parser.add_argument("--presets", nargs="+", default=["tiny"], choices=["tiny", "reference"])
    parser.add_argument("--blocks", nargs="+", type=int, default=[0, 6],
                        help="residual blocks per generator; 0: the preset's own")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4, 8])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3, help="timing rounds; the variants take turns")
    parser.add_argument("--variants", nargs="+", default=["ours"], choices=list(VARIANTS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*json.loads(args.child))
        return
    from preprocessing.process import prepare_libraries

    prepare_libraries()
    from benchmarks import flops
    from trainer.config import PRESETS
    from trainer.model import networks

    variants = list(dict.fromkeys(["ours", *args.variants]))
    rows, summary = [], []
    for preset in args.presets:
        for blocks in dict.fromkeys(args.blocks):
            config = dataclasses.replace(PRESETS[preset], n_blocks=blocks or PRESETS[preset].n_blocks)
            flops_per_pair = flops.analytic_pair_flops(networks.build(config), config)["per_pair"]
            best, profiles = {}, {}
            for line in measure(preset, config.n_blocks, variants, args.batches, args.steps, args.repeat):
                best[line["variant"], line["batch"]] = line["pairs_s"]
                profiles.setdefault(line["variant"], {})[line["batch"]] = line
            for variant in variants:
                label = f"{preset}, {config.n_blocks} blocks, {variant}"
                for row in op_table(label, profiles[variant], flops_per_pair):
                    rows.append({"preset": preset, "blocks": config.n_blocks, "variant": variant, **row})
            for batch in args.batches:
                line = {"preset": preset, "blocks": config.n_blocks, "batch": batch,
                        **{variant: best[variant, batch] for variant in variants}}
                for variant in variants[1:]:
                    line[f"ours / {variant}"] = best["ours", batch] / best[variant, batch]
                summary.append(line)
    print(f"\npairs/s, best of {args.repeat} round(s) of {args.steps} steps, the variants taking turns")
    columns = [("preset", "preset", "{}"), ("blocks", "blocks", "{}"), ("batch", "batch", "{}")]
    columns += [(variant, variant, "{:.3g}") for variant in variants]
    columns += [(f"ours / {variant}", f"ours / {variant}", "{:.2f}") for variant in variants[1:]]
    results.table(summary, columns)
    results.write_json(args.json, "op_profile", rows, pairs_s=summary)


if __name__ == "__main__":
    main()
