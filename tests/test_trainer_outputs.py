"""What a trained run gives: TensorBoard's view of it, its export, translate and evaluate, each in a fresh
process, and what they refuse or survive."""
import dataclasses
import glob
import json
import os
import re
import signal
import subprocess
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from tests.helpers import BIN, free_port, gradient, start, stop, tmpfs, wait_for
from tests.training import SMALL, run, run_until
from trainer.run import loop, trained


@pytest.fixture(scope="module")
def trained_run(tiny_records, two_cpus, tmp_path_factory):
    """A short local run with scalars, images and a profiler trace in its logs, and its export."""
    base = tmp_path_factory.mktemp("trained")
    config = dataclasses.replace(SMALL, data=tiny_records[0], model_dir=str(base / "model"), steps=4, log_every=2,
                                 image_every=2, profile_start=2, profile_steps=1)
    run(config, two_cpus)
    trained.export(config.model_dir, str(base / "export"), say=lambda line: None)
    return str(base / "model"), str(base / "export")


def get_json(url, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.mark.slow
def test_tensorboard_server_serves_the_runs_scalars_and_images(trained_run):
    model_dir, _ = trained_run
    assert glob.glob(f"{model_dir}/logs/plugins/profile/*/*.xplane.pb")  # the profiler's trace of step 2
    port = free_port()
    server = subprocess.Popen([os.path.join(BIN, "tensorboard"), "--logdir", f"{model_dir}/logs", "--host",
                               "127.0.0.1", "--port", str(port), "--load_fast", "false", "--reload_interval", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}/data/plugin"
        deadline = time.monotonic() + 60
        while True:
            scalars, images = get_json(f"{base}/scalars/tags"), get_json(f"{base}/images/tags")
            if scalars.get(".") and images.get(".") or time.monotonic() > deadline:
                break
            time.sleep(1)
    finally:
        server.terminate()
        server.wait(timeout=30)
    expected = {f"loss/{name}" for name in loop.LOSS_ORDER} | {
        "learning_rate/generators", "learning_rate/discriminators", "perf/pairs_per_second",
        "perf/step_time_seconds", "perf/input_wait_seconds"}
    assert expected <= set(scalars["."])
    assert set(images["."]) == {"held_out/A_GA_FGA_B_FB_GFB"}


@pytest.mark.slow
def test_exported_model_translates_in_a_fresh_process(trained_run, tmp_path):
    _, export_dir = trained_run
    inputs = tmp_path / "in"
    (inputs / "nested").mkdir(parents=True)
    gradient(53, 30).save(inputs / "wide.png")
    gradient(20, 41).save(inputs / "nested" / "tall.jpg", quality=95)
    (inputs / "broken.png").write_bytes(b"not an image")
    gradient(1, 1).save(inputs / "dot.png")
    os.mkfifo(inputs / "pipe.jpg")  # opening it would block forever
    gradient(300, 200).save(inputs / "huge.png")  # 0.06 megapixels, above the limit given below
    out = tmp_path / "out"
    done = subprocess.run([os.path.join(BIN, "cyclegan"), "translate", "--model", f"{export_dir}/a2b", "--input",
                           str(inputs), "--output", str(out), "--max_megapixels", "0.05", "--native"],
                          cwd=str(tmp_path),
                          text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    assert done.returncode == 0, done.stdout
    assert "translated 2 of 6 images" in done.stdout and "broken.png" in done.stdout
    with Image.open(out / "wide.png") as wide, Image.open(out / "nested" / "tall.jpg") as tall:
        assert (wide.size, wide.format, tall.size, tall.format) == ((53, 30), "PNG", (20, 41), "JPEG")
        assert np.asarray(wide).std() > 0
    errors = {os.path.basename(e["path"]): e["reason"] for e in map(json.loads, (out / "translate_errors.jsonl")
                                                                       .read_text().splitlines())}
    assert sorted(errors) == ["broken.png", "dot.png", "huge.png", "pipe.jpg"]
    assert errors["huge.png"].startswith("too_large: 300x200 is 0.06 megapixels, above --max_megapixels 0.05")
    assert errors["broken.png"].startswith("not_an_image") and errors["pipe.jpg"].startswith("not_a_regular_file")
    assert errors["dot.png"] == "too_small: 1x1 px; the model translates images of at least 4x4"


@pytest.mark.slow
def test_translate_never_overwrites_its_inputs_and_skips_its_own_output(trained_run, tmp_path):
    _, export_dir = trained_run
    photos = tmp_path / "photos"
    photos.mkdir()
    gradient(24, 20).save(photos / "a.png")
    gradient(20, 24, seed=1).save(photos / "b.jpg", quality=95)
    originals = {p.name: p.read_bytes() for p in photos.iterdir()}

    def translate(source, target):
        return subprocess.run([os.path.join(BIN, "cyclegan"), "translate", "--model", f"{export_dir}/a2b", "--input",
                               str(source), "--output", str(target)], cwd=str(tmp_path), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)

    for source, target in ((photos, photos), (photos / "a.png", photos), (photos / "*.png", f"{photos}/./")):
        refused = translate(source, target)
        assert refused.returncode == 2 and "would overwrite" in refused.stdout, refused.stdout
        assert "Traceback" not in refused.stdout
        assert {p.name: p.read_bytes() for p in photos.iterdir()} == originals

    for _ in range(2):  # the second run must not translate the first run's translations
        done = translate(photos, photos / "translated")
        assert done.returncode == 0 and "translated 2 of 2 images" in done.stdout, done.stdout
    assert sorted(p.relative_to(photos).as_posix() for p in photos.rglob("*") if p.is_file()) == [
        "a.png", "b.jpg", "translated/a.png", "translated/b.jpg"]


def test_translate_replaces_only_its_own_files_and_a_stopped_run_resumes(trained_run, tmp_path):
    _, export_dir = trained_run
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    for i in range(60):
        gradient(160, 128, seed=i).save(photos / f"{i:02d}.png")
    out.mkdir()
    (out / "05.png").write_bytes(b"the user's own file")
    command = [os.path.join(BIN, "cyclegan"), "translate", "--model", f"{export_dir}/a2b", "--input", str(photos),
               "--output", str(out)]

    refused = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert (f"--output {out} already holds 1 file(s) that this command did not write under the names it would "
            f"write, e.g. {out}/05.png; pass --overwrite") in refused.stderr
    assert (out / "05.png").read_bytes() == b"the user's own file"

    proc = start([*command, "--overwrite"], stderr=subprocess.PIPE)
    wait_for((out / "00.png").exists, proc, timeout=300)
    status, _, err = stop(proc, signal.SIGTERM, timeout=120)
    match = re.search(r"stopped by SIGTERM after (\d+) of 60 images; those are whole in .*--resume", err)
    assert status == 75 and match, err
    stopped_after = int(match.group(1))
    assert 0 < stopped_after < 60
    assert len([p for p in out.iterdir() if p.suffix == ".png"]) in (stopped_after, stopped_after + 1)  # + the user's

    resumed = subprocess.run([*command, "--resume", "--overwrite"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert (f"translated {60 - stopped_after} of {60 - stopped_after} images into {out}" in resumed.stdout
            and f"{stopped_after} translated by an earlier run were kept (--resume)" in resumed.stdout), resumed.stdout
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".png") == [f"{i:02d}.png" for i in range(60)]
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)  # every file there is its own now
    assert again.returncode == 0 and "translated 60 of 60 images" in again.stdout, again.stderr


@pytest.mark.slow
def test_an_export_stopped_midway_leaves_the_previous_one_and_the_next_replaces_it_whole(trained_run, tmp_path):
    import shutil

    model_dir, earlier = trained_run
    out = tmp_path / "export"
    shutil.copytree(earlier, out)
    (out / "from-the-earlier-export").write_text("")
    command = [os.path.join(BIN, "cyclegan"), "export", "--model_dir", model_dir, "--output", str(out)]
    status, output = run_until(command, "export: G_AB (a2b) written", [signal.SIGTERM])
    assert status == -signal.SIGTERM, output
    assert sorted(os.listdir(out)) == ["a2b", "b2a", "export.json", "from-the-earlier-export"]  # untouched
    done = subprocess.run(command, text=True, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    # the new one, whole; a file of the user's beside it is left alone
    assert sorted(os.listdir(out)) == ["a2b", "b2a", "export.json", "from-the-earlier-export"]
    assert not os.path.exists(f"{out}.partial")
    assert json.loads((out / "export.json").read_text())["step"] == json.loads(
        open(f"{earlier}/export.json").read())["step"]


@pytest.mark.slow
def test_export_takes_a_checkpoints_file_name_and_refuses_another_runs_weights_in_one_line(trained_run, tmp_path):
    import shutil

    model_dir, _ = trained_run
    other = tmp_path / "other"
    shutil.copytree(model_dir, other)
    record = json.loads((other / "run.json").read_text())
    record["config"]["ngf"] *= 2
    (other / "run.json").write_text(json.dumps(record))

    def export(*args):
        return subprocess.run([os.path.join(BIN, "cyclegan"), "export", "--output", str(tmp_path / "export"), *args],
                              capture_output=True, text=True, timeout=300)

    done = export("--model_dir", model_dir, "--checkpoint", f"{model_dir}/checkpoints/ckpt-4.index")
    assert done.returncode == 0, done.stderr
    assert f"export: from {model_dir}/checkpoints/ckpt-4 (step 4)" in done.stdout
    for checkpoint, why in ((f"{other}/checkpoints/ckpt-4", "its run trained another config"),
                            (f"{tmp_path}/loose/ckpt-4", "has no run record beside it")):
        refused = export("--model_dir", model_dir, "--checkpoint", checkpoint)
        assert refused.returncode == 2, refused.stderr
        assert f"--checkpoint {checkpoint} is not in --model_dir {model_dir} and {why}" in refused.stderr
    mismatched = export("--model_dir", str(other), "--checkpoint", f"{other}/checkpoints/ckpt-4.data-00000-of-00001")
    assert mismatched.returncode == 2 and "Traceback" not in mismatched.stderr, mismatched.stderr
    (line,) = mismatched.stderr.splitlines()  # no variable values: one line of at most a few hundred characters
    assert f"--checkpoint {other}/checkpoints/ckpt-4: cannot restore the networks from it (" in line
    assert len(line) < 600


@pytest.mark.slow
def test_evaluate_names_a_truth_of_another_size_and_refuses_bad_weights_or_outputs_in_one_line(trained_run, tmp_path):
    import keras

    from pipeline import synth

    model_dir, export_dir = trained_run
    root = tmp_path / "data"
    synth.write(str(root), synth.SynthConfig(train=1, test=3, size=40, seed=2))
    odd = sorted((root / "testA_truth").iterdir())[0]
    width, height = Image.open(odd).size
    Image.open(odd).resize((width + 4, height)).save(odd)

    def evaluate(*args, output=tmp_path / "eval"):
        return subprocess.run([os.path.join(BIN, "cyclegan"), "evaluate", "--model", export_dir, "--data", str(root),
                               "--output", str(output), *args], capture_output=True, text=True, timeout=300)

    done = evaluate()
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["ground_truth_images"] == 2
    assert report["ground_truth_size_mismatches"] == [f"{odd} is {width + 4}x{height}, its test A image "
                                                      f"{width}x{height}"]
    assert f"(ground truth: {root}/testA_truth/ holds the truth of 2 of the 3 test A images at their size (1 of " \
           "another size" in done.stdout

    (tmp_path / "garbage.weights.h5").write_bytes(b"not HDF5 at all" * 100)
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    other.save_weights(str(tmp_path / "other.weights.h5"))
    for name in ("garbage.weights.h5", "other.weights.h5", "missing.weights.h5"):
        refused = evaluate("--inception_weights", str(tmp_path / name), output=tmp_path / name.split(".")[0])
        assert refused.returncode == 2, refused.stderr
        (line,) = refused.stderr.splitlines()
        assert line.startswith(f"cyclegan evaluate: error: --inception_weights {tmp_path / name}: "), line
        assert not (tmp_path / name.split(".")[0] / "a2b").exists()  # refused before any translation
    with tmpfs(tmp_path / "locked", "ro,size=1m") as locked:
        for command in (["evaluate", "--model", export_dir, "--data", str(root)], ["export", "--model_dir", model_dir]):
            refused = subprocess.run([os.path.join(BIN, "cyclegan"), *command, "--output", str(locked / "out")],
                                     capture_output=True, text=True, timeout=300)
            assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
            assert f"--output {locked}/out: cannot write there" in refused.stderr


@pytest.mark.slow
def test_translate_onto_a_full_disk_stops_with_one_line_and_leaves_only_whole_images(trained_run, tmp_path):
    _, export_dir = trained_run
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(30):  # noise PNGs of about 12 KB each: 360 KB, beyond the disk's 128 KB
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
            photos / f"{i:02d}.png")
    with tmpfs(tmp_path / "disk", "size=128k") as disk:
        done = subprocess.run([os.path.join(BIN, "cyclegan"), "translate", "--model", f"{export_dir}/a2b", "--input",
                               str(photos), "--output", str(disk / "out")], text=True, capture_output=True,
                              timeout=300)
        assert done.returncode == 1, done.stdout + done.stderr
        (error,) = [line for line in done.stderr.splitlines() if "error" in line]
        assert "Traceback" not in done.stderr and "no space left after" in error and "of 30 images" in error
        written = int(error.split("no space left after ")[1].split()[0])
        files = sorted((disk / "out").iterdir())
        assert 0 < written < 30 and len(files) == written  # no empty, partial or temporary file beside them
        for path in files:
            assert Image.open(path).size == (64, 64)
