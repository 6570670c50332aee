"""The `cyclegan` subcommands: which module runs each, what each needs installed, and how one is run.

`cyclegan.py` (the top-level command) and `python -m pipeline` / `python -m trainer` all run a job through
`run_job`, so a job ends alike however it was started. Jobs are imported by name, when run: `cyclegan --help`
answers without loading TensorFlow.
"""
import importlib
import sys

from preprocessing import exit_status
from preprocessing.flags import JobFailed, UsageError
from preprocessing.process import prepare_libraries

# subcommand -> (module with `main(argv, prog)`, or "module:function", one-line summary)
SUBCOMMANDS = {
    "demo": ("cyclegan:demo", "the whole system on a synthetic dataset: synth, preprocess, train, export, "
                              "translate, evaluate"),
    "synth": ("pipeline.synth", "write a synthetic unpaired dataset (with ground truth) to translate"),
    "preprocess": ("pipeline.cli", "Beam job: raw image folders or a TFDS dataset -> validated, sharded TFRecords"),
    "train": ("trainer.cli", "build and train the CycleGAN on preprocessed TFRecords (resumes from checkpoints)"),
    "export": ("trainer.export", "a trained run's generators -> one SavedModel per direction"),
    "import": ("trainer.import_reference", "the reference's PyTorch generators (.pth) -> a model directory to "
                                           "export, evaluate or fine-tune"),
    "evaluate": ("trainer.evaluate", "ground-truth error, cycle error, FID and KID of a model on a test set"),
    "translate": ("trainer.translate", "translate a folder, glob or gs:// prefix of images with an exported model"),
    "compare": ("trainer.compare", "training runs side by side: what differs, their steps, rate and evaluations"),
    "submit": ("k8s.cli", "Kubernetes: submit preprocess, train or tensorboard; list, status, logs, delete"),
}

# subcommand -> the setup.py extras it needs, each with the modules that show it is installed: an image holds one
# role's extra (k8s/Dockerfile: train; k8s/Dockerfile.beam: preprocess)
EXTRAS = {"demo": ("train", "preprocess"), "preprocess": ("preprocess",), "train": ("train",),
          "export": ("train",), "import": ("train",), "evaluate": ("train",), "compare": ("train",),
          "translate": ("train",), "submit": ("k8s",)}
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
