"""The preprocessing job against other sources: gs:// on a real GCS emulator, and a TFDS dataset on disk."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from pipeline import cli
from preprocessing.flags import JobFailed, UsageError
from preprocessing.schema import parse_example
from tests.helpers import gradient


def bucket_with_messy_raw(name, messy_root, monkeypatch):
    """A bucket on the emulator with the messy dataset under raw/, and Beam set to reach it anonymously."""
    from google.cloud import storage

    from apache_beam.internal.gcp import auth

    root, expect = messy_root
    bucket = storage.Client(project="test-project").create_bucket(name)
    for path in expect:
        bucket.blob("raw/" + os.path.relpath(path, root)).upload_from_filename(path)
    # The emulator needs no credentials. Beam retries google.auth.default() for ~27 s in every process before it
    # connects anonymously; start from that anonymous outcome, in one process, instead of waiting for it.
    monkeypatch.setattr(auth._Credentials, "_credentials_init", True)
    monkeypatch.setattr(auth._Credentials, "_credentials", None)
    return bucket


def test_gs_input_and_output_through_emulator(gcs_emulator, messy_root, tmp_path, monkeypatch):
    _, expect = messy_root
    bucket = bucket_with_messy_raw("cyclegan-test", messy_root, monkeypatch)
    assert cli.main(["--input", "gs://cyclegan-test/raw", "--output", "gs://cyclegan-test/out",
                     "--direct_running_mode=in_memory"]) == 0

    manifest = json.loads(bucket.blob("out/manifest.json").download_as_bytes())
    assert not list(bucket.list_blobs(prefix="out/_staging"))  # the records' staging files are deleted
    entry = manifest["splits"]["trainA"]
    assert entry["written"] == sum(1 for p, (s, _) in expect.items() if "/trainA/" in p and s == "written")
    assert entry["rejected"]["corrupt"] == 1 and entry["duplicates"] == 1 and entry["skipped"]["hidden"] == 2
    reports = bucket.blob("out/rejected.jsonl").download_as_bytes().decode().splitlines()
    assert len(reports) == entry["found"] - entry["written"] + manifest["splits"]["trainB"]["found"] - \
        manifest["splits"]["trainB"]["written"]
    # The shards come back through the Python client and parse with the shared function.
    local = tmp_path / "shard.tfrecord"
    shard = entry["shards"][0]
    bucket.blob("out/" + shard["path"]).download_to_filename(str(local))
    records = list(tf.data.TFRecordDataset(str(local)).map(parse_example))
    assert len(records) == shard["records"]
    assert records[0]["image"].dtype == tf.uint8
    assert records[0]["source_path"].numpy().decode().startswith("gs://cyclegan-test/raw/trainA/")


SEEDS = {"trainA": 0, "trainB": 100, "testA": 200, "testB": 300}


class TinyUnpaired(tfds.core.GeneratorBasedBuilder):
    """A small dataset in the shape of cycle_gan/*, built by TFDS itself."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
            {"image": tfds.features.Image(), "label": tfds.features.ClassLabel(names=["A", "B"])}))

    def _split_generators(self, dl_manager):
        return {name: self._generate_examples(name, n) for name, n in
                (("trainA", 6), ("trainB", 4), ("testA", 2), ("testB", 2))}

    def _generate_examples(self, name, n):
        for i in range(n):
            image = np.asarray(gradient(40 + i, 36, seed=SEEDS[name] + i))
            if name == "trainB" and i == 3:  # a duplicate of image 0 of the same split
                image = np.asarray(gradient(40, 36, seed=SEEDS[name]))
            yield f"{name}-{i}", {"image": image, "label": name[-1]}


def test_tfds_dataset_through_the_same_job(tmp_path):
    data_dir = str(tmp_path / "tfds")
    TinyUnpaired(data_dir=data_dir).download_and_prepare()
    out = str(tmp_path / "out")
    assert cli.main(["--tfds", "tiny_unpaired", "--tfds_data_dir", data_dir, "--output", out]) == 0

    from preprocessing.schema import load_manifest
    manifest = load_manifest(out)
    assert manifest.source["type"] == "tfds"
    counts = {name: (e.found, e.written, e.duplicates) for name, e in manifest.splits.items()}
    assert counts == {"trainA": (6, 6, 0), "trainB": (4, 3, 1), "testA": (2, 2, 0), "testB": (2, 2, 0)}
    paths = [os.path.join(out, s.path) for s in manifest.splits["trainA"].shards]
    records = list(tf.data.TFRecordDataset(paths).map(parse_example))
    assert sorted(int(r["width"]) for r in records) == [40, 41, 42, 43, 44, 45]
    assert all(r["source_path"].numpy().startswith(b"tfds://tiny_unpaired/") for r in records)


def test_dataflow_template_translates_and_stages_on_the_emulator(gcs_emulator, messy_root, monkeypatch, capsys):
    """A template run executes nothing here: it stages the pipeline and our package, says where, and exits 0."""
    import io
    import tarfile

    from tests.helpers import REPO

    bucket = bucket_with_messy_raw("cyclegan-template", messy_root, monkeypatch)
    template = "gs://cyclegan-template/templates/preprocess"
    assert cli.main(["--input", "gs://cyclegan-template/raw", "--output", "gs://cyclegan-template/out",
                     "--runner", "DataflowRunner", "--project", "test-project", "--region", "europe-west4",
                     "--temp_location", "gs://cyclegan-template/tmp", "--template_location", template,
                     "--setup_file", os.path.join(REPO, "setup.py"), "--sdk_location", "container"]) == 0
    assert f"staged a Dataflow template at {template}; nothing ran here" in capsys.readouterr().out

    job = json.loads(bucket.blob("templates/preprocess").download_as_bytes())
    staged = {blob.name.rsplit("/", 1)[-1]: blob for blob in bucket.list_blobs(prefix="tmp/")}
    assert {"pipeline.pb", "workflow.tar.gz"} <= set(staged)
    packages = {p["name"] for pool in job["environment"]["workerPools"] for p in pool["packages"]}
    assert "workflow.tar.gz" in packages
    with tarfile.open(fileobj=io.BytesIO(staged["workflow.tar.gz"].download_as_bytes())) as sdist:
        names = sdist.getnames()
    assert any(name.endswith("pipeline/graph.py") for name in names)
    assert any(name.endswith("preprocessing/schema.py") for name in names)
    assert not list(bucket.list_blobs(prefix="out/"))  # nothing ran, so nothing was written


def _contents(output, bucket=None):
    """{relative name: bytes} of every file under `output` (a local folder, or gs://BUCKET/out)."""
    if bucket is None:
        from pathlib import Path

        root = Path(output)
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    return {b.name[len("out/"):]: b.download_as_bytes() for b in bucket.list_blobs(prefix="out/")}


def _failing_renames(monkeypatch, fail_undo):
    """FileSystems.rename that moves half of the new dataset's files into place, then fails (and, with fail_undo,
    fails every rename back out of the output folder too)."""
    from apache_beam.io.filesystems import FileSystems

    real = FileSystems.rename

    def rename(sources, targets):
        if any("/_staging/dataset/" in s for s in sources) and len(sources) > 1:
            half = len(sources) // 2
            real(sources[:half], targets[:half])
            raise IOError("injected: the storage refused a rename midway")
        if fail_undo and any("/_staging/dataset/" in t and "/_staging/" not in s for s, t in zip(sources, targets)):
            raise IOError("injected: and refused the undo")
        return real(sources, targets)

    monkeypatch.setattr(FileSystems, "rename", staticmethod(rename))


def test_a_publish_that_fails_midway_leaves_one_whole_dataset_locally_and_on_gcs(gcs_emulator, messy_root, tmp_path,
                                                                               monkeypatch, capsys):
    from apache_beam.io.filesystems import FileSystems

    bucket = bucket_with_messy_raw("cyclegan-publish", messy_root, monkeypatch)
    real_rename = FileSystems.rename
    for source, output, in_bucket in ((messy_root[0], str(tmp_path / "out"), None),
                                      ("gs://cyclegan-publish/raw", "gs://cyclegan-publish/out", bucket)):
        job = ["--input", source, "--output", output, "--direct_running_mode=in_memory"]
        assert cli.main([*job, "--num_shards", "2"]) == 0
        before = _contents(output, in_bucket)
        assert "manifest.json" in before and sum(name.endswith(".tfrecord") for name in before) == 6

        for fail_undo in (False, True):
            _failing_renames(monkeypatch, fail_undo)
            with pytest.raises(JobFailed) as failed:
                cli.main([*job, "--num_shards", "1", "--overwrite"])
            monkeypatch.setattr(FileSystems, "rename", real_rename)
            after = {name: data for name, data in _contents(output, in_bucket).items()
                     if not name.startswith("preprocess-failure.log")}
            if fail_undo:  # the old dataset waits, whole, where the error said; the next run puts it back
                assert f"the old dataset is in {output}/_staging/previous" in str(failed.value)
                aside = {name[len("_staging/previous/"):]: data for name, data in after.items()
                         if name.startswith("_staging/previous/")}
                assert aside == before
                with pytest.raises(UsageError, match="already holds a manifest.json"):
                    cli.main(job)  # not --overwrite: the dataset it put back is finished
                assert "put back the dataset that a failed publish had set aside" in capsys.readouterr().out
                after = {name: data for name, data in _contents(output, in_bucket).items()
                         if not name.startswith("preprocess-failure.log")}
            else:
                assert "the dataset that was there is untouched" in str(failed.value)
            assert after == before, (output, fail_undo, sorted(set(after) ^ set(before)))
        assert cli.main([*job, "--num_shards", "1", "--overwrite"]) == 0
        assert sum(name.endswith("-of-00001.tfrecord") for name in _contents(output, in_bucket)) == 3
