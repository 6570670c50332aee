"""The `cyclegan` command: one subcommand per job, each configured by one dataclass.

Subcommands import their job lazily, so `cyclegan --help` answers without loading TensorFlow.
"""
import argparse
import importlib
import os
import sys

from preprocessing import exit_status
from preprocessing.jobs import TF_LOGS_ENV, JobFailed, UsageError, check_at_least, job_parser, prepare_libraries
from trainer.model_dir import LOGS, model_path

# subcommand -> (module with `main(argv, prog)`, or "module:function", one-line summary)
SUBCOMMANDS = {
    "demo": ("cyclegan:demo", "the whole system on a synthetic dataset: synth, preprocess, train, export, "
                              "translate, evaluate"),
    "synth": ("pipeline.synth", "write a synthetic unpaired dataset (with ground truth) to translate"),
    "preprocess": ("pipeline.cli", "Beam job: raw image folders or a TFDS dataset -> validated, sharded TFRecords"),
    "train": ("trainer.cli", "build and train the CycleGAN on preprocessed TFRecords (resumes from checkpoints)"),
    "export": ("trainer.export", "a trained run's generators -> one SavedModel per direction"),
    "evaluate": ("trainer.evaluate", "ground-truth error, cycle error, FID and KID of a model on a test set"),
    "translate": ("trainer.translate", "translate a folder, glob or gs:// prefix of images with an exported model"),
    "submit": ("k8s.cli", "Kubernetes: submit preprocess, train or tensorboard; list, status, logs, delete"),
}

def main(argv=None, prog="cyclegan"):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog=prog, allow_abbrev=False,
        description="Unpaired image-to-image translation (CycleGAN): preprocess with Beam, train across GPUs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="subcommands:\n" + "\n".join(f"  {n:<11} {summary}" for n, (_, summary) in SUBCOMMANDS.items())
        + f"\n\nRun '{prog} SUBCOMMAND --help' for its flags. Set {TF_LOGS_ENV}=1 to see TensorFlow's own logs.",
    )
    parser.add_argument("subcommand", choices=sorted(SUBCOMMANDS), metavar="SUBCOMMAND")
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    args = parser.parse_args(argv[:1])
    return run_job(args.subcommand, argv[1:], prog=f"{prog} {args.subcommand}")


# subcommand -> the setup.py extras it needs, each with the modules that show it is installed: an image holds one
# role's extra (k8s/Dockerfile: train; k8s/Dockerfile.beam: preprocess)
EXTRAS = {"demo": ("train", "preprocess"), "preprocess": ("preprocess",), "train": ("train",),
          "export": ("train",), "evaluate": ("train",), "translate": ("train",), "submit": ("k8s",)}
EXTRA_MODULES = {"train": ("tensorboard", "tqdm"), "preprocess": ("apache_beam",), "k8s": ("kubernetes", "yaml")}


def check_extras(subcommand, prog):
    import importlib.util

    for extra in EXTRAS.get(subcommand, ()):
        missing = [name for name in EXTRA_MODULES[extra] if importlib.util.find_spec(name) is None]
        if missing:
            raise UsageError(f"{prog} needs the {extra} extra ({', '.join(missing)} missing): pip install "
                             f"'cyclegan-pipeline[{extra}]' --constraint constraints.txt")


def run_job(subcommand, argv, prog):
    """Run one subcommand's `main`; a UsageError becomes a one-line message and exit status 2, a JobFailed one
    with exit status 1."""
    prepare_libraries(import_tensorflow=False)  # the jobs that need TensorFlow import it quietly themselves
    module, _, function = SUBCOMMANDS[subcommand][0].partition(":")
    try:
        check_extras(subcommand, prog)
        job = getattr(importlib.import_module(module), function or "main")
        return job(argv, prog=prog) or 0
    except UsageError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return exit_status.USAGE
    except JobFailed as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return exit_status.FAILED
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return exit_status.INTERRUPTED


def demo(argv, prog="cyclegan demo"):
    """Run every stage as the command a user would type, on a synthetic dataset whose answer is known.

    Stages run as their own processes (each prints its command first), so a failure names the stage and the
    output shows how to run any stage alone. OUT/model, OUT/export, OUT/translated and OUT/eval start afresh.
    """
    import shutil
    import subprocess

    parser = job_parser(prog, demo.__doc__)
    parser.add_argument("out", nargs="?", default="demo_out", help="working folder (default: demo_out)")
    parser.add_argument("--steps", type=int, default=0, help="training steps (default: the tiny preset's 20 epochs)")
    parser.add_argument("--train", type=int, default=240, help="synthetic training images per domain")
    parser.add_argument("--test", type=int, default=24, help="synthetic test images per domain")
    parser.add_argument("--inception_weights", default="", help="Inception-v3 .weights.h5 for FID and KID")
    args = parser.parse_args(argv)
    check_at_least(("--steps", args.steps, 0), ("--train", args.train, 1), ("--test", args.test, 1))
    out = args.out.rstrip("/")
    for stale in ("model", "export", "translated", "eval"):
        shutil.rmtree(os.path.join(out, stale), ignore_errors=True)
    every = f"{args.steps // 2}" if args.steps else "300"
    # The tiny preset's 4 pairs per core, as one replica: on a CPU, splitting it into replicas adds no compute and
    # costs rate (benchmarks/RESULTS.md, "The CPU default").
    fid = ["--inception_weights", args.inception_weights] if args.inception_weights else []
    stages = [
        ["synth", f"{out}/raw", "--train", str(args.train), "--test", str(args.test)],
        ["preprocess", "--input", f"{out}/raw", "--output", f"{out}/records", "--overwrite"],
        ["train", "--preset", "tiny", "--data", f"{out}/records", "--model_dir", f"{out}/model",
         "--batch_size", str(4 * (os.cpu_count() or 1)), "--log_every", "30", "--eval_every", every, "--eval_data",
         f"{out}/raw", *fid, *(["--steps", str(args.steps)] if args.steps else [])],
        ["export", "--model_dir", f"{out}/model", "--output", f"{out}/export"],
        ["translate", "--model", f"{out}/export/a2b", "--input", f"{out}/raw/testA", "--output",
         f"{out}/translated/testA"],
        ["evaluate", "--model", f"{out}/export", "--data", f"{out}/raw", "--output", f"{out}/eval", *fid],
    ]
    for stage in stages:
        print(f"\n$ cyclegan {' '.join(stage)}", flush=True)
        status = subprocess.call([sys.executable, "-m", "cyclegan", *stage])
        if status:
            print(f"{prog}: the {stage[0]} stage failed with exit status {status}", file=sys.stderr)
            return status
    import json

    with open(f"{out}/eval/report.json") as f:
        report = json.load(f)
    ratio = report["ground_truth_mae_vs_identity"]
    print(f"\ndemo: G(test A) is off the true B images by {ratio:.0%} of the identity map's error "
          f"({'learned: at most 30%' if ratio <= 0.3 else 'more than the 30% a full demo reaches; train longer'})")
    print(f"demo: translated test A images in {out}/translated/testA; report in {out}/eval/report.json")
    print(f"demo: open TensorBoard on the run with: tensorboard --logdir {model_path(f'{out}/model', LOGS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
