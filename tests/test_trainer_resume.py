"""A run that stops and starts again: exact resume, SIGTERM and Ctrl-C, damaged checkpoints, a full disk,
non-finite losses, saves by the clock, and ram:// model directories."""
import dataclasses
import json
import os
import signal
import subprocess
import uuid

import numpy as np
import pytest
import tensorflow as tf

from preprocessing.flags import UsageError
from tests.helpers import BIN, REPO, gradient, tmpfs
from tests.training import SMALL, run, run_until, train_command
from trainer.run import loop, trained


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


@pytest.mark.slow
def test_sigterm_saves_and_exits_75_and_the_next_start_resumes(tiny_records, tmp_path):
    model_dir = str(tmp_path / "model")
    status, output = run_until(train_command(tiny_records[0], model_dir, 100_000), "step 3/", [signal.SIGTERM])
    assert status == 75, output
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

    paths = trained.export(model_dir, export_dir, say=lambda line: None)
    translate = tf.saved_model.load(paths["a2b"]).signatures["serving_default"]
    image = np.asarray(gradient(37, 21))[None]
    out = translate(images=tf.constant(image))["translated"]
    assert out.dtype == tf.uint8 and out.shape == (1, 21, 37, 3)


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
def test_checkpoint_minutes_saves_by_the_clock_and_each_start_is_logged(tiny_records, two_cpus, tmp_path):
    config = dataclasses.replace(SMALL, data=tiny_records[0], model_dir=str(tmp_path / "run"), keep_checkpoints=10)
    run(config, two_cpus, steps=4, checkpoint_minutes=1e-6)  # due after every step; by step (every 0): the end only
    assert [name for name in sorted(os.listdir(tmp_path / "run" / "checkpoints")) if name.endswith(".index")] == [
        f"ckpt-{step}.index" for step in range(1, 5)]
    run(config, two_cpus, steps=4)  # nothing left to train: not a start of the run
    with open(tmp_path / "run" / "starts.json") as f:
        assert [(start["step"], start["worker"]) for start in json.load(f)] == [(0, 0)]


@pytest.mark.slow
def test_a_best_checkpoint_that_finds_the_disk_full_leaves_nothing_of_itself(tiny_records, tmp_path):
    records, raw = tiny_records
    with tmpfs(tmp_path / "disk", "size=16m") as disk:
        model_dir = str(disk / "model")
        command = train_command(records, model_dir, 3, "--pool_size", "3", "--checkpoint_every", "100",
                                "--eval_every", "2", "--eval_data", raw, "--no-xla_cache")
        subprocess.run([*command[:command.index("--steps") + 1], "1", *command[command.index("--steps") + 2:]],
                       cwd=REPO, check=True, capture_output=True, timeout=300)  # the run's files, before the filler
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        subprocess.run(["fallocate", "-l", str(free - (16 << 10)), str(disk / "filler")], check=True)
        full = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert full.returncode == 1, full.stdout + full.stderr
        (error,) = [line for line in full.stderr.splitlines() if line.strip()]
        assert "could not write the best checkpoint" in error and "removed its partial files" in error, error
        best = os.path.join(model_dir, "checkpoints", "best")
        assert not [entry for entry in (os.listdir(best) if os.path.isdir(best) else []) if "ckpt-2" in entry]
