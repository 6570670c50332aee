"""Whole-file writes on any filesystem TensorFlow reads (local, gs://, ram://)."""
import tensorflow as tf

from preprocessing.jobs import PARTIAL


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
