"""The Beam preprocessing job, run for real on Beam's local runner (multi-processing mode unless stated)."""
import collections
import glob
import io
import json
import os
import signal

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from pipeline import cli, graph, staging
from preprocessing import images
from preprocessing.flags import UsageError
from preprocessing.schema import load_manifest, parse_example
from tests.helpers import REPO, gradient, start, stop, tmpfs, wait_for


def run_job(*args):
    assert cli.main(list(args)) == 0


def read_records(root, manifest, name):
    paths = [os.path.join(root, s.path) for s in manifest.splits[name].shards]
    return [{k: (v.numpy() if hasattr(v, "numpy") else v) for k, v in r.items()}
            for r in tf.data.TFRecordDataset(paths).map(parse_example)]


@pytest.fixture(scope="module")
def messy_run(messy_root, tmp_path_factory):
    root, expect = messy_root
    out = str(tmp_path_factory.mktemp("records"))
    run_job("--input", root, "--output", out)
    return root, expect, out, load_manifest(out)


def test_every_file_is_written_or_reported(messy_run):
    root, expect, out, manifest = messy_run
    entry = manifest.splits["trainA"]
    assert entry.found == entry.written + sum(entry.rejected.values()) + entry.duplicates + sum(
        entry.skipped.values())
    wanted = collections.Counter(status for path, (status, _) in expect.items() if "/trainA/" in path)
    assert entry.found == sum(wanted.values())
    assert entry.written == wanted["written"] and entry.duplicates == wanted["duplicate"]
    assert entry.rejected == dict(collections.Counter(
        reason for path, (status, reason) in expect.items() if "/trainA/" in path and status == "rejected"))
    assert entry.skipped == {"hidden": 2, "not_image_extension": 1}
    assert set(manifest.splits) == {"trainA", "trainB", "testA"}

    with open(os.path.join(out, "rejected.jsonl")) as f:
        reports = {r["path"]: r for r in map(json.loads, f)}
    written = {p for p, (status, _) in expect.items() if status == "written"}
    assert set(reports) == set(expect) - written
    for path, report in reports.items():
        assert (report["status"], report["reason"]) == expect[path], path
    duplicate = reports[os.path.join(root, "trainA", "plain_copy.jpg")]
    assert duplicate["duplicate_of"] == os.path.join(root, "trainA", "plain.jpg")


def test_records_parse_to_rgb_at_stored_size(messy_run):
    root, expect, out, manifest = messy_run
    records = read_records(out, manifest, "trainA")
    assert len(records) == manifest.splits["trainA"].written
    by_name = {os.path.relpath(r["source_path"].decode(), os.path.join(root, "trainA")): r for r in records}
    for record in records:
        image = record["image"]
        assert image.dtype == np.uint8 and image.shape == (record["height"], record["width"], 3)
        assert record["split"] == b"train" and record["domain"] == b"A" and record["format"] == b"jpeg"
        assert min(image.shape[:2]) <= 286
    assert by_name["nested/deeper/big.png"]["image"].shape == (286, 429, 3)  # 600x400 -> shorter side 286
    assert by_name["big.jpg"]["image"].shape == (286, 381, 3)  # a large JPEG, decoded at reduced DCT scale
    assert by_name["rotated.jpg"]["image"].shape == (60, 40, 3)  # EXIF orientation applied
    alpha = by_name["alpha.png"]["image"].astype(int)
    assert (alpha[20, 35] > 240).all()  # transparent red composited on white
    assert alpha[20, 5, 2] > 200 and alpha[20, 5, 0] < 40  # opaque blue stays blue


def test_shards_are_balanced_and_at_least_the_minimum(messy_run):
    _, _, out, manifest = messy_run
    for name, entry in manifest.splits.items():
        counts = [s.records for s in entry.shards]
        assert sum(counts) == entry.written
        assert max(counts) - min(counts) <= 1 and min(counts) >= 1
        wanted = min(entry.written, 16 if name.startswith("train") else 1)
        assert len(counts) == wanted
        for shard in entry.shards:
            assert os.path.getsize(os.path.join(out, shard.path)) == shard.bytes
            assert shard.path.endswith(f"-of-{len(counts):05d}.tfrecord")
    assert sorted(os.listdir(out)) == ["manifest.json", "rejected.jsonl", "test", "train"]  # staging removed


def test_staged_records_read_back_in_any_order_across_windows(tmp_path):
    rng = np.random.default_rng(0)
    records = [rng.bytes(int(n)) for n in rng.integers(0, 3000, 2 * staging.READ_WINDOW + 7)]
    first, second, unused = (staging.StagingFile(str(tmp_path)) for _ in range(3))
    refs = [(first if i % 3 else second).append(r) for i, r in enumerate(records)]
    first.close(), second.close(), unused.close()
    assert len(os.listdir(tmp_path)) == 2  # a bundle that staged nothing leaves no file
    order = rng.permutation(len(records))
    assert list(staging.read_records(refs[i] for i in order)) == [records[i] for i in order]


def test_staging_is_removed_when_the_job_fails(messy_root, tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    staged_when_failing = []

    def fail(self, element):
        staged_when_failing.extend(os.listdir(staging.staging_dir(out)))
        raise RuntimeError("disk full")

    monkeypatch.setattr(graph.WriteShards, "process", fail)  # in-memory mode: the runner is this process
    with pytest.raises(Exception, match="disk full"):
        cli.main(["--input", messy_root[0], "--output", out, "--direct_running_mode=in_memory"])
    assert staged_when_failing and not os.path.exists(staging.staging_dir(out))


def test_output_is_deterministic_across_runner_modes(messy_run, tmp_path):
    root, _, out, manifest = messy_run
    single = str(tmp_path / "single")
    run_job("--input", root, "--output", single, "--direct_running_mode=in_memory", "--direct_num_workers=1")
    again = load_manifest(single)
    assert again.fingerprint == manifest.fingerprint
    for path in glob.glob(os.path.join(out, "*", "*.tfrecord")):
        with open(path, "rb") as a, open(os.path.join(single, os.path.relpath(path, out)), "rb") as b:
            assert a.read() == b.read(), path


def test_explicit_globs_png_and_shard_flag(messy_root, tmp_path):
    root, _ = messy_root
    out = str(tmp_path / "out")
    run_job("--input", root, "--output", out)
    run_job("--overwrite", "--glob", f"trainB={root}/trainB/*.png", "--output", out, "--image_format", "png",
            "--num_shards", "2", "--max_size", "40")
    manifest = load_manifest(out)
    assert list(manifest.splits) == ["trainB"] and len(manifest.splits["trainB"].shards) == 2
    # --overwrite removed the first run's shards: only the two new ones are left
    assert sorted(os.path.relpath(p, out) for p in glob.glob(os.path.join(out, "*", "*.tfrecord"))) == [
        "train/B-00000-of-00002.tfrecord", "train/B-00001-of-00002.tfrecord"]
    for record in read_records(out, manifest, "trainB"):
        assert record["format"] == b"png" and min(record["image"].shape[:2]) == 40


def test_usage_errors_name_the_flag(messy_root, tmp_path, messy_run):
    root, _ = messy_root
    with pytest.raises(UsageError, match="--output is required"):
        cli.main(["--input", root])
    with pytest.raises(UsageError, match="--max_sise"):
        cli.main(["--input", root, "--output", str(tmp_path), "--max_sise", "3"])
    with pytest.raises(UsageError, match="already holds a manifest.json"):
        cli.main(["--input", root, "--output", messy_run[2]])
    with pytest.raises(UsageError, match="no trainA/ trainB/ testA/ testB/"):
        cli.main(["--input", str(tmp_path), "--output", str(tmp_path / "o")])
    with pytest.raises(UsageError, match="--glob: 'trainC' is not one of"):
        cli.main(["--glob", "trainC=x", "--output", str(tmp_path / "o")])
    with pytest.raises(UsageError, match="--min_train_shards 0: must be at least 1"):
        cli.main(["--input", root, "--output", str(tmp_path / "o"), "--min_train_shards", "0"])
    with pytest.raises(UsageError, match="exactly one of"):
        cli.main(["--input", root, "--tfds", "x", "--output", str(tmp_path / "o")])


def _encode(img, fmt):
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def _pixels(stored):
    return np.asarray(Image.open(io.BytesIO(stored.encoded)))


def test_prepare_image_converts_modes():
    options = images.ImageOptions(image_format="png")
    sixteen = Image.fromarray(np.full((40, 40), 65535, np.uint16))
    pixels = _pixels(images.prepare_image(_encode(sixteen, "TIFF"), options))
    assert pixels.shape == (40, 40, 3) and (pixels == 255).all()  # scaled down, not clipped
    transparent = Image.new("LA", (40, 40), (0, 0))
    assert (_pixels(images.prepare_image(_encode(transparent, "PNG"), options)) == 255).all()
    with pytest.raises(images.Rejected) as err:
        images.prepare_image(_encode(Image.new("RGB", (2000, 2000)), "PNG"), images.ImageOptions(max_pixels=10**6))
    assert err.value.reason == images.TOO_LARGE


def test_an_image_the_stored_format_cannot_hold_is_rejected_and_the_job_goes_on(tmp_path):
    root, out = tmp_path / "raw", str(tmp_path / "out")
    for domain in ("trainA", "trainB"):
        (root / domain).mkdir(parents=True)
        for i in range(3):
            gradient(48, 40, seed=i).save(root / domain / f"{i}.png")
    wide = Image.new("RGB", (70000, 32), (200, 30, 30))  # 2.2 megapixels, but wider than JPEG can store
    wide.save(root / "trainA" / "panorama.png")
    run_job("--input", str(root), "--output", out)
    with open(os.path.join(out, "rejected.jsonl")) as f:
        (report,) = [json.loads(line) for line in f]
    assert report["path"].endswith("trainA/panorama.png") and report["reason"] == images.TOO_LARGE
    assert report["detail"].startswith("70000x32 after shrinking: JPEG stores at most 65500 px a side")
    assert load_manifest(out).written("trainA") == 3
    kept = images.prepare_image((root / "trainA" / "panorama.png").read_bytes(),
                                images.ImageOptions(image_format="png"))
    assert (kept.width, kept.height) == (70000, 32)


def test_example_encoder_matches_tensorflow_byte_for_byte():
    from preprocessing.schema import make_example

    fields = dict(encoded=bytes(range(256)) * 700, image_format="jpeg", height=286, width=2**40 + 3, domain="B",
                  split="test", source_path="gs://bucket/ü/x.jpg", sha256="ab" * 32)

    def feature(value):
        if isinstance(value, int):
            return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value if isinstance(value, bytes)
                                                                     else value.encode()]))

    names = {"encoded": "image/encoded", "image_format": "image/format", "sha256": "image/sha256"}
    expected = tf.train.Example(features=tf.train.Features(feature={
        names.get(k, f"image/{k}"): feature(v) for k, v in fields.items()})).SerializeToString(deterministic=True)
    assert make_example(**fields) == expected


def test_folder_names_are_paths_not_patterns(tmp_path):
    """--input 'ds[1]' reads ds[1], not its neighbour ds1; an --output with [ works too."""
    for name, count in (("ds[1]", 2), ("ds1", 3)):
        for i in range(count):
            path = tmp_path / name / "trainA" / f"img{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            gradient(40 + i, 40, seed=len(name) + i).save(path)
    out = tmp_path / "out[2]*"
    run_job("--input", str(tmp_path / "ds[1]"), "--output", str(out))
    manifest = load_manifest(str(out))
    assert manifest.splits["trainA"].found == manifest.splits["trainA"].written == 2
    sources = {r["source_path"].decode() for r in read_records(str(out), manifest, "trainA")}
    assert sources == {str(tmp_path / "ds[1]" / "trainA" / f"img{i}.png") for i in range(2)}
    assert not os.path.exists(out / "_staging") and os.path.exists(out / "rejected.jsonl")


def test_links_fifos_and_unreadable_folders_are_reported_never_dropped(tmp_path):
    """Everything under the input is counted: a symlinked folder is read once, a link cycle, a broken link, a FIFO
    and a folder the job may not list are reported with a reason."""
    import subprocess
    import sys

    base = str(tmp_path)
    root, elsewhere = os.path.join(base, "raw"), os.path.join(base, "elsewhere")
    train_a = os.path.join(root, "trainA")
    for folder, name, seed in ((train_a, "plain.png", 0), (elsewhere, "linked.png", 1),
                               (os.path.join(train_a, "locked"), "never_listed.png", 2)):
        os.makedirs(folder, exist_ok=True)
        gradient(40, 40, seed).save(os.path.join(folder, name))
    os.symlink(elsewhere, os.path.join(train_a, "via_link"))
    os.symlink(train_a, os.path.join(train_a, "loop"))  # a cycle back to trainA itself
    os.symlink(os.path.join(base, "gone.png"), os.path.join(train_a, "broken.png"))
    os.mkfifo(os.path.join(train_a, "pipe.jpg"))  # reading it would block forever
    os.chmod(os.path.join(train_a, "locked"), 0o000)
    out = os.path.join(base, "out")
    done = subprocess.run([sys.executable, "-m", "pipeline", "--input", root, "--output", out], cwd=REPO,
                          text=True, capture_output=True, timeout=300, preexec_fn=without_root_file_access)
    assert done.returncode == 0, done.stderr
    manifest = load_manifest(out)
    entry = manifest.splits["trainA"]
    assert (entry.found, entry.written) == (6, 2)
    assert entry.rejected == {"broken_link": 1, "unreadable_folder": 1}
    assert entry.skipped == {"folder_listed_already": 1, "not_a_regular_file": 1}
    with open(os.path.join(out, "rejected.jsonl")) as f:
        reports = {os.path.relpath(r["path"], train_a): r["reason"] for r in map(json.loads, f)}
    assert reports == {"broken.png": "broken_link", "locked": "unreadable_folder",
                       "loop": "folder_listed_already", "pipe.jpg": "not_a_regular_file"}
    sources = {r["source_path"].decode() for r in read_records(out, manifest, "trainA")}
    assert sources == {os.path.join(train_a, "plain.png"), os.path.join(train_a, "via_link", "linked.png")}
    os.chmod(os.path.join(train_a, "locked"), 0o755)


def without_root_file_access():
    """In a child before it execs: root (CI runs as root) loses the capabilities that let it read any folder."""
    if os.geteuid() == 0:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, dropped from the bounding set
            if libc.prctl(24, capability, 0, 0, 0):  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_a_link_that_reaches_other_domains_is_reported_not_read_as_this_one(tmp_path):
    root, out = tmp_path / "raw", str(tmp_path / "out")
    for domain, count in (("trainA", 1), ("trainB", 2)):
        (root / domain).mkdir(parents=True)
        for i in range(count):
            gradient(40, 40, seed=10 * len(domain) + i + count).save(root / domain / f"{i}.png")
    (root / "trainA" / "up").symlink_to("..")  # the dataset root: trainB's images under trainA's name
    (root / "trainA" / "beside").symlink_to(root / "trainB")
    run_job("--input", str(root), "--output", out)
    manifest = load_manifest(out)
    assert (manifest.splits["trainA"].written, manifest.splits["trainB"].written) == (1, 2)
    assert manifest.splits["trainA"].skipped == {"link_across_domains": 2}
    with open(os.path.join(out, "rejected.jsonl")) as f:
        reports = {os.path.basename(r["path"]): r for r in map(json.loads, f)}
    assert reports["up"]["reason"] == "link_across_domains" and "holds this domain's folder" in reports["up"]["detail"]
    assert "another split and domain of this dataset" in reports["beside"]["detail"]


@pytest.mark.slow
def test_overwrite_and_reruns_leave_only_the_new_runs_files(messy_root, tmp_path, capsys):
    root, _ = messy_root
    out = tmp_path / "out"
    run_job("--input", root, "--output", str(out), "--num_shards", "3")
    manifest_path = out / "manifest.json"
    manifest_path.write_bytes(manifest_path.read_bytes()[:200])  # a run killed while writing it (before the fix)
    (out / "_staging").mkdir()
    (out / "_staging" / "left.records").write_bytes(b"x")
    (out / "beam-temp-rejected.jsonl-1234").mkdir()
    (out / "beam-temp-rejected.jsonl-1234" / "part").write_bytes(b"x")
    (out / "notes.txt").write_text("the user's own file")
    (out / "draft.partial").write_text("also the user's own")
    (out / "manifest.json.partial").write_text("half of a manifest")
    run_job("--input", root, "--output", str(out), "--num_shards", "2", "--overwrite")
    assert "removed what the previous run wrote (--overwrite)" in capsys.readouterr().out
    shards = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.tfrecord"))
    assert shards and all(name.endswith("-of-00002.tfrecord") for name in shards)
    assert sorted(p.name for p in out.iterdir()) == ["draft.partial", "manifest.json", "notes.txt", "rejected.jsonl",
                                                     "test", "train"]

    manifest_path.unlink()  # a run stopped before its manifest: no --overwrite needed, its leftovers go
    run_job("--input", root, "--output", str(out), "--num_shards", "1")
    assert "unfinished run stopped in this folder" in capsys.readouterr().out
    assert all(p.name.endswith("-of-00001.tfrecord") for p in out.rglob("*.tfrecord"))
    assert [p.name for p in out.rglob("*.partial")] == ["draft.partial"]


@pytest.mark.slow
def test_unusable_output_runner_options_and_empty_datasets_fail_clearly(tmp_path):
    import subprocess
    import sys

    raw = tmp_path / "raw"
    for split_domain in ("trainA", "trainB"):
        (raw / split_domain).mkdir(parents=True)
    gradient(40, 40).save(raw / "trainA" / "a.png")
    (raw / "trainB" / "b.png").write_text("not an image")
    (tmp_path / "a_file").write_text("")
    with pytest.raises(UsageError, match="a_file/out: cannot write there"):
        cli.main(["--input", str(raw), "--output", str(tmp_path / "a_file" / "out")])
    with pytest.raises(UsageError, match="DataflowRunner needs --project, --region, --temp_location"):
        cli.main(["--input", str(raw), "--output", str(tmp_path / "o"), "--runner", "DataflowRunner"])
    with pytest.raises(UsageError, match="gs://bucket/out\\[1\\]: Beam's filesystems read"):
        cli.main(["--input", str(raw), "--output", "gs://bucket/out[1]"])

    def preprocess(root, out):
        return subprocess.run([sys.executable, "-m", "pipeline", "--input", str(root), "--output", str(out)],
                              cwd=REPO, text=True, capture_output=True, timeout=300)

    partly = preprocess(raw, tmp_path / "partly")
    assert partly.returncode == 0 and "warning: trainB: no image was written (found 1 files)" in partly.stderr
    (raw / "trainA" / "a.png").write_text("not an image either")
    nothing = preprocess(raw, tmp_path / "nothing")
    assert nothing.returncode == 1 and "error: not one image was written" in nothing.stderr, nothing.stderr


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_ends_the_job_promptly_and_cleanly(tmp_path, signum):
    import subprocess
    import sys
    import time

    import psutil

    from pipeline import synth

    raw, out = str(tmp_path / "raw"), tmp_path / "out"
    synth.write(raw, synth.SynthConfig(train=300, test=2, size=300))
    proc = start([sys.executable, "-m", "pipeline", "--input", raw, "--output", str(out)], stderr=subprocess.PIPE)
    wait_for((out / "_staging").exists, proc, timeout=120)  # the workers are preparing images
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert workers and (out / "_staging").exists()
    stopped = time.monotonic()
    status, _, stderr = stop(proc, signum, timeout=60)
    assert time.monotonic() - stopped < 20 and status == 128 + signum, stderr
    assert f"stopped by {signal.Signals(signum).name}" in stderr and "Traceback" not in stderr
    assert not (out / "_staging").exists() and not (out / "manifest.json").exists()
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.slow
def test_overwrite_keeps_the_old_dataset_until_the_new_one_is_whole_and_one_job_holds_the_folder(tmp_path):
    import socket
    import subprocess
    import sys

    from pipeline import synth

    raw, small, out = str(tmp_path / "raw"), str(tmp_path / "small"), tmp_path / "out"
    synth.write(raw, synth.SynthConfig(train=1000, test=2, size=300))  # long enough to be stopped midway
    synth.write(small, synth.SynthConfig(train=6, test=2, size=64))
    run_job("--input", small, "--output", str(out))

    def contents():
        return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    before = contents()
    proc = start([sys.executable, "-m", "pipeline", "--input", raw, "--output", str(out), "--overwrite"],
                 stderr=subprocess.PIPE)
    wait_for((out / "_staging").exists, proc, timeout=120)  # the workers are preparing images
    assert load_manifest(str(out)).written("trainA") == 6  # the old dataset, readable while the new one is made
    second = subprocess.run([sys.executable, "-m", "pipeline", "--input", small, "--output", str(out),
                             "--overwrite"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr
    assert (f"--output {out} is in use by another run ({socket.gethostname()} pid {proc.pid}, since "
            in second.stderr)
    assert "two jobs would write each other's shards" in second.stderr
    assert proc.poll() is None, proc.communicate()
    status, _, stderr = stop(proc, signal.SIGTERM, timeout=60)
    assert status == 128 + signal.SIGTERM, stderr
    assert contents() == before  # stopped before its dataset was whole: the old one is all there, no lease left

    (out / "lease.json").write_bytes(b"")  # a launcher that died while writing its lease locks nobody out
    run_job("--input", small, "--output", str(out), "--overwrite", "--num_shards", "1")
    assert all(name.endswith("-of-00001.tfrecord") for name in contents() if name.endswith(".tfrecord"))
    assert "lease.json" not in contents()


@pytest.mark.slow
def test_a_full_disk_ends_the_job_with_one_line_and_no_staging_files(messy_root, tmp_path):
    """Beam's logged errors, one per attempt, are held back, its worker processes print no traceback, and the
    job's exception is one line."""
    import subprocess
    import sys

    with tmpfs(tmp_path / "disk", "size=64k") as disk:
        done = subprocess.run([sys.executable, "-m", "pipeline", "--input", messy_root[0], "--output",
                               str(disk / "out")], cwd=REPO, capture_output=True, text=True, timeout=300)
        assert done.returncode == 1, done.stderr
        assert f"--output {disk}/out: no space left on device while writing the records" in done.stderr
        assert "ERROR:apache_beam" not in done.stderr and not (disk / "out" / "_staging").exists()
        assert "Traceback" not in done.stderr, done.stderr


@pytest.mark.slow
def test_a_failure_without_a_name_is_one_line_with_its_cause_and_step_and_a_log_of_the_rest(tmp_path):
    import subprocess
    import sys

    from pipeline import synth

    raw, out = str(tmp_path / "raw"), tmp_path / "out"
    synth.write(raw, synth.SynthConfig(train=4, test=2, size=48))
    (out / "train" / "A-00000-of-00001.tfrecord").mkdir(parents=True)  # a folder where a shard goes
    (out / "train" / "A-00000-of-00001.tfrecord" / "notes").write_text("the user's")
    done = subprocess.run([sys.executable, "-m", "pipeline", "--input", raw, "--output", str(out), "--num_shards",
                           "1"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("python -m pipeline: error: the step 'Publish' failed: ") and "IsADirectoryError" in line
    assert f"the full tracebacks are in {out}/preprocess-failure.log" in line
    log = (out / "preprocess-failure.log").read_text()
    assert "Traceback (most recent call last)" in log and "IsADirectoryError" in log
    assert (out / "train" / "A-00000-of-00001.tfrecord" / "notes").read_text() == "the user's"
    assert not (out / "_staging").exists()


def test_worker_tracebacks_are_held_and_shown_only_for_a_failure_without_a_name():
    """A child process's traceback on the inherited stderr is kept back; other lines pass at once; `replay` (a
    failure we cannot name) shows what was kept."""
    import subprocess
    import sys

    script = """
import os, sys
from pipeline import failure
with failure.beam_errors_held() as held:
    os.system("printf 'Traceback (most recent call last):\\\\n  File w\\\\nOSError: [Errno 28] No space\\\\n\\\\n' >&2")
    print("worker: 12 images/s", file=sys.stderr, flush=True)
    if sys.argv[1] == "replay":
        held.replay()
"""
    for mode, shown in (("drop", False), ("replay", True)):
        done = subprocess.run([sys.executable, "-c", script, mode], cwd=REPO, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        assert "worker: 12 images/s" in done.stderr
        assert ("Traceback (most recent call last):\n  File w\nOSError: [Errno 28] No space" in done.stderr) == shown
