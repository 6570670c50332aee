"""What the health signals cost: the trainer's step beside the same step without them, side by side.

    .venv/bin/python -m benchmarks.health_bench          # tiny: XLA off and on, batch 4 and 8, 1 and 2 replicas
    .venv/bin/python -m benchmarks.health_bench --xla off --batches 4 --replicas 1

"with" is the trainer's own train_step (trainer/model/step.py): the discriminators' mean outputs, each network's
gradient norm, the pools' swap rates and the batch variances (their sums ride in the gradients' all-reduce).
"without" is a subclass whose step computes none of them (the discriminators' means aside, which are two
reductions of outputs the loss reduces anyway) and returns zeros in their place. The two take
turns on the same in-memory batches and each keeps its best of --repeat rounds (step_bench.measure).
"""
import dataclasses

from benchmarks import results
from benchmarks.step_bench import measure
from preprocessing.process import prepare_libraries


def without_health(base):
    """A CycleGANTrainer class whose step computes no health signal: nothing added to the all-reduce, zeros out."""
    import tensorflow as tf

    from trainer.model.step import HEALTH

    class WithoutHealth(base):
        def _health_sums(self, *images):
            return []

        def _health(self, *unused):
            return tf.zeros([len(HEALTH)])

    return WithoutHealth


def run_case(replicas_of, xla, batch, replicas, steps, repeat):
    import numpy as np

    from trainer.config import PRESETS
    from trainer.model.step import CycleGANTrainer, requests
    from trainer.run.strategy import distribute

    strategy = replicas_of.strategy(replicas)
    if strategy is None:
        return None
    config = dataclasses.replace(PRESETS["tiny"], batch_size=batch)
    trainers = {"with": CycleGANTrainer(config, strategy, steps_per_epoch=1000, xla=xla),
                "without": without_health(CycleGANTrainer)(config, strategy, steps_per_epoch=1000, xla=xla)}
    rng = np.random.default_rng(0)
    shape = (batch * replicas, config.crop_size, config.crop_size, config.input_nc)
    batches = [distribute(strategy, (rng.uniform(-1, 1, shape).astype(np.float32),
                                     rng.uniform(-1, 1, shape).astype(np.float32))) for _ in range(3)]
    stop = requests()
    best = dict.fromkeys(trainers, float("inf"))
    for _ in range(repeat):
        for name, trainer in trainers.items():
            best[name] = min(best[name], measure(lambda a, b, t=trainer: t.train_step(a, b, stop), batches, steps))
    return {"xla": "on" if xla else "off", "batch": batch, "replicas": replicas,
            "with_ms": 1000 * best["with"] / steps, "without_ms": 1000 * best["without"] / steps,
            "cost": best["with"] / best["without"] - 1}


def main(argv=None):
    parser = results.parser(__doc__)
    parser.add_argument("--xla", nargs="+", default=["off", "on"], choices=["off", "on"])
    parser.add_argument("--batches", nargs="+", type=int, default=[4, 8], help="per-replica batches")
    parser.add_argument("--replicas", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per round (after 2 warm-up steps)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each side keeps its best")
    args = parser.parse_args(argv)
    prepare_libraries()
    replicas_of = results.Replicas(max(args.replicas))
    print(f"machine: {results.machine()}", flush=True)
    columns = [("XLA", "xla", "{}"), ("batch", "batch", "{}"), ("replicas", "replicas", "{}"),
               ("with ms/step", "with_ms", "{:.1f}"), ("without ms/step", "without_ms", "{:.1f}"),
               ("cost", "cost", "{:+.1%}")]
    rows = []
    for xla in args.xla:
        for batch in args.batches:
            for replicas in args.replicas:
                row = run_case(replicas_of, xla == "on", batch, replicas, args.steps, args.repeat)
                if row:
                    rows.append(row)
                    print(" ".join(f"{header} {fmt.format(row[key])};" for header, key, fmt in columns), flush=True)
    print()
    results.table(rows, columns)
    results.write_json(args.json, "health", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
