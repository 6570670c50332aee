"""The Kubernetes API calls of `cyclegan submit`: create and delete its objects, and read their state and logs.

Every object `submit` creates carries the label app.kubernetes.io/managed-by=cyclegan-submit, and is found by it.
"""
import json
import time

from k8s.render import INDEX_ANNOTATION, MANAGED_BY
from preprocessing import exit_status
from preprocessing.flags import UsageError

JOBSET = ("jobset.x-k8s.io", "v1alpha2", "jobsets")
INFERENCE_SERVICE = ("serving.kserve.io", "v1beta1", "inferenceservices")
CUSTOM = {"JobSet": JOBSET, "InferenceService": INFERENCE_SERVICE}  # kinds outside Kubernetes itself
OWNERS = ("Job", "JobSet", "Deployment", "InferenceService")  # what runs a job; it owns the other objects
SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY}"
FOLLOW_SILENCE = 7 * 24 * 3600  # seconds a followed log may stay silent: as long as a job may print nothing


def api_client(timeout):
    """The client of the kubeconfig's current context, or of the pod this runs in; a UsageError if neither.

    Its calls together give up `timeout` seconds after the first one began, retries included: the client's own
    default is to wait forever, and urllib3 tries an unanswered GET four times. A call that cannot connect is tried
    again, a second apart, while time is left. A followed log sets its own timeout and is not counted."""
    import urllib3
    from kubernetes import client, config

    class TimedApiClient(client.ApiClient):
        request_timeout = timeout
        deadline = None

        def call_api(self, *args, **kwargs):
            if kwargs.get("_request_timeout") is not None:
                return super().call_api(*args, **kwargs)
            self.deadline = self.deadline or time.monotonic() + self.request_timeout
            out_of_time = urllib3.exceptions.TimeoutError(f"no answer within --request_timeout "
                                                          f"{self.request_timeout} s in all")
            refused = None
            while True:
                left = self.deadline - time.monotonic()
                if left <= 0:
                    raise refused or out_of_time
                try:
                    return super().call_api(*args, **{**kwargs, "_request_timeout": left})
                except urllib3.exceptions.MaxRetryError as err:  # what urllib3 raises when it does not retry
                    # NewConnectionError is a kind of ConnectTimeoutError: asked first
                    if isinstance(err.reason, (urllib3.exceptions.NewConnectionError,
                                               urllib3.exceptions.ProtocolError)):
                        refused = err
                        time.sleep(min(1.0, max(0.0, self.deadline - time.monotonic())))
                    elif isinstance(err.reason, urllib3.exceptions.TimeoutError):
                        raise out_of_time from None
                    else:
                        raise

    try:
        config.load_kube_config()
    except Exception as kubeconfig_error:  # no file, no context, a broken file: all mean "not configured"
        try:
            config.load_incluster_config()
        except config.ConfigException:
            raise UsageError(f"no Kubernetes cluster configured ({str(kubeconfig_error).splitlines()[0]}): point "
                             "KUBECONFIG at one (e.g. `gcloud container clusters get-credentials CLUSTER`), or "
                             "pass --dry-run to print the manifests") from None
    configuration = client.Configuration.get_default_copy()
    configuration.retries = 0  # retried above, within the deadline
    return TimedApiClient(configuration)


def api_error(err, what, namespace):
    """A one-line UsageError for a refused API call (ApiException) or an unreachable server."""
    from kubernetes.client.exceptions import ApiException

    if not isinstance(err, ApiException):
        import urllib3

        first = (str(err).strip().splitlines() or [""])[0][:200]
        if isinstance(err, (urllib3.exceptions.HTTPError, OSError)):
            return UsageError(f"cannot reach the Kubernetes API to {what} ({type(err).__name__}: {first}); check "
                              "the kubeconfig's server and your network")
        return UsageError(f"cannot {what}: {type(err).__name__}: {first}")
    try:
        message = json.loads(err.body).get("message", "")
    except (TypeError, ValueError):
        message = err.reason
    if err.status == 409:
        return UsageError(f"cannot {what}: it already exists in namespace {namespace}; choose another --name, or "
                          "remove the old one with `cyclegan submit delete NAME`")
    if err.status in (401, 403):
        return UsageError(f"cannot {what}: the cluster refused ({err.status} {err.reason}: {message}); your "
                          f"account needs the rights to do this in namespace {namespace} (`kubectl auth can-i`)")
    if err.status == 404 and "jobset" in what.lower():
        return UsageError(f"cannot {what}: this cluster has no JobSet API (install JobSet, or use --backend job)")
    if err.status == 404 and "inferenceservice" in what.lower():
        return UsageError(f"cannot {what}: this cluster has no KServe API (install KServe, or serve without --kserve)")
    return UsageError(f"cannot {what}: the API answered {err.status} {err.reason}: {message}")


def _apis(api):
    from kubernetes import client

    return client.BatchV1Api(api), client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)


def create(api, obj):
    from kubernetes import client

    batch, core, apps, custom = _apis(api)
    namespace, kind = obj["metadata"]["namespace"], obj["kind"]
    if kind == "Job":
        return batch.create_namespaced_job(namespace, obj)
    if kind == "Service":
        return core.create_namespaced_service(namespace, obj)
    if kind == "ServiceAccount":
        from kubernetes.client.exceptions import ApiException

        try:
            return core.create_namespaced_service_account(namespace, obj)
        except ApiException as err:  # it exists: give it the Workload Identity annotation
            if err.status != 409:
                raise
            return core.patch_namespaced_service_account(obj["metadata"]["name"], namespace,
                                                         {"metadata": {"annotations": obj["metadata"]["annotations"]}})
    if kind == "Deployment":
        return apps.create_namespaced_deployment(namespace, obj)
    if kind in CUSTOM:
        group, version, plural = CUSTOM[kind]
        return custom.create_namespaced_custom_object(group, version, namespace, plural, obj)
    if kind == "PodDisruptionBudget":
        return client.PolicyV1Api(api).create_namespaced_pod_disruption_budget(namespace, obj)
    raise ValueError(f"no API call for kind {kind}")


def delete(api, kind, name, namespace):
    batch, core, apps, custom = _apis(api)
    propagation = {"propagation_policy": "Background"}  # as kubectl: the Job's pods go with it
    if kind == "Job":
        return batch.delete_namespaced_job(name, namespace, **propagation)
    if kind == "Service":
        return core.delete_namespaced_service(name, namespace)
    if kind == "Deployment":
        return apps.delete_namespaced_deployment(name, namespace, **propagation)
    if kind in CUSTOM:
        group, version, plural = CUSTOM[kind]
        return custom.delete_namespaced_custom_object(group, version, namespace, plural, name, **propagation)
    if kind == "PodDisruptionBudget":
        from kubernetes import client

        return client.PolicyV1Api(api).delete_namespaced_pod_disruption_budget(name, namespace)
    raise ValueError(f"no API call for kind {kind}")


def owner_reference(obj, answer):
    """An ownerReference to `obj`, from the API's answer to its creation (a model object, or a dict for JobSets).
    Without blockOwnerDeletion: setting it needs the right to update the owner's finalizers, which a user who may
    create Jobs need not have."""
    uid = answer["metadata"]["uid"] if isinstance(answer, dict) else answer.metadata.uid
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"], "uid": uid}


def submit(config, objects):
    """Create the objects in order, yielding (kind, name) as each is created; on a refusal, delete the ones
    created so far and raise a UsageError. The job's own object (the first Job, JobSet or Deployment) becomes the
    owner of the objects after it, so that the garbage collector removes them with it: at the end of its TTL, or
    on `submit delete`."""
    api = api_client(config.request_timeout)
    created, owner = [], None
    for obj in objects:
        what = f"create {obj['kind']} {obj['metadata']['name']}"
        if owner and obj["kind"] != "ServiceAccount":
            obj = {**obj, "metadata": {**obj["metadata"], "ownerReferences": [owner]}}
        try:
            answer = create(api, obj)
            if owner is None and obj["kind"] in OWNERS:
                owner = owner_reference(obj, answer)
        except Exception as err:
            for kind, done in reversed(created):
                try:
                    delete(api, kind, done, config.namespace)
                except Exception:  # best effort: the error below is the one to read
                    pass
            raise api_error(err, what, config.namespace) from None
        if obj["kind"] != "ServiceAccount":
            created.append((obj["kind"], obj["metadata"]["name"]))
        yield obj["kind"], obj["metadata"]["name"]


def submitted_jobs(api, namespace, name=None):
    """[(kind, object as a dict)] that `submit` made in the namespace (those of `name` only, if given)."""
    from kubernetes.client.exceptions import ApiException

    batch, _, apps, custom = _apis(api)
    selector = SELECTOR + (f",app.kubernetes.io/instance={name}" if name else "")
    found = [("Job", job) for job in batch.list_namespaced_job(namespace, label_selector=selector).to_dict()["items"]]
    found += [("Deployment", d) for d in
              apps.list_namespaced_deployment(namespace, label_selector=selector).to_dict()["items"]]
    for kind, (group, version, plural) in CUSTOM.items():
        try:
            found += [(kind, obj) for obj in custom.list_namespaced_custom_object(
                group, version, namespace, plural, label_selector=selector)["items"]]
        except ApiException as err:
            if err.status != 404:  # 404: no such API in this cluster
                raise
    return found


def job_state(kind, obj):
    """One word or a few: Complete, Failed, the pods' counts, or a Deployment's ready replicas."""
    status = obj.get("status") or {}
    if kind == "Deployment":
        return f"{status.get('ready_replicas') or status.get('readyReplicas') or 0}/{obj['spec']['replicas']} ready"
    if kind == "InferenceService":  # KServe's Ready condition, and the URL it serves at once it has one
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        return f"ready at {status.get('url')}" if ready and status.get("url") else "ready" if ready else "not ready"
    conditions = [c["type"] for c in status.get("conditions") or [] if c.get("status") == "True"]
    for final in ("Complete", "Completed", "Failed"):
        if final in conditions:
            return final
    counts = [f"{status[key]} {key}" for key in ("active", "succeeded", "failed") if status.get(key)]
    return ", ".join(counts) or "pending"


def pods_of(api, namespace, name):
    _, core, _, _ = _apis(api)
    pods = core.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/instance={name}").items
    return sorted(pods, key=lambda pod: pod.metadata.name)


def worker_of(pod):
    """The pod's worker index (its completion index; 0 for a pod of a non-indexed Job)."""
    return int((pod.metadata.annotations or {}).get(INDEX_ANNOTATION, "0"))


def by_worker(pods):
    """{worker index: its pods, newest first}."""
    workers = {}
    def created(pod):
        return pod.metadata.creation_timestamp.timestamp() if pod.metadata.creation_timestamp else 0

    for pod in sorted(pods, key=created, reverse=True):
        workers.setdefault(worker_of(pod), []).append(pod)
    return dict(sorted(workers.items()))


def how_it_ended(pod):
    """A finished pod's exit, and what the Job's podFailurePolicy (k8s/render.py) made of it."""
    if any(c.type == "DisruptionTarget" and c.status == "True" for c in pod.status.conditions or []):
        return "disrupted: a drain or preemption (not counted)"
    codes = [c.state.terminated.exit_code for c in pod.status.container_statuses or []
             if c.state and c.state.terminated]
    if not codes:
        return pod.status.phase or "unknown"
    rule = {0: "done", exit_status.USAGE: "a usage error: FailJob", exit_status.PREEMPTED: "saved and stopped: "
            "restarted, not counted", exit_status.STALLED: "stalled: restarted, not counted",
            exit_status.NO_PROGRESS: "a restart loop: FailJob", exit_status.COLLAPSED: "collapsed: FailJob",
            exit_status.NEVER_GATHERED: "the workers never all started: FailJob",
            exit_status.NETWORK_DAEMON_DOWN: "its node's network daemon never became ready: counted, replaced"}.get(
        codes[0], "counted against --backoff_limit")
    return f"exited {codes[0]} ({rule})"


def why_waiting(pod):
    """Why a pod does not run: its init or sidecar containers' trouble (waiting reasons, restarts, a startup probe
    not passed), the scheduler's message, or its container's waiting reason; '' if it runs."""
    for status in pod.status.init_container_statuses or []:
        waiting = status.state.waiting if status.state else None
        restarts = f" (restarted {status.restart_count} times)" if status.restart_count else ""
        last = status.last_state.terminated if status.last_state else None
        ended = f", last exit {last.exit_code}" + (f" {last.reason}" if last.reason else "") if last else ""
        if waiting and waiting.reason not in (None, "PodInitializing", "ContainerCreating"):
            return f"init container {status.name}: {waiting.reason}: {waiting.message or ''}".rstrip(": ") + (
                restarts + ended)
        if status.state and status.state.running and status.started is False and status.restart_count:
            return f"sidecar {status.name}: running, its startup probe not passed{restarts}{ended}"
    for status in pod.status.container_statuses or []:
        waiting = status.state.waiting if status.state else None
        if waiting and waiting.reason not in (None, "ContainerCreating", "PodInitializing"):
            return f"{waiting.reason}: {waiting.message or ''}".rstrip(": ")
    if pod.status.phase != "Pending":
        return ""
    for condition in pod.status.conditions or []:  # the scheduler's reason, as its FailedScheduling event says
        if condition.type == "PodScheduled" and condition.status == "False" and condition.message:
            return f"Pending, not scheduled: {condition.message}"
    return "Pending"


LATEST = {"progress": "step ", "evaluation": "eval at step "}  # what `status` shows, by how the trainer's line starts


def latest_lines(api, namespace, pod):
    """{kind: the last line of that kind in the pod's recent log} for the kinds of LATEST that it has: progress
    (step N/M ... pairs/s ... ETA), and evaluation (its metrics and the best checkpoint so far)."""
    _, core, _, _ = _apis(api)
    try:
        text = core.read_namespaced_pod_log(pod.metadata.name, namespace, tail_lines=500)
    except Exception:  # no log yet (a pending pod): nothing to show
        return {}
    latest = {}
    for line in (text or "").splitlines():
        kind = next((kind for kind, start in LATEST.items() if line.startswith(start)), None)
        if kind:
            latest[kind] = line
    return {kind: latest[kind] for kind in LATEST if kind in latest}


def log_lines(api, namespace, name, follow=False, worker=None, every_worker=False, tail=None, previous=False):
    """The lines of the log of a worker's newest pod (worker 0, the chief, unless `worker`), or of its pod before that
    (`previous`: a Job's pods do not restart in place, they are replaced), or of every worker, each line
    prefixed with it."""
    _, core, _, _ = _apis(api)
    workers = by_worker(pods_of(api, namespace, name))
    if not workers:
        raise UsageError(f"no pod of {name} in namespace {namespace} yet (see `cyclegan submit status {name}`)")
    if follow and every_worker:
        raise UsageError("--follow streams one worker's log: give --worker N instead of --all")
    chosen = sorted(workers) if every_worker else [min(workers) if worker is None else worker]
    for index in chosen:
        pods = workers.get(index, [])
        if len(pods) < 1 + previous:
            raise UsageError(f"{name} has no {'earlier ' if previous else ''}pod of worker {index} (workers: "
                             f"{', '.join(map(str, workers))}; see `cyclegan submit status {name}`)")
        pod = pods[1 if previous else 0]
        extra = {"tail_lines": tail} if tail else {}
        stream = core.read_namespaced_pod_log(pod.metadata.name, namespace, follow=follow, _preload_content=False,
                                              _request_timeout=(api.request_timeout, FOLLOW_SILENCE) if follow
                                              else api.request_timeout, **extra)
        prefix, pending = f"[worker {index}] " if every_worker else "", ""
        for chunk in stream.stream():
            pending += chunk.decode(errors="replace")
            *lines, pending = pending.split("\n")
            for line in lines:
                yield prefix + line
        if pending:
            yield prefix + pending


def remove(api, namespace, name):
    """Delete the job's objects and Services, yielding (kind, object as a dict) as each is deleted."""
    objects = submitted_jobs(api, namespace, name)
    _, core, _, _ = _apis(api)
    services = core.list_namespaced_service(namespace, label_selector=f"{SELECTOR},app.kubernetes.io/instance="
                                                                      f"{name}").items
    if not objects and not services:
        raise UsageError(f"no job named {name} in namespace {namespace} (see `cyclegan submit list`)")
    for kind, obj in objects:
        delete(api, kind, obj["metadata"]["name"], namespace)
        yield kind, obj
    for service in services:
        delete(api, "Service", service.metadata.name, namespace)
        yield "Service", {"metadata": {"name": service.metadata.name}}
