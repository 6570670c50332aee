import contextlib
import io
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from preprocessing.process import prepare_libraries
from tests import gcs_emulator as gcs

prepare_libraries()

# Two logical CPU devices for the MirroredStrategy tests: possible only before TensorFlow initialises them.
from trainer.run.strategy import split_cpu  # noqa: E402

split_cpu(2)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


def _save(path, img, **kwargs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img.save(path, **kwargs)


def gradient(width, height, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=3)
    yy, xx = np.mgrid[0:height, 0:width]
    arr = (base + np.stack([xx * 3, yy * 2, xx + yy], -1)) % 256
    return Image.fromarray(arr.astype(np.uint8), "RGB")


# Every kind of file a messy trainA/ holds, with the outcome the job must give it: (status, reason).
def write_messy_domain(folder, seed=0):
    expect = {}

    def put(name, status, reason=""):
        expect[os.path.join(folder, name)] = (status, reason)

    _save(os.path.join(folder, "plain.jpg"), gradient(64, 48, seed))
    put("plain.jpg", "written")
    _save(os.path.join(folder, "UPPER.JPEG"), gradient(50, 40, seed + 1))
    put("UPPER.JPEG", "written")
    _save(os.path.join(folder, "nested/deeper/big.png"), gradient(600, 400, seed + 2))  # shrunk to 286 short side
    put("nested/deeper/big.png", "written")
    _save(os.path.join(folder, "big.jpg"), gradient(1600, 1200, seed + 12))
    put("big.jpg", "written")
    rgba = Image.new("RGBA", (40, 40), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 20, 40))
    _save(os.path.join(folder, "alpha.png"), rgba)
    put("alpha.png", "written")
    _save(os.path.join(folder, "palette.gif"), gradient(40, 40, seed + 3).convert("P"))
    put("palette.gif", "written")
    _save(os.path.join(folder, "gray.bmp"), gradient(40, 40, seed + 4).convert("L"))
    put("gray.bmp", "written")
    _save(os.path.join(folder, "photo.webp"), gradient(40, 44, seed + 5))
    put("photo.webp", "written")
    _save(os.path.join(folder, "cmyk.jpg"), gradient(48, 40, seed + 6).convert("CMYK"))
    put("cmyk.jpg", "written")
    sixteen = Image.fromarray((np.arange(48 * 40).reshape(40, 48) * 30).astype(np.uint16))
    _save(os.path.join(folder, "deep16.tiff"), sixteen)
    put("deep16.tiff", "written")
    # EXIF orientation 6 (rotate 90): stored 60x40, upright 40x60.
    exif = Image.Exif()
    exif[0x0112] = 6
    _save(os.path.join(folder, "rotated.jpg"), gradient(60, 40, seed + 7), exif=exif.tobytes())
    put("rotated.jpg", "written")
    shutil.copy(os.path.join(folder, "plain.jpg"), os.path.join(folder, "plain_copy.jpg"))
    put("plain_copy.jpg", "duplicate", "duplicate")  # the first path in sorted order is kept

    open(os.path.join(folder, "empty.jpg"), "wb").close()
    put("empty.jpg", "rejected", "empty")
    buf = io.BytesIO()
    gradient(200, 200, seed + 8).save(buf, "JPEG")
    with open(os.path.join(folder, "truncated.jpg"), "wb") as f:
        f.write(buf.getvalue()[: len(buf.getvalue()) // 3])
    put("truncated.jpg", "rejected", "corrupt")
    with open(os.path.join(folder, "text.png"), "w") as f:
        f.write("this is not an image at all\n" * 20)
    put("text.png", "rejected", "not_an_image")
    _save(os.path.join(folder, "tiny.png"), gradient(20, 50, seed + 9))
    put("tiny.png", "rejected", "too_small")
    _save(os.path.join(folder, "bomb.png"), Image.new("1", (12000, 9000)))  # 108 Mpx, a few kB on disk
    put("bomb.png", "rejected", "too_large")

    _save(os.path.join(folder, ".hidden.jpg"), gradient(40, 40, seed + 10))
    put(".hidden.jpg", "skipped", "hidden")
    _save(os.path.join(folder, ".thumbs/t.jpg"), gradient(40, 40, seed + 11))
    put(".thumbs/t.jpg", "skipped", "hidden")
    with open(os.path.join(folder, "README.txt"), "w") as f:
        f.write("notes")
    put("README.txt", "skipped", "not_image_extension")
    return expect


@pytest.fixture(scope="session")
def messy_root(tmp_path_factory):
    """trainA/ with every kind of file, trainB/ and testA/ with a few plain images, testB/ missing."""
    root = tmp_path_factory.mktemp("messy")
    expect = write_messy_domain(str(root / "trainA"))
    for split_domain, n in (("trainB", 5), ("testA", 3)):
        for i in range(n):
            path = str(root / split_domain / f"img{i}.png")
            _save(path, gradient(48 + i, 40, 100 + i + len(split_domain)))
            expect[path] = ("written", "")
    return str(root), expect


@contextlib.contextmanager
def tmpfs(folder, options):
    """A tmpfs mounted at `folder` with mount `options` ("size=64k": a disk that fills up; "ro,size=1m": one that
    refuses writes, also to root) while the block runs. Needs root, as CI has; elsewhere the test skips, saying so."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs (CI runs as root)")
    os.makedirs(folder, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


free_port = gcs.free_port


@pytest.fixture(scope="session")
def gcs_emulator():
    """A real GCS JSON-API emulator on a loopback port, for google-cloud-storage and Beam's GCS IO."""
    saved = {key: os.environ.get(key) for key in gcs.ENV}
    proc = gcs.start()
    yield os.environ["STORAGE_EMULATOR_HOST"]
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def tiny_records(tmp_path_factory):
    """A small synthetic dataset, preprocessed by the real job: (records folder, raw folder)."""
    from pipeline import cli, synth

    base = tmp_path_factory.mktemp("tiny")
    raw, out = str(base / "raw"), str(base / "records")
    synth.write(raw, synth.SynthConfig(train=12, test=4, size=64))
    assert cli.main(["--input", raw, "--output", out, "--min_train_shards", "4"]) == 0
    return out, raw


@pytest.fixture(scope="session")
def built_images():
    """{role: image name} of both container images, built once with podman (tests/containers.py), or why they
    cannot be built here (a str)."""
    from tests import containers

    reason = containers.missing()
    if reason:
        return reason
    names, output = containers.build()
    print(output)  # each image's size and build time
    return names


@pytest.fixture(scope="session")
def images(built_images):
    """Both container images; skips where podman cannot run."""
    if isinstance(built_images, str):
        pytest.skip(built_images)
    return built_images


@pytest.fixture(scope="session")
def two_cpus():
    """The trainer's strategy over the two logical CPUs, one for the whole session."""
    from trainer.run.strategy import mirrored

    return mirrored(["CPU:0", "CPU:1"])
