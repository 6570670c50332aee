"""The stall watchdog: a run whose steps stop completing while its process lives ends, instead of holding its GPUs.

A collective that never completes (NCCL or the gRPC ring wedged by one GPU NIC down while the host's heartbeat is
fine, a peer stuck in a driver call) blocks every worker in a C++ call that no Python exception reaches, and
neither the peers' connections nor the kubelet see anything wrong. A thread here watches the time since the last
completed step; past the bound it prints one line (the step, the time since it, and where the main thread is)
and the main thread's whole stack, and ends the process with exit status 6 (exit_status.STALLED), which the
Kubernetes failure policy treats as a lost peer: the group restarts from the newest checkpoint, uncounted, and
the trainer's own --max_restarts_without_progress ends a run that keeps stalling at one step.

The bound is --stall_minutes when given. Otherwise it is the largest of FLOOR_MINUTES (the first step's tracing
and compilation, a checkpoint save, an evaluation of a test set and the peers' waits for each other all happen
between two completed steps), STEP_FACTOR times the median step and GAP_FACTOR times the longest gap measured so
far. TensorFlow's per-collective timeout (CommunicationOptions(timeout_seconds=...)) is not used: its docstring
(tensorflow/python/distribute/collective_util.py) calls it a debugging aid that starts a thread per collective.
"""
import os
import statistics
import sys
import threading
import time
import traceback

from preprocessing import exit_status

FLOOR_MINUTES = 30.0
STEP_FACTOR = 20
GAP_FACTOR = 2
CHECK_SECONDS = 1.0
# A check that wakes this much later than asked found the whole process paused (SIGSTOP, a frozen container, a
# suspended machine): the steps were not stalled meanwhile, so the paused time is not counted against them.
PAUSE_SECONDS = 10.0
# For tests only: the step at which the loop blocks forever (a stand-in for a collective that never completes).
STALL_AT_STEP_ENV = "CYCLEGAN_TEST_STALL_AT_STEP"


def injected_stall(step):
    """Block forever at the step that STALL_AT_STEP_ENV names (tests of the watchdog only)."""
    if os.environ.get(STALL_AT_STEP_ENV) == str(step):
        threading.Event().wait()


OURS = (f"{os.sep}trainer{os.sep}", f"{os.sep}preprocessing{os.sep}")


def where(stack):
    """The innermost frame of this project's code in `stack` (a traceback.StackSummary), and the innermost of all."""
    if not stack:
        return "nowhere Python can see"
    inner = stack[-1]
    ours = next((f for f in reversed(stack) if any(part in f.filename for part in OURS)), inner)
    text = f"in {ours.name} ({ours.filename.rsplit(os.sep, 2)[-2]}/{os.path.basename(ours.filename)}:{ours.lineno})"
    return text if ours is inner else f"{text}, inside {inner.name} ({os.path.basename(inner.filename)}:{inner.lineno})"


class StallWatchdog:
    def __init__(self, stall_minutes, first_step, say=print, clock=time.monotonic, end=os._exit):
        self.limit = 60.0 * stall_minutes if stall_minutes else None
        self.say, self.clock, self.end = say, clock, end
        self.step, self.last = first_step, clock()
        self.durations, self.longest_gap = [], 0.0
        self.main = threading.main_thread().ident
        self.done = threading.Event()

    def bound(self):
        """Seconds without a completed step that end the process."""
        if self.limit:
            return self.limit
        median = statistics.median(self.durations) if self.durations else 0.0
        return max(60.0 * FLOOR_MINUTES, STEP_FACTOR * median, GAP_FACTOR * self.longest_gap)

    def step_done(self, step, seconds):
        """A step completed; `seconds` is its own duration (the periodic actions after it are not counted)."""
        now = self.clock()
        if self.durations:  # the gap before a start's first step is its compilation, which the floor covers
            self.longest_gap = max(self.longest_gap, now - self.last)
        self.durations.append(seconds)
        del self.durations[:-1000]
        self.step, self.last = step, now

    def stalled_for(self):
        """Seconds past the bound without a completed step, or 0."""
        waited = self.clock() - self.last
        return waited if waited > self.bound() else 0.0

    def report(self, waited):
        frame = sys._current_frames().get(self.main)
        stack = traceback.extract_stack(frame) if frame else []
        self.say(f"train: stalled: no step completed for {waited / 60:.1f} min after step {self.step} (bound "
                 f"{self.bound() / 60:.1f} min, --stall_minutes); the main thread is {where(stack)}; ending with "
                 f"exit {exit_status.STALLED} so that the group restarts from the newest checkpoint")
        # on stdout, as the line: the trainer holds stderr to filter TensorFlow's C++ logs, and _exit would drop it
        self.say("".join(["the main thread's stack when the run stalled:\n", *traceback.format_list(stack)]).rstrip())

    def watch(self):
        checked = self.clock()
        while not self.done.wait(CHECK_SECONDS):
            now = self.clock()
            paused = now - checked - CHECK_SECONDS
            checked = now
            if paused > PAUSE_SECONDS:
                self.last += paused
                self.say(f"train: the process was paused for {paused:.0f} s (SIGSTOP or a frozen node); the stall "
                         "watchdog does not count that time")
                continue
            waited = self.stalled_for()
            if waited:
                self.report(waited)
                sys.stdout.flush()
                self.end(exit_status.STALLED)
                return

    def __enter__(self):
        self.last = self.clock()
        threading.Thread(target=self.watch, name="stall-watchdog", daemon=True).start()
        return self

    def __exit__(self, *_):
        self.done.set()
