"""What the tests share besides their fixtures (conftest.py): the repository's paths, synthetic images, a small
tmpfs, and starting a command as a process of its own, reading its output until a line or a file shows up, and
signalling it."""
import contextlib
import io
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from tests.gcs_emulator import free_port  # noqa: F401  (the tests' one free-port helper)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


def save_image(path, img, **kwargs):
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

    save_image(os.path.join(folder, "plain.jpg"), gradient(64, 48, seed))
    put("plain.jpg", "written")
    save_image(os.path.join(folder, "UPPER.JPEG"), gradient(50, 40, seed + 1))
    put("UPPER.JPEG", "written")
    save_image(os.path.join(folder, "nested/deeper/big.png"), gradient(600, 400, seed + 2))  # shrunk to 286 short side
    put("nested/deeper/big.png", "written")
    save_image(os.path.join(folder, "big.jpg"), gradient(1600, 1200, seed + 12))
    put("big.jpg", "written")
    rgba = Image.new("RGBA", (40, 40), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 20, 40))
    save_image(os.path.join(folder, "alpha.png"), rgba)
    put("alpha.png", "written")
    save_image(os.path.join(folder, "palette.gif"), gradient(40, 40, seed + 3).convert("P"))
    put("palette.gif", "written")
    save_image(os.path.join(folder, "gray.bmp"), gradient(40, 40, seed + 4).convert("L"))
    put("gray.bmp", "written")
    save_image(os.path.join(folder, "photo.webp"), gradient(40, 44, seed + 5))
    put("photo.webp", "written")
    save_image(os.path.join(folder, "cmyk.jpg"), gradient(48, 40, seed + 6).convert("CMYK"))
    put("cmyk.jpg", "written")
    sixteen = Image.fromarray((np.arange(48 * 40).reshape(40, 48) * 30).astype(np.uint16))
    save_image(os.path.join(folder, "deep16.tiff"), sixteen)
    put("deep16.tiff", "written")
    # EXIF orientation 6 (rotate 90): stored 60x40, upright 40x60.
    exif = Image.Exif()
    exif[0x0112] = 6
    save_image(os.path.join(folder, "rotated.jpg"), gradient(60, 40, seed + 7), exif=exif.tobytes())
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
    save_image(os.path.join(folder, "tiny.png"), gradient(20, 50, seed + 9))
    put("tiny.png", "rejected", "too_small")
    save_image(os.path.join(folder, "bomb.png"), Image.new("1", (12000, 9000)))  # 108 Mpx, a few kB on disk
    put("bomb.png", "rejected", "too_large")

    save_image(os.path.join(folder, ".hidden.jpg"), gradient(40, 40, seed + 10))
    put(".hidden.jpg", "skipped", "hidden")
    save_image(os.path.join(folder, ".thumbs/t.jpg"), gradient(40, 40, seed + 11))
    put(".thumbs/t.jpg", "skipped", "hidden")
    with open(os.path.join(folder, "README.txt"), "w") as f:
        f.write("notes")
    put("README.txt", "skipped", "not_image_extension")
    return expect


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


def start(command, **popen):
    """`command` in a process of its own, from the repository's root, its stdout and stderr read as one text."""
    return subprocess.Popen(command, **{"cwd": REPO, "stdout": subprocess.PIPE, "stderr": subprocess.STDOUT,
                                        "text": True, **popen})


def read_until(proc, marker):
    """The lines `proc` printed up to the first that holds `marker` (all of them if none does)."""
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if marker in line:
            break
    return lines


def wait_for(done, proc, timeout):
    """Poll `done()` until it holds, `proc` ends or `timeout` seconds pass; whether it holds."""
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    return done()


def stop(proc, *signals, timeout=300):
    """Send each signal in turn, then wait for the end: (exit status, stdout, stderr) as `communicate` gives them."""
    for signum in signals:
        proc.send_signal(signum)
        time.sleep(0.05)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err
