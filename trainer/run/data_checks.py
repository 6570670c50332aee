"""The dataset checked against what the trainer needs: before training (the manifest, each shard's size, a record
of each domain), and, after a read failed, which shard is to blame and why."""
import re

import tensorflow as tf

from preprocessing.flags import UsageError
from preprocessing.schema import TRAIN, ManifestError, load_manifest, parse_example
from trainer.run.data import MISPLACED, DataError, shard_paths


def upscaled(manifest, inputs):
    """Why every stored image would be scaled up for `inputs`' mode and sizes, or None: the preprocessing job
    stored each image with its shorter side at most its --max_size (never upscaled), in the manifest's options."""
    stored = manifest.options.get("max_size")
    flag, needed = ("--crop_size", inputs.crop_size) if inputs.preprocess == "crop" else ("--load_size",
                                                                                         inputs.load_size)
    if not stored or needed <= stored:
        return None
    return (f"{flag} {needed} with --preprocess {inputs.preprocess} needs images of at least {needed} px, and this "
            f"dataset was preprocessed with --max_size {stored} (each image's shorter side at most that): they "
            f"would be upscaled. Rerun `cyclegan preprocess --max_size {needed} --overwrite` on the raw images, or "
            f"train with {flag} {stored}")


def check_data(path, inputs=None, say=print):
    """The dataset's manifest, each training shard's size against it, its stored size against what `inputs` (a
    data.Input) scales to, and one decoded record per training domain; returns the manifest."""
    try:
        manifest = load_manifest(path)
    except ManifestError as err:
        raise UsageError(f"--data: {err}") from None
    problem = upscaled(manifest, inputs) if inputs else None
    if problem:
        raise UsageError(f"--data {path}: {problem}")
    for name in TRAIN:
        if not manifest.written(name):
            raise UsageError(f"--data {path}: the dataset has no {name} images; preprocess a dataset root with "
                             f"{name}/ in it")
    wrong = size_error(path, manifest)
    if wrong:
        raise UsageError(str(wrong))
    for name in TRAIN:
        entry = manifest.splits[name]
        first = f"{path.rstrip('/')}/{entry.shards[0].path}"
        try:
            record = next(iter(tf.data.TFRecordDataset(first).take(1).map(parse_example)))
        except (tf.errors.OpError, StopIteration) as err:
            raise UsageError(f"--data: cannot read a record of {first}: {err}") from None
        say(f"data: {name}: {entry.written} images in {len(entry.shards)} shards; first record "
              f"{int(record['width'])}x{int(record['height'])} from {record['source_path'].numpy().decode()}")
    return manifest


def corrupt_shards(data_root, manifest, names=TRAIN):
    """[(shard path, TensorFlow's complaint)] of the shards that do not read to the end: checked after a read
    failed, since the error itself ("corrupted record at 12") names no file."""
    bad = []
    for name in names:
        for path in shard_paths(data_root, manifest, name):
            try:
                tf.data.TFRecordDataset(path).reduce(0, lambda count, _: count + 1)
            except tf.errors.OpError as err:
                message = re.sub(r"\{\{.*?\}\}|\[Op:.*", "", err.message).strip()  # TensorFlow's op names
                bad.append((path, (message.splitlines() or [type(err).__name__])[0]))
    return bad


def resized_shards(data_root, manifest, names=TRAIN):
    """[(shard path, its size now, the size the manifest records)] of the shards that are not the file the job
    wrote: replaced by another shard, cut short, or rewritten. One stat per shard, in parallel: each is a round
    trip on gs://."""
    from concurrent.futures import ThreadPoolExecutor

    shards = [(path, shard.bytes) for name in names
              for path, shard in zip(shard_paths(data_root, manifest, name), manifest.splits[name].shards)
              if shard.bytes is not None]

    def size(path):
        try:
            return tf.io.gfile.stat(path).length
        except tf.errors.NotFoundError:
            return None

    with ThreadPoolExecutor(16) as pool:
        found = list(pool.map(size, [path for path, _ in shards]))
    return [(path, now, promised) for (path, promised), now in zip(shards, found) if now != promised]


def size_error(data_root, manifest, names=TRAIN):
    """The DataError for shards whose size differs from the manifest's, or None when every one matches."""
    wrong = resized_shards(data_root, manifest, names)
    if not wrong:
        return None
    where = "; ".join(f"{path} is {'missing' if now is None else f'{now} bytes'}, the manifest says {promised}"
                      for path, now, promised in wrong)
    return DataError(f"--data {data_root}: {len(wrong)} shard(s) are not the files `cyclegan preprocess` wrote "
                     f"({where}): replaced, cut short or rewritten since. Put the original shards back, or rerun "
                     "`cyclegan preprocess --overwrite`")


def misplaced_shards(data_root, manifest, names=TRAIN):
    """[(shard path, the split and domain its first record says)] of the shards that hold another split's records."""
    wrong = []
    for name in names:
        for path in shard_paths(data_root, manifest, name):
            for record in tf.data.TFRecordDataset(path).take(1):
                parsed = parse_example(record)
                found = (parsed["split"] + parsed["domain"]).numpy().decode()
                if found != name:
                    wrong.append((path, found))
    return wrong


def read_error(data_root, manifest, err):
    """The DataError for a failed read of the training shards: a shard that holds another split's records (the
    check in image_of), or a damaged one; None when the error is neither."""
    if isinstance(err, tf.errors.InvalidArgumentError) and MISPLACED in err.message:
        wrong = misplaced_shards(data_root, manifest)
        where = "; ".join(f"{path} holds {found} records" for path, found in wrong) or "not found again"
        return DataError(f"--data {data_root}: a shard holds records of another split or domain ({where}); the "
                         "files were moved or copied over each other. Rerun `cyclegan preprocess --overwrite`, or "
                         "put the shards back")
    if isinstance(err, tf.errors.DataLossError):
        return corruption_error(data_root, manifest)
    return None


def corruption_error(data_root, manifest):
    """The DataError to raise when reading the training shards failed."""
    bad = corrupt_shards(data_root, manifest)
    where = "; ".join(f"{path}: {reason}" for path, reason in bad) or "no shard fails when read alone"
    return DataError(f"--data {data_root}: a training shard is damaged ({where}). Rerun `cyclegan preprocess "
                     "--overwrite` to write the records again, or restore the shard from a copy")
