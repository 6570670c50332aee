"""`cyclegan translate`: images through an exported generator, written under the same relative names.

    cyclegan translate --model EXPORT_DIR/a2b --input PATH_OR_GLOB --output DIR

--input is a folder (searched recursively), a glob, a gs:// prefix or one file. Each image keeps its format
(by extension; JPEG at quality 95) and its size. An image that cannot be read or translated is reported, with
the reason, on the console and in DIR/translate_errors.jsonl (written only then), and the others go on; so is
one too large for the memory (--max_megapixels): images are translated whole, never in tiles, because the
generators' instance normalisation takes its statistics over the whole image, and tiles would change them.

An --output that would overwrite any input image (the input folder itself, or the folder of an input file) is
refused before anything is translated. An --output folder inside the input folder is left out of the inputs, so
a second run does not translate the first run's translations.
"""
import sys
import time

from preprocessing import exit_status
from preprocessing.jobs import UsageError, job_parser, prepare_libraries
from trainer.image_files import canonical, check_writable, list_inputs
from trainer.translator import ERRORS_FILE, OutputFull, default_max_megapixels, load_direction, translate_all


def main(argv, prog="cyclegan translate"):
    parser = job_parser(prog, __doc__)
    parser.add_argument("--model", required=True, help="an exported direction, e.g. EXPORT_DIR/a2b")
    parser.add_argument("--input", required=True, help="folder, glob, gs:// prefix or file of images")
    parser.add_argument("--output", required=True, help="folder for the translated images (local or gs://)")
    parser.add_argument("--max_size", type=int, default=0,
                        help="shrink each image so its shorter side is at most this first (0: full size)")
    parser.add_argument("--max_megapixels", type=float, default=0.0,
                        help="skip, with the reason, an image larger than this (after --max_size) rather than run "
                             "out of memory on it (default: what this machine's available memory holds)")
    args = parser.parse_args(argv)
    prepare_libraries()
    from tqdm import tqdm

    inputs = list_inputs(args.input, exclude=args.output)
    if not inputs:
        raise UsageError(f"--input {args.input}: no image files found")
    originals = {canonical(path) for path, _ in inputs}
    clashes = [path for path, relative in inputs if canonical(f"{args.output.rstrip('/')}/{relative}") in originals]
    if clashes:
        raise UsageError(f"--output {args.output} would overwrite {len(clashes)} input image(s), e.g. {clashes[0]}; "
                         "choose an output folder that is not the input's folder")
    check_writable(args.output)
    translate = load_direction(args.model)
    limit = args.max_megapixels or default_max_megapixels()
    started = time.monotonic()
    try:
        with tqdm(total=len(inputs), unit="img", desc="translate") as progress:
            failures = translate_all(translate, inputs, args.output, args.max_size, progress, limit)
    except OutputFull as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return exit_status.FAILED
    for path, reason in failures:
        print(f"{prog}: skipped {path}: {reason}")
    print(f"translated {len(inputs) - len(failures)} of {len(inputs)} images into {args.output} in "
          f"{time.monotonic() - started:.1f} s" + (f"; {len(failures)} failed, listed in {args.output.rstrip('/')}/"
                                                   f"{ERRORS_FILE}" if failures else ""))
    return 0 if len(failures) < len(inputs) else exit_status.FAILED
