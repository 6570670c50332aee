"""The `cyclegan` command: one subcommand per job, each configured by one dataclass, and the demo.

Subcommands import their job lazily (preprocessing/commands.py), so `cyclegan --help` answers without loading
TensorFlow.
"""
import argparse
import os
import sys

from preprocessing.commands import SUBCOMMANDS, run_job
from preprocessing.flags import check_at_least, job_parser
from preprocessing.process import TF_LOGS_ENV
from trainer.run.model_dir import LOGS, model_path


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
    parser.add_argument("--task", choices=sorted(DEMO_TASKS), default="colour",
                        help="the synthetic task (`cyclegan synth --help` describes both): colour, the default, "
                        "shows that training works; discs needs spatial learning, which no per-pixel colour map "
                        "does, and trains on crops at the images' own scale (--preprocess crop)")
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
        ["synth", f"{out}/raw", "--train", str(args.train), "--test", str(args.test), "--task", args.task],
        ["preprocess", "--input", f"{out}/raw", "--output", f"{out}/records", "--overwrite"],
        ["train", "--preset", "tiny", "--data", f"{out}/records", "--model_dir", f"{out}/model",
         "--batch_size", str(4 * (os.cpu_count() or 1)), "--log_every", "30", "--eval_every", every, "--eval_data",
         f"{out}/raw", *DEMO_TASKS[args.task], *fid, *(["--steps", str(args.steps)] if args.steps else [])],
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

    from trainer.evaluation.evaluator import Key

    with open(f"{out}/eval/report.json") as f:
        report = json.load(f)
    ratio = report[Key.GROUND_TRUTH_MAE_VS_IDENTITY]
    print(f"\ndemo: G(test A) is off the true B images by {ratio:.0%} of the identity map's error "
          f"({'learned: at most 30%' if ratio <= 0.3 else 'more than the 30% a full demo reaches; train longer'})"
          if args.task == "colour" else spatial_verdict(ratio, report[Key.COLOUR_MAP_MAE_VS_IDENTITY]))
    print(f"demo: translated test A images in {out}/translated/testA; report in {out}/eval/report.json")
    print(f"demo: open TensorBoard on the run with: tensorboard --logdir {model_path(f'{out}/model', LOGS)}")
    return 0


# Each demo task's training flags on top of the tiny preset's: discs' radii are in pixels, so it trains on crops of
# the images as stored, whose test time translates them as stored too.
DEMO_TASKS = {"colour": [], "discs": ["--preprocess", "crop", "--n_epochs", "15", "--n_epochs_decay", "15"]}


def spatial_verdict(ratio, colour_map_ratio):
    """The discs task's line: the model against the best map that sees one pixel's colour at a time. Least squares
    fits the colour map, which can be worse than the identity in absolute error, so the bar is the better of the
    two, and the model must reach half of it."""
    bar = min(1.0, colour_map_ratio)
    verdict = "learned: at most half" if ratio <= bar / 2 else "more than half; train longer"
    return (f"demo: G(test A) is off the true B images by {ratio:.0%} of the identity map's error; the best colour "
            f"map's is {colour_map_ratio:.0%}, so no per-pixel map beats {bar:.0%} ({verdict} of that)")


if __name__ == "__main__":
    sys.exit(main())
