"""Training-step throughput side by side, FLOPs accounted, against the keras.io way of training the same nets.

    .venv/bin/python -m benchmarks.step_bench                       # tiny and reference, the full matrix
    .venv/bin/python -m benchmarks.step_bench --presets tiny --precisions float32 --batches 1 --replicas 1

For each preset, precision, XLA setting, per-replica batch and replica count (the CPU split into logical devices
here; the GPUs on a GPU machine), the same global batches are stepped by:
  ours     the trainer's own train_step (trainer/model/step.py: per-replica XLA-compiled losses and gradients, the image
           pools, the reference's exact loss terms), on in-memory batches;
  keras.io the same networks trained as the keras.io CycleGAN example trains them: one tf.function step, one
           persistent tape, four optimizers, no image pool, compiled whole by XLA on one replica (as fit() would;
           fit() turns XLA off under a distribution strategy, and so does this).
Each keeps its best time over --repeat rounds, the two taking turns, since a shared machine's load moves single
runs. Printed: pairs/s of each and their ratio, FLOPs per pair (analytic from the layer shapes, and counted from
XLA's optimized HLO of our per-replica functions; see flops.py), and the FLOP/s that ours achieves.
"""
import dataclasses
import sys
import time

from benchmarks import results
from preprocessing.process import prepare_libraries

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def keras_io_step(nets, config, strategy, xla):
    """The keras.io example's training step over our networks: its four optimizers and persistent tape."""
    import keras
    import tensorflow as tf

    with strategy.scope():
        optimizers = {name: keras.optimizers.Adam(config.lr, beta_1=config.beta1) for name in nets}
        for name, optimizer in optimizers.items():
            optimizer.build(nets[name].trainable_variables)
    g, f, d_x, d_y = nets["G_AB"], nets["G_BA"], nets["D_A"], nets["D_B"]
    global_batch = config.batch_size * strategy.num_replicas_in_sync

    def mean(values):  # per-example mean over the global batch, as a distributed loss must be
        return tf.nn.compute_average_loss(tf.reduce_mean(values, axis=[1, 2, 3]), global_batch_size=global_batch)

    def replica_step(real_x, real_y):
        with tf.GradientTape(persistent=True) as tape:
            fake_y, fake_x = g(real_x, training=True), f(real_y, training=True)
            cycled_x, cycled_y = f(fake_y, training=True), g(fake_x, training=True)
            same_x, same_y = f(real_x, training=True), g(real_y, training=True)
            disc_real_x, disc_fake_x = d_x(real_x, training=True), d_x(fake_x, training=True)
            disc_real_y, disc_fake_y = d_y(real_y, training=True), d_y(fake_y, training=True)
            cycle = config.lambda_a * (mean(tf.abs(real_y - cycled_y)) + mean(tf.abs(real_x - cycled_x)))
            identity_g = config.lambda_b * config.lambda_identity * mean(tf.abs(real_y - same_y))
            identity_f = config.lambda_a * config.lambda_identity * mean(tf.abs(real_x - same_x))
            loss_g = mean(tf.square(disc_fake_y - 1.0)) + cycle + identity_g
            loss_f = mean(tf.square(disc_fake_x - 1.0)) + cycle + identity_f
            loss_dx = 0.5 * (mean(tf.square(disc_real_x - 1.0)) + mean(tf.square(disc_fake_x)))
            loss_dy = 0.5 * (mean(tf.square(disc_real_y - 1.0)) + mean(tf.square(disc_fake_y)))
        for name, loss in (("G_AB", loss_g), ("G_BA", loss_f), ("D_A", loss_dx), ("D_B", loss_dy)):
            variables = nets[name].trainable_variables
            optimizers[name].apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss_g + loss_f + loss_dx + loss_dy

    replica = tf.function(replica_step, jit_compile=xla and strategy.num_replicas_in_sync == 1)

    @tf.function
    def step(real_x, real_y):
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(replica, args=(real_x, real_y)), axis=None)

    return step


def measure(step, batches, steps):
    """Seconds for `steps` steps after two warm-up steps (tracing, compiling), waiting for the last result."""
    import tensorflow as tf

    for batch in batches[:2]:
        tf.nest.map_structure(lambda t: t.numpy(), step(*batch))
    began = time.perf_counter()
    for i in range(steps):
        result = step(*batches[i % len(batches)])
    tf.nest.map_structure(lambda t: t.numpy(), result)
    return time.perf_counter() - began


def run_case(replicas_of, preset, precision, xla, batch, replicas, steps, repeat, peer=True):
    """One configuration's row (None without enough devices); without `peer`, our step alone (its keras.io columns
    are None). replicas_of: a results.Replicas."""
    import keras
    import numpy as np
    import tensorflow as tf

    from trainer.config import PRESETS
    from trainer.model import networks
    from trainer.model.step import CycleGANTrainer, requests
    from trainer.run.strategy import distribute

    from benchmarks import flops

    config = dataclasses.replace(PRESETS[preset], batch_size=batch)
    strategy = replicas_of.strategy(replicas)
    if strategy is None:
        return None
    ours = CycleGANTrainer(config, strategy, steps_per_epoch=1000, precision=precision, xla=xla)
    global_batch = batch * replicas
    rng = np.random.default_rng(0)
    shape = (global_batch, config.crop_size, config.crop_size, config.input_nc)
    raw = [(rng.uniform(-1, 1, shape).astype(np.float32), rng.uniform(-1, 1, shape).astype(np.float32))
           for _ in range(3)]
    our_batches = [distribute(strategy, batch_pair) for batch_pair in raw]
    stop = requests()

    if peer:
        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(precision)
        try:
            with strategy.scope():
                keras.utils.set_random_seed(config.seed)
                their_nets = networks.build(config)
        finally:
            keras.mixed_precision.set_global_policy(previous)
        theirs = keras_io_step(their_nets, config, strategy, xla)
        their_batches = [distribute(strategy, batch_pair) for batch_pair in raw]

    best = {"ours": float("inf"), "keras.io": float("inf")}
    for _ in range(repeat):
        best["ours"] = min(best["ours"], measure(lambda a, b: ours.train_step(a, b, stop), our_batches, steps))
        if peer:
            best["keras.io"] = min(best["keras.io"], measure(theirs, their_batches, steps))
    analytic = flops.analytic_pair_flops(ours.nets, config)["per_pair"]
    counted = None
    if xla:
        counted = flops.compiled_pair_flops(ours, batch)["per_pair"]
    ours_rate = steps * global_batch / best["ours"]
    their_rate = steps * global_batch / best["keras.io"] if peer else None
    return {"preset": preset, "precision": precision, "xla": "on" if xla else "off", "batch": batch,
            "replicas": replicas, "ours_pairs_s": ours_rate, "keras_io_pairs_s": their_rate,
            "ratio": ours_rate / their_rate if peer else None, "gflop_pair_analytic": analytic / 1e9,
            "gflop_pair_compiled": None if counted is None else counted / 1e9,
            "achieved_gflop_s": ours_rate * analytic / 1e9}


def cases(args, batches):
    """(per-replica batch, replicas) pairs: every combination, or one global batch split each way."""
    if args.global_batch:
        return [(args.global_batch // r, r) for r in args.replicas if args.global_batch % r == 0]
    return [(batch, replicas) for batch in batches for replicas in args.replicas]


def main(argv=None):
    parser = results.parser(__doc__)
    parser.add_argument("--presets", nargs="+", default=["tiny", "reference"], choices=["tiny", "reference"])
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--xla", nargs="+", default=["off", "on"], choices=["off", "on"])
    parser.add_argument("--batches", nargs="+", type=int, default=None,
                        help="per-replica batches (default: 1 2 4, and 8 for tiny)")
    parser.add_argument("--replicas", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--global_batch", type=int, default=0,
                        help="instead of --batches: split this global batch over each replica count (how best to "
                             "use one machine's devices)")
    parser.add_argument("--no_peer", action="store_true", help="time our step only")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per run (after 2 warm-up steps)")
    parser.add_argument("--repeat", type=int, default=2, help="rounds; each side keeps its best")
    args = parser.parse_args(argv)
    prepare_libraries()
    replicas_of = results.Replicas(max(args.replicas))
    print(f"machine: {results.machine()}", flush=True)
    rows = []
    columns = [("preset", "preset", "{}"), ("precision", "precision", "{}"), ("XLA", "xla", "{}"),
               ("batch", "batch", "{}"), ("replicas", "replicas", "{}"), ("ours pairs/s", "ours_pairs_s", "{:.4g}"),
               ("keras.io pairs/s", "keras_io_pairs_s", "{:.4g}"), ("ours/keras.io", "ratio", "{:.3f}"),
               ("GFLOP/pair analytic", "gflop_pair_analytic", "{:.1f}"),
               ("GFLOP/pair compiled", "gflop_pair_compiled", "{:.1f}"), ("GFLOP/s", "achieved_gflop_s", "{:.1f}")]
    for preset in args.presets:
        batches = args.batches or ([1, 2, 4, 8] if preset == "tiny" else [1, 2, 4])
        for precision in args.precisions:
            for xla in args.xla:
                for batch, replicas in cases(args, batches):
                    row = run_case(replicas_of, preset, precision, xla == "on", batch, replicas, args.steps,
                                   args.repeat, peer=not args.no_peer)
                    if row:
                        rows.append(row)
                        print(" ".join(f"{header} {fmt.format(row[key]) if row[key] is not None else '-'};"
                                       for header, key, fmt in columns), flush=True)
    print()
    results.table(rows, columns)
    results.write_json(args.json, "step", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
