"""Every exit status a `cyclegan` command ends with. The commands return these, and the Kubernetes renderer sorts
pod failures by them (k8s/render.py's podFailurePolicy), so a restart policy and the code cannot disagree."""
import signal

FAILED = 1  # the job ran and failed: nothing written, a checkpoint that could not be saved
USAGE = 2  # a wrong flag, path or input (argparse's own status): no restart can fix it
PEERS_MISSING = 3  # several workers, and not all of them joined within --startup_timeout (counted: it may not fix)
NO_PROGRESS = 4  # the run keeps starting from the same step: a restart loop, stopped before it costs more
COLLAPSED = 5  # --stop_on_collapse: a health alarm (trainer/run/health.py); counted, since resuming from the kept
#                checkpoint repeats the same steps on the same data and a person has to change something
STALLED = 6  # no step completed for --stall_minutes (trainer/run/watchdog.py): a wedged collective; uncounted, as
#              a lost peer, and the group restarts from the newest checkpoint
NEVER_GATHERED = 7  # several workers at the run's first start, and not all joined within --first_start_timeout:
#                     the cluster has no room for the whole group now (final: later starts wait, counted, with 3)
NETWORK_DAEMON_DOWN = 8  # --network_profile tcpxo: the node's receive daemon never became ready (a broken node);
#                          counted, and the Job replaces the pod
PREEMPTED = 75  # EX_TEMPFAIL, "try again later": saved, and the scheduler should start it again


def killed_by(signum):
    """The shell's status for a command ended by a signal."""
    return 128 + int(signum)


INTERRUPTED = killed_by(signal.SIGINT)  # 130: Ctrl-C
TERMINATED = killed_by(signal.SIGTERM)  # 143: SIGTERM where the job cannot save and report 75
