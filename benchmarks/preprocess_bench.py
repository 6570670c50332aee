"""Images per second of the preprocessing work: a plain loop against the Beam job, side by side in one run.

    python benchmarks/preprocess_bench.py --images 2000

Writes N synthetic JPEGs (photo-sized, so decoding and resizing dominate as they do on real data), then times
the same per-image work (read, hash, validate, orient, convert, shrink, encode, serialize, write TFRecords):
  1. a plain single-process Python loop,
  2. one process per core running that loop on a slice each, without Beam: what the cores can give,
  3. the Beam job on the local runner with one worker process,
  4. the Beam job with one worker process per core.
Prints each rate and its ratio to the plain loop, and the Beam job's fixed cost (its time on one image per
worker): start-up and shutdown of the runner and its workers, whatever N is. With --repeat R, the runs take turns
R times and each keeps its best time, so that a burst of load from a neighbour on a shared machine does not
decide a ratio.
"""
import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from preprocessing.jobs import quiet_libraries  # noqa: E402

quiet_libraries(import_tensorflow=False)

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from pipeline import cli  # noqa: E402
from pipeline.graph import prepare_record  # noqa: E402
from pipeline.shards import write_tfrecord  # noqa: E402
from preprocessing import images  # noqa: E402


def write_image(folder, index, width, height):
    rng = np.random.default_rng(index)
    yy, xx = np.mgrid[0:height, 0:width]
    noise = rng.integers(0, 32, (height, width, 1))
    pixels = (rng.integers(0, 256, 3) + np.stack([xx // 3, yy // 2, (xx + yy) // 4], -1) + noise) % 256
    Image.fromarray(pixels.astype(np.uint8)).save(os.path.join(folder, f"img{index:05d}.jpg"), quality=90)


def write_images(folder, count, width, height):
    os.makedirs(folder)
    with multiprocessing.Pool() as pool:
        pool.starmap(write_image, [(folder, i, width, height) for i in range(count)])


def plain_loop(paths, out_file):
    options = images.ImageOptions()

    def records():
        for path in paths:
            with open(path, "rb") as f:
                data = f.read()
            yield prepare_record("train", "A", path, data, options)[1]

    write_tfrecord(out_file, records())


def processes_without_beam(paths, out, count):
    with multiprocessing.Pool(count) as pool:
        pool.starmap(plain_loop, [(paths[i::count], os.path.join(out, f"part{i}.tfrecord")) for i in range(count)])


def beam_job(root, out, workers):
    cli.main(["--input", root, "--output", out, f"--direct_num_workers={workers}",
              "--direct_running_mode=multi_processing"])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--repeat", type=int, default=1, help="rounds; each run keeps its best time")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="preprocess-bench-")
    try:
        run(args, workdir)
    finally:
        shutil.rmtree(workdir)


def run(args, workdir):
    root, few = os.path.join(workdir, "raw"), os.path.join(workdir, "few")
    print(f"writing {args.images} JPEGs of {args.width}x{args.height} under {root} ...", flush=True)
    write_images(os.path.join(root, "trainA"), args.images, args.width, args.height)
    paths = sorted(os.path.join(root, "trainA", name) for name in os.listdir(os.path.join(root, "trainA")))
    cores = os.cpu_count() or 1
    os.makedirs(os.path.join(few, "trainA"))
    for path in paths[:cores]:
        os.link(path, os.path.join(few, "trainA", os.path.basename(path)))

    runs = {"plain Python loop": lambda out: plain_loop(paths, os.path.join(out, "all.tfrecord")),
            f"{cores} processes, no Beam": lambda out: processes_without_beam(paths, out, cores),
            "fixed cost": lambda out: beam_job(few, out, cores)}
    for workers in sorted({1, cores}):
        runs[f"Beam, {workers} worker(s)"] = lambda out, w=workers: beam_job(root, out, w)
    seconds = {}
    for round_ in range(1, args.repeat + 1):
        for name, fn in runs.items():
            print(f"round {round_}/{args.repeat}: {name} ...", flush=True)
            out = os.path.join(workdir, "out")
            os.makedirs(out)
            started = time.perf_counter()
            fn(out)
            seconds[name] = min(seconds.get(name, float("inf")), time.perf_counter() - started)
            shutil.rmtree(out)
    fixed = seconds.pop("fixed cost")
    baseline = seconds["plain Python loop"]
    print(f"\n{'run':<24}{'seconds':>8}{'images/s':>10}{'x plain':>9}   ({cores} cores, {args.images} images)")
    for name, value in seconds.items():
        print(f"{name:<24}{value:>8.1f}{args.images / value:>10.1f}{baseline / value:>9.2f}")
    best = seconds[f"{cores} processes, no Beam"] + fixed
    print(f"Beam's fixed cost with {cores} workers (the job on {cores} images): {fixed:.1f} s. With it, the most a "
          f"{cores}-worker Beam job can reach on {args.images} images here is {cores} processes + fixed cost = "
          f"{best:.1f} s, {baseline / best:.2f}x plain.")


if __name__ == "__main__":
    main()
