"""Image files on any filesystem TensorFlow knows (local, gs://, ram://): finding, reading and writing them.

Used by `translate`, `evaluate` and the trainer's evaluation, so a folder is listed and an image decoded the same
way everywhere, with the same checks as the preprocessing job (preprocessing/images.py).
"""
import io
import os

# What every image written here carries, so that `translate` knows its own files from a user's: the EXIF
# Software tag (PNG, JPEG, WebP, TIFF) or a GIF comment; BMP has room for neither.
MARK = "cyclegan translate"
EXIF_SOFTWARE = 0x0131


def canonical(path):
    """One spelling per file: local paths resolved (links, `..`), others with single slashes and none at the end."""
    if "://" in path:
        scheme, rest = path.split("://", 1)
        return f"{scheme}://" + "/".join(part for part in rest.split("/") if part)
    return os.path.realpath(path)


def inside(path, folder):
    return canonical(path).startswith(canonical(folder).rstrip("/") + "/")


def walk(folder, unlisted):
    """Every file under `folder`, recursively; the folders that cannot be listed go to `unlisted` with the reason
    (tf.io.gfile.walk raises on a folder this user may not read)."""
    import tensorflow as tf

    try:
        names = tf.io.gfile.listdir(folder)
    except tf.errors.OpError as err:
        unlisted.append(err.message)
        return
    for name in names:
        path = f"{folder}/{name.rstrip('/')}"
        if tf.io.gfile.isdir(path):
            yield from walk(path, unlisted)
        else:
            yield path


def list_inputs(pattern, exclude=None):
    """[(path, name relative to the input root)] of the image files that `pattern` (a folder, searched recursively,
    a glob or one file) names, sorted; files inside the folder `exclude` are left out when it lies inside the
    input root, so that a second run does not read the first run's outputs."""
    import tensorflow as tf

    from preprocessing.flags import UsageError
    from preprocessing.images import skip_reason

    if any(c in pattern for c in "*?["):
        root = pattern[:min(pattern.index(c) for c in "*?[" if c in pattern)].rsplit("/", 1)[0]
        paths = tf.io.gfile.glob(pattern)
    elif tf.io.gfile.isdir(pattern):
        root, unlisted = pattern.rstrip("/"), []
        paths = list(walk(root, unlisted))
        if unlisted:  # their images would be left out unsaid
            raise UsageError(f"--input {pattern}: cannot list {len(unlisted)} folder(s) in it ({'; '.join(unlisted)}); "
                             "grant this user read access, or point --input at the folders it may read")
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
    """An image file -> upright RGB uint8 array, or preprocessing's Rejected."""
    import numpy as np
    import tensorflow as tf

    from preprocessing import images

    if "://" not in path and os.path.exists(path) and not os.path.isfile(path):
        raise images.Rejected(images.NOT_REGULAR_FILE, "not a regular file (a FIFO, socket or device): never opened")
    with tf.io.gfile.GFile(path, "rb") as f:
        img = images.decode(f.read(), max_pixels=images.ImageOptions().max_pixels)
    return np.asarray(images.resize_shorter_side(img, max_size) if max_size else img)


def check_writable(folder, flag="--output"):
    """A UsageError now, rather than one failure per image later, if `folder` cannot be created or written."""
    import tensorflow as tf

    from preprocessing.flags import UsageError
    from preprocessing.process import WRITE_PROBE

    probe = f"{folder.rstrip('/')}/{WRITE_PROBE}"
    try:
        tf.io.gfile.makedirs(folder)
        with tf.io.gfile.GFile(probe, "wb") as f:
            f.write(b"")
        tf.io.gfile.remove(probe)
    except (tf.errors.OpError, OSError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise UsageError(f"{flag} {folder}: cannot write there ({reason}); choose a folder you may write to") from None


def write_image(pixels, target):
    """uint8 HxWx3 -> `target`, in the format its extension names (JPEG at quality 95), with MARK. Written under a
    temporary name and renamed, so a full disk or a kill never leaves an empty or truncated image under its real
    name."""
    import tensorflow as tf
    from PIL import Image

    from trainer.files import write_whole

    tf.io.gfile.makedirs(target.rsplit("/", 1)[0])
    buffer = io.BytesIO()
    fmt = save_format(target)
    options = {"quality": 95} if fmt == "JPEG" else {}
    if fmt == "GIF":
        options["comment"] = MARK.encode()
    elif fmt != "BMP":
        exif = Image.Exif()
        exif[EXIF_SOFTWARE] = MARK
        options["exif"] = exif.tobytes()
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    write_whole(target, buffer.getvalue())


def written_by_translate(path):
    """Whether the image file at `path` carries write_image's mark (read from its header only)."""
    import tensorflow as tf
    from PIL import Image

    try:
        with tf.io.gfile.GFile(path, "rb") as f, Image.open(f) as img:
            return img.getexif().get(EXIF_SOFTWARE) == MARK or img.info.get("comment") == MARK.encode()
    except Exception:  # not an image, unreadable: not ours
        return False
