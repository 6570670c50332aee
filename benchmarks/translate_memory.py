"""Translation memory: the peak resident memory of translating one image whole, against its size, which sets
`cyclegan translate --max_megapixels`' default (trainer/serving/translator.GB_PER_MEGAPIXEL).

    .venv/bin/python -m benchmarks.translate_memory                          # the reference generator, 512 to 2048 px
    .venv/bin/python -m benchmarks.translate_memory --ngf 8 --n_blocks 1 --sides 64 128

Each side runs in a fresh process (the peak, ru_maxrss, only grows): the generator is built with random weights,
its translator (the exported signature's function) is traced on a 64 px image, then one square image of that side
is translated. Printed: the peak before and after that image, and the difference per megapixel.
"""
import argparse
import json
import subprocess
import sys

from benchmarks import results

CHILD = "--child"


def measure(side, ngf, n_blocks):
    """In this process: (peak GB with the translator ready, peak GB after translating a side x side image)."""
    import resource

    import numpy as np

    from trainer.model import networks
    from trainer.serving.translator import make_translator, translate_pixels

    translator = make_translator(networks.resnet_generator(ngf=ngf, n_blocks=n_blocks))
    translate_pixels(translator.translate, np.zeros((64, 64, 3), np.uint8))
    ready = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    translate_pixels(translator.translate, np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8))
    return ready, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def main(argv=None):
    parser = results.parser(__doc__)
    parser.add_argument("--sides", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--n_blocks", type=int, default=9)
    parser.add_argument(CHILD, type=int, default=0, help=argparse.SUPPRESS)  # one side, measured in this process
    args = parser.parse_args(argv)
    from preprocessing.process import prepare_libraries

    prepare_libraries()
    if args.child:
        print(json.dumps(measure(args.child, args.ngf, args.n_blocks)))
        return
    rows = []
    for side in args.sides:
        done = subprocess.run([sys.executable, "-m", "benchmarks.translate_memory", CHILD, str(side), "--ngf",
                               str(args.ngf), "--n_blocks", str(args.n_blocks)], cwd=results.REPO,
                              capture_output=True, text=True, check=True)
        ready, peak = json.loads(done.stdout.strip().splitlines()[-1])
        megapixels = side * side / 1e6
        rows.append({"side": side, "megapixels": megapixels, "ready_gb": ready, "peak_gb": peak,
                     "gb_per_megapixel": (peak - ready) / megapixels})
    results.table(rows, [("side px", "side", "{}"), ("megapixels", "megapixels", "{:.2f}"),
                         ("peak GB, translator ready", "ready_gb", "{:.2f}"),
                         ("peak GB, image translated", "peak_gb", "{:.2f}"),
                         ("GB per megapixel", "gb_per_megapixel", "{:.2f}")])
    results.write_json(args.json, "translate_memory", rows, ngf=args.ngf, n_blocks=args.n_blocks)


if __name__ == "__main__":
    main()
