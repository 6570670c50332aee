"""Images per second of the preprocessing work: a plain loop against the Beam job, side by side in one run.

    python -m benchmarks.preprocess_bench --images 2000

Writes N synthetic JPEGs (photo-sized, so decoding and resizing dominate as they do on real data), then times
the same per-image work (read, hash, validate, orient, convert, shrink, encode, serialize, write TFRecords):
  1. a plain single-process Python loop,
  2. one process per core running that loop on a slice each, without Beam: what the cores can give,
  3. the Beam job on the local runner with one worker process,
  4. the Beam job with one worker process per core.
Prints each rate and its ratio to the plain loop, and the Beam job's fixed cost (its time on one image per
worker): start-up and shutdown of the runner and its workers, whatever N is. Set apart from it, the per-image
efficiency of the Beam job with one worker per core is (the processes' time without Beam) / (the Beam job's time -
its fixed cost); goal: at least 0.9. With --repeat R, the runs take turns R times and each keeps its best time, so
that a burst of load from a neighbour on a shared machine does not decide a ratio.

Memory: the Beam job with one worker per core runs as `cyclegan preprocess` in a process of its own on each of
--memory_images sizes, and the peak resident memory of the runner (that process) and of its largest worker
process is sampled every 0.05 s. Goal: flat, at most 1.2 times from the smallest size to the largest.
"""
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time

from benchmarks import results
from preprocessing.process import prepare_libraries

prepare_libraries(import_tensorflow=False)

import numpy as np  # noqa: E402
import psutil  # noqa: E402
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


def write_images(folder, indices, width, height):
    os.makedirs(folder)
    with multiprocessing.Pool() as pool:
        pool.starmap(write_image, [(folder, i, width, height) for i in indices])


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


def peak_memory(root, out, workers):
    """The Beam job in a process of its own -> (peak RSS of the runner, peak RSS of its largest worker), in MB."""
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "--input", root, "--output", out,
                             f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    runner, peaks = psutil.Process(proc.pid), {"runner": 0, "worker": 0}
    while proc.poll() is None:
        try:
            peaks["runner"] = max(peaks["runner"], runner.memory_info().rss)
            for worker in runner.children(recursive=True):
                peaks["worker"] = max(peaks["worker"], worker.memory_info().rss)
        except psutil.Error:  # a process ended between the listing and the reading
            pass
        time.sleep(0.05)
    if proc.returncode != 0:
        raise SystemExit(f"the Beam job on {root} failed:\n{proc.stderr.read().decode()[-3000:]}")
    return peaks["runner"] / 2**20, peaks["worker"] / 2**20


def main():
    parser = results.parser(__doc__)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--memory_images", type=int, nargs="*", default=[1000, 4000],
                        help="sizes of the peak-memory runs (none: skip them)")
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
    write_images(os.path.join(root, "trainA"), range(args.images), args.width, args.height)
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
    processes, beam = seconds[f"{cores} processes, no Beam"], seconds[f"Beam, {cores} worker(s)"]
    best = processes + fixed
    print(f"Beam's fixed cost with {cores} workers (the job on {cores} images): {fixed:.1f} s. With it, the most a "
          f"{cores}-worker Beam job can reach on {args.images} images here is {cores} processes + fixed cost = "
          f"{best:.1f} s, {baseline / best:.2f}x plain.")
    efficiency = processes / (beam - fixed)
    print(f"Per-image efficiency, the fixed cost set apart: {cores} processes / (Beam - fixed cost) = "
          f"{processes:.1f} / ({beam:.1f} - {fixed:.1f}) = {efficiency:.2f} (goal: 0.9)")
    row = {"images": args.images, "cores": cores, "seconds": seconds, "fixed_cost_s": fixed,
           "per_image_efficiency": efficiency, "memory": []}
    for count in args.memory_images:
        folder = os.path.join(workdir, f"memory{count}")
        # the timed runs' images, and new ones beyond those (each must differ: the job drops exact duplicates)
        write_images(os.path.join(folder, "trainA"), range(len(paths), count), args.width, args.height)
        for path in paths[:count]:
            os.link(path, os.path.join(folder, "trainA", os.path.basename(path)))
        print(f"peak memory on {count} images ...", flush=True)
        runner, worker = peak_memory(folder, os.path.join(workdir, f"out{count}"), cores)
        row["memory"].append({"images": count, "runner_mb": runner, "worker_mb": worker})
        shutil.rmtree(folder)
        shutil.rmtree(os.path.join(workdir, f"out{count}"))
    if row["memory"]:
        print(f"\n{'images':>8}{'runner MB':>11}{'worker MB':>11}")
        for entry in row["memory"]:
            print(f"{entry['images']:>8}{entry['runner_mb']:>11.0f}{entry['worker_mb']:>11.0f}")
        first, last = row["memory"][0], row["memory"][-1]
        print(f"largest / smallest: runner {last['runner_mb'] / first['runner_mb']:.2f}x, worker "
              f"{last['worker_mb'] / first['worker_mb']:.2f}x (goal: at most 1.2x)")
    results.write_json(args.json, "preprocess", [row])


if __name__ == "__main__":
    main()
