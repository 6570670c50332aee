"""Start-up: the time from the command to the first finished training step, split into its parts.

    .venv/bin/python -m benchmarks.startup_bench                   # tiny and reference, XLA off and on
    .venv/bin/python -m benchmarks.startup_bench --presets tiny --replicas 1 2

A preempted job pays this at every restart. Each configuration starts a fresh Python process that does what
`cyclegan train` does before its first step, with the trainer's own functions, and times:
  import        from the process's creation to TensorFlow and the trainer imported (the interpreter included)
  input         the strategy, the manifest, the tf.data pipeline and its first batch (real TFRecords on disk)
  nets          building the networks, optimizers and pools (CycleGANTrainer)
  trace         tracing the distributed train_step into a graph (every replica traces its part)
  first step    the first call: graph optimisation, XLA compilation where on, and the step itself
and, for scale, one later step. Records: the real preprocessing job's output for synthetic images.

With XLA on, each configuration starts twice on one model directory: "first start" compiles and keeps the
compiled functions in it (trainer/run/compile_cache.py, as `cyclegan train` does), "restart" loads them.
"""
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks import results

PHASES = ("import", "input", "nets", "trace", "first_step")


def child(preset, xla, replicas, records, model_dir):
    """Runs in the measured process: prints one JSON line of seconds per phase."""
    import psutil

    from preprocessing.process import prepare_libraries
    from trainer.run.compile_cache import CompileCache

    cache = CompileCache(model_dir)
    prepare_libraries()
    import tensorflow as tf

    from preprocessing.schema import load_manifest
    from trainer.config import PRESETS
    from trainer.model.step import CycleGANTrainer, requests
    from trainer.run import data, loop, strategy as strategies

    seconds, mark = {}, time.time()
    seconds["import"] = mark - psutil.Process().create_time()

    def phase(name):
        nonlocal mark
        now = time.time()
        seconds[name], mark = now - mark, now

    strategies.prepare_devices(replicas)
    config = PRESETS[preset]
    strategy = strategies.create(dataclasses.replace(config, cpu_replicas=replicas))
    manifest = load_manifest(records)
    global_batch = config.batch_size * strategy.num_replicas_in_sync
    batch = next(iter(data.train_dataset(records, manifest, config, global_batch)))
    real_a, real_b = strategies.distribute(strategy, batch)
    stop = requests()
    cache.load(say=lambda line: None)
    phase("input")
    trainer = CycleGANTrainer(config, strategy, loop.steps_per_epoch(manifest, global_batch), xla=xla)
    phase("nets")
    trainer.train_step.get_concrete_function(real_a, real_b, stop)
    phase("trace")
    loop.fetch_losses(trainer.train_step(real_a, real_b, stop))
    phase("first_step")
    cache.publish(say=lambda line: None)
    cache.close()
    mark = time.time()
    loop.fetch_losses(trainer.train_step(real_a, real_b, stop))
    phase("later_step")
    print(json.dumps(seconds))


def measure(preset, xla, replicas, records, model_dir, start):
    began = time.time()
    done = subprocess.run([sys.executable, "-m", "benchmarks.startup_bench", "--child", preset, xla, str(replicas),
                           records, model_dir], capture_output=True, text=True, cwd=results.REPO)
    wall = time.time() - began
    if done.returncode != 0:
        raise SystemExit(f"the start-up of {preset} (XLA {xla}, {replicas} replicas) failed:\n{done.stderr[-3000:]}")
    seconds = json.loads(done.stdout.strip().splitlines()[-1])
    return {"preset": preset, "xla": xla, "replicas": replicas, "start": start, **seconds,
            "to_first_step": sum(seconds[name] for name in PHASES), "wall": wall}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        preset, xla, replicas, records, model_dir = argv[1:]
        child(preset, xla == "on", int(replicas), records, model_dir)
        return 0
    parser = results.parser(__doc__)
    parser.add_argument("--presets", nargs="+", default=["tiny", "reference"], choices=["tiny", "reference"])
    parser.add_argument("--xla", nargs="+", default=["off", "on"], choices=["off", "on"])
    parser.add_argument("--replicas", nargs="+", type=int, default=[1])
    parser.add_argument("--images", type=int, default=8, help="synthetic training images per domain")
    args = parser.parse_args(argv)
    from preprocessing.process import prepare_libraries

    prepare_libraries()
    rows = []
    with results.synthetic_records(args.images) as records:
        print(f"machine: {results.machine()}", flush=True)
        for preset in args.presets:
            for xla in args.xla:
                for replicas in args.replicas:
                    model_dir = tempfile.mkdtemp(prefix="model-", dir=os.path.dirname(records))
                    for start in ("first start", "restart")[:2 if xla == "on" else 1]:
                        rows.append(measure(preset, xla, replicas, records, model_dir, start))
                        print(rows[-1], flush=True)
    print()
    results.table(rows, [("preset", "preset", "{}"), ("XLA", "xla", "{}"), ("replicas", "replicas", "{}"),
                         ("start", "start", "{}"),
                         *((f"{name} s", name, "{:.2f}") for name in PHASES),
                         ("to first step s", "to_first_step", "{:.1f}"), ("a later step s", "later_step", "{:.2f}")])
    results.write_json(args.json, "startup", rows, images=args.images)
    return 0


if __name__ == "__main__":
    sys.exit(main())
