"""Input pipeline: the preprocessing job's shards -> unpaired, augmented batches, entirely in tf.data.

Two independent streams, A and B, each with its own file order, shuffle and augmentation, zipped into unpaired
batches. Per image, as the reference: the --preprocess mode's scale and random crop (trainer/model/scale_modes.py;
by default resize to load_size, bicubic, and crop to crop_size), a random horizontal flip, scale to [-1, 1].
Random draws are stateless ops seeded per image from a seeded stream, so no Python runs per example. The order is
deterministic for a seed (reads and maps still run in parallel), and the iterator is checkpointed with the run, so
a resumed run sees exactly the batches an uninterrupted one would have.
"""
import dataclasses

import tensorflow as tf

from preprocessing.schema import parse_example
from trainer.model import scale_modes
from trainer.model.pixels import to_model_range

SHUFFLE_BUFFER = 256
MISPLACED = "a record of another split or domain in"


@dataclasses.dataclass(frozen=True)
class Input:
    """What the input pipeline reads of a run's config (the TrainConfig fields of the same names)."""
    preprocess: str
    load_size: int
    crop_size: int
    seed: int


class DataError(ValueError):
    """The dataset cannot feed this run (said before any step runs)."""


def shard_paths(data_root, manifest, name):
    entry = manifest.splits.get(name)
    if not entry or not entry.shards:
        raise DataError(f"{data_root}: the manifest lists no {name} shards; preprocess a dataset with {name}/")
    return [f"{data_root.rstrip('/')}/{shard.path}" for shard in entry.shards]


def augment(image, seed, inputs, training):
    """uint8 HxWx3 -> float32 in [-1, 1]: a crop_size square in training (the crop modes), or at test time the
    image as the mode scales it for a trained model."""
    if training:
        image = scale_modes.for_training(image, seed, inputs.preprocess, inputs.load_size, inputs.crop_size)
    else:
        image = scale_modes.for_testing(image, inputs.preprocess, inputs.load_size, inputs.crop_size)
    return tf.clip_by_value(to_model_range(image), -1.0, 1.0)


def image_of(record, name):
    """A record's image, after checking that it belongs to split and domain `name` (e.g. trainA): a shard copied
    over another one's name is valid TFRecords, and would otherwise be trained on as the wrong domain."""
    parsed = parse_example(record)
    found = tf.strings.join([parsed["split"], parsed["domain"]])
    check = tf.debugging.assert_equal(found, name, message=f"{MISPLACED} {name}")
    with tf.control_dependencies([check]):
        return tf.identity(parsed["image"])


def domain_dataset(paths, name, sizes, batch_size, seed, input_context=None, training=True):
    """One domain's batches (of split and domain `name`). With several input pipelines (workers), each reads its
    own subset of the files."""
    files = tf.data.Dataset.from_tensor_slices(paths)
    if input_context is not None and input_context.num_input_pipelines > 1:
        workers = input_context.num_input_pipelines
        if len(paths) < workers:
            raise DataError(f"{len(paths)} shards cannot feed {workers} workers (each reads its own files): "
                             f"rerun `cyclegan preprocess` with --min_train_shards {workers} or more")
        files = files.shard(workers, input_context.input_pipeline_id)
        seed = seed * 1_000_003 + input_context.input_pipeline_id  # each worker its own order and augmentation
    if training:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True).repeat()
    records = files.interleave(tf.data.TFRecordDataset, cycle_length=min(len(paths), 16),
                               num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if training:
        records = records.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    images = tf.data.Dataset.zip(records, seeds).map(
        lambda record, image_seed: augment(image_of(record, name), image_seed, sizes, training),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return images.batch(batch_size, drop_remainder=training)


def train_dataset(data_root, manifest, inputs: Input, batch_size, input_context=None):
    """Unpaired (A, B) batches, repeated forever: `batch_size` images of each domain per element."""
    streams = [domain_dataset(shard_paths(data_root, manifest, f"train{domain}"), f"train{domain}", inputs,
                              batch_size, seed=inputs.seed * 2 + i, input_context=input_context)
               for i, domain in enumerate("AB")]
    return tf.data.Dataset.zip(*streams).prefetch(tf.data.AUTOTUNE)


def held_out_images(data_root, manifest, domain, inputs: Input, count):
    """The first `count` test images of `domain` (train images if it has no test split), as test time sees them:
    a list of HxWx3 images, whose sizes differ where the mode keeps each image's size or aspect ratio."""
    split = f"test{domain}" if manifest.written(f"test{domain}") else f"train{domain}"
    paths = shard_paths(data_root, manifest, split)
    return [batch[0] for batch in domain_dataset(paths, split, inputs, 1, seed=0, training=False).take(count)]
