"""SIGTERM (what Kubernetes and preemptible VMs send before they kill a pod): finish the step, save, exit 75.

The handler only records the request; the loop sees it after the step in flight and shares it with every
worker through the step itself, so all workers save the same step together.
"""
import contextlib
import signal

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: "try again later", which is what a preempted run wants from its scheduler


class Preempted(Exception):
    """Raised by the loop after it saved the checkpoint that the next start resumes from."""

    def __init__(self, step, checkpoint):
        super().__init__(f"stopped by SIGTERM after step {step}; saved {checkpoint}; start the same command again "
                         f"to resume")
        self.step, self.checkpoint = step, checkpoint


class StopFlag:
    requested = False


@contextlib.contextmanager
def sigterm_flag():
    """A StopFlag whose `requested` turns true on SIGTERM while the block runs."""
    flag = StopFlag()

    def request_stop(signum, frame):
        flag.requested = True

    previous = signal.signal(signal.SIGTERM, request_stop)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)
