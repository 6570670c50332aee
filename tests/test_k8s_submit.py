"""`cyclegan submit` against an HTTP endpoint on loopback that records the Kubernetes API calls it receives (no
API server can run here): the objects sent are exactly the rendered ones, and list/status/logs/delete make the
calls kubectl would."""
import http.server
import json
import os
import subprocess
import threading
import urllib.parse

import pytest
import yaml

from tests.helpers import BIN

NAMESPACE = "research"
FLAGS = ["--image", "img:1", "--data", "gs://b/records", "--model_dir", "gs://b/runs/h2z", "--gpus", "8", "--nodes",
         "2", "--namespace", NAMESPACE]


class FakeApi(http.server.BaseHTTPRequestHandler):
    """Records every call; keeps what was created; refuses the name `taken` (409), namespace `locked` (403) and
    a budget named `nobudget` (403)."""

    calls, store, missing = [], {}, set()  # missing: paths answered 404, as objects the cluster lacks

    def log_message(self, *args):
        pass

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def status(self, code, reason, message):
        self.reply(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
                          "message": message, "code": code})

    def record(self):
        url = urllib.parse.urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.calls.append((self.command, url.path, urllib.parse.parse_qs(url.query), body))
        return url.path, urllib.parse.parse_qs(url.query), body

    def do_POST(self):
        path, _, body = self.record()
        if "/namespaces/locked/" in path:
            return self.status(403, "Forbidden", 'jobs.batch is forbidden: User "dev" cannot create resource')
        if body["metadata"]["name"] == "taken" and path.endswith("/jobs"):
            return self.status(409, "AlreadyExists", 'jobs.batch "taken" already exists')
        if body["metadata"]["name"] == "nobudget" and path.endswith("/poddisruptionbudgets"):
            return self.status(403, "Forbidden", 'poddisruptionbudgets.policy is forbidden: User "dev" cannot '
                                                 'create resource')
        created = {**body, "metadata": {**body["metadata"], "uid": "1", "creationTimestamp": "2026-11-27T08:00:00Z"}}
        if "kueue.x-k8s.io/queue-name" in body["metadata"]["labels"] and body["kind"] == "Job":
            created["spec"] = {**body["spec"], "suspend": True}  # as Kueue's webhook does until it admits the Job
        self.store[f"{path}/{body['metadata']['name']}"] = created
        self.reply(201, created)

    def do_GET(self):
        path, query, _ = self.record()
        if path in self.missing:
            return self.status(404, "NotFound", f"{path} not found")
        if path.endswith("/log"):
            pod = path.split("/")[-2]
            data = (f"{pod} started\nstep 1/10 epoch 1 | 3.1 pairs/s\nstep 2/10 epoch 1 | 3.3 pairs/s\n"
                    "eval at step 2: cycle_mae 0.3000 | best cycle_mae 0.3000 at step 2\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            return self.wfile.write(data)
        if path.endswith("/pods"):
            return self.reply(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": self.pods()})
        wanted = dict(term.split("=") for term in query.get("labelSelector", [""])[0].split(",") if term)
        items = [obj for key, obj in self.store.items() if key.startswith(path + "/")  # selected as the API does
                 and wanted.items() <= obj["metadata"].get("labels", {}).items()]
        for obj in items:  # what the Job controller would have written by now
            if obj["kind"] == "Job":
                obj["status"] = {"active": 1, "succeeded": 1}
        self.reply(200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": items})

    def do_DELETE(self):
        path, _, _ = self.record()
        deleted = self.store.pop(path, None)
        if deleted is None:
            return self.status(404, "NotFound", f"{path} not found")
        # as the API server: a deleted Service comes back as itself, other kinds as a Status
        self.reply(200, deleted if "/services/" in path else {"kind": "Status", "apiVersion": "v1",
                                                              "status": "Success"})

    @staticmethod
    def pods():
        """What the API server returns for a two-node run: worker 0 replaced after an exit 75, worker 1 pending
        (no node has a free GPU), worker 2 unable to pull its image."""
        def pod(name, index, minute, phase, state, conditions=(), init=()):
            return {"metadata": {"name": name, "namespace": NAMESPACE,
                                 "creationTimestamp": f"2026-11-27T08:0{minute}:00Z",
                                 "annotations": {"batch.kubernetes.io/job-completion-index": str(index)}},
                    "status": {"phase": phase, "conditions": list(conditions), "containerStatuses": [
                        {"name": "trainer", "image": "img:1", "imageID": "", "ready": phase == "Running",
                         "restartCount": 0, "state": state}], "initContainerStatuses": list(init)}}

        crashing_sidecar = {"name": "tcpxo-daemon", "image": "daemon:1", "imageID": "", "ready": False,
                            "restartCount": 4, "started": False,
                            "state": {"waiting": {"reason": "CrashLoopBackOff",
                                                  "message": "back-off 40s restarting failed container"}},
                            "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}

        unschedulable = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                         "message": "0/12 nodes are available: 12 Insufficient nvidia.com/gpu."}
        return [pod("h2z-0-abcde", 0, 0, "Failed", {"terminated": {"exitCode": 75}}),
                pod("h2z-0-fghij", 0, 5, "Running", {"running": {}}),
                pod("h2z-1-klmno", 1, 5, "Pending", {"waiting": {"reason": "ContainerCreating"}}, [unschedulable]),
                pod("h2z-2-pqrst", 2, 5, "Pending", {"waiting": {"reason": "ImagePullBackOff",
                                                                 "message": "Back-off pulling image img:1"}}),
                # worker 3: its first pod's node had no working network daemon; its second is stuck in Init
                pod("h2z-3-aaaaa", 3, 1, "Failed", {"terminated": {"exitCode": 8}}),
                pod("h2z-3-uvwxy", 3, 5, "Pending", {"waiting": {"reason": "PodInitializing"}},
                    init=[crashing_sidecar])]


def kubeconfig_for(folder, port):
    """A kubeconfig in `folder` whose current context is the server on loopback `port`; its path."""
    kubeconfig = folder / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "loopback", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "dev", "user": {"token": "secret"}}],
        "contexts": [{"name": "test", "context": {"cluster": "loopback", "user": "dev"}}]}))
    return str(kubeconfig)


@pytest.fixture()
def api(tmp_path):
    FakeApi.calls.clear()
    FakeApi.store.clear()
    FakeApi.missing.clear()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield kubeconfig_for(tmp_path, server.server_port)
    server.shutdown()
    server.server_close()


def submit(kubeconfig, *args):
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    return subprocess.run([os.path.join(BIN, "cyclegan"), "submit", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def test_submit_sends_exactly_the_rendered_objects(api):
    rendered = list(yaml.safe_load_all(submit(api, "train", *FLAGS, "--name", "h2z", "--dry-run").stdout))
    done = submit(api, "train", *FLAGS, "--name", "h2z", "--", "--batch_size", "2")
    assert done.returncode == 0, done.stderr
    posts = [(path, body) for method, path, _, body in FakeApi.calls if method == "POST"]
    assert [path for path, _ in posts] == [f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs",
                                           f"/api/v1/namespaces/{NAMESPACE}/services",
                                           f"/apis/policy/v1/namespaces/{NAMESPACE}/poddisruptionbudgets"]
    rendered[0]["spec"]["template"]["spec"]["containers"][0]["args"] += ["--batch_size", "2"]
    # the Job, created first, owns the Service and the budget (uid from the API's answer): its TTL removes them
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "h2z", "uid": "1"}
    for obj in rendered[1:]:
        obj["metadata"]["ownerReferences"] = [owner]
    assert [body for _, body in posts] == rendered
    assert f"cyclegan submit logs h2z --follow --namespace {NAMESPACE}" in done.stdout

    FakeApi.calls.clear()
    listed = submit(api, "list", "--namespace", NAMESPACE)
    assert listed.returncode == 0, listed.stderr
    assert any(line.split()[:3] == ["h2z", "Job", "train"] for line in listed.stdout.splitlines())
    gets = {path: query for method, path, query, _ in FakeApi.calls if method == "GET"}
    assert gets[f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs"]["labelSelector"] == [
        "app.kubernetes.io/managed-by=cyclegan-submit"]
    assert f"/apis/jobset.x-k8s.io/v1alpha2/namespaces/{NAMESPACE}/jobsets" in gets

    status = submit(api, "status", "h2z", "--namespace", NAMESPACE)
    assert status.returncode == 0 and "Job research/h2z: 1 active, 1 succeeded" in status.stdout, status.stderr
    assert [line.strip() for line in status.stdout.splitlines() if "worker" in line or "earlier" in line] == [
        "worker 0: Running (pod h2z-0-fghij, 1 restart(s))",
        "earlier pod h2z-0-abcde: exited 75 (saved and stopped: restarted, not counted)",
        "worker 1: Pending, not scheduled: 0/12 nodes are available: 12 Insufficient nvidia.com/gpu. "
        "(pod h2z-1-klmno, 0 restart(s))",
        "worker 2: ImagePullBackOff: Back-off pulling image img:1 (pod h2z-2-pqrst, 0 restart(s))",
        "worker 3: init container tcpxo-daemon: CrashLoopBackOff: back-off 40s restarting failed container "
        "(restarted 4 times), last exit 1 Error (pod h2z-3-uvwxy, 1 restart(s))",
        "earlier pod h2z-3-aaaaa: exited 8 (its node's network daemon never became ready: counted, replaced)",
        "latest progress (worker 0): step 2/10 epoch 1 | 3.3 pairs/s",
        "latest evaluation (worker 0): eval at step 2: cycle_mae 0.3000 | best cycle_mae 0.3000 at step 2"]

    assert "Kueue" not in status.stdout  # no --queue

    FakeApi.calls.clear()
    logs = submit(api, "logs", "h2z", "--follow", "--namespace", NAMESPACE)
    assert logs.returncode == 0 and logs.stdout.startswith("h2z-0-fghij started\n"), logs.stderr
    (log_call,) = [(path, query) for method, path, query, _ in FakeApi.calls if path.endswith("/log")]
    assert log_call == (f"/api/v1/namespaces/{NAMESPACE}/pods/h2z-0-fghij/log", {"follow": ["true"]})
    FakeApi.calls.clear()
    every = submit(api, "logs", "h2z", "--all", "--tail", "5", "--namespace", NAMESPACE)
    assert every.returncode == 0, every.stderr
    assert [line for line in every.stdout.splitlines() if line.endswith("started")] == [
        "[worker 0] h2z-0-fghij started", "[worker 1] h2z-1-klmno started", "[worker 2] h2z-2-pqrst started",
        "[worker 3] h2z-3-uvwxy started"]
    log_queries = [query for method, path, query, _ in FakeApi.calls if path.endswith("/log")]
    assert len(log_queries) == 4 and all(query.get("tailLines") == ["5"] for query in log_queries)
    earlier = submit(api, "logs", "h2z", "--worker", "0", "--previous", "--namespace", NAMESPACE)
    assert earlier.returncode == 0 and earlier.stdout.startswith("h2z-0-abcde started"), earlier.stderr
    missing = submit(api, "logs", "h2z", "--worker", "1", "--previous", "--namespace", NAMESPACE)
    assert missing.returncode == 2 and "has no earlier pod of worker 1 (workers: 0, 1, 2" in missing.stderr

    FakeApi.calls.clear()
    deleted = submit(api, "delete", "h2z", "--namespace", NAMESPACE)
    assert deleted.returncode == 0, deleted.stderr
    deletes = [(path, query) for method, path, query, _ in FakeApi.calls if method == "DELETE"]
    assert [path for path, _ in deletes] == [f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/h2z",
                                             f"/api/v1/namespaces/{NAMESPACE}/services/h2z"]
    assert deletes[0][1]["propagationPolicy"] == ["Background"]  # the pods go with the Job, as with kubectl

    assert submit(api, "train", *FLAGS, "--name", "queued", "--queue", "team-a").returncode == 0
    queued = submit(api, "status", "queued", "--namespace", NAMESPACE)
    assert "Kueue: waiting for admission (the Job is suspended) in queue team-a" in queued.stdout, queued.stderr

    dataflow = ["preprocess", "--image", "beam:1", "--input", "gs://b/raw", "--output", "gs://b/rec", "--runner",
                "dataflow", "--project", "p", "--region", "europe-west4", "--temp_location", "gs://b/tmp"]
    assert submit(api, *dataflow, "--name", "pre", "--namespace", NAMESPACE).returncode == 0
    stopped = submit(api, "delete", "pre", "--namespace", NAMESPACE)
    assert stopped.returncode == 0 and "its launcher cancels Dataflow job pre as it stops; to check: gcloud dataflow " \
        "jobs list --project p --region europe-west4 --filter name=pre" in stopped.stdout, stopped.stderr


def test_serve_creates_follows_and_deletes_a_server_and_an_inference_service(api):
    flags = ["--model", "gs://b/export/a2b", "--namespace", NAMESPACE, "--replicas", "2"]
    rendered = list(yaml.safe_load_all(submit(api, "serve", *flags, "--name", "h2z-serve", "--dry-run").stdout))
    done = submit(api, "serve", *flags, "--name", "h2z-serve")
    assert done.returncode == 0, done.stderr
    assert f"kubectl port-forward -n {NAMESPACE} svc/h2z-serve 8501:8501" in done.stdout
    assert "/v1/models/h2z-serve:predict" in done.stdout
    posts = [(path, body) for method, path, _, body in FakeApi.calls if method == "POST"]
    assert [path for path, _ in posts] == [f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments",
                                           f"/api/v1/namespaces/{NAMESPACE}/services"]
    rendered[1]["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "Deployment",
                                                   "name": "h2z-serve", "uid": "1"}]
    assert [body for _, body in posts] == rendered
    status = submit(api, "status", "h2z-serve", "--namespace", NAMESPACE)
    assert status.returncode == 0 and f"Deployment {NAMESPACE}/h2z-serve: 0/2 ready" in status.stdout, status.stderr

    FakeApi.calls.clear()
    kserve = submit(api, "serve", *flags, "--name", "h2z-kserve", "--kserve")
    assert kserve.returncode == 0, kserve.stderr
    (post,) = [(path, body) for method, path, _, body in FakeApi.calls if method == "POST"]
    assert post[0] == f"/apis/serving.kserve.io/v1beta1/namespaces/{NAMESPACE}/inferenceservices"
    assert post[1]["spec"]["predictor"]["model"]["storageUri"] == "gs://b/export/a2b"
    status = submit(api, "status", "h2z-kserve", "--namespace", NAMESPACE)
    assert f"InferenceService {NAMESPACE}/h2z-kserve: not ready" in status.stdout, status.stderr
    listed = submit(api, "list", "--namespace", NAMESPACE)
    assert any(line.split()[:3] == ["h2z-kserve", "InferenceService", "serve"] for line in listed.stdout.splitlines())
    FakeApi.calls.clear()
    deleted = submit(api, "delete", "h2z-kserve", "--namespace", NAMESPACE)
    assert deleted.returncode == 0, deleted.stderr
    assert [path for method, path, _, _ in FakeApi.calls if method == "DELETE"] == [
        f"/apis/serving.kserve.io/v1beta1/namespaces/{NAMESPACE}/inferenceservices/h2z-kserve"]


def test_refusals_and_a_missing_cluster_are_one_line_errors(api, tmp_path):
    taken = submit(api, "train", *FLAGS, "--name", "taken")
    assert taken.returncode == 2 and "Traceback" not in taken.stderr
    assert "already exists in namespace research; choose another --name" in taken.stderr
    # the refused Job is the first object: nothing else was created
    assert [(m, p) for m, p, _, _ in FakeApi.calls if m != "GET"] == [
        ("POST", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs")]
    FakeApi.calls.clear()
    budget_refused = submit(api, "train", *FLAGS, "--name", "nobudget")
    assert budget_refused.returncode == 2 and "cannot create PodDisruptionBudget nobudget" in budget_refused.stderr
    # what was created before the refusal is deleted again: nothing half-submitted stays
    assert [(m, p) for m, p, _, _ in FakeApi.calls if m == "DELETE"] == [
        ("DELETE", f"/api/v1/namespaces/{NAMESPACE}/services/nobudget"),
        ("DELETE", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/nobudget")]
    locked = submit(api, "tensorboard", "--image", "i", "--logdir", "gs://b/logs", "--namespace", "locked")
    assert locked.returncode == 2 and "the cluster refused (403 Forbidden" in locked.stderr
    assert "Traceback" not in locked.stderr
    missing = submit(str(tmp_path / "no-such-kubeconfig"), "list")
    assert missing.returncode == 2 and "no Kubernetes cluster configured" in missing.stderr
    unknown = submit(api, "status", "nothing-here", "--namespace", NAMESPACE)
    assert unknown.returncode == 2 and "no job named nothing-here" in unknown.stderr


@pytest.mark.slow
def test_an_api_server_that_never_answers_is_given_up_on(tmp_path):
    """A server that takes the connection and never replies: every call gives up after --request_timeout."""
    import socket
    import time

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel accepts the connections; nothing ever reads or answers them
    kubeconfig = kubeconfig_for(tmp_path, silent.getsockname()[1])
    try:
        for args in (["train", *FLAGS, "--request_timeout", "2"], ["list", "--request_timeout", "2"],
                     ["logs", "h2z", "--follow", "--request_timeout", "2"]):
            started = time.monotonic()
            done = submit(kubeconfig, *args)
            assert done.returncode == 2 and "cannot reach the Kubernetes API" in done.stderr, done.stderr
            assert "Traceback" not in done.stderr and time.monotonic() - started < 60
        for action in (["status", "h2z"], ["logs", "h2z"]):  # several calls, each retried by urllib3 on its own
            started = time.monotonic()
            done = submit(kubeconfig, *action, "--request_timeout", "12")
            assert done.returncode == 2 and "no answer within --request_timeout 12 s in all" in done.stderr, \
                done.stderr
            assert time.monotonic() - started < 12 + 15  # the whole action; the start of the command besides
        bad = submit(kubeconfig, "list", "--request_timeout", "0")
        assert bad.returncode == 2 and "--request_timeout 0: must be at least 1" in bad.stderr
    finally:
        silent.close()


def test_the_preflight_names_each_missing_object_and_creates_nothing(api):
    flags = [*FLAGS, "--queue", "team-a", "--priority_class", "training", "--name", "h2z"]
    FakeApi.missing.update({f"/api/v1/namespaces/{NAMESPACE}", f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/cyclegan",
                            f"/apis/kueue.x-k8s.io/v1beta1/namespaces/{NAMESPACE}/localqueues/team-a",
                            "/apis/scheduling.k8s.io/v1/priorityclasses/training"})
    done = submit(api, "train", *flags)
    assert done.returncode == 2, done.stderr
    for line in (f"namespace {NAMESPACE} does not exist", "service account cyclegan does not exist in namespace",
                 "--queue team-a: no Kueue LocalQueue of that name", "--priority_class training: no PriorityClass"):
        assert sum(line in row for row in done.stderr.splitlines()) == 1, (line, done.stderr)
    assert "no node carries cloud.google.com/gke-accelerator=nvidia-h100-80gb now" in done.stderr  # a warning
    assert not [call for call in FakeApi.calls if call[0] == "POST"]  # nothing created

    FakeApi.missing.clear()
    FakeApi.calls.clear()
    checked = submit(api, "train", *flags, "--check")
    assert checked.returncode == 0 and "check: the cluster has what h2z needs" in checked.stdout, checked.stderr
    assert not [call for call in FakeApi.calls if call[0] == "POST"]
    FakeApi.missing.add(f"/api/v1/namespaces/{NAMESPACE}")
    FakeApi.calls.clear()
    unchecked = submit(api, "train", *flags, "--no-check")
    assert unchecked.returncode == 0, unchecked.stderr
    assert not [call for call in FakeApi.calls if call[0] == "GET"] and [c for c in FakeApi.calls if c[0] == "POST"]
