"""Images per second of the preprocessing work: a plain loop against the Beam job, side by side in one run.

    python benchmarks/preprocess_bench.py --images 2000

Writes N synthetic JPEGs (photo-sized, so decoding and resizing dominate as they do on real data), then times
the same per-image work (read, hash, validate, orient, convert, shrink, encode, serialize, write TFRecords):
  1. a plain single-process Python loop,
  2. the Beam job on the local runner with one worker process,
  3. the Beam job with one worker process per core.
Prints each rate and its ratio to the plain loop.
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cyclegan import quiet_libraries  # noqa: E402

quiet_libraries(import_tensorflow=False)

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from pipeline import cli  # noqa: E402
from pipeline.shards import write_tfrecord  # noqa: E402
from preprocessing import images  # noqa: E402
from preprocessing.schema import make_example  # noqa: E402


def write_images(folder, count, width, height):
    os.makedirs(folder)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    for i in range(count):
        base = rng.integers(0, 256, 3)
        noise = rng.integers(0, 32, (height, width, 1))
        pixels = (base + np.stack([xx // 3, yy // 2, (xx + yy) // 4], -1) + noise) % 256
        Image.fromarray(pixels.astype(np.uint8)).save(os.path.join(folder, f"img{i:05d}.jpg"), quality=90)


def plain_loop(folder, out):
    options = images.ImageOptions()
    os.makedirs(out)

    def records():
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                data = f.read()
            stored = images.prepare_image(data, options)
            yield make_example(encoded=stored.encoded, image_format=stored.image_format, height=stored.height,
                               width=stored.width, domain="A", split="train", source_path=path,
                               sha256=images.content_hash(data))

    write_tfrecord(os.path.join(out, "all.tfrecord"), records())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--height", type=int, default=768)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="preprocess-bench-")
    root = os.path.join(workdir, "raw")
    print(f"writing {args.images} JPEGs of {args.width}x{args.height} under {root} ...", flush=True)
    write_images(os.path.join(root, "trainA"), args.images, args.width, args.height)

    cores = os.cpu_count() or 1
    runs = [("plain Python loop", lambda out: plain_loop(os.path.join(root, "trainA"), out))]
    for workers in sorted({1, cores}):
        runs.append((f"Beam, {workers} worker(s)", lambda out, w=workers: cli.main(
            ["--input", root, "--output", out, f"--direct_num_workers={w}", "--direct_running_mode=multi_processing"])))
    rates = {}
    for i, (name, fn) in enumerate(runs):
        started = time.perf_counter()
        fn(os.path.join(workdir, f"out{i}"))
        rates[name] = args.images / (time.perf_counter() - started)
    baseline = rates["plain Python loop"]
    print(f"\n{'run':<22}{'images/s':>10}{'x plain':>9}   ({cores} cores, {args.images} images)")
    for name, rate in rates.items():
        print(f"{name:<22}{rate:>10.1f}{rate / baseline:>9.2f}")


if __name__ == "__main__":
    main()
