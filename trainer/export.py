"""`cyclegan export`: a trained run's generators as SavedModels, one per direction.

    cyclegan export --model_dir DIR --output EXPORT_DIR [--checkpoint PATH]

writes EXPORT_DIR/a2b and EXPORT_DIR/b2a (SavedModels) and EXPORT_DIR/export.json (what was exported). Each
serving signature takes a batch of uint8 RGB images of any size (at least 4x4), pads them symmetrically to a
multiple of 4 (and at least 8) as the generator needs, translates, crops back and returns uint8 of the input size.
Loading one needs TensorFlow only: `tf.saved_model.load(EXPORT_DIR + "/a2b").signatures["serving_default"]`.
"""
import json

from preprocessing.jobs import job_parser, UsageError, quiet_libraries

DIRECTIONS = {"a2b": "G_AB", "b2a": "G_BA"}
MIN_SIDE = 4  # the serving signature pads to the generator's multiple of 4 and its minimum of 8


def load_run(model_dir, checkpoint=None, report=print):
    """(config, the four nets restored from `checkpoint` or the newest one that loads, its path, its step)."""
    import tensorflow as tf

    from trainer import checkpoints, networks
    from trainer.config import TrainConfig

    record = checkpoints.read_run_record(model_dir, "is --model_dir a `cyclegan train` model directory?")
    config = TrainConfig(**record["config"])
    nets = networks.build(config)
    step = tf.Variable(0, dtype=tf.int64)
    restorable = tf.train.Checkpoint(step=step, **nets)
    if checkpoint:
        try:
            restorable.read(checkpoint).assert_existing_objects_matched().expect_partial()
        except Exception as err:  # a damaged file raises anything from OpError and AssertionError to IndexError
            raise UsageError(f"--checkpoint {checkpoint}: cannot restore the networks from it: {err}") from None
    else:
        checkpoint = checkpoints.restore_newest(restorable, model_dir, report)
        if not checkpoint:
            raise UsageError(f"--model_dir {model_dir} holds no checkpoint yet; train first")
    return config, nets, checkpoint, int(step.numpy())


def load_direction(path, flag="--model"):
    """The serving signature of one exported direction (EXPORT_DIR/a2b or /b2a), or a UsageError naming `flag`."""
    import tensorflow as tf

    try:
        return tf.saved_model.load(path).signatures["serving_default"]
    except (OSError, tf.errors.OpError, KeyError) as err:
        raise UsageError(f"{flag} {path}: not an exported direction of `cyclegan export` ({err})") from None


def make_translator(generator):
    import tensorflow as tf

    class Translator(tf.Module):
        def __init__(self):
            super().__init__()
            self.generator = generator

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
        def translate(self, images):
            size = tf.shape(images)[1:3]
            tf.debugging.assert_greater_equal(size, MIN_SIDE, message=f"images must be at least {MIN_SIDE}x{MIN_SIDE} "
                                                                      "pixels")
            padded = tf.maximum((size + 3) // 4 * 4, 8)
            before = (padded - size) // 2
            after = padded - size - before
            x = tf.cast(images, tf.float32) / 127.5 - 1.0
            x = tf.pad(x, [[0, 0], [before[0], after[0]], [before[1], after[1]], [0, 0]], mode="SYMMETRIC")
            y = tf.cast(self.generator(x, training=False), tf.float32)
            y = y[:, before[0]:before[0] + size[0], before[1]:before[1] + size[1], :]
            return {"images": tf.cast(tf.round((tf.clip_by_value(y, -1.0, 1.0) + 1.0) * 127.5), tf.uint8)}

    return Translator()


def export(model_dir, output, checkpoint=None, report=print):
    """Write output/a2b, output/b2a and output/export.json; returns the two SavedModel paths."""
    import dataclasses

    import tensorflow as tf

    config, nets, checkpoint, step = load_run(model_dir, checkpoint, report)
    paths = {}
    for direction, name in DIRECTIONS.items():
        translator = make_translator(nets[name])
        paths[direction] = f"{output.rstrip('/')}/{direction}"
        tf.saved_model.save(translator, paths[direction],
                            signatures={"serving_default": translator.translate.get_concrete_function()})
        report(f"export: {name} ({direction}) -> {paths[direction]}")
    with tf.io.gfile.GFile(f"{output.rstrip('/')}/export.json", "w") as f:
        json.dump({"checkpoint": checkpoint, "step": step, "directions": DIRECTIONS,
                   "config": dataclasses.asdict(config)}, f, indent=2)
    report(f"export: from {checkpoint} (step {step})")
    return paths


def main(argv, prog="cyclegan export"):
    parser = job_parser(prog, __doc__)
    parser.add_argument("--model_dir", required=True, help="the model directory of `cyclegan train`")
    parser.add_argument("--output", required=True, help="folder for a2b/, b2a/ and export.json (local, gs://)")
    parser.add_argument("--checkpoint", help="checkpoint prefix to export (default: the newest), e.g. "
                                             "DIR/checkpoints/ckpt-500")
    args = parser.parse_args(argv)
    quiet_libraries()
    export(args.model_dir, args.output, args.checkpoint)
    return 0
