"""The TFRecord schema shared by the preprocessing job (writer) and the trainer (reader).

Each record is a `tf.train.Example` with the usual `image/...` feature names. The dataset root holds
`manifest.json` (see `MANIFEST_NAME`), and the shards sit at `<root>/<split>/<domain>-SSSSS-of-NNNNN.tfrecord`.
"""
import dataclasses
import json
import re

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
REJECTED_NAME = "rejected.jsonl"
SPLITS = ("train", "test")
DOMAINS = ("A", "B")
TRAIN = tuple(f"{SPLITS[0]}{domain}" for domain in DOMAINS)  # ("trainA", "trainB"): what the trainer reads
TRUTH_FOLDER = "testA_truth"  # in a raw dataset root, where known: the true B image of each test A image

BYTES_FEATURES = ("image/encoded", "image/format", "image/domain", "image/split", "image/source_path",
                  "image/sha256")
INT_FEATURES = ("image/height", "image/width")


def shard_name(split, domain, index, count):
    return f"{split}/{domain}-{index:05d}-of-{count:05d}.tfrecord"


SHARD_NAME = re.compile(rf"^({'|'.join(SPLITS)})/({'|'.join(DOMAINS)})-\d{{5}}-of-\d{{5}}\.tfrecord$")


# The writer encodes tf.train.Example's protobuf wire format itself, so Beam workers never load TensorFlow
# (seconds of start-up and half a gigabyte each). Fields are written in sorted order: the same record always
# gives the same bytes.

def _varint(value):
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _length_delimited(field, payload):
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def make_example(*, encoded, image_format, height, width, domain, split, source_path, sha256) -> bytes:
    """A serialized tf.train.Example with the schema's features."""
    values = {"image/encoded": encoded, "image/format": image_format, "image/height": height,
              "image/width": width, "image/domain": domain, "image/split": split,
              "image/source_path": source_path, "image/sha256": sha256}
    entries = b""
    for key in sorted(values):
        value = values[key]
        if key in INT_FEATURES:
            if value < 0:
                raise ValueError(f"{key} must not be negative, got {value}")
            feature = _length_delimited(3, _length_delimited(1, _varint(value)))  # Int64List, packed
        else:
            data = value.encode() if isinstance(value, str) else bytes(value)
            feature = _length_delimited(1, _length_delimited(1, data))  # BytesList
        entries += _length_delimited(1, _length_delimited(1, key.encode()) + _length_delimited(2, feature))
    return _length_delimited(1, entries)  # Example.features


def feature_spec():
    import tensorflow as tf

    spec = {key: tf.io.FixedLenFeature([], tf.string) for key in BYTES_FEATURES}
    spec.update({key: tf.io.FixedLenFeature([], tf.int64) for key in INT_FEATURES})
    return spec


def parse_example(serialized):
    """A serialized record -> dict with `image` (uint8 HxWx3, the stored size) and the metadata features."""
    import tensorflow as tf

    parsed = tf.io.parse_single_example(serialized, feature_spec())
    image = tf.io.decode_image(parsed["image/encoded"], channels=3, expand_animations=False)
    image = tf.ensure_shape(image, [None, None, 3])
    return {"image": image, **{key.split("/", 1)[1]: value for key, value in parsed.items()
                                if key != "image/encoded"}}


class ManifestError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Shard:
    path: str  # relative to the dataset root
    records: int
    bytes: int = None  # the file's size as written; None where the manifest does not say


@dataclasses.dataclass(frozen=True)
class Split:
    """One split and domain (e.g. trainA): what the job found, what it wrote, and why it left the rest out."""
    found: int
    written: int
    rejected: dict  # reason -> count
    duplicates: int
    skipped: dict  # reason -> count
    shards: tuple
    fingerprint: str


@dataclasses.dataclass(frozen=True)
class Manifest:
    """manifest.json, as `pipeline/manifest.py` writes it and every reader reads it."""
    schema_version: int
    created: str
    source: dict  # where the images came from: folders, globs or a TFDS dataset
    options: dict
    fingerprint: str  # of every split's content: a resumed run checks it
    splits: dict  # "trainA" -> Split, for each split and domain the job found

    def written(self, name):
        """Images written for split and domain `name` (0 when the dataset has none)."""
        return self.splits[name].written if name in self.splits else 0


def parse_manifest(text, path):
    """manifest.json's text -> Manifest; a ManifestError naming `path` for anything this version cannot read."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise ManifestError(f"{path} is not valid JSON ({err}); rerun `cyclegan preprocess`") from None
    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if version != SCHEMA_VERSION:
        raise ManifestError(f"{path} has schema_version {version!r}; this version reads {SCHEMA_VERSION}: "
                            "rerun `cyclegan preprocess` with this version")
    try:
        splits = {name: Split(**{**entry, "shards": tuple(Shard(**shard) for shard in entry["shards"])})
                  for name, entry in raw["splits"].items()}
        return Manifest(**{**raw, "splits": splits})
    except (KeyError, TypeError) as err:
        raise ManifestError(f"{path} lacks or mistypes a field ({err!r}); rerun `cyclegan preprocess`") from None


def load_manifest(dataset_root):
    """Read `<dataset_root>/manifest.json` through tf.io.gfile (local, gs://, ram://) and check its schema."""
    import tensorflow as tf

    path = f"{dataset_root.rstrip('/')}/{MANIFEST_NAME}"
    if not tf.io.gfile.exists(path):
        raise ManifestError(f"{path} not found: point --data at the --output of `cyclegan preprocess`")
    with tf.io.gfile.GFile(path) as f:
        return parse_manifest(f.read(), path)
