"""Train, resume, export and translate with a model directory, an export and an output on gs://, through
TensorFlow's own GCS client (tests/gcs_netns.py): its listings name folders with a trailing slash, which ram://
does not. Translate reads the export's export.json beside the gs:// model for its test-time scale; the best
checkpoint and its best.json are written there and read back by `export --checkpoint best` and `compare`."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import BIN, REPO, gradient

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("unshare", "ip", "mount", "openssl")),
    reason="TensorFlow's gs:// client reaches the emulator only in namespaces of its own: needs root, util-linux's "
           "unshare and mount, iproute2's ip and openssl (CI has them)")


@pytest.mark.slow
def test_train_resume_export_and_translate_on_gs(tiny_records, tmp_path):
    photos = tmp_path / "photos"
    (photos / "nested").mkdir(parents=True)
    gradient(40, 32).save(photos / "a.png")
    gradient(36, 44, seed=1).save(photos / "nested" / "b.jpg", quality=95)
    cyclegan, run = os.path.join(BIN, "cyclegan"), "gs://bucket/runs/h2z"
    train = [cyclegan, "train", "--preset", "tiny", "--ngf", "4", "--ndf", "4", "--n_blocks", "1", "--batch_size",
             "1", "--data", tiny_records[0], "--model_dir", run, "--log_every", "1", "--image_every", "0",
             "--eval_every", "2", "--eval_data", tiny_records[1]]
    spec = {"bucket": "bucket", "commands": [
        [*train, "--steps", "2"],
        [*train, "--steps", "3"],
        [cyclegan, "export", "--model_dir", run, "--output", "gs://bucket/export"],
        [cyclegan, "export", "--model_dir", run, "--output", "gs://bucket/export"],  # replaces the first one
        [cyclegan, "translate", "--model", "gs://bucket/export/a2b", "--input", str(photos), "--output",
         "gs://bucket/translated"],
        [cyclegan, "translate", "--model", "gs://bucket/export/a2b", "--input", str(photos), "--output",
         "gs://bucket/translated"],  # its own files: replaced without --overwrite
        [sys.executable, "-c", "import tensorflow as tf; print('size', *tf.io.decode_png(tf.io.read_file("
                               "'gs://bucket/translated/a.png')).shape[:2])"],
        [cyclegan, "export", "--model_dir", run, "--checkpoint", "best", "--output", "gs://bucket/best"],
        [cyclegan, "compare", run],
    ]}
    with open(tmp_path / "spec.json", "w") as f:
        json.dump(spec, f)
    subprocess.run(["unshare", "--mount", "--net", "--fork", "--", sys.executable, "-m", "tests.gcs_netns",
                    str(tmp_path / "spec.json"), str(tmp_path / "result.json")], cwd=REPO, check=True, timeout=1500)
    with open(tmp_path / "result.json") as f:
        result = json.load(f)
    for done in result["results"]:
        assert done["returncode"] == 0, done
    assert len(result["results"]) == len(spec["commands"])
    first, resumed, _, export, translated, again, size, best, compared = result["results"]
    assert "step 2/2" in first["stdout"] and f"resumed from {run}/checkpoints/ckpt-2 at step 2" in resumed["stdout"]
    assert f"export: from {run}/checkpoints/ckpt-3 (step 3)" in export["stdout"]
    assert "translated 2 of 2 images into gs://bucket/translated" in translated["stdout"]
    # export.json read beside the gs:// model: the tiny preset's test-time square, the output at the input's size
    assert "--preprocess resize_and_crop --load_size 72 --crop_size 64 (export.json)" in translated["stdout"]
    assert "size 32 40" in size["stdout"]
    # the best checkpoint and best.json written to gs:// beside the rotation, read back by export and compare
    assert all("best checkpoint: ground_truth_mae" in done["stdout"] for done in (first, best))
    header, row = compared["stdout"].splitlines()[:2]
    assert "best ground_truth_mae" in header and row.startswith(run) and " @ " in row
    assert "translated 2 of 2 images" in again["stdout"]
    objects = result["objects"]
    assert {"export/export.json", "export/a2b/saved_model.pb", "export/b2a/saved_model.pb", "best/export.json",
            "runs/h2z/checkpoints/best/best.json",
            "translated/a.png", "translated/nested/b.jpg", "runs/h2z/run.json"} <= set(objects)
    assert any(name.startswith("export/a2b/variables/variables.data-") for name in objects)
    assert not [name for name in objects if "//" in name or ".partial" in name or name.endswith("lease.json")]
