"""The input pipeline alone: pairs per second that trainer/run/data.py delivers from local TFRecords, per core and with
every core, at the reference's sizes (stored at 286 px short side, resized to 286, cropped to 256).

    .venv/bin/python -m benchmarks.input_bench [--images 400] [--pairs 600] [--json results.json]

It writes --images synthetic photos per domain (larger than 286 px, so the job shrinks them as it would real
ones), runs the real preprocessing job on them, then pulls --pairs augmented pairs through the trainer's own
pipeline (parse, decode, resize, crop, flip, scale; shuffle, interleave, prefetch) with tf.data limited to one
thread, and again with its default of every core. A GPU host must feed what its GPUs consume: our goal is 170
pairs/s per H100 at the reference size, so a 16-core host needs at least 45 pairs/s per core for 4 times that.
"""
import dataclasses
import os
import sys
import time

from benchmarks import results
from preprocessing.process import prepare_libraries


def pairs_per_second(records, manifest, config, pairs, threads):
    import tensorflow as tf

    from trainer.run import data

    dataset = data.train_dataset(records, manifest, config, config.batch_size)
    if threads:
        options = tf.data.Options()
        options.threading.private_threadpool_size = threads
        options.threading.max_intra_op_parallelism = 1
        dataset = dataset.with_options(options)
    iterator = iter(dataset)
    next(iterator)  # the first batch fills the shuffle buffers
    batches = max(1, pairs // config.batch_size)
    began = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * config.batch_size / (time.perf_counter() - began)


def main(argv=None):
    parser = results.parser(__doc__)
    parser.add_argument("--images", type=int, default=400, help="synthetic training images per domain")
    parser.add_argument("--pairs", type=int, default=600, help="pairs timed per run")
    parser.add_argument("--size", type=int, default=400, help="side of the synthetic photos before preprocessing")
    args = parser.parse_args(argv)
    prepare_libraries()
    from preprocessing.schema import load_manifest
    from trainer.config import PRESETS

    with results.synthetic_records(args.images, args.size) as records:
        manifest = load_manifest(records)
        config = dataclasses.replace(PRESETS["reference"], batch_size=1)
        print(f"machine: {results.machine()}", flush=True)
        rows = []
        for label, threads in (("1 thread", 1), (f"all {os.cpu_count()} cores", 0)):
            rate = pairs_per_second(records, manifest, config, args.pairs, threads)
            rows.append({"threads": label, "pairs_s": rate, "pairs_s_per_core": rate / (threads or os.cpu_count())})
        results.table(rows, [("tf.data", "threads", "{}"), ("pairs/s", "pairs_s", "{:.1f}"),
                     ("pairs/s per core", "pairs_s_per_core", "{:.1f}")])
        results.write_json(args.json, "input", rows, images=args.images, load_size=config.load_size,
                   crop_size=config.crop_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
