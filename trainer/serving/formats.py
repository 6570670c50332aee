"""An exported direction in the formats other runtimes load: ONNX (onnxruntime, TensorRT, ...) and LiteRT
(TensorFlow Lite's successor, for phones and edge devices).

Both hold the same function as the SavedModel's `serving_default`: a uint8 NHWC batch of any height and width
in, the translation as uint8 of the same size out (input `images`, output `translated`), padded to the
generator's multiple of 4 and cropped back inside. Each needs its extra, installed apart from the core:
`pip install 'cyclegan-pipeline[onnx]'` (tf2onnx converts; onnxruntime runs) or `[litert]` (the converter is
TensorFlow's; ai-edge-litert's interpreter runs the file).
"""
import importlib.util
import os
import tempfile

FORMATS = ("savedmodel", "onnx", "litert")
SUFFIX = {"onnx": ".onnx", "litert": ".tflite"}
# format -> the setup.py extra it needs and the modules that show it is installed
EXTRAS = {"onnx": ("onnx", ("tf2onnx", "onnx", "onnxruntime")), "litert": ("litert", ("ai_edge_litert",))}
ONNX_OPSET = 17


def parse_formats(text, flag="--format"):
    """"savedmodel,onnx" -> ("savedmodel", "onnx"); a UsageError for an unknown format or one whose extra is not
    installed (checked before TensorFlow loads, so the refusal is immediate)."""
    from preprocessing.flags import UsageError

    formats = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in formats if name not in FORMATS]
    if unknown or not formats:
        raise UsageError(f"{flag} {text}: give one or more of {', '.join(FORMATS)}, comma-separated")
    if "savedmodel" not in formats:
        raise UsageError(f"{flag} {text}: savedmodel is always written (translate, evaluate and TF Serving read "
                         "it, and the other formats are converted from it); add it to the list")
    for name in formats:
        extra, modules = EXTRAS.get(name, (None, ()))
        missing = [module for module in modules if importlib.util.find_spec(module) is None]
        if missing:
            raise UsageError(f"{flag} {name} needs the {extra} extra ({', '.join(missing)} missing): pip install "
                             f"'cyclegan-pipeline[{extra}]' --constraint constraints.txt")
    return formats


def images_spec():
    import tensorflow as tf

    return tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")


def onnx_bytes(translator):
    """The translator's `translate` as an ONNX model (tf2onnx, opset ONNX_OPSET)."""
    import tf2onnx

    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "model.onnx")
        tf2onnx.convert.from_function(translator.translate, input_signature=[images_spec()], opset=ONNX_OPSET,
                                      output_path=path)
        with open(path, "rb") as f:
            return f.read()


def litert_bytes(translator):
    """The translator's `translate` as a LiteRT flatbuffer. Converted from a SavedModel that Keras's ExportArchive
    writes: the converter reads the generator's weights right from that one, and gave garbage (measured) from the
    translator saved by tf.saved_model.save or passed as a concrete function."""
    import keras
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as scratch:
        archive = keras.export.ExportArchive()
        archive.track(translator.generator)
        archive.add_endpoint("serve", lambda images: translator.translate(images), input_signature=[images_spec()])
        archive.write_out(scratch, verbose=False)
        return tf.lite.TFLiteConverter.from_saved_model(scratch).convert()


def write_formats(translator, formats, staging, direction, say=print):
    """Each of `formats` but savedmodel as staging/DIRECTION.onnx or .tflite; returns {format: file name}."""
    from trainer.files import write_whole

    written = {}
    for name in formats:
        if name == "savedmodel":
            continue
        data = onnx_bytes(translator) if name == "onnx" else litert_bytes(translator)
        written[name] = direction + SUFFIX[name]
        write_whole(f"{staging}/{written[name]}", data)
        say(f"export: {direction} as {name} ({len(data) / 1e6:.1f} MB)")
    return written
