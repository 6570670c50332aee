"""SubmitConfig -> the Kubernetes objects that run it, as plain dicts: one renderer for `submit`, the golden
examples in k8s/examples/ and the tests.

    train, one node     a batch/v1 Job: MirroredStrategy over the node's GPUs
    train, N nodes      an Indexed Job + a headless Service (or a JobSet): MultiWorkerMirroredStrategy, TF_CONFIG
                        built in each pod from its completion index by the kubelet's $(VAR) expansion
    preprocess          a Job running the Beam job on the local runner in the pod, or a launcher Job that runs it
                        on Dataflow and waits, so the Job's status is the Dataflow job's
    tensorboard         a Deployment + a ClusterIP Service reading the logs straight from gs://
    serve               TF Serving: a Deployment + a ClusterIP Service loading an export's numbered versions
                        straight from gs://, or a KServe InferenceService (--kserve)

Failures are sorted as the trainer reports them: exit 75 ("saved, restart me": SIGTERM, or a peer worker died),
exit 6 (no step completed for --stall_minutes: a wedged collective) and node disruptions (drain, spot
preemption) restart without counting against backoffLimit; exits that need a person (2 a usage error, 4 a
restart loop, 5 a collapse), which no restart fixes, fail the job at once; anything else counts. Every pod meets
the Pod Security Standards' "restricted" profile and reaches GCS through Workload Identity, never a key file.
"""
import datetime
import json

from k8s import fast_network
from k8s.config import (MESSAGE_RULES_JOBSET, SERVING_IMAGE, SERVING_VERSION, UID, grace_period,
                        jobset_version, minor_version, pod_size)
from k8s.quantities import cpu_cores, quantity_bytes
from preprocessing import exit_status
from preprocessing.lease import RUN_ENV

TF_PORT = 2222
TENSORBOARD_PORT = 6006
SERVING_GRPC_PORT, SERVING_REST_PORT = 8500, 8501  # TF Serving's own defaults
KSERVE_API = "serving.kserve.io/v1beta1"
WORKERS = "workers"  # the JobSet's replicated job
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
TOPOLOGY_ANNOTATION = "kueue.x-k8s.io/podset-required-topology"  # Kueue's topology-aware scheduling, on the pods
SAFE_TO_EVICT_ANNOTATION = "cluster-autoscaler.kubernetes.io/safe-to-evict"
DATAFLOW_ANNOTATION = "cyclegan/dataflow-job"  # project/region/job name of the Dataflow job a launcher runs
NODE_LOST_TAINTS = ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")
MANAGED_BY = "cyclegan-submit"


def default_name(kind, now=None):
    return f"{kind}-{(now or datetime.datetime.now()).strftime('%Y%m%d-%H%M%S')}"


def labels(config, name):
    out = {"app.kubernetes.io/name": "cyclegan", "app.kubernetes.io/component": config.kind,
           "app.kubernetes.io/instance": name, "app.kubernetes.io/managed-by": MANAGED_BY}
    if config.queue:
        out[QUEUE_LABEL] = config.queue
    return out


def pod_labels(config, name):
    """The pods' labels: the queue label stays on the Job, where Kueue admits the whole group at once."""
    return {key: value for key, value in labels(config, name).items() if key != QUEUE_LABEL}


def metadata(config, name, queued=True):
    """Name, namespace and labels; the queue label only on what Kueue admits (`queued`), not on a Service or a
    PodDisruptionBudget, which Kueue's webhooks would otherwise try to manage as workloads."""
    return {"name": name, "namespace": config.namespace,
            "labels": labels(config, name) if queued else pod_labels(config, name)}


def container_security():
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True,
            "runAsUser": UID, "runAsGroup": UID, "seccompProfile": {"type": "RuntimeDefault"}}


SHM_SHARE = 4  # /dev/shm is memory the container's limit counts: at most a quarter of it


def pod_spec(config, container, restart="Never", shm=False, **extra):
    """The pod: restricted security, the service account, a writable HOME, memory-backed /dev/shm if asked (within
    the container's memory limit)."""
    volumes = [{"name": "home", "emptyDir": {}}]
    container = {**container, "securityContext": container_security(),
                 "env": [{"name": "HOME", "value": "/home/cyclegan"}, *container.get("env", [])],
                 "volumeMounts": [{"name": "home", "mountPath": "/home/cyclegan"}]}
    if shm:  # tf.data and NCCL use shared memory; a container's default /dev/shm is 64 MB
        limit = quantity_bytes(container["resources"]["limits"]["memory"]) // SHM_SHARE
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{int(limit // 2 ** 20)}Mi"}})
        container["volumeMounts"].append({"name": "dshm", "mountPath": "/dev/shm"})
    if config.priority_class:  # Kueue orders its queue by it too, when no WorkloadPriorityClass label says otherwise
        extra["priorityClassName"] = config.priority_class
    return {"serviceAccountName": config.service_account, "restartPolicy": restart,
            "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [container], "volumes": volumes, **extra}


def whole_cores(config, kind):
    """The CPU request as the number of worker processes or CPU replicas it can hold: at least one."""
    cpu = resources(config, kind)["requests"]["cpu"]
    return max(1, int(cpu_cores(cpu)))


def resources(config, kind, gpus=0):
    cpu, memory = pod_size(config, kind)
    out = {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}}
    if gpus:
        out["limits"]["nvidia.com/gpu"] = str(gpus)  # a quantity: the API's clients want it as a string
    return out


def gpu_scheduling(config):
    """Node selector and tolerations for GKE's GPU (and spot) node pools; on several nodes, a worker whose node
    stopped answering is evicted after --node_lost_seconds instead of Kubernetes' default five minutes."""
    selector, tolerations = {}, []
    if config.gpus:
        selector["cloud.google.com/gke-accelerator"] = config.accelerator
        tolerations.append({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"})
    if config.spot:
        selector["cloud.google.com/gke-spot"] = "true"
        tolerations.append({"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true",
                            "effect": "NoSchedule"})
    if config.kind == "train" and config.nodes > 1:
        tolerations += [{"key": taint, "operator": "Exists", "effect": "NoExecute",
                         "tolerationSeconds": config.node_lost_seconds} for taint in NODE_LOST_TAINTS]
    return {**({"nodeSelector": selector} if selector else {}), **({"tolerations": tolerations} if tolerations else {})}


# The exits that need a person: a usage error, a restart loop the trainer stopped, a collapse it stopped on. A
# restart brings back the same state, so each fails the Job at once instead of costing more full-size start-ups.
NEEDS_A_PERSON = [exit_status.USAGE, exit_status.NO_PROGRESS, exit_status.COLLAPSED]


RESTART_ME = [exit_status.PREEMPTED, exit_status.STALLED]  # saved (or stalled): start again, uncounted


def failure_policy(container_name, restart_action="Ignore", give_up_waiting=False):
    """podFailurePolicy (it needs restartPolicy: Never): what needs a person fails, "restart me" and disruptions do
    not count (Ignore: the pod is replaced in place; FailJob, for a JobSet that restarts the whole group on it).
    The API server refuses exit-code lists that are not sorted and unique, hence sorted() on both."""
    return {"rules": [
        {"action": "FailJob", "onExitCodes": {"containerName": container_name, "operator": "In", "values": sorted(
            NEEDS_A_PERSON + [exit_status.NEVER_GATHERED] * give_up_waiting)}},
        {"action": restart_action, "onExitCodes": {"containerName": container_name, "operator": "In",
                                                   "values": sorted(RESTART_ME)}},
        {"action": restart_action, "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    ]}


def jobset_failure_policy(config):
    """The JobSet's failurePolicy. Its rules see a child Job's failure reason, which a podFailurePolicy FailJob sets
    to PodFailurePolicy whatever the exit code; from JobSet v0.10 they also see its message, which ends "matching
    FailJob rule at index N" (the Job controller's wording), and so tell the child Job's rules apart."""
    if jobset_version(config) < MESSAGE_RULES_JOBSET:
        return {"maxRestarts": config.backoff_limit, "rules": [
            {"name": "failOnUsageError", "action": "FailJobSet", "onJobFailureReasons": ["PodFailurePolicy"]}]}
    return {"maxRestarts": config.backoff_limit, "rules": [
        {"name": "failWhenAPersonIsNeeded", "action": "FailJobSet", "onJobFailureReasons": ["PodFailurePolicy"],
         "onJobFailureMessagePatterns": ["matching FailJob rule at index 0$"]},
        {"name": "restartOnPreemptionOrStall", "action": "RestartJobSetAndIgnoreMaxRestarts",
         "onJobFailureReasons": ["PodFailurePolicy"],
         "onJobFailureMessagePatterns": ["matching FailJob rule at index 1$", "matching FailJob rule at index 2$"]}]}


def job_spec(config, pod, container_name):
    template = {"labels": pod["labels"]}
    annotations = {**pod.get("annotations", {}), **({TOPOLOGY_ANNOTATION: config.topology} if config.topology else {})}
    if annotations:
        template["annotations"] = annotations
    spec = {"backoffLimit": config.backoff_limit, "ttlSecondsAfterFinished": config.ttl_hours * 3600,
            "podFailurePolicy": failure_policy(container_name, give_up_waiting=bool(config.max_pending_minutes)),
            "podReplacementPolicy": "Failed",
            "template": {"metadata": template, "spec": pod["spec"]}}
    if config.deadline_hours:
        spec["activeDeadlineSeconds"] = config.deadline_hours * 3600
    return spec


# ---------------------------------------------------------------------------------------------------------------
# train


def worker_hosts(config, name):
    """Each worker's stable DNS name and port, in completion-index order."""
    if config.backend == "jobset":  # <jobset>-<replicated job>-<job index>-<pod index>.<subdomain>
        return [f"{name}-{WORKERS}-0-{i}.{name}:{TF_PORT}" for i in range(config.nodes)]
    return [f"{name}-{i}.{name}:{TF_PORT}" for i in range(config.nodes)]  # <job>-<index>.<service>


def tf_config_env(config, name):
    """TF_CONFIG from the pod's completion index, expanded by the kubelet: no wrapper script in the image."""
    template = json.dumps({"cluster": {"worker": worker_hosts(config, name)},
                           "task": {"type": "worker", "index": 0}}, separators=(",", ":"))
    value = template.replace('"index":0}', '"index":$(WORKER_INDEX)}')
    return [{"name": "WORKER_INDEX", "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['"
                                                                              f"{INDEX_ANNOTATION}']"}}},
            {"name": "TF_CONFIG", "value": value}]


def trainer_args(config, extra):
    args = ["--preset", config.preset, "--data", config.data, "--model_dir", config.model_dir]
    if config.nodes > 1:
        args += ["--peer_timeout", str(config.peer_timeout)]
    if config.max_pending_minutes:  # the first gang-up only: a replacement for a preempted node may come slowly
        args += ["--first_start_timeout", str(60 * config.max_pending_minutes)]
    if not config.gpus:  # a CPU pod: one replica per requested core
        args += ["--cpu_replicas", str(whole_cores(config, "train"))]
    return args + list(extra)


def trainer_pod(config, name, extra):
    container = {"name": "trainer", "image": config.image, "command": ["cyclegan", "train"],
                 "args": trainer_args(config, extra), "resources": resources(config, "train", config.gpus)}
    # the run's name: a replacement pod may take over the model directory's lease from its predecessor's
    container["env"] = [{"name": RUN_ENV, "value": name}]
    extra_spec = gpu_scheduling(config)
    if config.nodes > 1:
        container["env"] += tf_config_env(config, name)
        container["ports"] = [{"name": "tf-worker", "containerPort": TF_PORT}]
        if config.backend == "job":
            extra_spec["subdomain"] = name
    spec = pod_spec(config, container, shm=True, terminationGracePeriodSeconds=grace_period(config), **extra_spec)
    if config.network_profile != "none":
        networks = [network.strip() for network in config.networks.split(",") if network.strip()]
        return {"labels": pod_labels(config, name),
                "annotations": fast_network.annotations(config.network_profile, networks),
                "spec": fast_network.attach(config.network_profile, spec, config.network_daemon_image,
                                            config.nccl_as_root)}
    return {"labels": pod_labels(config, name), "spec": spec}


def headless_service(config, name):
    """Gives every worker pod its DNS name, also before it is ready: the workers find each other while starting."""
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata(config, name, queued=False),
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                     "selector": {"app.kubernetes.io/instance": name, "app.kubernetes.io/component": "train"},
                     "ports": [{"name": "tf-worker", "port": TF_PORT, "targetPort": TF_PORT}]}}


def disruption_budget(config, name):
    """A drain (a node upgrade, a scale-down) waits for the run instead of evicting a worker mid-step; pods that are
    not ready may still go, so a broken pod never blocks a drain."""
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": metadata(config, name, queued=False),
            "spec": {"maxUnavailable": 0, "unhealthyPodEvictionPolicy": "AlwaysAllow",
                     "selector": {"matchLabels": {"app.kubernetes.io/instance": name,
                                                  "app.kubernetes.io/component": "train"}}}}


def train_objects(config, name, extra):
    pod = trainer_pod(config, name, extra)
    spec = job_spec(config, pod, "trainer")
    if config.nodes == 1:
        return [{"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata(config, name), "spec": spec}]
    spec.update(completionMode="Indexed", completions=config.nodes, parallelism=config.nodes)
    if config.backend == "jobset":
        # JobSet v0.6.0 is the oldest release with every field below (failurePolicy.rules: jobset PR #537;
        # network.publishNotReadyAddresses: PR #505; ttlSecondsAfterFinished came in v0.5.0). Before v0.10 its
        # rules match a child Job's failure reason only, which cannot tell exit 2 from exit 75: exit 75 and
        # disruptions stay Ignore inside the child Job (the pod is replaced in place, uncounted; its peers exit 75
        # within --peer_timeout and are replaced too), and FailJobSet on PodFailurePolicy ends the run on what
        # needs a person. From v0.10 (--jobset_version) they are FailJob in the child Job too, and the JobSet's
        # message rules restart the whole group at once without counting (jobset_failure_policy).
        spec["backoffLimit"] = 0  # any crash fails the child Job, and the JobSet restarts the whole group
        spec.pop("ttlSecondsAfterFinished")
        if jobset_version(config) >= MESSAGE_RULES_JOBSET:
            spec["podFailurePolicy"] = failure_policy("trainer", restart_action="FailJob",
                                                      give_up_waiting=bool(config.max_pending_minutes))
        return [{"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": metadata(config, name),
                 "spec": {"network": {"enableDNSHostnames": True, "subdomain": name,
                                      "publishNotReadyAddresses": True},
                          "failurePolicy": jobset_failure_policy(config),
                          "successPolicy": {"operator": "All", "targetReplicatedJobs": [WORKERS]},
                          "ttlSecondsAfterFinished": config.ttl_hours * 3600,
                          "replicatedJobs": [{"name": WORKERS, "replicas": 1, "template": {
                              "metadata": {"labels": pod_labels(config, name)}, "spec": spec}}]}},
                disruption_budget(config, name)]
    if minor_version(config.kubernetes_version) >= (1, 33):  # the chief's success is the run's success
        spec["successPolicy"] = {"rules": [{"succeededIndexes": "0"}]}
    return [{"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata(config, name), "spec": spec},
            headless_service(config, name), disruption_budget(config, name)]


# ---------------------------------------------------------------------------------------------------------------
# preprocess


def preprocess_objects(config, name, extra):
    args = ["--input", config.input, "--output", config.output]
    if config.runner == "dataflow":  # the job runs on Dataflow in this image as its custom container
        kind = "dataflow"
        args += ["--runner", "DataflowRunner", "--project", config.project, "--region", config.region,
                 "--temp_location", config.temp_location, "--sdk_container_image", config.image,
                 "--sdk_location", "container", "--job_name", name]
    else:  # the local runner, one worker process per requested core
        kind = "preprocess"
        args += [f"--direct_num_workers={whole_cores(config, kind)}"]
    container = {"name": "preprocess", "image": config.image, "command": ["cyclegan", "preprocess"],
                 "args": args + list(extra), "resources": resources(config, kind),
                 # the job's name: a replacement pod may take over the output folder's lease from its predecessor's
                 "env": [{"name": RUN_ENV, "value": name}]}
    pod = {"labels": pod_labels(config, name), "spec": pod_spec(config, container, shm=kind == "preprocess",
                                                            terminationGracePeriodSeconds=60)}
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata(config, name),
           "spec": job_spec(config, pod, "preprocess")}
    if kind == "dataflow":
        # A stopped launcher cancels its Dataflow job (pipeline/dataflow_job.py), so nothing retries a failed one
        # (each try would be another billed job) and the autoscaler does not move the launcher off its node. A
        # launcher lost with its node is replaced uncounted, and the replacement waits for the running job.
        job["spec"]["backoffLimit"] = 0
        job["spec"]["template"]["metadata"]["annotations"] = {SAFE_TO_EVICT_ANNOTATION: "false"}
        job["metadata"]["annotations"] = {DATAFLOW_ANNOTATION: f"{config.project}/{config.region}/{name}"}
    return [job]


# ---------------------------------------------------------------------------------------------------------------
# tensorboard


def tensorboard_objects(config, name, extra):
    probe = {"httpGet": {"path": "/", "port": TENSORBOARD_PORT}, "periodSeconds": 10}
    container = {"name": "tensorboard", "image": config.image, "command": ["tensorboard"],
                 "args": ["--logdir", config.logdir, "--host", "0.0.0.0", "--port", str(TENSORBOARD_PORT),
                          "--load_fast", "false", *extra],
                 "ports": [{"name": "http", "containerPort": TENSORBOARD_PORT}],
                 "readinessProbe": probe, "resources": resources(config, "tensorboard")}
    selector = {"app.kubernetes.io/instance": name, "app.kubernetes.io/component": "tensorboard"}
    return [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata(config, name),
             "spec": {"replicas": 1, "selector": {"matchLabels": selector},
                      "template": {"metadata": {"labels": pod_labels(config, name)},
                                   "spec": pod_spec(config, container, restart="Always")}}},
            {"apiVersion": "v1", "kind": "Service", "metadata": metadata(config, name, queued=False),
             "spec": {"type": "ClusterIP", "selector": selector,
                      "ports": [{"name": "http", "port": TENSORBOARD_PORT, "targetPort": TENSORBOARD_PORT}]}}]


# ---------------------------------------------------------------------------------------------------------------
# serve


def model_status_probe(name, **timing):
    """Whether TF Serving's model `name` has a version in state AVAILABLE. Its status endpoint answers 200 in every
    state (loading, failed, ended), so an HTTP probe would pass a model that never loaded or failed later: the
    probe reads the body, with bash's own /dev/tcp (TF Serving's images have bash and grep, not curl)."""
    request = f"GET /v1/models/{name} HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n"
    script = (f"exec 3<>/dev/tcp/127.0.0.1/{SERVING_REST_PORT} && printf '{request}' >&3 && "
              "grep -q '\"state\": *\"AVAILABLE\"' <&3")
    return {"exec": {"command": ["/bin/bash", "-c", script]}, "timeoutSeconds": 5, **timing}


def serving_container(config, name):
    return {"name": "serving", "image": config.image, "command": ["tensorflow_model_server"],
            "args": [f"--model_name={name}", f"--model_base_path={config.model.rstrip('/')}",
                     f"--port={SERVING_GRPC_PORT}", f"--rest_api_port={SERVING_REST_PORT}"],
            "ports": [{"name": "grpc", "containerPort": SERVING_GRPC_PORT},
                      {"name": "http", "containerPort": SERVING_REST_PORT}],
            # a reference generator loads in seconds from a bucket; ten minutes covers a slow one before liveness
            "startupProbe": model_status_probe(name, periodSeconds=10, failureThreshold=60),
            "readinessProbe": model_status_probe(name, periodSeconds=10),
            "livenessProbe": model_status_probe(name, periodSeconds=20, failureThreshold=3),
            "resources": resources(config, "serve", config.gpus)}


def serve_objects(config, name, extra):
    """TF Serving as a Deployment and a Service: clients POST to http://NAME:8501/v1/models/NAME:predict."""
    container = serving_container(config, name)
    container["args"] += list(extra)
    selector = {"app.kubernetes.io/instance": name, "app.kubernetes.io/component": "serve"}
    if config.kserve:
        return [inference_service(config, name, container)]
    return [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata(config, name),
             "spec": {"replicas": config.replicas, "selector": {"matchLabels": selector},
                      "template": {"metadata": {"labels": pod_labels(config, name)},
                                   "spec": pod_spec(config, container, restart="Always", **gpu_scheduling(config))}}},
            {"apiVersion": "v1", "kind": "Service", "metadata": metadata(config, name, queued=False),
             "spec": {"type": "ClusterIP", "selector": selector,
                      "ports": [{"name": "http", "port": SERVING_REST_PORT, "targetPort": SERVING_REST_PORT},
                                {"name": "grpc", "port": SERVING_GRPC_PORT, "targetPort": SERVING_GRPC_PORT}]}}]


def inference_service(config, name, container):
    """KServe's InferenceService: its TensorFlow runtime runs TF Serving on the model its storage initializer
    copies from storageUri (which must hold the numbered versions), and names the model after the service.
    The predictor is the same pod as the Deployment's (restricted, the service account, GPU scheduling)."""
    pod = pod_spec(config, container, restart="Always", **gpu_scheduling(config))
    model = {"modelFormat": {"name": "tensorflow"}, "storageUri": config.model.rstrip("/"),
             "resources": container["resources"], "securityContext": pod["containers"][0]["securityContext"]}
    if config.image != SERVING_IMAGE:  # a GPU build, or the image given: the runtime's own is a CPU build
        model["image"] = config.image
    else:  # KServe's runtime defaults to TF Serving 2.6.2, which cannot read a SavedModel of this TensorFlow
        model["runtimeVersion"] = SERVING_VERSION
    predictor = {"minReplicas": config.replicas, "maxReplicas": config.replicas, "model": model,
                 **{key: pod[key] for key in ("serviceAccountName", "securityContext", "nodeSelector", "tolerations",
                                              "priorityClassName") if key in pod}}
    return {"apiVersion": KSERVE_API, "kind": "InferenceService", "metadata": metadata(config, name),
            "spec": {"predictor": predictor}}


def service_account(config):
    """Workload Identity: the pods' Kubernetes service account acts as the Google one for GCS."""
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": config.service_account, "namespace": config.namespace,
                         "labels": {"app.kubernetes.io/name": "cyclegan", "app.kubernetes.io/managed-by": MANAGED_BY},
                         "annotations": {"iam.gke.io/gcp-service-account": config.gcp_service_account}}}


def render(config, extra=(), now=None):
    """(name, [objects]) for `config`; `extra` are flags passed to the job's own command. The job's own object (Job,
    JobSet or Deployment) comes first: `submit` creates it first and makes it the owner of the objects after it
    (k8s/api.py), so that deleting it, or its TTL, removes them too."""
    name = config.name or default_name(config.kind, now)
    objects = {"train": train_objects, "preprocess": preprocess_objects, "tensorboard": tensorboard_objects,
               "serve": serve_objects}[config.kind](config, name, list(extra))
    if config.gcp_service_account:
        objects.insert(0, service_account(config))
    return name, objects
