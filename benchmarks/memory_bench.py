"""Peak memory against image size: translating one image whole (which sets `cyclegan translate
--max_megapixels`' default, trainer/serving/translator.GB_PER_MEGAPIXEL), and one training step at a crop size
(what a larger --crop_size costs, docs/train.md "Scale and crop").

    .venv/bin/python -m benchmarks.memory_bench translate          # the reference generator at 512, 1024, 2048 px
    .venv/bin/python -m benchmarks.memory_bench train               # the reference step, batch 1, crops 256, 360, 512
    .venv/bin/python -m benchmarks.memory_bench train --remat off on  # without and with --remat, taking turns
    .venv/bin/python -m benchmarks.memory_bench translate --ngf 8 --n_blocks 1 --sides 64 128

Each side runs in a fresh process (the peak, ru_maxrss, only grows), float32, on this machine's devices:
  translate  the generator is built with random weights and its translator (the exported signature's function)
             traced on a 64 px image; then one square image of that side is translated
  train      the whole CycleGAN step (both generators, both discriminators, the pools, Adam) on one device, traced
             and run once on random crops of that side; then one more step is timed
Printed: the peak once ready, the peak after the work, their difference per megapixel of the side, and the
seconds the measured work took.
"""
import argparse
import json
import subprocess
import sys
import time

from benchmarks import results

CHILD = "--child"
DEFAULT_SIDES = {"translate": [512, 1024, 2048], "train": [256, 360, 512]}


def peak_gb():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def measure_translate(side, ngf, n_blocks, remat):
    """(peak GB with the translator ready, peak GB after translating a side x side image, seconds)."""
    import numpy as np

    from trainer.model import networks
    from trainer.serving.translator import make_translator, translate_pixels

    translator = make_translator(networks.resnet_generator(ngf=ngf, n_blocks=n_blocks))
    translate_pixels(translator.translate, np.zeros((64, 64, 3), np.uint8))
    ready, began = peak_gb(), time.perf_counter()
    translate_pixels(translator.translate, np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8))
    return ready, peak_gb(), time.perf_counter() - began


def measure_train(side, ngf, n_blocks, remat):
    """(peak GB with the nets and optimizers built, peak GB after two steps on side x side crops, the second
    step's seconds)."""
    import dataclasses

    import numpy as np
    import tensorflow as tf

    from preprocessing.flags import view
    from trainer.config import PRESETS
    from trainer.model.step import CycleGANTrainer, requests
    from trainer.run import strategy as strategies

    config = dataclasses.replace(PRESETS["reference"], ngf=ngf, n_blocks=n_blocks, crop_size=side, load_size=side,
                                 batch_size=1, strategy="one_device", remat=remat)
    trainer = CycleGANTrainer(config, strategies.create(view(config, strategies.Distribution)), steps_per_epoch=1000)
    rng = np.random.default_rng(0)
    a, b = (tf.constant(rng.uniform(-1, 1, (1, side, side, 3)).astype(np.float32)) for _ in range(2))
    ready = peak_gb()
    trainer.train_step(a, b, requests())["requests"].numpy()  # traced and run once
    began = time.perf_counter()
    trainer.train_step(a, b, requests())["requests"].numpy()
    return ready, peak_gb(), time.perf_counter() - began


def main(argv=None):
    parser = results.parser(__doc__)
    parser.add_argument("job", choices=sorted(DEFAULT_SIDES))
    parser.add_argument("--sides", type=int, nargs="+", help="image or crop sides (default: the job's, above)")
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--n_blocks", type=int, default=9)
    parser.add_argument("--remat", nargs="+", choices=("off", "on"), default=["off"],
                        help="train: without and/or with --remat (recomputed activations)")
    parser.add_argument(CHILD, type=int, default=0, help=argparse.SUPPRESS)  # one side, measured in this process
    args = parser.parse_args(argv)
    from preprocessing.process import prepare_libraries

    prepare_libraries()
    measure = {"translate": measure_translate, "train": measure_train}[args.job]
    if args.child:
        print(json.dumps(measure(args.child, args.ngf, args.n_blocks, args.remat == ["on"])))
        return
    rows = []
    for side in args.sides or DEFAULT_SIDES[args.job]:
        for remat in args.remat if args.job == "train" else ["off"]:
            done = subprocess.run([sys.executable, "-m", "benchmarks.memory_bench", args.job, CHILD, str(side),
                                   "--ngf", str(args.ngf), "--n_blocks", str(args.n_blocks), "--remat", remat],
                                  cwd=results.REPO, capture_output=True, text=True, check=True)
            ready, peak, seconds = json.loads(done.stdout.strip().splitlines()[-1])
            megapixels = side * side / 1e6
            rows.append({"side": side, "remat": remat, "megapixels": megapixels, "ready_gb": ready, "peak_gb": peak,
                         "gb_per_megapixel": (peak - ready) / megapixels, "seconds": seconds})
    results.table(rows, [("side px", "side", "{}"), ("remat", "remat", "{}"), ("megapixels", "megapixels", "{:.2f}"),
                         ("peak GB, ready", "ready_gb", "{:.2f}"), ("peak GB, after", "peak_gb", "{:.2f}"),
                         ("GB per megapixel", "gb_per_megapixel", "{:.2f}"), ("seconds", "seconds", "{:.2f}")])
    results.write_json(args.json, f"memory_bench {args.job}", rows, ngf=args.ngf, n_blocks=args.n_blocks)


if __name__ == "__main__":
    main()
