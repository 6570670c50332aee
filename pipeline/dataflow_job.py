"""The Dataflow job a launcher waits for: the one it started, or one already running under the same job name.

Dataflow runs one active job per name. A launcher pod that Kubernetes replaced while its job ran (a lost node)
finds that job by name and waits for it, instead of failing on "already exists" or, worse, clearing the output
folder of the staging files the job still reads. A launcher that is stopped (SIGTERM: `submit delete`, an
eviction) cancels its job, so deleting the Kubernetes Job stops the billed workers too.
"""
import os
import signal
import sys
import time

from apache_beam.options.pipeline_options import GoogleCloudOptions

from pipeline import staging
from preprocessing import exit_status, lease

DONE = "JOB_STATE_DONE"
# States after which a job does nothing more (Dataflow's JobState names).
FINAL = {DONE, "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_UPDATED", "JOB_STATE_DRAINED",
         "JOB_STATE_STOPPED"}
POLL_SECONDS = 10
CANCEL_WAIT_SECONDS = 30  # within the launcher pod's grace period (k8s/render.py: 60 s)


def _client(options):
    from apache_beam.runners.dataflow.internal import apiclient

    return apiclient.DataflowApplicationClient(options)


def _state(job):
    return getattr(job.current_state, "name", str(job.current_state))


class DataflowJob:
    def __init__(self, options, job_id, name, client=None):
        self.options, self.id, self.name = options, job_id, name
        self.client = client or _client(options)

    @classmethod
    def running(cls, options):
        """The active job named as --job_name says, or None (also when no --job_name was given: Beam then makes
        up a new name, which no job can have)."""
        name = options.view_as(GoogleCloudOptions).job_name
        if not name:
            return None
        client = _client(options)
        try:
            return cls(options, client.job_id_for_name(name), name, client)
        except ValueError:  # Beam's "No running job found with name ..."
            return None

    def current_state(self):
        return _state(self.client.get_job(self.id))

    def wait(self, say):
        """Poll until the job ends, reporting each change of state; its final state."""
        last = None
        while True:
            state = self.current_state()
            if state != last:
                say(f"preprocess: Dataflow job {self.name} ({self.id}): {state}")
                last = state
            if state in FINAL:
                return state
            time.sleep(POLL_SECONDS)

    def cancel_and_exit(self, signum, output, prog):
        """On a stop request: cancel the job, and remove its staging files once it has stopped reading them
        (kept, and said so, when it has not stopped within CANCEL_WAIT_SECONDS); exit with 128 + the signal."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cancel short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            self.client.modify_job_state(self.id, "JOB_STATE_CANCELLED")
        except Exception as err:  # the job runs on: its staging files must stay
            print(f"{prog}: stopped by {signal.Signals(signum).name}, but Dataflow job {self.name} ({self.id}) "
                  f"could not be cancelled ({str(err).splitlines()[0][:200]}); it runs on and keeps its staging "
                  f"files. Cancel it with: gcloud dataflow jobs cancel {self.id} --region "
                  f"{self.options.view_as(GoogleCloudOptions).region}", file=sys.stderr, flush=True)
            os._exit(exit_status.killed_by(signum))
        deadline, state = time.monotonic() + CANCEL_WAIT_SECONDS, None
        while time.monotonic() < deadline:
            state = self.current_state()
            if state in FINAL:
                break
            time.sleep(1)
        if state in FINAL:
            staging.remove(output)
            files = "removed its staging files"
        else:
            files = (f"it was still {state} after {CANCEL_WAIT_SECONDS} s, so its staging files stay (a rerun "
                     "removes them)")
        print(f"{prog}: stopped by {signal.Signals(signum).name}: cancelled Dataflow job {self.name} ({self.id}); "
              f"{files}. Run the same command again to start over", file=sys.stderr, flush=True)
        lease.release_held()
        sys.stdout.flush()
        os._exit(exit_status.killed_by(signum))
