"""The Dataflow launcher against a Dataflow API endpoint on loopback: Beam's own API client (REST, no auth) talks
to it, as `--dataflow_endpoint` allows. The endpoint keeps jobs as the service would and records each request."""
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
from google.cloud import dataflow

from pipeline import cli, dataflow_job, staging
from tests.helpers import REPO, read_until, start, stop


def state_name(value):
    """A JobState as Beam's REST client sends it: its number, or its name."""
    return dataflow.JobState(value).name if isinstance(value, int) else value


class FakeDataflow(http.server.ThreadingHTTPServer):
    """jobs.list, jobs.get and jobs.update (cancel) of Dataflow's v1b3 REST API, for one project and region."""

    def __init__(self, jobs, done_after_gets=None, on_done=None):
        super().__init__(("127.0.0.1", 0), Handler)
        self.jobs, self.done_after_gets, self.on_done, self.requests, self.gets = jobs, done_after_gets, on_done, [], 0
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def endpoint(self):  # "localhost" makes Beam's client use the REST transport
        return f"http://localhost:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    PATH = re.compile(r"/v1b3/projects/proj/locations/europe-west4/jobs(?:/(?P<id>[^?/]+))?")

    def log_message(self, *args):
        pass

    def reply(self, body, status=200):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        match, server = self.PATH.match(self.path), self.server
        server.requests.append(("GET", self.path))
        if match and not match["id"]:
            return self.reply({"jobs": list(server.jobs.values())})
        job = server.jobs.get(match["id"]) if match else None
        if job is None:
            return self.reply({"error": {"code": 404, "message": "no such job", "status": "NOT_FOUND"}}, 404)
        server.gets += 1
        if job["currentState"] == "JOB_STATE_CANCELLING":
            job["currentState"] = "JOB_STATE_CANCELLED"
        if server.done_after_gets and server.gets >= server.done_after_gets and job["currentState"] != "JOB_STATE_DONE":
            server.on_done()  # the job's last steps: its manifest and report
            job["currentState"] = "JOB_STATE_DONE"
        return self.reply(job)

    def do_PUT(self):
        match, server = self.PATH.match(self.path), self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server.requests.append(("PUT", self.path, body))
        job, requested = server.jobs[match["id"]], body.get("requestedState")
        if state_name(requested) == "JOB_STATE_CANCELLED":
            job["currentState"] = "JOB_STATE_CANCELLING"  # as the service: cancelled at the next look
        return self.reply(job)


def launcher_args(raw, endpoint, output):
    return ["--input", raw, "--output", output,
            "--runner", "DataflowRunner", "--project", "proj", "--region", "europe-west4",
            "--temp_location", "gs://bucket/tmp", "--job_name", "pre-x", "--dataflow_endpoint", endpoint, "--no_auth"]


@pytest.fixture
def output_in_use(tiny_records, tmp_path):
    """An --output folder as a running Dataflow job leaves it: its staging files, no manifest yet."""
    output = tmp_path / "records"
    (output / staging.STAGING_FOLDER).mkdir(parents=True)
    (output / staging.STAGING_FOLDER / "bundle.records").write_bytes(b"records the job still reads")
    return output


def test_a_replaced_launcher_waits_for_the_running_job_and_leaves_its_staging_files(tiny_records, output_in_use,
                                                                                     monkeypatch, capsys):
    running = {"2026-11-30_01": {"id": "2026-11-30_01", "name": "pre-x", "currentState": "JOB_STATE_RUNNING"}}
    server = FakeDataflow(running, done_after_gets=3, on_done=lambda: [
        shutil.copy(os.path.join(tiny_records[0], name), output_in_use) for name in ("manifest.json", "rejected.jsonl")])
    monkeypatch.setattr(dataflow_job, "POLL_SECONDS", 0.1)
    try:
        assert cli.main(launcher_args(tiny_records[1], server.endpoint, str(output_in_use))) == 0
    finally:
        server.shutdown()
    out = capsys.readouterr().out
    assert "Dataflow job pre-x (2026-11-30_01) is already running under this --job_name; waiting for it" in out
    assert "Dataflow job pre-x (2026-11-30_01): JOB_STATE_RUNNING" in out and ": JOB_STATE_DONE" in out
    assert "wrote " in out and "removed what" not in out  # no check cleared the folder the job works in
    assert (output_in_use / staging.STAGING_FOLDER / "bundle.records").exists()
    assert not [r for r in server.requests if r[0] == "PUT"]  # nothing was cancelled or started


def test_a_stopped_launcher_cancels_its_dataflow_job_then_removes_the_staging_files(tiny_records, output_in_use):
    running = {"2026-11-30_02": {"id": "2026-11-30_02", "name": "pre-x", "currentState": "JOB_STATE_RUNNING"}}
    server = FakeDataflow(running)
    proc = start([sys.executable, os.path.join(REPO, "cyclegan.py"), "preprocess",
                  *launcher_args(tiny_records[1], server.endpoint, str(output_in_use))], stderr=subprocess.PIPE)
    try:
        read_until(proc, "JOB_STATE_RUNNING")  # waiting for the job it found
        began = time.monotonic()
        status, _, err = stop(proc, signal.SIGTERM, timeout=60)
    finally:
        proc.kill()
        server.shutdown()
    assert status == 128 + signal.SIGTERM and time.monotonic() - began < 15, err
    cancels = [r for r in server.requests if r[0] == "PUT"]
    assert len(cancels) == 1 and state_name(cancels[0][2]["requestedState"]) == "JOB_STATE_CANCELLED"
    assert "stopped by SIGTERM: cancelled Dataflow job pre-x (2026-11-30_02); removed its staging files" in err
    assert not (output_in_use / staging.STAGING_FOLDER).exists()
