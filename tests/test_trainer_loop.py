"""The training loop end to end: a short run that learns, and two real worker processes in lock step."""
import dataclasses
import json
import os
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO, free_port, start, stop
from trainer.config import PRESETS
from trainer.run import loop


@pytest.mark.slow
def test_short_run_lowers_the_cycle_loss(tiny_records, two_cpus, tmp_path):
    records, _ = tiny_records
    config = dataclasses.replace(PRESETS["tiny"], ngf=8, ndf=8, n_blocks=2, batch_size=2, data=records,
                                 model_dir=str(tmp_path / "model"), steps=40, log_every=20)
    lines = []
    trainer, history = loop.train(config, strategy=two_cpus, say=lines.append)
    assert len(history) == 40 and trainer.global_batch == 4

    def cycle(steps):
        return sum(s["cycle_A"] + s["cycle_B"] for s in steps) / len(steps)

    assert cycle(history[-5:]) < 0.8 * cycle(history[:5])
    assert any(line.startswith("step 20/40 epoch ") and "pairs/s | ETA " in line for line in lines)
    first = next(line for line in lines if line.startswith("step "))  # the run is up: said before --log_every steps
    assert re.match(r"step 1/40 epoch 1 \| first step done \d+\.\d s after the process started \| G_AB_gan ", first)
    assert "MirroredStrategy with 2 replica(s), global batch 4, 3 steps per epoch, 40 steps" in lines[0]
    assert os.path.exists(tmp_path / "model" / "checkpoints" / "ckpt-40.index")


@pytest.mark.slow
def test_two_worker_processes_end_with_identical_weights(tiny_records, two_cpus, tmp_path):
    records, raw = tiny_records
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    workers = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "trainer", "--preset", "tiny", "--ngf", "4", "--ndf", "4", "--n_blocks", "1",
             "--batch_size", "1", "--steps", "3", "--log_every", "1", "--data", records,
             "--model_dir", str(tmp_path / "model"), "--eval_every", "2", "--eval_data", raw],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = []
    for worker in workers:
        out, _ = worker.communicate(timeout=600)
        assert worker.returncode == 0, out
        outputs.append(out)
    for out in outputs:
        assert "MultiWorkerMirroredStrategy with 2 replica(s), global batch 2" in out
        assert "step 3/3" in out
    fingerprints = [next(line for line in out.splitlines() if line.startswith("weights sha256")) for out in outputs]
    assert fingerprints[0] == fingerprints[1]
    assert "checkpoint " in outputs[0] and "checkpoint " not in outputs[1]  # only the chief writes
    # the chief evaluates; both workers save its best (one all-reduce of its verdict), into the chief's directory
    assert "best checkpoint: ground_truth_mae" in outputs[0] and "eval at step" not in outputs[1]
    record = json.loads((tmp_path / "model" / "checkpoints" / "best" / "best.json").read_text())
    assert record["metric"] == "ground_truth_mae" and record["step"] in (2, 3)

    # 2 workers -> 1: several workers save no input position, so the one worker's input restarts from the step
    config = dataclasses.replace(PRESETS["tiny"], ngf=4, ndf=4, n_blocks=1, batch_size=1, steps=5, log_every=1,
                                 data=records, model_dir=str(tmp_path / "model"))
    lines = []
    _, history = loop.train(config, strategy=two_cpus, say=lines.append)
    assert f"resumed from {tmp_path}/model/checkpoints/ckpt-3 at step 3" in lines
    assert "the input order restarts at step 3, reseeded from it" in "\n".join(lines) and len(history) == 2


@pytest.mark.slow
def test_a_killed_worker_makes_its_peer_exit_75_and_the_restarted_pair_resumes(tiny_records, tmp_path):
    """With an Indexed Job only the dead worker's pod is replaced: the live one must not wait in a collective
    forever, but exit 75 so that both restart from the newest checkpoint."""
    import re
    import signal
    import time

    records, _ = tiny_records
    model_dir = str(tmp_path / "model")

    def start(index, cluster, stdout):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        return subprocess.Popen(
            [sys.executable, "-m", "trainer", "--preset", "tiny", "--ngf", "4", "--ndf", "4", "--n_blocks", "1",
             "--batch_size", "1", "--steps", "24", "--log_every", "1", "--checkpoint_every", "4", "--image_every",
             "0", "--peer_timeout", "60", "--data", records, "--model_dir", model_dir],
            cwd=REPO, env=env, stdout=stdout, stderr=subprocess.STDOUT, text=True)

    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    with open(tmp_path / "worker1.log", "w") as log:
        chief, other = start(0, cluster, subprocess.PIPE), start(1, cluster, log)
        output = []
        for line in chief.stdout:
            output.append(line)
            if line.startswith("step 10/"):
                other.send_signal(signal.SIGKILL)
                killed = time.monotonic()
                break
        output.append(chief.communicate(timeout=120)[0])
        other.wait()
    output = "".join(output)
    assert chief.returncode == 75 and time.monotonic() - killed < 60, output
    assert "lost a peer worker during step" in output and "Traceback" not in output
    assert not re.search(r"^[IWE]\d{4} |^Additional GRPC", output, re.M), output  # TensorFlow's C++ log lines

    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    with open(tmp_path / "worker1-again.log", "w") as log:
        chief, other = start(0, cluster, subprocess.PIPE), start(1, cluster, log)
        resumed = chief.communicate(timeout=600)[0]
        assert other.wait(timeout=120) == 0 and chief.returncode == 0, resumed
    (saved,) = re.findall(rf"resumed from {re.escape(model_dir)}/checkpoints/ckpt-(\d+) at step \1", resumed)
    saved = int(saved)  # the newest checkpoint before the kill: step 8 (or 12, had the pair got that far)
    assert saved >= 8 and f"step {saved + 1}/24" in resumed and f"step {saved}/24" not in resumed
    assert "step 24/24" in resumed


@pytest.mark.slow
def test_compiled_functions_are_kept_for_the_next_start_and_a_damaged_one_is_compiled_again(tiny_records,
                                                                                            tmp_path):
    import re
    import shutil

    from trainer.run.compile_cache import whole_entry

    records, _ = tiny_records

    def train(model_dir, *flags):
        done = subprocess.run([sys.executable, "-m", "trainer", "--preset", "tiny", "--ngf", "4", "--ndf", "4",
                               "--n_blocks", "1", "--steps", "2", "--xla", "on", "--data", records, "--model_dir",
                               str(model_dir), *flags], cwd=REPO, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    first = train(tmp_path / "a")
    kept = sorted(os.listdir(tmp_path / "a" / "xla_cache"))
    # one replica: the whole step is one compiled function, named for this device
    assert len(kept) == 1 and re.fullmatch(r"xla_[0-9a-f]{16}__\d+__\d+__XLA_CPU_JIT\.pb", kept[0])
    assert "XLA: kept 1 compiled function(s)" in first

    # a new start on a copy loads it; one on a copy with the entry cut short compiles it again and replaces it;
    # each computes exactly what the first start did
    for copy in ("b", "c"):
        shutil.copytree(tmp_path / "a" / "xla_cache", tmp_path / copy / "xla_cache")
    loaded = train(tmp_path / "b")
    assert "XLA: 1 compiled function(s) from" in loaded and "XLA: kept" not in loaded
    damaged = tmp_path / "c" / "xla_cache" / kept[0]
    damaged.write_bytes(damaged.read_bytes()[:5000])
    second = train(tmp_path / "c")
    assert f"XLA: skipped {damaged}: not a whole compiled function" in second
    assert "compiled function(s) from" not in second and "XLA: kept 1 compiled function(s)" in second
    assert whole_entry(damaged.read_bytes()) and not whole_entry(damaged.read_bytes()[:-1])

    def weights(out):
        return next(line for line in out.splitlines() if line.startswith("weights sha256"))

    assert weights(loaded) == weights(second) == weights(first)
    assert weights(train(tmp_path / "d", "--no-xla_cache")) == weights(first)
    assert not os.path.exists(tmp_path / "d" / "xla_cache")


def test_the_collective_is_nccl_between_gpus_and_the_ring_between_cpus():
    import tensorflow as tf

    from preprocessing.flags import UsageError
    from trainer.run.strategy import communication

    impl = tf.distribute.experimental.CommunicationImplementation
    table = {("auto", True): impl.NCCL, ("auto", False): impl.RING, ("nccl", True): impl.NCCL,
             ("ring", True): impl.RING, ("ring", False): impl.RING}
    for (collective, gpus), expected in table.items():
        options = communication(collective, gpus, 1 << 20)
        assert (options.implementation, options.bytes_per_pack) == (expected, 1 << 20), (collective, gpus)
    with pytest.raises(UsageError, match="--collective nccl: this worker has no GPU"):
        communication("nccl", False, 0)


def test_a_restart_loop_is_refused_at_the_budget_and_progress_resets_it():
    import uuid

    from trainer.run import restarts

    model_dir = f"ram://starts-{uuid.uuid4().hex}"
    restarts.record(model_dir, 0, 0, limit=5)
    for _ in range(5):  # the first start at step 40, and four restarts that got no further
        restarts.record(model_dir, 40, 0, limit=5)
    with pytest.raises(restarts.NoProgress, match=r"the last 5 starts all resumed from step 40 .*starts\.json"):
        restarts.record(model_dir, 40, 1, limit=5)  # the sixth start at one step
    log = restarts.read(model_dir)
    assert [s["step"] for s in log] == [0] + [40] * 6 and log[-1]["refused"] and log[-1]["worker"] == 1
    restarts.record(model_dir, 40, 0, limit=0)  # 0: no limit, for the one start after the cause is fixed
    restarts.record(model_dir, 60, 0, limit=1)  # progress: the count starts again
    restarts.record(model_dir, 60, 0, limit=2)
    with pytest.raises(restarts.NoProgress, match="the last 2 starts all resumed from step 60"):
        restarts.record(model_dir, 60, 0, limit=2)


@pytest.mark.slow
def test_a_worker_whose_peer_never_starts_gives_up_and_answers_sigterm_while_waiting(tiny_records, tmp_path):
    """A replacement pod whose peer cannot come back must not hold its node for TensorFlow's hour."""
    import signal
    import time

    peer = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": {"worker": [f"127.0.0.1:{free_port()}", peer]},
                                                  "task": {"type": "worker", "index": 0}})}
    command = [sys.executable, "-m", "trainer", "--preset", "tiny", "--steps", "1", "--data", tiny_records[0],
               "--model_dir", str(tmp_path / "model")]
    began = time.monotonic()
    alone = subprocess.run([*command, "--startup_timeout", "8"], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=120)
    assert alone.returncode == 3 and time.monotonic() - began < 8 + 30, alone.stderr
    assert f"1 worker(s) did not join within --startup_timeout 8 s: worker 1 ({peer})" in alone.stderr
    assert "Traceback" not in alone.stderr + alone.stdout

    # --first_start_timeout bounds the run's first gang-up only (no run.json yet), with exit 7 (final on a cluster)
    first = subprocess.run([*command, "--first_start_timeout", "4", "--startup_timeout", "600"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=120)
    assert first.returncode == 7, first.stderr
    assert f"did not join within --first_start_timeout 4 s: worker 1 ({peer})" in first.stderr
    (tmp_path / "model").mkdir(exist_ok=True)
    (tmp_path / "model" / "run.json").write_text("{}")  # as the chief writes it once a first start gathers
    later = subprocess.run([*command, "--first_start_timeout", "4", "--startup_timeout", "8"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=120)
    assert later.returncode == 3 and "did not join within --startup_timeout 8 s" in later.stderr, later.stderr

    proc = start([*command, "--startup_timeout", "600"], env=env)
    time.sleep(12)  # past the imports, into the wait
    stopped = time.monotonic()
    status, output, _ = stop(proc, signal.SIGTERM, timeout=60)
    assert status == 75 and time.monotonic() - stopped < 10, output
    assert "stopped by SIGTERM while waiting for the peer workers" in output and "Traceback" not in output
