"""A trained run's generators as translators: made from a generator (for `export`, which saves them, and the
trainer's evaluation) or loaded from an export, and applied to images of any size.

By default an image is first scaled as the model's training mode scales it at test time (Scaling, from the
run's config or the export's export.json; trainer/model/scale_modes.py), and the translation is scaled back to the
image's own size; without a Scaling (`translate --native`) the image is translated whole at its own size.

The generator needs sides that are a multiple of 4 (and at least 8): the translator pads symmetrically to that,
translates and crops back, so every image keeps its size. The same `tf.Module` is what `export` saves and what the
trainer's evaluation calls on the live networks, so both translate alike.
"""
import dataclasses
import errno
import json

from preprocessing.flags import UsageError
from trainer.model import scale_modes

DIRECTIONS = {"a2b": "G_AB", "b2a": "G_BA"}
EXPORT_RECORD = "export.json"  # what was exported; written last, so it marks a whole export
MIN_SIDE = 4  # the smallest image the translator pads (symmetrically) up to the generator's multiple and minimum
ERRORS_FILE = "translate_errors.jsonl"


@dataclasses.dataclass(frozen=True)
class Scaling:
    """How a model meets images at test time: its training mode and sizes (the TrainConfig fields of the same
    names, recorded in run.json and export.json)."""
    preprocess: str
    load_size: int
    crop_size: int

    def record(self):
        """export.json's "scale": the training mode and sizes, and the test-time mode they imply."""
        return {**dataclasses.asdict(self), "test_time": scale_modes.TEST_MODE[self.preprocess]}

    def scaled_shape(self, height, width):
        """(height, width) of an image of that size as the model meets it, as int32 tensors."""
        mode = scale_modes.TEST_MODE[self.preprocess]
        load = self.crop_size if mode == "resize_and_crop" else self.load_size
        return scale_modes.scaled_shape(height, width, mode, load, self.crop_size)

    def shape(self, height, width):
        """scaled_shape as Python ints."""
        return tuple(int(side) for side in self.scaled_shape(height, width))

    def scale_in(self, image, height, width):
        """A uint8 image resized to (height, width), the size the model meets it at, as uint8."""
        import tensorflow as tf

        return tf.cast(tf.clip_by_value(tf.round(scale_modes.resize(image, height, width)), 0, 255), tf.uint8)

    @staticmethod
    def scale_back(translation, height, width):
        """A uint8 translation resized back to the image's own (height, width), as uint8."""
        from trainer.model.pixels import to_uint8

        return to_uint8(scale_modes.resize(translation, height, width) / 127.5 - 1.0)


def saved_model_path(path):
    """The SavedModel of an exported direction given as EXPORT_DIR/a2b, in either layout: the SavedModel itself,
    or TF Serving's numbered versions under it (the highest, as TF Serving serves by default)."""
    import tensorflow as tf

    path = path.rstrip("/")
    if tf.io.gfile.exists(f"{path}/saved_model.pb") or not tf.io.gfile.isdir(path):
        return path
    versions = [int(name.rstrip("/")) for name in tf.io.gfile.listdir(path) if name.rstrip("/").isdigit()]
    return f"{path}/{max(versions)}" if versions else path


def export_scaling(direction_path):
    """The Scaling of an exported direction (EXPORT_DIR/a2b, or its version EXPORT_DIR/a2b/1), from
    EXPORT_DIR/export.json; None if there is none."""
    import tensorflow as tf

    parts = direction_path.rstrip("/").split("/")
    roots = ["/".join(parts[:-1])] + (["/".join(parts[:-2])] if parts[-1].isdigit() and len(parts) > 2 else [])
    records = [f"{root}/{EXPORT_RECORD}" for root in roots if root and tf.io.gfile.exists(f"{root}/{EXPORT_RECORD}")]
    if not records:
        return None
    with tf.io.gfile.GFile(records[0]) as f:
        config = json.load(f)["config"]
    return Scaling(config.get("preprocess", "resize_and_crop"), config["load_size"], config["crop_size"])


def load_direction(path, flag="--model"):
    """The serving signature of one exported direction (EXPORT_DIR/a2b or /b2a, in either layout), or a UsageError
    naming `flag`."""
    import tensorflow as tf

    from trainer import files

    root = path.rstrip("/")
    if tf.io.gfile.exists(f"{root}/{EXPORT_RECORD}") and not tf.io.gfile.exists(f"{root}/saved_model.pb"):
        present = [d for d in DIRECTIONS if tf.io.gfile.isdir(f"{root}/{d}")]
        raise UsageError(f"{flag} {path}: the root of an export; name one of its directions: "
                         + " or ".join(f"{flag} {root}/{d}" for d in present))
    try:
        signatures = tf.saved_model.load(saved_model_path(path)).signatures
        return signatures[SERVE_PIXELS] if SERVE_PIXELS in signatures else signatures["serving_default"]
    except (OSError, tf.errors.OpError, KeyError) as err:
        raise UsageError(files.cannot_read(flag, path) or
                         f"{flag} {path}: not an exported direction of `cyclegan export` ({err})") from None


# An exported direction's inputs for TF Serving's REST API: a name ending in "_bytes" takes {"b64": "..."} values.
BYTES_INPUT, BYTES_OUTPUT = "image_bytes", "translated_bytes"
SERVE_BYTES = "serve_bytes"  # the signature that takes them
SERVE_PIXELS = "serve_pixels"  # the pixel signature's name where serving_default takes bytes (export --bytes_default)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_translator(generator, scaling=None, max_megapixels=0.0):
    """The tf.Module that `export` saves: `translate` (uint8 batch in and out, any size) and `translate_bytes`
    (PNG or JPEG bytes in, PNG bytes out, each image at the model's test-time scale when a Scaling is given,
    refused above `max_megapixels` when that is set)."""
    import tensorflow as tf

    from trainer.model.networks import ImageSizeCheck
    from trainer.model.pixels import to_model_range, to_uint8

    FACTOR, MINIMUM = ImageSizeCheck.FACTOR, ImageSizeCheck.MINIMUM

    class Translator(tf.Module):
        def __init__(self):
            super().__init__()
            self.generator = generator

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
        def translate(self, images):
            size = tf.shape(images)[1:3]
            tf.debugging.assert_greater_equal(size, MIN_SIDE, message=f"images must be at least {MIN_SIDE}x{MIN_SIDE} "
                                                                      "pixels")
            padded = tf.maximum((size + FACTOR - 1) // FACTOR * FACTOR, MINIMUM)
            before = (padded - size) // 2
            after = padded - size - before
            x = to_model_range(images)
            x = tf.pad(x, [[0, 0], [before[0], after[0]], [before[1], after[1]], [0, 0]], mode="SYMMETRIC")
            x = tf.reshape(x, tf.concat([tf.shape(x)[:3], [3]], 0))  # channels static again: LiteRT's convs need it
            y = tf.cast(self.generator(x, training=False), tf.float32)
            y = y[:, before[0]:before[0] + size[0], before[1]:before[1] + size[1], :]
            return {"translated": to_uint8(y)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=BYTES_INPUT)])
        def translate_bytes(self, image_bytes):
            one = lambda data: tf.io.encode_png(self._translate_one(data))  # noqa: E731
            return {BYTES_OUTPUT: tf.map_fn(one, image_bytes, fn_output_signature=tf.string)}

        def _translate_one(self, data):
            if max_megapixels:  # from the header, before decoding: a small PNG can decode to gigabytes
                stated_height, stated_width = stated_size(data)
                small = tf.debugging.Assert(stated_height * stated_width <= int(max_megapixels * 1e6), [
                    f"{BYTES_INPUT}: the image is over --max_megapixels {max_megapixels:g}, the limit this model was "
                    "exported with; send a smaller image. Width, height:", stated_width, stated_height])
                with tf.control_dependencies([small]):
                    data = tf.identity(data)
            image = decoded_rgb(data)
            height, width = tf.shape(image)[0], tf.shape(image)[1]
            if scaling:
                image = scaling.scale_in(image, *scaling.scaled_shape(height, width))
            out = self.translate(image[None])["translated"][0]
            return scaling.scale_back(out, height, width) if scaling else out

    return Translator()


def stated_size(data):
    """(height, width) as int64 from a PNG's IHDR or a JPEG's frame header, without decoding; (0, 0) for anything
    else (decoded_rgb refuses it). The decoders allocate what these headers state, so this bounds their memory."""
    import tensorflow as tf

    def png():
        fields = tf.cast(tf.io.decode_raw(tf.strings.substr(data, 16, 8), tf.uint8), tf.int64)  # width, height: BE
        big_endian = lambda b: ((b[0] * 256 + b[1]) * 256 + b[2]) * 256 + b[3]  # noqa: E731
        return big_endian(fields[4:]), big_endian(fields[:4])

    def jpeg():
        shape = tf.cast(tf.image.extract_jpeg_shape(data), tf.int64)
        return shape[0], shape[1]

    is_png = tf.logical_and(tf.equal(tf.strings.substr(data, 0, 8), PNG_SIGNATURE),
                            tf.greater_equal(tf.strings.length(data), 24))
    none = lambda: (tf.constant(0, tf.int64), tf.constant(0, tf.int64))  # noqa: E731
    return tf.cond(is_png, png, lambda: tf.cond(tf.io.is_jpeg(data), jpeg, none))


def decoded_rgb(data):
    """One encoded PNG or JPEG (a string tensor) -> uint8 HxWx3, as `translate` reads files: grey becomes RGB, and
    transparency is composited on white. Anything else fails with an error that says what was sent."""
    import tensorflow as tf

    known = tf.logical_or(tf.io.is_jpeg(data), tf.equal(tf.strings.substr(data, 0, 8), PNG_SIGNATURE))
    check = tf.debugging.Assert(known, [f"{BYTES_INPUT}: not a PNG or JPEG image (its first bytes are neither "
                                        "signature); send the file's bytes, base64-encoded as {\"b64\": \"...\"} "
                                        "in a JSON request"])
    with tf.control_dependencies([check]):  # PIL's JPEG decoding, to the level, is the accurate integer DCT
        image = tf.cond(tf.io.is_jpeg(data), lambda: tf.io.decode_jpeg(data, 3, dct_method="INTEGER_ACCURATE"),
                        lambda: tf.io.decode_png(data))  # a PNG in its own channels: 1 to 4
    channels = tf.shape(image)[2]
    pixels = tf.cast(image, tf.float32)
    colour = tf.cond(channels < 3, lambda: tf.repeat(pixels[:, :, :1], 3, axis=2), lambda: pixels[:, :, :3])
    opaque = tf.ones_like(pixels[:, :, :1])
    alpha = tf.cond(tf.equal(channels % 2, 0), lambda: pixels[:, :, -1:] / 255.0, lambda: opaque)  # LA, RGBA
    rgb = tf.cast(tf.round(colour * alpha + 255.0 * (1.0 - alpha)), tf.uint8)
    rgb.set_shape([None, None, 3])
    return rgb


def translate_pixels(translate, pixels, scaling=None, keep_size=True):
    """An exported signature (or a translator's `translate`) on one uint8 HxWx3 array. With a Scaling, the image
    is scaled as the model meets it first, and (keep_size) the translation scaled back to the image's size."""
    import tensorflow as tf

    from preprocessing.images import TOO_SMALL, Rejected

    image = tf.constant(pixels)
    if scaling:
        image = scaling.scale_in(image, *scaling.shape(*pixels.shape[:2]))
    if min(image.shape[:2]) < MIN_SIDE:
        raise Rejected(TOO_SMALL, f"{image.shape[1]}x{image.shape[0]} px; the model translates images of at "
                                  f"least {MIN_SIDE}x{MIN_SIDE}")
    out = next(iter(translate(image[None]).values()))[0]  # "translated" ("images" in exports before ONNX)
    if scaling and keep_size and tuple(out.shape[:2]) != tuple(pixels.shape[:2]):
        out = scaling.scale_back(out, *pixels.shape[:2])
    return out.numpy()


class OutputFull(Exception):
    """The output's disk is full: no image after this one can be written, so the run stops."""

    def __init__(self, output, written, total):
        super().__init__(f"--output {output}: no space left after {written} of {total} images; the {written} "
                         "written are whole and nothing partial is left. Free some space and run again")


def full_disk(err):
    import tensorflow as tf

    return (isinstance(err, OSError) and err.errno == errno.ENOSPC) or (
        isinstance(err, tf.errors.ResourceExhaustedError) and "No space left" in str(err))


# What translating one megapixel takes: the reference generator's peak memory on a CPU at 512 to 2048 px
# (ru_maxrss; benchmarks/RESULTS.md, "Translation memory"); narrower generators take less.
GB_PER_MEGAPIXEL = 1.3


def default_max_megapixels():
    """The largest image this machine's available memory translates, with a fifth left for everything else."""
    import psutil

    return 0.8 * psutil.virtual_memory().available / 1e9 / GB_PER_MEGAPIXEL


def translate_all(translate, inputs, output, max_size=0, progress=None, max_megapixels=0.0,
                  stopping=lambda: False, scaling=None, keep_size=True):
    """Translate every (path, relative) of `inputs` into `output` (scaled as translate_pixels says); returns
    ([(path, reason)] of the failures, how many were written). The failures are also listed in
    output/translate_errors.jsonl (written only then). OutputFull when the disk fills up. An image above
    `max_megapixels` (as the model meets it, after `max_size`) is a failure, not a translation that runs out of
    memory and takes the whole run with it. When `stopping()` turns true, the run ends after the image in
    flight."""
    import tensorflow as tf

    from preprocessing.images import Rejected
    from trainer.serving.image_files import read_image, write_image

    from preprocessing.images import TOO_LARGE

    failures, written = [], 0
    for path, relative in inputs:
        if stopping():
            break
        try:
            pixels = read_image(path, max_size)
            height, width = scaling.shape(*pixels.shape[:2]) if scaling else pixels.shape[:2]
            megapixels = height * width / 1e6
            if max_megapixels and megapixels > max_megapixels:
                raise Rejected(TOO_LARGE, f"{width}x{height} is {megapixels:.2f} megapixels, above "
                                          f"--max_megapixels {max_megapixels:.2f} (about {GB_PER_MEGAPIXEL} GB of "
                                          "memory per megapixel for the reference generator): shrink it with "
                                          "--max_size, or raise the limit on a larger machine")
            write_image(translate_pixels(translate, pixels, scaling, keep_size), f"{output.rstrip('/')}/{relative}")
            written += 1
        except (Rejected, tf.errors.OpError, OSError, ValueError) as err:
            if full_disk(err):
                raise OutputFull(output, written, len(inputs)) from None
            failures.append((path, str(err).splitlines()[0]))
        if progress:
            progress.update(1)
    if failures:
        with tf.io.gfile.GFile(f"{output.rstrip('/')}/{ERRORS_FILE}", "w") as f:
            f.write("".join(json.dumps({"path": path, "reason": reason}) + "\n" for path, reason in failures))
    return failures, written
