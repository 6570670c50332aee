"""The CycleGAN's full training step under Keras's JAX backend, compiled by XLA as one program.

    python -m benchmarks.xla_step_jax --preset reference --batches 1 2 4 8          # a GPU
    python -m benchmarks.xla_step_jax --preset tiny --batches 1 2 --steps 3         # a CPU

The trainer's networks (trainer/model/networks.py) and loss terms (trainer/model/losses.py) run unchanged, called
statelessly on values that JAX differentiates: both generators' passes with their backward pass (LSGAN, both cycle
terms, identity), then both discriminators on real images and on this step's fakes with the 0.5 factor, and Keras's
Adam on both groups. What the trainer does beyond this is left out, and the output says so: the image pool (the
discriminators judge this step's fakes, not pooled ones) and the all-reduce (one device). TensorFlow is not needed,
so the figure can be taken on a machine that has JAX only. It is an upper bound for the TensorFlow trainer's step on
the same device, not the trainer's speed.

For each precision and per-device batch it prints pairs/s, the step's FLOPs per pair from XLA's cost analysis beside
the analytic count from the layer shapes (benchmarks/flops.py), the TFLOP/s reached, and that as a fraction of the
device's bf16 matmul rate measured in the same run; then the ten op names that took the most time in a profile of
a few steps of the last configuration.
"""
import os

os.environ["KERAS_BACKEND"] = "jax"  # before Keras is imported anywhere

import collections  # noqa: E402
import dataclasses  # noqa: E402
import glob  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from benchmarks import results  # noqa: E402

POOL_NOTE = "image pool left out: the discriminators judge this step's fakes; one device, so no all-reduce"


def build_step(config):
    """(jitted step(state, a, b) -> (state, generator loss, discriminator loss), its initial state)."""
    import jax
    import keras

    from trainer.model import losses, networks

    nets = networks.build(config)
    generators = [v for name in ("G_AB", "G_BA") for v in nets[name].trainable_variables]
    discriminators = [v for name in ("D_A", "D_B") for v in nets[name].trainable_variables]
    optimizers = []
    for variables in (generators, discriminators):
        optimizer = keras.optimizers.Adam(config.lr, beta_1=config.beta1, beta_2=config.beta2,
                                          epsilon=config.adam_epsilon)
        optimizer.build(variables)
        optimizers.append(optimizer)

    def mean_of(terms):
        return sum(keras.ops.mean(term) for term in terms.values())

    def generator_loss(g_values, d_values, real_a, real_b):
        mapping = list(zip(generators, g_values)) + list(zip(discriminators, d_values))
        with keras.StatelessScope(state_mapping=mapping):
            terms, fakes = losses.generator_losses(nets, real_a, real_b, config)
            return mean_of(terms), (fakes["fake_a"], fakes["fake_b"])

    def discriminator_loss(d_values, real_a, real_b, fake_a, fake_b):
        with keras.StatelessScope(state_mapping=list(zip(discriminators, d_values))):
            return mean_of(losses.discriminator_losses(nets, real_a, real_b, fake_a, fake_b, config))

    def step(state, real_a, real_b):
        g_values, d_values, g_slots, d_slots = state
        (g_loss, (fake_a, fake_b)), g_grads = jax.value_and_grad(generator_loss, has_aux=True)(
            g_values, d_values, real_a, real_b)
        d_loss, d_grads = jax.value_and_grad(discriminator_loss)(d_values, real_a, real_b, fake_a, fake_b)
        g_values, g_slots = optimizers[0].stateless_apply(g_slots, g_grads, g_values)
        d_values, d_slots = optimizers[1].stateless_apply(d_slots, d_grads, d_values)
        return (g_values, d_values, g_slots, d_slots), g_loss, d_loss

    state = ([v.value for v in generators], [v.value for v in discriminators],
             [v.value for v in optimizers[0].variables], [v.value for v in optimizers[1].variables])
    return jax.jit(step, donate_argnums=0), state, nets


def compile_with_flops(jitted, *args):
    """(the program XLA compiled for these arguments, its FLOPs per call from XLA's cost analysis): one compile
    serves both, which matters for the reference nets, whose step takes tens of seconds to compile."""
    compiled = jitted.lower(*args).compile()
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # one entry per program in some JAX versions
        analysis = analysis[0]
    return compiled, float(analysis.get("flops", 0.0))


def timed(run, steps, repeat):
    """Best seconds per call of `run` (which must block until its result is ready) over `repeat` rounds."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(steps):
            run()
        best = min(best, (time.perf_counter() - started) / steps)
    return best


def matmul_rate(size, repeat=3):
    """The device's bf16 matrix-product rate in FLOP/s: a size x size x size product, best of `repeat`."""
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(jax.random.PRNGKey(0))
    a, b = (jax.random.normal(key, (size, size), jnp.bfloat16) for key in keys)
    product = jax.jit(jnp.matmul)
    product(a, b).block_until_ready()
    return 2 * size ** 3 / timed(lambda: product(a, b).block_until_ready(), 5, repeat)


def top_ops(run, steps, count=10):
    """[(op name, seconds per step, share)] of the ops that took the most time in a trace of `steps` calls: the
    device's own kernels where the trace has a device track (GPUs), else every op XLA's CPU runtime ran."""
    import jax

    folder = tempfile.mkdtemp(prefix="cyclegan-jax-profile-")
    with jax.profiler.trace(folder, create_perfetto_trace=True):
        for _ in range(steps):
            run()
    paths = glob.glob(os.path.join(folder, "**", "*perfetto_trace.json.gz"), recursive=True)
    if not paths:
        return []
    with gzip.open(paths[0], "rt") as f:
        events = json.load(f)
    events = events.get("traceEvents", events) if isinstance(events, dict) else events
    names = {e["pid"]: e.get("args", {}).get("name", "") for e in events
             if e.get("ph") == "M" and e.get("name") == "process_name"}
    device = {pid for pid, name in names.items() if "/device:" in name and "CPU" not in name}
    spans = [e for e in events if e.get("ph") == "X" and "dur" in e and (not device or e["pid"] in device)]
    if not device:  # host only: leave out the Python and runtime spans that enclose the ops
        spans = [e for e in spans if not e["name"].startswith(("$", "Pjit", "PjRt", "Thunk", "TraceMe"))
                 and "jit(" not in e["name"]]
    totals = collections.Counter()
    for event in spans:
        totals[event["name"]] += event["dur"] * 1e-6
    whole = sum(totals.values()) or 1.0
    return [(name, seconds / steps, seconds / whole) for name, seconds in totals.most_common(count)]


def main(argv=None):
    parser = results.parser(__doc__)
    parser.add_argument("--preset", default="reference", help="trainer preset (reference on a GPU, tiny on a CPU)")
    parser.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"],
                        choices=["float32", "mixed_bfloat16"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 2, 4, 8], help="per-device batch sizes")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--repeat", type=int, default=2, help="rounds; each configuration keeps its best")
    parser.add_argument("--profile_steps", type=int, default=3, help="steps traced for the op table (0: none)")
    parser.add_argument("--matmul_size", type=int, default=0,
                        help="side of the bf16 matmul that measures the device's rate (default: 8192 on a GPU, "
                             "1024 on a CPU)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.repeat < 1 or min(args.batches) < 1:
        parser.error("--steps, --repeat and every --batches value must be at least 1")

    import jax
    import keras
    import numpy as np

    from benchmarks import flops
    from trainer.config import PRESETS

    device = jax.devices()[0]
    on_gpu = device.platform == "gpu"
    peak = matmul_rate(args.matmul_size or (8192 if on_gpu else 1024))
    print(f"device: {device.device_kind} ({device.platform}); bf16 matmul rate {peak / 1e12:.3g} TFLOP/s; "
          f"JAX {jax.__version__}, Keras {keras.__version__}")
    print(f"the trainer's nets and losses as one XLA program under JAX: an upper bound, not the TensorFlow "
          f"trainer's speed; {POOL_NOTE}", flush=True)

    rows, last = [], None
    for precision in args.precisions:
        for batch in args.batches:
            keras.mixed_precision.set_global_policy(precision)
            config = dataclasses.replace(PRESETS[args.preset], batch_size=batch, precision=precision)
            step, state, nets = build_step(config)
            analytic = flops.analytic_pair_flops(nets, config)["per_pair"]
            shape = (batch, config.crop_size, config.crop_size, config.input_nc)
            rng = np.random.default_rng(0)
            real_a, real_b = (jax.device_put(rng.uniform(-1, 1, shape).astype(np.float32)) for _ in range(2))
            program, compiled = compile_with_flops(step, state, real_a, real_b)
            holder = {"state": state}

            def run():
                holder["state"], g_loss, _ = program(holder["state"], real_a, real_b)
                g_loss.block_until_ready()

            run()  # the first call allocates and loads the program
            seconds = timed(run, args.steps, args.repeat)
            rows.append({"precision": precision, "batch": batch, "pairs_s": batch / seconds, "step_ms": seconds * 1e3,
                         "gflop_pair_xla": compiled / batch / 1e9, "gflop_pair_analytic": analytic / 1e9,
                         "tflop_s": compiled / seconds / 1e12, "of_matmul_rate": compiled / seconds / peak})
            print(f"{precision} batch {batch}: {rows[-1]['pairs_s']:.4g} pairs/s", flush=True)
            last = run
    print()
    results.table(rows, [("precision", "precision", "{}"), ("batch", "batch", "{}"), ("pairs/s", "pairs_s", "{:.4g}"),
                         ("step ms", "step_ms", "{:.4g}"), ("GFLOP/pair XLA", "gflop_pair_xla", "{:.1f}"),
                         ("GFLOP/pair analytic", "gflop_pair_analytic", "{:.1f}"), ("TFLOP/s", "tflop_s", "{:.3g}"),
                         ("of bf16 matmul", "of_matmul_rate", "{:.3f}")])
    ops = top_ops(last, args.profile_steps) if args.profile_steps else []
    if ops:
        print(f"\nthe ten most expensive ops ({rows[-1]['precision']}, batch {rows[-1]['batch']}, "
              f"{args.profile_steps} steps traced):")
        for name, seconds, share in ops:
            print(f"  {seconds * 1e3:10.3f} ms/step  {share:6.1%}  {name[:100]}")
    results.write_json(args.json, "xla_step_jax", rows, backend="jax", matmul_tflop_s=peak / 1e12,
                       preset=args.preset, left_out=POOL_NOTE,
                       top_ops=[{"name": n, "ms_per_step": s * 1e3, "share": f} for n, s, f in ops])


if __name__ == "__main__":
    main()
