"""`cyclegan translate`: images through an exported generator, written under the same relative names.

    cyclegan translate --model EXPORT_DIR/a2b --input PATH_OR_GLOB --output DIR

--input is a folder (searched recursively), a glob, a gs:// prefix or one file. Each image keeps its format
(by extension; JPEG at quality 95) and its size: it is scaled as the model's training mode scales images at test
time (export.json beside the direction: a resize_and_crop model sees a crop_size square, a scale_width_and_crop
one the image with its width at load_size), and the translation is scaled back to the image's size
(--output_size scaled keeps the model's size). --native translates each image whole at its own size instead.
An image that cannot be read or translated is reported, with the reason, on the console and in
DIR/translate_errors.jsonl (written only then), and the others go on; so is one too large for the memory
(--max_megapixels): images are translated whole, never in tiles, because the generators' instance normalisation
takes its statistics over the whole image, and tiles would change them.

An --output that would overwrite any input image (the input folder itself, or the folder of an input file) is
refused before anything is translated. An --output folder inside the input folder is left out of the inputs, so
a second run does not translate the first run's translations. A file already in --output under a name this run
would write is replaced only if `translate` wrote it (each image it writes carries "cyclegan translate" as its
EXIF Software tag, or as a GIF comment; BMP holds neither) or with --overwrite; otherwise the run is refused,
naming it.

SIGTERM or Ctrl-C ends the run after the image in flight (exit 75 or 130), saying how many were written;
--resume skips the images a run into DIR already wrote, so a stopped run is finished without redoing them.
"""
import signal
import sys
import time

from preprocessing import exit_status
from preprocessing.flags import UsageError, check_at_least, job_parser
from preprocessing.process import prepare_libraries, stop_signals_handled_by
from trainer.serving.image_files import canonical, check_writable, list_inputs, walk, written_by_translate
from trainer.serving.translator import (ERRORS_FILE, OutputFull, default_max_megapixels, export_scaling, load_direction,
                                       translate_all)


def main(argv, prog="cyclegan translate"):
    parser = job_parser(prog, __doc__)
    parser.add_argument("--model", required=True, help="an exported direction, e.g. EXPORT_DIR/a2b")
    parser.add_argument("--input", required=True, help="folder, glob, gs:// prefix or file of images")
    parser.add_argument("--output", required=True, help="folder for the translated images (local or gs://)")
    parser.add_argument("--max_size", type=int, default=0,
                        help="shrink each image so its shorter side is at most this first (0: full size)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace files already in --output that this command did not write")
    parser.add_argument("--resume", action="store_true",
                        help="skip the images an earlier run into --output already translated")
    parser.add_argument("--native", action="store_true",
                        help="translate each image whole at its own size, not at the model's test-time scale")
    parser.add_argument("--output_size", choices=("input", "scaled"), default="input",
                        help="write each translation at its image's size (input) or at the size the model "
                             "translated it (scaled)")
    parser.add_argument("--max_megapixels", type=float, default=0.0,
                        help="skip, with the reason, an image larger than this (after --max_size) rather than run "
                             "out of memory on it (default: what this machine's available memory holds)")
    args = parser.parse_args(argv)
    check_at_least(("--max_size", args.max_size, 0), ("--max_megapixels", args.max_megapixels, 0.0))
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
    inputs, done_before = pending(inputs, args.output, args.overwrite, args.resume)
    translate = load_direction(args.model)
    scaling = None if args.native else chosen_scaling(args.model, prog)
    limit = args.max_megapixels or default_max_megapixels()
    started, stop = time.monotonic(), []
    try:
        with stop_signals_handled_by(lambda signum, frame: stop.append(signum)), \
                tqdm(total=len(inputs), unit="img", desc="translate") as progress:
            failures, written = translate_all(translate, inputs, args.output, args.max_size, progress, limit,
                                              stopping=lambda: bool(stop), scaling=scaling,
                                              keep_size=args.output_size == "input")
    except OutputFull as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return exit_status.FAILED
    if stop:
        print(f"{prog}: stopped by {signal.Signals(stop[0]).name} after {written} of {len(inputs)} images; those "
              f"are whole in {args.output}. Run the same command with --resume to translate the rest",
              file=sys.stderr, flush=True)
        return exit_status.INTERRUPTED if stop[0] == signal.SIGINT else exit_status.PREEMPTED
    for path, reason in failures:
        print(f"{prog}: skipped {path}: {reason}")
    print(f"translated {len(inputs) - len(failures)} of {len(inputs)} images into {args.output} in "
          f"{time.monotonic() - started:.1f} s" + (f"; {len(failures)} failed, listed in {args.output.rstrip('/')}/"
                                                   f"{ERRORS_FILE}" if failures else "")
          + (f"; {done_before} translated by an earlier run were kept (--resume)" if done_before else ""))
    return 0 if len(failures) < len(inputs) or not inputs else exit_status.FAILED


def chosen_scaling(model, prog):
    """The export's test-time Scaling, said in one line; None, also said, for a direction without export.json."""
    scaling = export_scaling(model)
    if scaling:
        print(f"{prog}: images scaled as the model was trained to meet them: --preprocess {scaling.preprocess} "
              f"--load_size {scaling.load_size} --crop_size {scaling.crop_size} (export.json); --native translates "
              "them at their own size", flush=True)
    else:
        print(f"{prog}: {model} has no export.json beside it: images are translated at their own size", flush=True)
    return scaling


def pending(inputs, output, overwrite, resume):
    """(the inputs to translate, how many --resume leaves out): a UsageError if a file in `output` that translate
    did not write would be replaced without --overwrite. Only when that or --resume asks is any file read (its
    header: one request each on gs://)."""
    if overwrite and not resume:
        return inputs, 0
    root = output.rstrip("/")
    present = {path[len(root) + 1:] for path in walk(root, [])}  # check_writable made the folder
    ours, theirs = set(), []
    for _, relative in inputs:
        if relative in present and written_by_translate(f"{root}/{relative}"):
            ours.add(relative)
        elif relative in present:
            theirs.append(relative)
    if theirs and not overwrite:
        raise UsageError(f"--output {output} already holds {len(theirs)} file(s) that this command did not write "
                         f"under the names it would write, e.g. {root}/{theirs[0]}; pass --overwrite to replace "
                         "them, or choose another folder")
    if not resume:
        return inputs, 0
    todo = [(path, relative) for path, relative in inputs if relative not in ours]
    return todo, len(inputs) - len(todo)
