"""The stall watchdog (trainer/run/watchdog.py): its bound, and a real `cyclegan train` whose step blocks."""
import os
import subprocess
import time

from preprocessing import exit_status
from tests.training import train_command
from trainer.run.watchdog import FLOOR_MINUTES, STALL_AT_STEP_ENV, StallWatchdog


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_the_automatic_bound_covers_compilation_then_follows_the_steps_and_the_longest_gap():
    clock = Clock()
    dog = StallWatchdog(0, first_step=0, clock=clock, end=None)
    assert dog.bound() == 60 * FLOOR_MINUTES  # before any step: the first compilation may take that long
    clock.now = 25 * 60.0  # a long first step (tracing and compiling) is not a stall ...
    assert dog.stalled_for() == 0
    dog.step_done(1, 25 * 60.0)  # ... and its gap does not count as the run's longest
    for step in range(2, 50):
        clock.now += 100.0  # 100 s steps: 20x the median is 2,000 s, above the floor
        dog.step_done(step, 100.0)
    assert dog.bound() == 20 * 100.0
    clock.now += 3000.0  # an evaluation between two steps
    dog.step_done(50, 100.0)
    assert dog.bound() == 2 * 3000.0  # what a run has already taken between two steps is never a stall
    clock.now += 2 * 3000.0 + 1
    assert dog.stalled_for() == 2 * 3000.0 + 1
    assert StallWatchdog(2.5, 0, clock=clock).bound() == 150.0  # --stall_minutes: as given


def test_a_step_that_never_completes_ends_the_run_with_the_stall_status_within_the_bound(tiny_records, tmp_path):
    records, _ = tiny_records
    command = train_command(records, str(tmp_path / "model"), 10, "--stall_minutes", "0.1")
    began = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, STALL_AT_STEP_ENV: "4"})
    assert done.returncode == exit_status.STALLED, done.stdout + done.stderr
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("train: stalled")]
    assert line.startswith("train: stalled: no step completed for 0.1 min after step 3 (bound 0.1 min")
    assert "in injected_stall" in line  # where the main thread was: the test's stand-in for a wedged collective
    stack = done.stdout[done.stdout.index("the main thread's stack when the run stalled:"):]
    assert "in train_step" in stack and "in injected_stall" in stack
    steps = [line for line in done.stdout.splitlines() if line.startswith("step ")]
    assert steps[-1].startswith("step 3/10")
    assert time.monotonic() - began < 300  # the start-up, three steps, then 6 s and one check


def test_a_process_paused_past_the_bound_and_resumed_is_not_called_stalled(tiny_records, tmp_path):
    """SIGSTOP for longer than --stall_minutes, then SIGCONT: the steps did not stall, the process was paused."""
    import signal

    from tests.helpers import read_until, start

    records, _ = tiny_records
    proc = start(train_command(records, str(tmp_path / "model"), 8, "--stall_minutes", "0.1"))
    read_until(proc, "step 2/8")
    proc.send_signal(signal.SIGSTOP)
    time.sleep(15)  # past the 6 s bound
    proc.send_signal(signal.SIGCONT)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "train: the process was paused for" in out and "train: stalled" not in out
