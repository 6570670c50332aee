"""`cyclegan export --format`, `--versioned` and the `serve_bytes` signature, on the real commands.

The model is the committed reference generator (tests/fixtures) imported by `cyclegan import`: real weights of a
small generator, with no training to wait for.
"""
import base64
import io
import json
import os
import subprocess

import numpy as np
import pytest
from PIL import Image

from preprocessing.commands import run_job
from tests import make_pth_fixture as fixture
from tests.helpers import BIN

SIZES = [(1, 64, 64), (1, 61, 99), (2, 96, 128)]
MAX_MEGAPIXELS = 0.01  # 10,000 pixels: a 100x200 image is refused, a 61x99 one translated


def cyclegan(*args):
    done = subprocess.run([os.path.join(BIN, "cyclegan"), *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """(versioned export with every format, the same model exported plainly with serving_default taking bytes, a
    folder of input images)."""
    base = tmp_path_factory.mktemp("formats")
    model_dir = str(base / "imported")
    cyclegan("import", "--a2b", fixture.WEIGHTS, "--b2a", fixture.WEIGHTS, "--model_dir", model_dir, "--preset",
             "tiny", "--ngf", str(fixture.NGF), "--n_blocks", str(fixture.N_BLOCKS))
    versioned, plain = str(base / "versioned"), str(base / "plain")
    out = cyclegan("export", "--model_dir", model_dir, "--output", versioned, "--format", "savedmodel,onnx,litert",
                   "--versioned", "--version", "3", "--max_megapixels", str(MAX_MEGAPIXELS))
    assert f"export: G_AB (a2b) -> {versioned}/a2b/3" in out
    cyclegan("export", "--model_dir", model_dir, "--output", plain, "--bytes_default")
    images = base / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (61, 99, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(images / "rgb.png")
    Image.fromarray(rgb[:, :, 1]).save(images / "grey.png")
    Image.fromarray(np.dstack([rgb, rng.integers(0, 256, (61, 99), dtype=np.uint8)])).save(images / "rgba.png")
    Image.fromarray(rgb).save(images / "photo.jpg", quality=90)
    Image.open(images / "photo.jpg").save(images / "photo_decoded.png")  # its pixels, for translate to write exactly
    return versioned, plain, images


def saved_model(path):
    import tensorflow as tf

    return tf.saved_model.load(path)


def test_onnx_and_litert_files_translate_as_the_savedmodel_does(exports):
    import onnxruntime
    from ai_edge_litert.interpreter import Interpreter

    versioned, _, _ = exports
    reference = saved_model(f"{versioned}/a2b/3").signatures["serving_default"]
    onnx = onnxruntime.InferenceSession(f"{versioned}/a2b.onnx")
    assert [i.name for i in onnx.get_inputs()] == ["images"] and [o.name for o in onnx.get_outputs()] == ["translated"]
    litert = Interpreter(model_path=f"{versioned}/a2b.tflite")
    rng = np.random.default_rng(1)
    for batch, height, width in SIZES:
        images = rng.integers(0, 256, (batch, height, width, 3), dtype=np.uint8)
        expected = reference(images=images)["translated"].numpy().astype(int)
        from_onnx = onnx.run(None, {"images": images})[0]
        entry = litert.get_input_details()[0]
        litert.resize_tensor_input(entry["index"], images.shape)
        litert.allocate_tensors()
        litert.set_tensor(entry["index"], images)
        litert.invoke()
        from_litert = litert.get_tensor(litert.get_output_details()[0]["index"])
        for name, got in (("onnx", from_onnx), ("litert", from_litert)):
            assert got.shape == images.shape and got.dtype == np.uint8, name
            assert np.abs(got.astype(int) - expected).max() <= 1, (name, images.shape)


def tf_serving_predict(signatures, body):
    """What TF Serving's REST predict does with a JSON body in the row format (its RESTful API page): the
    signature named by signature_name; with one named input, each instance is that input's value, and a
    {"b64": ...} value is decoded to bytes; an output whose name ends in _bytes is answered as {"b64": ...}. An
    error comes back as {"error": message}."""
    request = json.loads(body)
    signature = signatures[request.get("signature_name", "serving_default")]
    (name,) = signature.structured_input_signature[1]
    values = [base64.b64decode(v["b64"]) if isinstance(v, dict) else v for v in request["instances"]]
    try:
        outputs = signature(**{name: np.array(values, dtype=object)})
    except Exception as err:  # TF Serving passes the op's error message on
        return {"error": str(err)}
    (out_name, tensor), = outputs.items()
    encode = (lambda v: {"b64": base64.b64encode(v).decode()}) if out_name.endswith("_bytes") else (lambda v: v)
    return {"predictions": [encode(v) for v in tensor.numpy().tolist()]}


def body(*payloads):
    return json.dumps({"signature_name": "serve_bytes",
                       "instances": [{"b64": base64.b64encode(p).decode()} for p in payloads]})


def test_serve_bytes_answers_tf_servings_json_as_translate_translates_the_files(exports, tmp_path):
    versioned, _, images = exports
    cyclegan("translate", "--model", f"{versioned}/a2b", "--input", str(images), "--output", str(tmp_path / "out"))
    sent = {"rgb.png": "rgb.png", "grey.png": "grey.png", "rgba.png": "rgba.png", "photo.jpg": "photo_decoded.png"}
    signatures = saved_model(f"{versioned}/a2b/3").signatures
    answer = tf_serving_predict(signatures, body(*[(images / name).read_bytes() for name in sent]))
    assert "error" not in answer, answer
    for (name, same_pixels), prediction in zip(sent.items(), answer["predictions"]):
        png = base64.b64decode(prediction["b64"])
        assert png.startswith(b"\x89PNG")
        served = np.asarray(Image.open(io.BytesIO(png))).astype(int)
        translated = np.asarray(Image.open(tmp_path / "out" / same_pixels)).astype(int)
        assert served.shape == translated.shape == (61, 99, 3)
        assert np.abs(served - translated).max() <= 1, name


def test_serve_bytes_refuses_a_non_image_and_a_large_image_with_an_error_that_says_so(exports):
    versioned, _, _ = exports
    signatures = saved_model(f"{versioned}/a2b/3").signatures
    not_image = tf_serving_predict(signatures, body(b"GIF89a not really"))
    assert "image_bytes: not a PNG or JPEG image" in not_image["error"]
    large = io.BytesIO()
    Image.fromarray(np.zeros((100, 200, 3), np.uint8)).save(large, format="PNG")
    refused = tf_serving_predict(signatures, body(large.getvalue()))
    assert f"image_bytes: the image is over --max_megapixels {MAX_MEGAPIXELS:g}" in refused["error"]
    assert "[200] [100]" in refused["error"]  # width, height


def test_translate_reads_both_layouts_alike_and_bytes_can_be_the_default(exports, tmp_path):
    versioned, plain, images = exports
    default = tf_serving_predict(saved_model(f"{plain}/a2b").signatures, json.dumps(
        {"instances": [{"b64": base64.b64encode((images / "rgb.png").read_bytes()).decode()}]}))
    assert base64.b64decode(default["predictions"][0]["b64"]).startswith(b"\x89PNG")  # no signature_name given
    assert sorted(os.listdir(f"{versioned}/a2b")) == ["3"] and os.path.exists(f"{plain}/a2b/saved_model.pb")
    for layout, model in (("versioned", f"{versioned}/a2b"), ("version", f"{versioned}/a2b/3"),
                          ("plain", f"{plain}/a2b")):
        cyclegan("translate", "--model", model, "--input", str(images / "rgb.png"), "--output", str(tmp_path / layout))
    first = np.asarray(Image.open(tmp_path / "plain" / "rgb.png"))
    for layout in ("versioned", "version"):
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / layout / "rgb.png")), first)
    root = subprocess.run([os.path.join(BIN, "cyclegan"), "translate", "--model", plain, "--input",
                           str(images / "rgb.png"), "--output", str(tmp_path / "root")], capture_output=True,
                          text=True, timeout=600)
    assert root.returncode == 2 and len(root.stderr.strip().splitlines()) == 1, root.stderr
    assert f"the root of an export; name one of its directions: --model {plain}/a2b or --model {plain}/b2a" in (
        root.stderr)


def test_a_format_without_its_extra_or_unknown_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path):
    import importlib.util

    from trainer.serving import formats

    find_spec = importlib.util.find_spec
    missing = lambda name: None if name == "tf2onnx" else find_spec(name)  # noqa: E731
    monkeypatch.setattr(formats.importlib.util, "find_spec", missing)
    args = ["--model_dir", str(tmp_path), "--output", str(tmp_path / "out")]
    assert run_job("export", [*args, "--format", "savedmodel,onnx"], "cyclegan export") == 2
    assert capsys.readouterr().err.strip() == (
        "cyclegan export: error: --format onnx needs the onnx extra (tf2onnx missing): pip install "
        "'cyclegan-pipeline[onnx]' --constraint constraints.txt")
    assert run_job("export", [*args, "--format", "savedmodel,tensorrt"], "cyclegan export") == 2
    assert "--format savedmodel,tensorrt: give one or more of savedmodel, onnx, litert" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "out")


def bomb_png(path, width, height, channels):
    """A PNG of zeros written row by row: hundreds of megapixels in a few hundred kilobytes."""
    import struct
    import zlib

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    colour_type = {1: 0, 3: 2}[channels]
    packer, row = zlib.compressobj(9), bytes(1 + width * channels)  # filter byte 0, then the row
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0))
                + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_serve_bytes_refuses_a_decompression_bomb_from_its_header_in_bounded_memory(exports, tmp_path):
    """A 12000x12000 RGB and a 20000x20000 grey PNG of under 1 MB each: refused before decoding, under 1.5 GB."""
    import sys

    versioned, _, _ = exports
    # the process's own high-water mark, VmHWM: getrusage's ru_maxrss would carry over the forking test process's
    probe = ("import json, re, sys; import numpy as np; import tensorflow as tf; "
             "sig = tf.saved_model.load(sys.argv[1]).signatures['serve_bytes']; "
             "data = open(sys.argv[2], 'rb').read(); error = ''\n"
             "try:\n  sig(image_bytes=np.array([data], dtype=object))\n"
             "except tf.errors.InvalidArgumentError as err:\n  error = err.message\n"
             "peak_kib = int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
             "print(json.dumps([error, peak_kib / 1024]))")
    for width, height, channels in ((12000, 12000, 3), (20000, 20000, 1)):
        path = tmp_path / f"bomb{channels}.png"
        bomb_png(path, width, height, channels)
        assert os.path.getsize(path) < 1 << 20
        done = subprocess.run([sys.executable, "-c", probe, f"{versioned}/a2b/3", str(path)], capture_output=True,
                              text=True, timeout=600)
        error, peak_mib = json.loads(done.stdout.strip().splitlines()[-1])
        assert f"image_bytes: the image is over --max_megapixels {MAX_MEGAPIXELS:g}" in error
        assert f"[{width}] [{height}]" in error
        assert peak_mib < 1536, peak_mib


def test_a_new_version_is_added_beside_the_others_and_an_existing_one_needs_overwrite(exports, tmp_path):
    versioned, _, _ = exports
    model_dir = os.path.join(os.path.dirname(versioned), "imported")
    output = str(tmp_path / "served")
    cyclegan("export", "--model_dir", model_dir, "--output", output, "--versioned")
    cyclegan("export", "--model_dir", model_dir, "--output", output, "--versioned", "--version", "2")
    assert sorted(os.listdir(f"{output}/a2b")) == ["1", "2"] and sorted(os.listdir(f"{output}/b2a")) == ["1", "2"]
    first = os.path.getmtime(f"{output}/a2b/1/saved_model.pb")

    def refused(*flags):
        done = subprocess.run([os.path.join(BIN, "cyclegan"), "export", "--model_dir", model_dir, "--output", output,
                               *flags], capture_output=True, text=True, timeout=600)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        return done.stderr

    assert f"{output}/a2b/1 exists" in refused("--versioned", "--version", "1") and "--overwrite" in refused(
        "--versioned")
    assert "--version goes with --versioned" in refused("--version", "3")
    assert os.path.getmtime(f"{output}/a2b/1/saved_model.pb") == first
    cyclegan("export", "--model_dir", model_dir, "--output", output, "--versioned", "--version", "1", "--overwrite")
    assert sorted(os.listdir(f"{output}/a2b")) == ["1", "2"]
    assert os.path.getmtime(f"{output}/a2b/1/saved_model.pb") != first
    assert not os.path.exists(output + ".partial")


def test_an_export_onto_a_full_disk_is_one_line_and_leaves_nothing(exports, tmp_path):
    from tests.helpers import tmpfs

    versioned, _, _ = exports
    model_dir = os.path.join(os.path.dirname(versioned), "imported")
    with tmpfs(tmp_path / "disk", "size=256k") as disk:
        output = f"{disk}/export"
        done = subprocess.run([os.path.join(BIN, "cyclegan"), "export", "--model_dir", model_dir, "--output", output],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert f"--output {output}: no space left on its device while writing the export" in done.stderr
        assert os.listdir(disk) == []  # neither export.partial/ nor an empty export/
