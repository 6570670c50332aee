"""Per-step host overhead: what a training step spends outside its compiled per-replica functions.

    .venv/bin/python -m benchmarks.overhead_bench                  # 1 and 2 replicas, XLA on
    .venv/bin/python -m benchmarks.overhead_bench --xla off on --replicas 1

On a GPU the reference nets' step at batch 1 is a few milliseconds, so the host's share of each step (dispatch,
the pools' ops, the all-reduce bookkeeping, the optimizers' updates, the loop's fetch of the losses) decides how
much of the GPU a run gets. It is measured on a near-empty model (ngf/ndf 2, one residual block, 32 px, batch 1
per replica).

Timed, each as the mean of --steps calls, best of --repeat rounds; every round times every part of every case
(XLA setting and replica count) in turn, so that the cases are compared side by side, not run after run:
  step      what the training loop does per step: the trainer's train_step, then the losses to Python floats;
  hollow    the same step with the compiled generator and discriminator functions replaced by functions that
            return outputs of the same shapes at once: the time outside the compiled functions, measured in the
            step itself (parts measured alone do not add up: in the step, a graph runs independent parts at once);
  then, cumulatively, the hollow step without the optimizers' updates (all-reduce included), and also without
  the pools' queries; the differences are those parts' costs. The fetch of the losses is timed alone.
compiled fns = step - hollow. With one replica and XLA on, the trainer compiles its whole step into one program
(trainer/model/step.py), so there the pools and the updates are compiled too, and "outside" is what the step spends
beyond the generator and discriminator functions' own work. Below the table: what each added replica adds to
the time outside, per XLA setting.
"""
import dataclasses
import sys
import time

from benchmarks import results
from preprocessing.process import prepare_libraries

NEAR_EMPTY = dict(ngf=2, ndf=2, n_blocks=1, load_size=32, crop_size=32, batch_size=1)
COLUMNS = [("XLA", "xla", "{}"), ("replicas", "replicas", "{}"), ("step ms", "step_ms", "{:.2f}"),
           ("compiled fns ms", "compiled_ms", "{:.2f}"), ("outside ms", "outside_ms", "{:.2f}"),
           ("of which: updates", "updates_ms", "{:.2f}"), ("pools", "pools_ms", "{:.2f}"),
           ("loss fetch", "loss_fetch_ms", "{:.3f}"), ("dispatch, reductions, rest", "rest_ms", "{:.2f}")]


def mean_seconds(fn, calls):
    fn()  # traces and compiles
    fn()
    began = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - began) / calls


def hollow(trainer, updates=True, pools=True):
    """The trainer's step with its compiled functions replaced by functions that return outputs of the same
    shapes at once (and, cumulatively, the optimizers' updates and the pools' queries left out): what remains is
    the host's work, measured in the step itself."""
    import tensorflow as tf

    from trainer.run.loop import LOSS_ORDER

    def zeros(variables, image):
        # Filled from the input at run time: constant gradients could be folded into the update ops that use
        # them, and the hollow step would then understate the updates.
        zero = tf.reduce_sum(image) * 0.0
        return [tf.fill(v.shape, tf.cast(zero, v.dtype)) for v in variables]

    def terms(discriminators):
        return {name: tf.zeros([]) for name in LOSS_ORDER if name.startswith("D_") == discriminators}

    def generator_outputs(real_a, real_b):
        return zeros(trainer.g_vars, real_a), terms(False), tf.zeros_like(real_a), tf.zeros_like(real_b)

    trainer._generator_fn = tf.function(generator_outputs)
    judged = {f"{d}_{kind}": tf.zeros([]) for d in ("D_A", "D_B") for kind in ("real", "fake")}
    trainer._discriminator_fn = tf.function(lambda a, b, pa, pb: (zeros(trainer.d_vars, a), terms(True), judged))
    if not updates:
        trainer._update = lambda g_grads, d_grads, sums: (g_grads, d_grads, sums)
    if not pools:
        trainer.pools = {d: type("NoPool", (), {"query": staticmethod(lambda images: images)}) for d in "AB"}
    trainer.train_step = tf.function(trainer._train_step)
    return trainer


def build_case(strategy, xla, precision="float32"):
    """One (XLA setting, replica count) case: its description and a callable per part to time."""
    import numpy as np
    import tensorflow as tf

    from trainer.config import PRESETS
    from trainer.model.step import CycleGANTrainer, requests
    from trainer.run import loop
    from trainer.run.strategy import distribute

    config = dataclasses.replace(PRESETS["tiny"], **NEAR_EMPTY)
    replicas = strategy.num_replicas_in_sync
    rng = np.random.default_rng(0)
    shape = (replicas, config.crop_size, config.crop_size, config.input_nc)
    real_a, real_b = distribute(strategy, (rng.uniform(-1, 1, shape).astype(np.float32),
                                           rng.uniform(-1, 1, shape).astype(np.float32)))
    stop = requests()

    def loop_step(trainer):  # as trainer/run/loop.py steps: train_step, then the losses to Python
        return lambda: loop.fetch_losses(trainer.train_step(real_a, real_b, stop))

    def trainer():
        return CycleGANTrainer(config, strategy, steps_per_epoch=1000, precision=precision, xla=xla)

    real = trainer()
    fetched = real.train_step(real_a, real_b, stop)
    parts = {"step": loop_step(real), "hollow": loop_step(hollow(trainer())),
             "hollow_no_updates": loop_step(hollow(trainer(), updates=False)),
             "hollow_bare": loop_step(hollow(trainer(), updates=False, pools=False)),
             "loss_fetch": lambda: loop.fetch_losses(fetched)}
    return {"xla": "on" if xla else "off", "replicas": replicas}, parts


def time_cases(cases, calls, repeat):
    """[(description, parts)] -> one row per case, each part the best of `repeat` rounds over all the cases."""
    best = [{} for _ in cases]
    for round_ in range(repeat):
        print(f"round {round_ + 1} of {repeat}: {len(cases)} cases", flush=True)
        for (_, parts), kept in zip(cases, best):
            for name, fn in parts.items():
                kept[name] = min(kept.get(name, float("inf")), mean_seconds(fn, calls))
    rows = []
    for (description, _), kept in zip(cases, best):
        ms = {name: value * 1e3 for name, value in kept.items()}
        rows.append({**description, "step_ms": ms["step"], "compiled_ms": ms["step"] - ms["hollow"],
                     "outside_ms": ms["hollow"], "updates_ms": ms["hollow"] - ms["hollow_no_updates"],
                     "pools_ms": ms["hollow_no_updates"] - ms["hollow_bare"], "loss_fetch_ms": ms["loss_fetch"],
                     "rest_ms": ms["hollow_bare"] - ms["loss_fetch"]})
    return rows


def per_added_replica(rows):
    """Per XLA setting: (time outside at n replicas - at 1) / (n - 1), for each n > 1 measured."""
    one = {row["xla"]: row["outside_ms"] for row in rows if row["replicas"] == 1}
    return [{"xla": row["xla"], "replicas": row["replicas"],
             "added_ms": (row["outside_ms"] - one[row["xla"]]) / (row["replicas"] - 1)}
            for row in rows if row["replicas"] > 1 and row["xla"] in one]


def main(argv=None):
    parser = results.parser(__doc__)
    parser.add_argument("--replicas", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--xla", nargs="+", default=["on"], choices=["off", "on"])
    parser.add_argument("--precision", default="float32", choices=["float32", "mixed_float16", "mixed_bfloat16"])
    parser.add_argument("--steps", type=int, default=200, help="calls timed per part and round")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each part keeps its best")
    args = parser.parse_args(argv)
    prepare_libraries()
    replicas_of = results.Replicas(max(args.replicas))
    print(f"machine: {results.machine()}", flush=True)
    cases = [build_case(strategy, xla == "on", args.precision) for xla in args.xla for replicas in args.replicas
             if (strategy := replicas_of.strategy(replicas))]
    rows = time_cases(cases, args.steps, args.repeat)
    print()
    results.table(rows, COLUMNS)
    added = per_added_replica(rows)
    if added:
        print()
        results.table(added, [("XLA", "xla", "{}"), ("replicas", "replicas", "{}"),
                              ("outside ms per added replica", "added_ms", "{:.2f}")])
    results.write_json(args.json, "overhead", rows, model=NEAR_EMPTY, precision=args.precision,
                       per_added_replica=added)
    return 0


if __name__ == "__main__":
    sys.exit(main())
