"""`cyclegan translate`: images through an exported generator, written under the same relative names.

    cyclegan translate --model EXPORT_DIR/a2b --input PATH_OR_GLOB --output DIR

--input is a folder (searched recursively), a glob, a gs:// prefix or one file. Each image keeps its format
(by extension; JPEG at quality 95) and its size. An image that cannot be read or translated is reported, with
the reason, on the console and in DIR/translate_errors.jsonl (written only then), and the others go on.

An --output that would overwrite any input image (the input folder itself, or the folder of an input file) is
refused before anything is translated. An --output folder inside the input folder is left out of the inputs, so
a second run does not translate the first run's translations.
"""
import json
import os
import time

from preprocessing.jobs import job_parser, UsageError, quiet_libraries

ERRORS_FILE = "translate_errors.jsonl"


def canonical(path):
    """One spelling per file: local paths resolved (links, `..`), others with single slashes and none at the end."""
    if "://" in path:
        scheme, rest = path.split("://", 1)
        return f"{scheme}://" + "/".join(part for part in rest.split("/") if part)
    return os.path.realpath(path)


def inside(path, folder):
    return canonical(path).startswith(canonical(folder).rstrip("/") + "/")


def list_inputs(pattern, exclude=None):
    """[(path, name relative to the input root)] of the image files that `pattern` names, sorted; files inside
    the folder `exclude` are left out when it lies inside the input root."""
    import tensorflow as tf

    from preprocessing.images import skip_reason

    if any(c in pattern for c in "*?["):
        root = pattern[:min(pattern.index(c) for c in "*?[" if c in pattern)].rsplit("/", 1)[0]
        paths = tf.io.gfile.glob(pattern)
    elif tf.io.gfile.isdir(pattern):
        root = pattern.rstrip("/")
        paths = [f"{folder.rstrip('/')}/{name}" for folder, _, names in tf.io.gfile.walk(root) for name in names]
    elif tf.io.gfile.exists(pattern):
        root, paths = pattern.rsplit("/", 1)[0] if "/" in pattern else ".", [pattern]
    else:
        raise UsageError(f"--input {pattern}: no such file or folder, and not a glob")
    if exclude and inside(exclude, root):
        paths = [path for path in paths if not inside(path, exclude)]
    found = []
    for path in sorted(paths):
        relative = path[len(root):].lstrip("/") if path.startswith(root) else os.path.basename(path)
        if skip_reason(relative) is None:
            found.append((path, relative))
    return found


def save_format(name):
    from PIL import Image

    return Image.registered_extensions().get(os.path.splitext(name)[1].lower(), "PNG")


def read_image(path, max_size=0):
    """An image file (any filesystem TensorFlow knows) -> upright RGB uint8 array, or preprocessing's Rejected."""
    import numpy as np
    import tensorflow as tf

    from preprocessing import images

    if "://" not in path and os.path.exists(path) and not os.path.isfile(path):
        raise images.Rejected(images.NOT_REGULAR_FILE, "not a regular file (a FIFO, socket or device): never opened")
    with tf.io.gfile.GFile(path, "rb") as f:
        img = images.decode(f.read(), max_pixels=images.ImageOptions().max_pixels)
    return np.asarray(images.resize_shorter_side(img, max_size) if max_size else img)


def write_image(pixels, target):
    """uint8 HxWx3 -> `target`, in the format its extension names (JPEG at quality 95)."""
    import io

    import tensorflow as tf
    from PIL import Image

    tf.io.gfile.makedirs(target.rsplit("/", 1)[0])
    buffer = io.BytesIO()
    fmt = save_format(target)
    Image.fromarray(pixels).save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    with tf.io.gfile.GFile(target, "wb") as f:
        f.write(buffer.getvalue())


def apply(translate, pixels):
    """An exported signature (or trainer.export's Translator) on one uint8 HxWx3 array."""
    import tensorflow as tf

    from preprocessing.images import TOO_SMALL, Rejected
    from trainer.export import MIN_SIDE

    if min(pixels.shape[:2]) < MIN_SIDE:
        raise Rejected(TOO_SMALL, f"{pixels.shape[1]}x{pixels.shape[0]} px; the model translates images of at "
                                  f"least {MIN_SIDE}x{MIN_SIDE}")
    return translate(tf.constant(pixels[None]))["images"][0].numpy()


def translate_all(translate, inputs, output, max_size=0, progress=None):
    """Translate every (path, relative) of `inputs` into `output`; returns [(path, reason)] of the failures."""
    import tensorflow as tf

    from preprocessing.images import Rejected

    failures = []
    for path, relative in inputs:
        try:
            write_image(apply(translate, read_image(path, max_size)), f"{output.rstrip('/')}/{relative}")
        except (Rejected, tf.errors.OpError, OSError, ValueError) as err:
            failures.append((path, str(err).splitlines()[0]))
        if progress:
            progress.update(1)
    if failures:
        with tf.io.gfile.GFile(f"{output.rstrip('/')}/{ERRORS_FILE}", "w") as f:
            f.write("".join(json.dumps({"path": path, "reason": reason}) + "\n" for path, reason in failures))
    return failures


def main(argv, prog="cyclegan translate"):
    parser = job_parser(prog, __doc__)
    parser.add_argument("--model", required=True, help="an exported direction, e.g. EXPORT_DIR/a2b")
    parser.add_argument("--input", required=True, help="folder, glob, gs:// prefix or file of images")
    parser.add_argument("--output", required=True, help="folder for the translated images (local or gs://)")
    parser.add_argument("--max_size", type=int, default=0,
                        help="shrink each image so its shorter side is at most this first (0: full size)")
    args = parser.parse_args(argv)
    quiet_libraries()
    import tensorflow as tf
    from tqdm import tqdm

    from trainer.export import load_direction

    inputs = list_inputs(args.input, exclude=args.output)
    if not inputs:
        raise UsageError(f"--input {args.input}: no image files found")
    originals = {canonical(path) for path, _ in inputs}
    clashes = [path for path, relative in inputs if canonical(f"{args.output.rstrip('/')}/{relative}") in originals]
    if clashes:
        raise UsageError(f"--output {args.output} would overwrite {len(clashes)} input image(s), e.g. {clashes[0]}; "
                         "choose an output folder that is not the input's folder")
    translate = load_direction(args.model)
    tf.io.gfile.makedirs(args.output)
    started = time.monotonic()
    with tqdm(total=len(inputs), unit="img", desc="translate") as progress:
        failures = translate_all(translate, inputs, args.output, args.max_size, progress)
    for path, reason in failures:
        print(f"{prog}: skipped {path}: {reason}")
    print(f"translated {len(inputs) - len(failures)} of {len(inputs)} images into {args.output} in "
          f"{time.monotonic() - started:.1f} s" + (f"; {len(failures)} failed, listed in {args.output.rstrip('/')}/"
                                                   f"{ERRORS_FILE}" if failures else ""))
    return 0 if len(failures) < len(inputs) else 1
