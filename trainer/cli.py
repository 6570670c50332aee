"""`cyclegan train`: train a CycleGAN on the TFRecords that `cyclegan preprocess` wrote.

    cyclegan train --data RECORDS --model_dir DIR [--preset tiny|reference] [--steps N | --epochs N]

Everything the run needs to continue goes into --model_dir/checkpoints every --checkpoint_every steps, and a start
on a model directory with checkpoints resumes from the newest that loads. On SIGTERM the run finishes its step,
saves, and exits with status 75; Ctrl-C does the same and exits with 130 (a second Ctrl-C aborts without saving).
Start the same command again to resume. TensorBoard logs go to --model_dir/logs.

Pick a preset (`reference`: the paper's networks and hyperparameters at 256 px; `tiny`: 64 px for CPUs and the
demo), then override any field with its flag. Runs on every local GPU (MirroredStrategy), across the workers that
TF_CONFIG names (MultiWorkerMirroredStrategy), or on the CPU. `--dry_run` builds the networks, prints the resolved
config and the parameter counts, checks --data, and exits.
"""
import dataclasses
import json
import sys

from preprocessing import exit_status
from preprocessing.flags import UsageError, add_config_flags, check_fields, config_from_flags, job_parser, view
from preprocessing.process import cpp_log_filter, prepare_libraries
from trainer.config import PRESETS, TrainConfig


def check_config(config):
    from trainer.model.networks import input_size_problem

    problem = input_size_problem(config.crop_size, config.n_layers_d)
    if problem:
        raise UsageError(f"--crop_size {config.crop_size}: {problem}")
    check_flags(config)


def check_flags(config):
    """A UsageError for the first field that cannot train; without loading TensorFlow, so that `submit train`
    refuses flags after -- before any pod starts."""
    from trainer.model.scale_modes import CROPPED

    if config.preprocess not in CROPPED:
        raise UsageError(f"--preprocess {config.preprocess} keeps each image's own size, and a training step takes "
                         f"one size (its batch, its image pool): train with {', '.join(CROPPED)}; translate and "
                         "evaluate then meet whole images at the mode's test-time scale")
    if config.preprocess != "crop" and config.load_size < config.crop_size:
        raise UsageError(f"--load_size {config.load_size} is below --crop_size {config.crop_size}, which "
                         f"--preprocess {config.preprocess} crops from an image scaled to --load_size")
    check_fields(config)
    if config.steps and config.epochs:
        raise UsageError("give --steps or --epochs, not both")
    if config.eval_every and not config.eval_data:
        raise UsageError("--eval_every needs --eval_data: a dataset root with testA/ and testB/")


def schedule_note(config, manifest):
    """The start's warning about steps past the learning-rate schedule, for the replicas this machine would run
    (a run elsewhere, with other replicas, has other epochs)."""
    import tensorflow as tf

    from trainer.run import loop, strategy

    replicas = 1 if config.strategy == "one_device" else (len(tf.config.list_physical_devices("GPU"))
                                                          or config.cpu_replicas)
    global_batch = config.batch_size * replicas * max(1, strategy.tf_config_workers())
    per_epoch = loop.steps_per_epoch(manifest, global_batch)
    idle = loop.schedule_overrun(config, per_epoch, loop.total_steps(config, per_epoch))
    if idle:
        print(f"warning: {idle} (global batch {global_batch} here)")


def flags(prog="cyclegan train"):
    """The command's parser: --preset, --dry_run and one flag per TrainConfig field (`cyclegan submit` checks the
    flags it passes on with it)."""
    parser = job_parser(prog, __doc__)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="reference",
                        help="named configuration the other flags override (default: reference)")
    parser.add_argument("--dry_run", action="store_true",
                        help="build the networks, print the config and parameter counts, check --data, and exit")
    add_config_flags(parser, TrainConfig)
    return parser


def main(argv, prog="cyclegan train"):
    args = flags(prog).parse_args(argv)
    config = config_from_flags(PRESETS[args.preset], args)
    cache = None
    if config.xla_cache and config.model_dir and not args.dry_run:
        from trainer.run.compile_cache import CompileCache

        cache = CompileCache(config.model_dir)  # before TensorFlow starts: that is when XLA reads its flags
    prepare_libraries()  # before check_config, which imports the networks' module
    with cpp_log_filter():
        return run_training(args, config, cache, prog)


def run_training(args, config, cache, prog):
    check_config(config)
    if not args.dry_run and not (config.data and config.model_dir):
        raise UsageError("--data and --model_dir are required to train (or pass --dry_run)")
    import tensorflow as tf

    from trainer.model import networks
    from trainer.run import preemption, strategy
    from trainer.run.data import Input
    from trainer.run.data_checks import check_data

    if config.model_dir and tf.io.gfile.exists(config.model_dir) and not tf.io.gfile.isdir(config.model_dir):
        raise UsageError(f"--model_dir {config.model_dir} is a file; give a folder (it is created if missing)")

    strategy.prepare_devices(config.cpu_replicas)
    if not tf.config.list_physical_devices("GPU") and strategy.slow_on_this_cpu(config.precision):
        print(f"{prog}: --precision {config.precision} on this CPU: it has no {config.precision[6:]} arithmetic, and "
              "the step runs several times slower than in float32 on such CPUs (benchmarks/RESULTS.md, \"Mixed "
              "precision on a CPU\"); use float32 here", file=sys.stderr, flush=True)
    # MultiWorkerMirroredStrategy must exist before any TensorFlow op runs, the data check's included.
    say = lambda line: print(line, flush=True)  # noqa: E731
    try:
        run_strategy = None if args.dry_run else strategy.create(view(config, strategy.Distribution), say)
    except (strategy.PeersMissing, preemption.StoppedWaiting) as err:
        print(f"{prog}: {err}", file=sys.stderr, flush=True)
        return err.exit_status
    manifest = check_data(config.data, view(config, Input)) if config.data else None
    if args.dry_run:
        print(f"config (preset {args.preset}):")
        print(json.dumps(dataclasses.asdict(config), indent=2))
        for line in networks.parameter_report(networks.build(view(config, networks.Shape))):
            print(line)
        if manifest:
            schedule_note(config, manifest)
        return 0

    from preprocessing import lease
    from preprocessing.schema import ManifestError
    from trainer.run import checkpoints, data, health, loop, restarts

    try:
        if cache:
            cache.load(say)
        loop.train(config, strategy=run_strategy, manifest=manifest, say=say, compile_cache=cache)
    except (ManifestError, data.DataError) as err:
        raise UsageError(str(err)) from None
    except (checkpoints.SaveError, loop.NonFiniteLoss, lease.LeaseLost, lease.LeaseUnwritable) as err:
        print(f"{prog}: error: {err}", file=sys.stderr, flush=True)
        return exit_status.FAILED
    except (restarts.NoProgress, health.Collapsed) as err:
        print(f"{prog}: error: {err}", file=sys.stderr, flush=True)
        return err.exit_status
    except (preemption.Preempted, preemption.PeerLost) as stopped:
        print(f"{prog}: {stopped}", flush=True)
        return stopped.exit_status
    finally:
        if cache:
            cache.close()
    return 0
