"""Training operations: exact resume, SIGTERM, ram:// model directories, TensorBoard, export and translate."""
import dataclasses
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from preprocessing.flags import UsageError
from tests.conftest import BIN, REPO, free_port, gradient, tmpfs
from trainer.config import PRESETS
from trainer.run import loop, trained

SMALL = dataclasses.replace(PRESETS["tiny"], ngf=8, ndf=8, n_blocks=2, batch_size=2, log_every=1, pool_size=3,
                            image_every=0, checkpoint_every=0)


def run(config, strategy, **changes):
    lines = []
    trainer, history = loop.train(dataclasses.replace(config, **changes), strategy=strategy, report=lines.append)
    return trainer, history, lines


@pytest.mark.slow
def test_resumed_run_continues_exactly_as_an_uninterrupted_one(tiny_records, two_cpus, tmp_path):
    config = dataclasses.replace(SMALL, data=tiny_records[0])
    resumed_dir, straight_dir = str(tmp_path / "resumed"), str(tmp_path / "straight")
    run(config, two_cpus, model_dir=resumed_dir, steps=4)
    resumed, resumed_history, lines = run(config, two_cpus, model_dir=resumed_dir, steps=7)
    straight, straight_history, _ = run(config, two_cpus, model_dir=straight_dir, steps=7)

    assert any(line.startswith("resumed from ") and line.endswith("ckpt-4 at step 4") for line in lines)
    assert len(resumed_history) == 3 and resumed_history == straight_history[4:]
    for trainer in (resumed, straight):
        assert int(trainer.step.numpy()) == 7
        assert int(trainer.g_opt.iterations.numpy()) == int(trainer.d_opt.iterations.numpy()) == 7
    assert float(resumed.g_opt.learning_rate) == float(straight.g_opt.learning_rate)
    for domain in "AB":  # 14 draws so far: the pools were full and swapping when the run stopped
        a, b = resumed.pools[domain], straight.pools[domain]
        assert int(a.draws.numpy()) == int(b.draws.numpy()) == 14
        np.testing.assert_array_equal(a.images.numpy(), b.images.numpy())
    for name in resumed.nets:
        for w_resumed, w_straight in zip(resumed.nets[name].weights, straight.nets[name].weights):
            np.testing.assert_array_equal(w_resumed.numpy(), w_straight.numpy(), err_msg=w_straight.path)
    assert loop.weights_fingerprint(resumed.nets) == loop.weights_fingerprint(straight.nets)


@pytest.mark.slow
def test_resume_refuses_another_config_unless_forced(tiny_records, two_cpus, tmp_path):
    config = dataclasses.replace(SMALL, data=tiny_records[0], model_dir=str(tmp_path / "run"))
    run(config, two_cpus, steps=1)
    with pytest.raises(UsageError, match=r"another config or dataset: lr 0\.0002 -> 0\.001.*--force_resume"):
        run(config, two_cpus, steps=2, lr=1e-3)
    _, history, lines = run(config, two_cpus, steps=2, lr=1e-3, force_resume=True, log_every=5)
    (warning,) = [line for line in lines if line.startswith("warning: --model_dir")]
    assert len(history) == 1 and "lr 0.0002 -> 0.001" in warning
    assert "log_every" not in warning  # fields that only say how to run may change freely
    # forcing a run whose networks changed shape: the checkpoints cannot load, and nothing starts over
    with pytest.raises(UsageError, match=r"none of its checkpoints loads .*ckpt-2: The shape of the target "
                                         r"variable.*in a new --model_dir"):
        run(config, two_cpus, steps=3, lr=1e-3, ngf=4, force_resume=True)
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == [
        "checkpoint", "ckpt-1.data-00000-of-00001", "ckpt-1.index", "ckpt-2.data-00000-of-00001", "ckpt-2.index"]


@pytest.mark.slow
def test_a_run_resumes_on_another_number_of_replicas(tiny_records, two_cpus, tmp_path):
    """Spot runs come back on fewer or more GPUs: 2 -> 1 -> 2 replicas. The nets, optimizers, step and pools carry
    over; the saved input position is of another batch size, so the input restarts from the step."""
    from trainer.run.strategy import mirrored

    one_cpu = mirrored(["CPU:0"])
    config = dataclasses.replace(SMALL, data=tiny_records[0], model_dir=str(tmp_path / "run"))
    run(config, two_cpus, steps=2)
    for strategy, steps in ((one_cpu, 4), (two_cpus, 6)):
        trainer, history, lines = run(config, strategy, steps=steps)
        assert f"resumed from {tmp_path}/run/checkpoints/ckpt-{steps - 2} at step {steps - 2}" in "\n".join(lines)
        assert f"the input order restarts at step {steps - 2}, reseeded from it" in "\n".join(lines)
        assert len(history) == 2 and int(trainer.step.numpy()) == steps
        assert all(np.isfinite(value) for losses in history for value in losses.values())
    _, _, lines = run(config, two_cpus, steps=7)  # the same replicas again: the saved position fits
    assert not any("input order restarts" in line for line in lines)


def train_command(records, model_dir, steps, *extra):
    return [sys.executable, "-m", "trainer", "--preset", "tiny", "--ngf", "4", "--ndf", "4", "--n_blocks", "1",
            "--batch_size", "1", "--steps", str(steps), "--log_every", "1", "--checkpoint_every", "1000",
            "--image_every", "0", "--data", records, "--model_dir", model_dir, *extra]


@pytest.mark.slow
def test_sigterm_saves_and_exits_75_and_the_next_start_resumes(tiny_records, tmp_path):
    model_dir = str(tmp_path / "model")
    proc = subprocess.Popen(train_command(tiny_records[0], model_dir, 100_000), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    output = []
    for line in proc.stdout:
        output.append(line)
        if line.startswith("step 3/"):
            proc.send_signal(signal.SIGTERM)
            break
    output.append(proc.communicate(timeout=300)[0])
    output = "".join(output)
    assert proc.returncode == 75, output
    stopped = int(output.split("stopped by SIGTERM after step ")[1].split(";")[0])
    assert stopped >= 3 and os.path.exists(f"{model_dir}/checkpoints/ckpt-{stopped}.index")
    # A crash while writing the next checkpoint leaves files that the manager's state file does not list.
    for suffix in (".index", ".data-00000-of-00001"):
        with open(f"{model_dir}/checkpoints/ckpt-{stopped + 50}{suffix}", "wb") as f:
            f.write(b"half written")

    resumed = subprocess.run(train_command(tiny_records[0], model_dir, stopped + 2), cwd=REPO, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    assert resumed.returncode == 0, resumed.stdout
    assert f"ckpt-{stopped} at step {stopped}" in resumed.stdout
    assert f"skipped checkpoint {model_dir}/checkpoints/ckpt-{stopped + 50}" in resumed.stdout
    assert f"step {stopped + 1}/{stopped + 2}" in resumed.stdout and f"step {stopped}/" not in resumed.stdout
    assert os.path.exists(f"{model_dir}/checkpoints/ckpt-{stopped + 2}.index")


@pytest.mark.slow
def test_whole_flow_on_the_ram_filesystem(tiny_records, two_cpus):
    model_dir, export_dir = f"ram://{uuid.uuid4().hex}/model", f"ram://{uuid.uuid4().hex}/export"
    config = dataclasses.replace(SMALL, data=tiny_records[0], model_dir=model_dir, checkpoint_every=1,
                                 keep_checkpoints=2, image_every=2, log_every=2)
    run(config, two_cpus, steps=3)
    _, history, lines = run(config, two_cpus, steps=4)
    assert len(history) == 1 and any(line.endswith("ckpt-3 at step 3") for line in lines)
    kept = sorted(tf.io.gfile.glob(f"{model_dir}/checkpoints/ckpt-*.index"))
    assert kept == [f"{model_dir}/checkpoints/ckpt-3.index", f"{model_dir}/checkpoints/ckpt-4.index"]
    assert tf.io.gfile.glob(f"{model_dir}/logs/events.out.tfevents.*")
    assert json.loads(tf.io.gfile.GFile(f"{model_dir}/run.json").read())["config"]["ngf"] == 8

    paths = trained.export(model_dir, export_dir, report=lambda line: None)
    translate = tf.saved_model.load(paths["a2b"]).signatures["serving_default"]
    image = np.asarray(gradient(37, 21))[None]
    out = translate(images=tf.constant(image))["images"]
    assert out.dtype == tf.uint8 and out.shape == (1, 21, 37, 3)


@pytest.fixture(scope="module")
def trained_run(tiny_records, two_cpus, tmp_path_factory):
    """A short local run with scalars, images and a profiler trace in its logs, and its export."""
    base = tmp_path_factory.mktemp("trained")
    config = dataclasses.replace(SMALL, data=tiny_records[0], model_dir=str(base / "model"), steps=4, log_every=2,
                                 image_every=2, profile_start=2, profile_steps=1)
    run(config, two_cpus)
    trained.export(config.model_dir, str(base / "export"), report=lambda line: None)
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
                           str(inputs), "--output", str(out), "--max_megapixels", "0.05"], cwd=str(tmp_path),
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

    proc = subprocess.Popen([*command, "--overwrite"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (out / "00.png").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    match = re.search(r"stopped by SIGTERM after (\d+) of 60 images; those are whole in .*--resume", err)
    assert proc.returncode == 75 and match, err
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
def test_resume_and_export_fall_back_to_the_newest_checkpoint_that_loads(tiny_records, tmp_path):
    model_dir = tmp_path / "model"
    folder = model_dir / "checkpoints"

    def train(steps):
        return subprocess.run(train_command(tiny_records[0], str(model_dir), steps, "--checkpoint_every", "2"),
                              cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)

    def export_run():
        return subprocess.run([os.path.join(BIN, "cyclegan"), "export", "--model_dir", str(model_dir), "--output",
                               str(tmp_path / "export")], text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=300)

    assert train(4).returncode == 0
    (folder / "ckpt-4.index").unlink()  # the newest checkpoint is damaged
    resumed = train(6)
    assert resumed.returncode == 0, resumed.stdout
    assert "skipped checkpoint" in resumed.stdout and "ckpt-4: it does not load" in resumed.stdout
    assert f"resumed from {folder}/ckpt-2 at step 2" in resumed.stdout
    assert "step 3/6" in resumed.stdout and "step 1/6" not in resumed.stdout
    # the damaged one is out of the rotation (which would delete ckpt-2 before it), kept aside, not deleted
    assert f"moved {folder}/ckpt-4, which does not load, to {folder}/damaged/" in resumed.stdout
    assert os.listdir(folder / "damaged") == ["ckpt-4.data-00000-of-00001"]
    with open(folder / "checkpoint") as f:
        assert [line.split('"')[1] for line in f if line.startswith("all_model_checkpoint_paths")] == [
            "ckpt-2", "ckpt-4", "ckpt-6"]

    (folder / "ckpt-6.data-00000-of-00001").write_bytes(b"")  # truncated by a full disk
    exported = export_run()
    assert exported.returncode == 0, exported.stdout
    assert "skipped checkpoint" in exported.stdout and f"from {folder}/ckpt-4 (step 4)" in exported.stdout

    for index in folder.glob("*.index"):
        index.unlink()
    before = sorted(os.listdir(folder))
    for refused in (train(8), export_run()):
        assert refused.returncode == 2, refused.stdout
        assert "none of its checkpoints loads" in refused.stdout and "Traceback" not in refused.stdout
    assert sorted(os.listdir(folder)) == before  # nothing started over, nothing written or deleted


def run_until(command, line_start, signals):
    """Start `command`, send each of `signals` once a line starts with `line_start`; (status, output)."""
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = []
    for line in proc.stdout:
        output.append(line)
        if line.startswith(line_start):
            for signum in signals:
                proc.send_signal(signum)
                time.sleep(0.05)
            break
    output.append(proc.communicate(timeout=300)[0])
    return proc.returncode, "".join(output)


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
def test_ctrl_c_saves_and_exits_130_and_a_second_ctrl_c_aborts(tiny_records, tmp_path):
    model_dir = str(tmp_path / "model")
    status, output = run_until(train_command(tiny_records[0], model_dir, 100_000), "step 3/", [signal.SIGINT])
    assert status == 130, output
    stopped = int(output.split("stopped by SIGINT after step ")[1].split(";")[0])
    assert os.path.exists(f"{model_dir}/checkpoints/ckpt-{stopped}.index") and "Traceback" not in output

    status, output = run_until(train_command(tiny_records[0], model_dir, 100_000), f"step {stopped + 2}/",
                               [signal.SIGINT, signal.SIGINT])
    assert status == 130 and "interrupted" in output and "Traceback" not in output, output
    assert f"resumed from {model_dir}/checkpoints/ckpt-{stopped}" in output
    assert sorted(os.listdir(f"{model_dir}/checkpoints")) == [  # aborted: nothing more was saved
        "checkpoint", f"ckpt-{stopped}.data-00000-of-00001", f"ckpt-{stopped}.index"]


@pytest.mark.slow
def test_a_full_disk_leaves_no_partial_checkpoint_and_the_last_one_intact(tiny_records, tmp_path):
    with tmpfs(tmp_path / "disk", "size=16m") as disk:
        model_dir = str(disk / "model")

        def train(steps):
            return subprocess.run(train_command(tiny_records[0], model_dir, steps, "--pool_size", "3",
                                                "--checkpoint_every", "2"),
                                  cwd=REPO, capture_output=True, text=True, timeout=300)

        assert train(2).returncode == 0
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        subprocess.run(["fallocate", "-l", str(free - (512 << 10)), str(disk / "filler")], check=True)

        full = train(4)
        assert full.returncode == 1, full.stdout + full.stderr
        (error,) = [line for line in full.stderr.splitlines() if line.strip()]
        assert error.startswith("python -m trainer: error: could not write checkpoint") and "No space left" in error
        assert f"{model_dir}/checkpoints/ckpt-2, is intact" in error
        assert sorted(os.listdir(f"{model_dir}/checkpoints")) == [
            "checkpoint", "ckpt-2.data-00000-of-00001", "ckpt-2.index"]
        (disk / "filler").unlink()
        resumed = train(3)
        assert resumed.returncode == 0 and f"{model_dir}/checkpoints/ckpt-2 at step 2" in resumed.stdout


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


@pytest.mark.slow
def test_a_diverged_run_stops_at_its_first_non_finite_loss_without_saving_it(tiny_records, tmp_path):
    """--lr 1e30: the run stops at the first step whose losses are not finite, with exit 1 and one line, and no
    checkpoint of that step or later pushes the good ones out of the rotation."""
    model_dir = str(tmp_path / "model")
    done = subprocess.run(train_command(tiny_records[0], model_dir, 20, "--lr", "1e30", "--checkpoint_every", "1",
                                        "--keep_checkpoints", "2"),
                          cwd=REPO, text=True, capture_output=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    (error,) = [line for line in done.stderr.splitlines() if line.strip()]
    step = int(error.split("error: step ")[1].split(":")[0])
    assert "are not finite" in error and "Traceback" not in done.stderr and 1 < step < 20
    saved = sorted(int(name[5:-6]) for name in os.listdir(f"{model_dir}/checkpoints") if name.endswith(".index"))
    assert saved and max(saved) == step - 1
    assert error.endswith(f"the newest checkpoint is {model_dir}/checkpoints/ckpt-{step - 1}")
    assert f"step {step}/" not in done.stdout  # its losses were never reported as progress


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


@pytest.mark.slow
def test_checkpoint_minutes_saves_by_the_clock_and_each_start_is_logged(tiny_records, two_cpus, tmp_path):
    config = dataclasses.replace(SMALL, data=tiny_records[0], model_dir=str(tmp_path / "run"), keep_checkpoints=10)
    run(config, two_cpus, steps=4, checkpoint_minutes=1e-6)  # due after every step; by step (every 0): the end only
    assert [name for name in sorted(os.listdir(tmp_path / "run" / "checkpoints")) if name.endswith(".index")] == [
        f"ckpt-{step}.index" for step in range(1, 5)]
    run(config, two_cpus, steps=4)  # nothing left to train: not a start of the run
    with open(tmp_path / "run" / "starts.json") as f:
        assert [(start["step"], start["worker"]) for start in json.load(f)] == [(0, 0)]
