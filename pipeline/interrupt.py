"""Ctrl-C and SIGTERM while the Beam job runs locally.

Beam's local runner would wait for its worker processes forever (also at exit, on its threads), so a stop request
ends them, removes the staging files and leaves at once with the signal's exit status."""
import os
import signal
import sys

from pipeline import staging
from preprocessing import exit_status, lease
from preprocessing.process import stop_signals_handled_by


class Stopped(Exception):
    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stopped(signum, frame):
    raise Stopped(signum)


def stop_requests():
    """Inside: SIGINT and SIGTERM raise Stopped; the previous handlers come back after."""
    return stop_signals_handled_by(_raise_stopped)


def stop_now(signum, output, prog):
    """End the job's workers, remove its staging files, and exit with 128 + the signal."""
    import psutil

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
    for child in psutil.Process().children(recursive=True):
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    try:
        staging.remove(output)
        removed = "removed its staging files"
    except Exception as err:  # the interrupted job's files may be half gone already
        removed = f"could not remove {staging.staging_dir(output)} ({err}); a rerun removes it"
    print(f"{prog}: stopped by {signal.Signals(signum).name}: the job's workers are ended and nothing was "
          f"finished; {removed}. Run the same command again to start over", file=sys.stderr, flush=True)
    lease.release_held()
    sys.stdout.flush()
    os._exit(exit_status.killed_by(signum))
