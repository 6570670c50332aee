"""The trainer's input pipeline on records written by the real preprocessing job, and the shards it refuses."""
import dataclasses
import json
import os
import re
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from preprocessing.schema import load_manifest
from trainer.config import PRESETS
from tests.helpers import REPO
from tests.training import SMALL, run, train_command
from trainer.model import scale_modes
from trainer.run import data, loop

TINY = PRESETS["tiny"]


def _check_unpaired_batches(root, batch_size=3):
    manifest = load_manifest(root)
    a, b = next(iter(data.train_dataset(root, manifest, TINY, batch_size)))
    for images in (a, b):
        assert images.shape == (batch_size, 64, 64, 3) and images.dtype == tf.float32
        assert float(tf.reduce_min(images)) >= -1.0 and float(tf.reduce_max(images)) <= 1.0
        assert float(tf.reduce_max(images)) - float(tf.reduce_min(images)) > 0.5  # real content, scaled
    # The synthetic domains: red leads in A, green leads in B (B = A under (R, G, B) -> (B, R, G)).
    mean_a, mean_b = (tf.reduce_mean(x, axis=[0, 1, 2]).numpy() for x in (a, b))
    assert mean_a[0] > mean_a[1] and mean_a[0] > mean_a[2]
    assert mean_b[1] > mean_b[0] and mean_b[1] > mean_b[2]


def test_unpaired_batches_from_preprocessed_records(tiny_records):
    _check_unpaired_batches(tiny_records[0])


def test_reads_from_ram_filesystem(tiny_records):
    local = tiny_records[0]
    root = "ram://records-copy"
    for path in tf.io.gfile.glob(f"{local}/*") + tf.io.gfile.glob(f"{local}/*/*"):
        if not tf.io.gfile.isdir(path):
            target = root + path[len(local):]
            tf.io.gfile.makedirs(target.rsplit("/", 1)[0])
            tf.io.gfile.copy(path, target, overwrite=True)
    _check_unpaired_batches(root)


def test_each_worker_reads_its_own_files(tiny_records):
    root = tiny_records[0]
    paths = data.shard_paths(root, load_manifest(root), "trainA")
    assert len(paths) == 4

    def images(worker, workers):
        context = tf.distribute.InputContext(num_input_pipelines=workers, input_pipeline_id=worker)
        batches = data.domain_dataset(paths, "trainA", TINY, 1, seed=0, input_context=context, training=False)
        return {x.numpy().tobytes() for x in batches}

    one, two, everything = images(0, 2), images(1, 2), images(0, 1)
    assert one and two and not one & two and one | two == everything
    with pytest.raises(ValueError, match="4 shards cannot feed 5 workers.*--min_train_shards 5"):
        images(0, 5)


def test_manifest_errors_say_what_to_do(tmp_path):
    from preprocessing.schema import ManifestError

    with pytest.raises(ManifestError, match="manifest.json not found: point --data at the --output"):
        load_manifest(str(tmp_path))
    (tmp_path / "manifest.json").write_text('{"schema_version": 99}')
    with pytest.raises(ManifestError, match="schema_version 99; this version reads 1: rerun `cyclegan preprocess`"):
        load_manifest(str(tmp_path))
    (tmp_path / "manifest.json").write_text("{oops")
    with pytest.raises(ManifestError, match="is not valid JSON"):
        load_manifest(str(tmp_path))


def test_resize_matches_the_references_pil_bicubic_on_a_textured_source():
    """The reference resizes with PIL's bicubic filter, which antialiases when it shrinks."""
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:512, 0:768]
    texture = (127 + 60 * np.sin(xx * 1.3)[..., None] * np.cos(yy * 0.9)[..., None]
               + rng.normal(0, 25, (512, 768, 3)))
    source = np.clip(texture, 0, 255).astype(np.uint8)
    for size in (286, 256):
        ours = scale_modes.resize(tf.constant(source), size, size).numpy()
        pil = np.asarray(Image.fromarray(source).resize((size, size), Image.BICUBIC), dtype=np.float64)
        off = np.abs(np.clip(ours, 0, 255) - pil).mean()
        assert off < 1.0, (size, off)  # measured 0.29 of 255; without antialiasing about 20


def test_a_source_already_at_the_size_is_returned_as_the_resize_would_compute_it():
    source = tf.constant(np.random.default_rng(1).integers(0, 256, (286, 286, 3)), tf.uint8)
    resized = tf.image.resize(source, [286, 286], method="bicubic", antialias=True)
    np.testing.assert_array_equal(scale_modes.resize(source, 286, 286), resized)
    assert scale_modes.resize(source, 286, 286).dtype == tf.float32
    assert scale_modes.resize(source, 72, 72).shape == (72, 72, 3)


def test_a_shard_of_the_other_domain_under_a_domains_name_is_named(tiny_records, two_cpus, tmp_path):
    import shutil

    records = str(tmp_path / "records")
    shutil.copytree(tiny_records[0], records)
    manifest = json.loads(open(f"{records}/manifest.json").read())
    swapped = f"{records}/{manifest['splits']['trainA']['shards'][2]['path']}"
    shutil.copy(f"{records}/{manifest['splits']['trainB']['shards'][0]['path']}", swapped)  # valid records, domain B
    with pytest.raises(loop.data.DataError, match=rf"{re.escape(swapped)} holds trainB records.*--overwrite"):
        run(dataclasses.replace(SMALL, data=records, model_dir=str(tmp_path / "model")), two_cpus, steps=3)


def test_a_shard_replaced_or_cut_short_is_refused_before_training(tiny_records, tmp_path):
    import shutil

    records = str(tmp_path / "records")
    shutil.copytree(tiny_records[0], records)
    manifest = json.loads(open(f"{records}/manifest.json").read())
    shards = {name: [f"{records}/{shard['path']}" for shard in manifest["splits"][name]["shards"]]
              for name in ("trainA", "trainB")}
    promised = manifest["splits"]["trainA"]["shards"][2]["bytes"]
    assert promised == os.path.getsize(shards["trainA"][2])
    shutil.copy(shards["trainB"][0], shards["trainA"][2])  # valid records of the other domain
    with open(shards["trainB"][1], "r+b") as f:
        f.truncate(os.path.getsize(shards["trainB"][1]) - 100)
    done = subprocess.run(train_command(records, str(tmp_path / "model"), 50) + ["--dry_run"], cwd=REPO,
                          text=True, capture_output=True, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    (error,) = [line for line in done.stderr.splitlines() if line.strip()]
    assert "2 shard(s) are not the files `cyclegan preprocess` wrote" in error
    now = os.path.getsize(shards["trainA"][2])
    assert f"{shards['trainA'][2]} is {now} bytes, the manifest says {promised}" in error
    assert f"{shards['trainB'][1]} is " in error and "cyclegan preprocess --overwrite" in error
    assert not os.path.exists(tmp_path / "model")


def test_a_damaged_shard_is_named_with_what_to_do(tiny_records, tmp_path):
    import shutil

    records = str(tmp_path / "records")
    shutil.copytree(tiny_records[0], records)
    manifest = json.loads(open(f"{records}/manifest.json").read())
    damaged = f"{records}/{manifest['splits']['trainB']['shards'][1]['path']}"
    with open(damaged, "r+b") as f:  # bytes flipped in place: the size still matches, the checksums do not
        f.seek(os.path.getsize(damaged) // 2)
        f.write(b"\xff" * 100)
    done = subprocess.run(train_command(records, str(tmp_path / "model"), 50), cwd=REPO, text=True,
                          capture_output=True, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and f"{damaged}: " in done.stderr
    assert "a training shard is damaged" in done.stderr and "cyclegan preprocess --overwrite" in done.stderr
