"""Whole-file writes, moves and the reading of our own JSON records, on any filesystem TensorFlow reads (local,
gs://, ram://)."""
import json
import os

import tensorflow as tf

from preprocessing import lease
from preprocessing.flags import UsageError
from preprocessing.process import PARTIAL


def write_whole(target, data):
    """`data` (bytes or str) -> `target`, written under a temporary name and renamed, so that a full disk or a kill
    never leaves an empty or truncated file under its real name. The rename also replaces the file whole, where
    some filesystems' "w" (ram://) writes over the old bytes without truncating them."""
    partial = target + PARTIAL
    try:
        with tf.io.gfile.GFile(partial, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        tf.io.gfile.rename(partial, target, overwrite=True)
    except BaseException:
        try:
            tf.io.gfile.remove(partial)
        except Exception:  # never written, or the filesystem is gone: the error being raised is the one to read
            pass
        raise


def cannot_read(flag, folder):
    """The one line for a folder the user gave (with `flag`) that this process may not read, or None when it can
    or does not exist. Asked after a file in it was not found: a file in a folder this user may not list looks
    missing too."""
    if "://" not in folder:  # TensorFlow says "not found" for a folder inside one this user may not search
        try:
            os.listdir(folder)
            return None
        except PermissionError as err:
            reason = f"{err.filename}: {err.strerror}"
        except OSError:
            return None
    else:
        try:
            tf.io.gfile.listdir(folder)
            return None
        except tf.errors.NotFoundError:
            return None
        except tf.errors.OpError as err:
            reason = err.message
    return f"{flag} {folder}: cannot be read ({reason}); run as a user who may read it, or grant this one access"


def move(src, dst):
    """A file or a folder from `src` to `dst` (which must not exist). One rename on a local disk; elsewhere file by
    file, since object stores and ram:// have no folders to rename."""
    if "://" not in src:
        os.rename(src, dst)
    elif not tf.io.gfile.isdir(src):
        tf.io.gfile.rename(src, dst)
    else:
        for folder, _, names in tf.io.gfile.walk(src):
            folder = folder.rstrip("/")  # gs:// lists subfolders with a trailing slash: no "//" in the names built
            target = dst + folder[len(src):]
            tf.io.gfile.makedirs(target)
            for name in names:
                tf.io.gfile.rename(f"{folder}/{name}", f"{target}/{name}")
        tf.io.gfile.rmtree(src)


def remove(path):
    """A file or a folder, if there."""
    if tf.io.gfile.isdir(path):
        tf.io.gfile.rmtree(path)
    elif tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)


def read_json_object(path, needs=(), advice="restore it from a copy, or remove it"):
    """The JSON object a record file of ours holds, or a UsageError in one line that names the file: a damaged
    record (garbage, a list, an object without the keys in `needs`) is a person's problem, not a traceback's."""
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            value = json.loads(f.read())
    except (ValueError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: damaged (not JSON: {str(err).splitlines()[0][:80]}); {advice}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{path}: damaged (a JSON {type(value).__name__}, not an object); {advice}")
    missing = [key for key in needs if key not in value]
    if missing:
        raise UsageError(f"{path}: damaged (no {', '.join(missing)}); {advice}")
    return value


class GfileStorage(lease.Storage):
    """A lease on a filesystem only TensorFlow reads (ram://): no exclusive create there, so the check and the
    write are two steps, each write whole."""

    def make_folder(self, folder):
        tf.io.gfile.makedirs(folder)

    def read_text(self):
        if not tf.io.gfile.exists(self.path):
            return None
        with tf.io.gfile.GFile(self.path, "rb") as f:
            return f.read().decode("utf-8", errors="replace")

    def create(self, text):
        if tf.io.gfile.exists(self.path):
            return False
        write_whole(self.path, text)
        return True

    def replace(self, text):
        write_whole(self.path, text)
        return True

    def delete(self):
        if tf.io.gfile.exists(self.path):
            tf.io.gfile.remove(self.path)
