"""The TFRecord schema shared by the preprocessing job (writer) and the trainer (reader).

Each record is a `tf.train.Example` with the usual `image/...` feature names. The dataset root holds
`manifest.json` (see `MANIFEST_NAME`), and the shards sit at `<root>/<split>/<domain>-SSSSS-of-NNNNN.tfrecord`.
"""
import json

import tensorflow as tf

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
REJECTED_NAME = "rejected.jsonl"
SPLITS = ("train", "test")
DOMAINS = ("A", "B")

FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/format": tf.io.FixedLenFeature([], tf.string),
    "image/height": tf.io.FixedLenFeature([], tf.int64),
    "image/width": tf.io.FixedLenFeature([], tf.int64),
    "image/domain": tf.io.FixedLenFeature([], tf.string),
    "image/split": tf.io.FixedLenFeature([], tf.string),
    "image/source_path": tf.io.FixedLenFeature([], tf.string),
    "image/sha256": tf.io.FixedLenFeature([], tf.string),
}


def shard_name(split, domain, index, count):
    return f"{split}/{domain}-{index:05d}-of-{count:05d}.tfrecord"


def make_example(*, encoded, image_format, height, width, domain, split, source_path, sha256) -> bytes:
    def _bytes(value):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode() if isinstance(value, str)
                                                                      else value]))

    def _int(value):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    feature = {
        "image/encoded": _bytes(encoded), "image/format": _bytes(image_format),
        "image/height": _int(height), "image/width": _int(width),
        "image/domain": _bytes(domain), "image/split": _bytes(split),
        "image/source_path": _bytes(source_path), "image/sha256": _bytes(sha256),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)


def parse_example(serialized):
    """A serialized record -> dict with `image` (uint8 HxWx3, the stored size) and the metadata features."""
    parsed = tf.io.parse_single_example(serialized, FEATURES)
    image = tf.io.decode_image(parsed["image/encoded"], channels=3, expand_animations=False)
    image = tf.ensure_shape(image, [None, None, 3])
    return {"image": image, **{key.split("/", 1)[1]: value for key, value in parsed.items()
                                if key != "image/encoded"}}


class ManifestError(ValueError):
    pass


def load_manifest(dataset_root):
    """Read `<dataset_root>/manifest.json` through tf.io.gfile (local, gs://, ram://) and check its schema."""
    path = f"{dataset_root.rstrip('/')}/{MANIFEST_NAME}"
    if not tf.io.gfile.exists(path):
        raise ManifestError(f"{path} not found: point --data at the --output of `cyclegan preprocess`")
    with tf.io.gfile.GFile(path) as f:
        try:
            manifest = json.load(f)
        except json.JSONDecodeError as err:
            raise ManifestError(f"{path} is not valid JSON ({err}); rerun `cyclegan preprocess`") from None
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ManifestError(f"{path} has schema_version {version!r}; this version reads {SCHEMA_VERSION}: "
                            "rerun `cyclegan preprocess` with this version")
    return manifest
