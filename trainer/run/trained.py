"""A trained run read back: its networks restored from a model directory's checkpoint (for `export`, `evaluate`,
and the run record's config with them), and its generators exported as SavedModels."""
import dataclasses
import json

import tensorflow as tf

from preprocessing.flags import JobFailed, UsageError, view
from preprocessing.process import PARTIAL
from trainer.config import TrainConfig
from trainer.files import move, remove
from trainer.model import networks
from trainer.run import best, checkpoints, imported
from trainer.run.best import BEST
from trainer.run.model_dir import RUN_RECORD, model_path
from trainer.serving.image_files import inside
from trainer.serving.formats import SUFFIX, write_formats
from trainer.serving.translator import (DIRECTIONS, EXPORT_RECORD, SERVE_BYTES, SERVE_PIXELS, Scaling, full_disk,
                                        make_translator)


def load_run(model_dir, checkpoint=None, say=print):
    """(config, the four nets restored from `checkpoint` or the newest one that loads, its path, its step).
    `checkpoint` "best" is the run's best checkpoint (trainer/run/best.py), said with its metric."""
    record = checkpoints.read_run_record(model_dir, "is --model_dir a `cyclegan train` model directory?")
    config = TrainConfig(**record["config"])
    if checkpoint == BEST:
        checkpoint, kept = best.checkpoint_of(model_dir)
        say(f"best checkpoint: {kept['metric']} {kept['value']:.4f} at step {kept['step']}")
    elif checkpoint:
        checkpoint = checkpoints.prefix_of(checkpoint)
        check_same_run(checkpoint, model_dir, record)
    nets = networks.build(view(config, networks.Shape))
    step = tf.Variable(0, dtype=tf.int64)
    restorable = tf.train.Checkpoint(step=step, **nets)
    if checkpoint:
        try:
            restorable.read(checkpoint).assert_existing_objects_matched().expect_partial()
        except Exception as err:  # a damaged file raises anything from OpError and AssertionError to IndexError
            raise UsageError(f"--checkpoint {checkpoint}: cannot restore the networks from it "
                             f"({checkpoints.load_failure(err)})") from None
    else:
        checkpoint = checkpoints.restore_newest(restorable, model_dir, say)
        if not checkpoint:
            raise UsageError(f"--model_dir {model_dir} holds no checkpoint yet; train first")
    return config, nets, checkpoint, int(step.numpy())


def check_same_run(checkpoint, model_dir, record):
    """A UsageError if `checkpoint` lies outside `model_dir` and the run beside it trained other networks: the
    export would pair this run's config with another run's weights."""
    if inside(checkpoint, model_dir):
        return
    other = checkpoints.model_dir_of(checkpoint)
    if not tf.io.gfile.exists(model_path(other, RUN_RECORD)):
        why = "has no run record beside it"
    else:
        changes = checkpoints.identity_changes(checkpoints.read_run_record(other, "")["config"], record["config"])
        if not changes:
            return
        why = f"its run trained another config ({'; '.join(changes)})"
    raise UsageError(f"--checkpoint {checkpoint} is not in --model_dir {model_dir} and {why}: this run's config "
                     f"would be paired with other weights. Pass --model_dir {other}, the run it belongs to")


def export(model_dir, output, checkpoint=None, say=print, formats=("savedmodel",), version=0, max_megapixels=0.0,
           bytes_default=False, overwrite=False):
    """Write output/a2b, output/b2a (SavedModels, or output/a2b/VERSION/ with `version`, TF Serving's layout),
    any other `formats` beside them (a2b.onnx, a2b.tflite) and output/export.json; returns the SavedModel paths.

    Everything is written into OUTPUT.partial first, and moved into OUTPUT once complete, export.json last: a
    folder with export.json holds a whole export, and a kill or a full disk mid-export never leaves one that lacks
    a direction. An earlier export in OUTPUT is replaced entry by entry; other files there are left alone. With a
    version, the other numbered versions stay beside the new one (TF Serving's layout exists for rollback), and an
    existing one of the same number is replaced only with `overwrite`. A direction that `cyclegan import` gave no
    weights is not written."""
    output = output.rstrip("/")
    taken = [f"{output}/{d}/{version}" for d in DIRECTIONS if version and tf.io.gfile.exists(f"{output}/{d}/{version}")]
    if taken and not overwrite:
        raise UsageError(f"--version {version}: {taken[0]} exists; choose another --version (the others are kept for "
                         "rollback) or pass --overwrite to replace it")
    config, nets, checkpoint, step = load_run(model_dir, checkpoint, say)
    random = imported.random_nets(checkpoints.read_run_record(model_dir, ""))
    directions = {direction: name for direction, name in DIRECTIONS.items() if name not in random}
    staging = output + PARTIAL
    remove(staging)  # of an export that was stopped
    scaling = view(config, Scaling)
    entries = []
    try:  # a full disk (or any failure) while staging leaves nothing behind, and is one line
        for direction, name in directions.items():
            translator = make_translator(nets[name], scaling, max_megapixels)
            pixels, encoded = (translator.translate.get_concrete_function(),
                               translator.translate_bytes.get_concrete_function())
            signatures = ({"serving_default": encoded, SERVE_PIXELS: pixels} if bytes_default
                          else {"serving_default": pixels, SERVE_BYTES: encoded})
            tf.saved_model.save(translator, f"{staging}/{direction}" + (f"/{version}" if version else ""),
                                signatures=signatures)
            say(f"export: {name} ({direction}) written")
            entries += [direction, *write_formats(translator, formats, staging, direction, say).values()]
        for direction in set(DIRECTIONS) - set(directions):
            say(f"export: {DIRECTIONS[direction]} ({direction}) not written: `cyclegan import` gave it no weights")
        with tf.io.gfile.GFile(f"{staging}/{EXPORT_RECORD}", "w") as f:
            json.dump({"checkpoint": checkpoint, "step": step, "directions": directions, "formats": list(formats),
                       "version": version or None, "max_megapixels": max_megapixels or None,
                       "serving_default": "bytes" if bytes_default else "pixels",
                       "scale": scaling.record(), "config": dataclasses.asdict(config)}, f, indent=2)
    except Exception as err:
        remove(staging)
        if full_disk(err):
            raise JobFailed(f"--output {output}: no space left on its device while writing the export; nothing "
                            "was written and the partial files are removed. Free space, or choose another "
                            "--output") from None
        raise
    publish(staging, output, entries, version)
    for direction, name in directions.items():
        say(f"export: {name} ({direction}) -> {output}/{direction}" + (f"/{version}" if version else ""))
    say(f"export: from {checkpoint} (step {step})")
    return {direction: f"{output}/{direction}" for direction in directions}


def publish(staging, output, entries, version):
    """Move a whole export from `staging` into `output`: the earlier export's record first (it is incomplete from
    then until the new record is in), its files of each direction in any format (only the same version of a
    numbered layout), then the new entries, the record last."""
    tf.io.gfile.makedirs(output)
    remove(f"{output}/{EXPORT_RECORD}")
    for direction in DIRECTIONS:
        numbered = version and tf.io.gfile.isdir(f"{output}/{direction}") and not tf.io.gfile.exists(
            f"{output}/{direction}/saved_model.pb")  # an unversioned SavedModel there is replaced whole
        saved_model = f"{direction}/{version}" if numbered else direction
        for stale in [saved_model, *(direction + suffix for suffix in SUFFIX.values())]:
            remove(f"{output}/{stale}")
    for entry in (*entries, EXPORT_RECORD):
        if version and entry in DIRECTIONS:  # into the direction's folder, beside its other versions
            tf.io.gfile.makedirs(f"{output}/{entry}")
            entry = f"{entry}/{version}"
        move(f"{staging}/{entry}", f"{output}/{entry}")
    remove(staging)
