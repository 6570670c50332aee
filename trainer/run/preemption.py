"""Stop requests: SIGTERM (what Kubernetes and preemptible VMs send before they kill a pod) and Ctrl-C (SIGINT).

Either one finishes the step in flight, saves, and ends the run: SIGTERM with status 75, "restart me", and Ctrl-C
with 130, the shell's status for an interrupted command. A second Ctrl-C aborts at once, without saving.

The handler only records the request; the loop sees it after the step in flight and shares it with every
worker through the step itself, so all workers save the same step together.
"""
import contextlib
import signal

from preprocessing.exit_status import INTERRUPTED, PREEMPTED
from preprocessing.process import stop_signals_handled_by


class Preempted(Exception):
    """Raised by the loop after it saved the checkpoint that the next start resumes from."""

    def __init__(self, step, checkpoint, signal_name="SIGTERM"):
        super().__init__(f"stopped by {signal_name} after step {step}; saved {checkpoint}; start the same command "
                         f"again to resume")
        self.step, self.checkpoint = step, checkpoint
        self.exit_status = INTERRUPTED if signal_name == "SIGINT" else PREEMPTED


class PeerLost(Exception):
    """Several workers, and one of them stopped answering: this one cannot go on alone, and a collective would wait
    for the lost one forever. Exiting with 75 lets the scheduler restart the whole group from the newest
    checkpoint."""

    exit_status = PREEMPTED

    def __init__(self, step, error):
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        telling = [line for line in lines if any(word in line.lower() for word in
                                                 ("abort", "connect", "peer", "heartbeat", "alive", "down"))]
        reason = ((telling or lines or [""])[0])[:200]
        super().__init__(f"lost a peer worker during step {step} ({type(error).__name__}: {reason}); exiting with "
                         f"{PREEMPTED} so that every worker restarts and resumes from the newest checkpoint")


def peer_errors():
    """What a collective raises when a peer worker died, or the coordination service gave up on it."""
    import tensorflow as tf

    return (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError,
            tf.errors.DeadlineExceededError)


class StoppedWaiting(Exception):
    """SIGTERM or Ctrl-C while the workers wait for each other at start: nothing was trained, so nothing to save."""

    def __init__(self, signal_name):
        super().__init__(f"stopped by {signal_name} while waiting for the peer workers; nothing to save")
        self.exit_status = INTERRUPTED if signal_name == "SIGINT" else PREEMPTED


@contextlib.contextmanager
def stop_while_waiting():
    """While the block runs, SIGTERM and SIGINT raise StoppedWaiting in the main thread."""

    def stop(signum, frame):
        raise StoppedWaiting(signal.Signals(signum).name)

    with stop_signals_handled_by(stop):
        yield


class StopFlag:
    requested = False
    signal_name = "a peer worker's stop request"  # a worker that got no signal itself stops with its peers


@contextlib.contextmanager
def stop_flag(say=print):
    """A StopFlag whose `requested` turns true on SIGTERM or the first SIGINT while the block runs."""
    flag = StopFlag()

    def request_stop(signum, frame):
        if signum == signal.SIGINT:
            if flag.requested:
                raise KeyboardInterrupt  # the second Ctrl-C: abort now
            say("Ctrl-C: saving a checkpoint after this step, then stopping (Ctrl-C again to abort without "
                   "saving)")
        flag.requested, flag.signal_name = True, signal.Signals(signum).name

    with stop_signals_handled_by(request_stop):
        yield flag
