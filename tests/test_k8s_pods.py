"""The rendered pods run: each Job's containers executed verbatim, one network namespace per pod, under a Job
controller that follows the manifest's own podFailurePolicy, backoffLimit and successPolicy (tests/podrunner.py).

Where podman can run, each pod runs from its image (built by k8s/images.sh) in a real container, with the pod's
user, volumes and memory limit; elsewhere its command runs from this checkout (process mode). Needs root (network
namespaces, a bridge, mounts), as CI has; elsewhere these tests skip and say so.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

from k8s.cli import parse_submit
from k8s.render import render
from preprocessing.schema import load_manifest
from tests.helpers import BIN, REPO

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("ip")),
    reason="running pods in network namespaces needs root and util-linux's unshare and iproute2's ip (CI has them)")

TINY = ["--preset", "tiny", "--gpus", "0", "--cpu", "1", "--namespace", "default"]
SMALL_RUN = ["--ngf", "4", "--ndf", "4", "--n_blocks", "1", "--batch_size", "1", "--log_every", "1",
             "--checkpoint_every", "4", "--image_every", "0"]


@pytest.fixture(scope="session")
def pods_in(built_images):
    """{role: image name} where podman can run the images (built once): the pods run in containers; {} where it
    cannot: they run as processes."""
    return {} if isinstance(built_images, str) else built_images


def rendered(images, kind, *flags, extra=(), role="trainer"):
    """The objects `submit` renders, for `images` (process mode runs this checkout, so any image name will do)."""
    config, more, _ = parse_submit(kind, ["--image", images.get(role, "localhost/unused:process-mode"), *flags])
    return render(config, [*more, *extra])[1]


def run_pods(objects, tmp_path, kill=None, timeout=420, images=None, shared=()):
    """The Job's pods under tests/podrunner.py; in container mode `shared` folders are mounted into every pod (and
    opened to its user, as a bucket would be)."""
    workdir = tmp_path / "pods"
    workdir.mkdir(exist_ok=True)
    for folder in shared:
        subprocess.run(["chmod", "-R", "a+rwX", str(folder)], check=True)
    spec, result = tmp_path / "spec.json", tmp_path / "result.json"
    spec.write_text(json.dumps({"objects": objects, "workdir": str(workdir), "kill": kill, "timeout": timeout,
                                "path": f"{BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                "containers": bool(images), "shared": [str(f) for f in shared]}))
    from tests.containers import ENV

    done = subprocess.run(["unshare", "--mount", "--net", "--fork", "--", sys.executable, "-m", "tests.podrunner",
                           str(spec), str(result)], cwd=REPO, capture_output=True, text=True, timeout=timeout + 60,
                          env=ENV)
    assert done.returncode == 0, done.stderr
    outcome = json.loads(result.read_text())
    logs = {path.name: path.read_text(errors="replace") for path in sorted(workdir.glob("*.log"))}
    return outcome, logs


def written_by(images):
    """The owner of what the pods write: the pod's user (securityContext) in a container, root otherwise."""
    from k8s.config import UID

    return UID if images else 0


def exits(outcome):
    return [(e["index"], e["exit"], e["action"]) for e in outcome["events"] if "exit" in e]


@pytest.mark.slow
def test_two_node_job_trains_and_a_killed_worker_brings_the_group_back_from_a_checkpoint(tiny_records, tmp_path,
                                                                                         pods_in):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    model_dir = str(model_dir)
    objects = rendered(pods_in, "train", "--name", "pair", "--nodes", "2", "--data", tiny_records[0],
                       "--model_dir", model_dir, "--peer_timeout", "60", *TINY, extra=[*SMALL_RUN, "--steps", "60"])
    assert [o["kind"] for o in objects] == ["Job", "Service", "PodDisruptionBudget"]
    outcome, logs = run_pods(objects, tmp_path, kill={"index": 1, "after_log": "step 6/", "signal": 9},
                             images=pods_in, shared=[tiny_records[0], model_dir])
    assert outcome["status"] == "Complete", (outcome, logs)
    first = exits(outcome)
    # worker 1 killed (137: counted, replaced); worker 0 lost its peer and exited 75 (ignored, replaced)
    assert (1, 137, "Count") in first and (0, 75, "Ignore") in first, (first, logs)
    assert (0, 0, "Succeeded") in first  # and the successPolicy's index 0 ended the Job
    assert "MultiWorkerMirroredStrategy with 2 replica(s)" in logs["pair-0-attempt0.log"]
    assert "lost a peer worker during step" in logs["pair-0-attempt0.log"]
    chief_final = logs[f"pair-0-attempt{max(e['attempt'] for e in outcome['events'] if e['index'] == 0)}.log"]
    assert f"resumed from {model_dir}/checkpoints/ckpt-" in chief_final and "step 60/60" in chief_final
    assert "step 1/60" not in chief_final  # it did not start over
    assert os.stat(f"{model_dir}/checkpoints/checkpoint").st_uid == written_by(pods_in)


@pytest.mark.slow
def test_one_node_job_resumes_after_sigterm_and_a_usage_error_fails_it_at_once(tiny_records, tmp_path, pods_in):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    model_dir = str(model_dir)
    objects = rendered(pods_in, "train", "--name", "solo", "--data", tiny_records[0], "--model_dir", model_dir,
                       *TINY, extra=[*SMALL_RUN, "--steps", "150"])
    outcome, logs = run_pods(objects, tmp_path, kill={"index": 0, "after_log": "step 6/", "signal": 15},
                             images=pods_in, shared=[tiny_records[0], model_dir])
    assert outcome["status"] == "Complete", (outcome, logs)
    assert exits(outcome) == [(0, 75, "Ignore"), (0, 0, "Succeeded")], logs
    assert "stopped by SIGTERM after step" in logs["solo-0-attempt0.log"]
    assert f"resumed from {model_dir}/checkpoints/ckpt-" in logs["solo-0-attempt1.log"]
    assert "step 150/150" in logs["solo-0-attempt1.log"]
    assert os.stat(f"{model_dir}/checkpoints/checkpoint").st_uid == written_by(pods_in)

    broken = rendered(pods_in, "train", "--name", "typo", "--data", tiny_records[0],
                      "--model_dir", str(tmp_path / "m2"), *TINY, extra=["--stepz", "3"])
    (tmp_path / "typo").mkdir()
    outcome, logs = run_pods(broken, tmp_path / "typo", images=pods_in, shared=[tiny_records[0]])
    assert outcome["status"] == "Failed" and exits(outcome) == [(0, 2, "FailJob")], logs


def test_preprocessing_job_runs_and_a_killed_pod_is_replaced_and_finishes(tiny_records, tmp_path, pods_in):
    _, raw = tiny_records
    out = tmp_path / "records"
    out.mkdir()
    objects = rendered(pods_in, "preprocess", "--name", "records", "--input", raw, "--output", str(out), "--cpu", "2",
                       "--namespace", "default", role="beam")
    outcome, logs = run_pods(objects, tmp_path, kill={"index": 0, "after_log": "preprocess: found", "signal": 9},
                             images=pods_in, shared=[raw, out])
    assert outcome["status"] == "Complete", (outcome, logs)
    assert exits(outcome) == [(0, 137, "Count"), (0, 0, "Succeeded")], logs
    manifest = load_manifest(str(out))
    assert manifest.splits["trainA"].written == 12 and not (out / "_staging").exists()
    assert (out / "manifest.json").stat().st_uid == written_by(pods_in)
