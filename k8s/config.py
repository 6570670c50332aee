"""SubmitConfig: everything `cyclegan submit` can be told, one flag per field, for the three kinds of job."""
import dataclasses
import re

from k8s import machines
from k8s.quantities import CPU_QUANTITY, QUANTITY, quantity_bytes
from preprocessing import exit_status
from preprocessing.flags import UsageError, check_fields, config_field
from trainer.config import PRESETS, TrainConfig

KINDS = ("preprocess", "train", "tensorboard", "serve")
# A name must leave room for what Kubernetes derives from it: a JobSet's pod hostnames are
# <name>-workers-0-<index>, and a hostname is a DNS-1123 label of at most 63 characters.
MAX_NAME = 40
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")  # at most 253
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")  # at most 63 characters
LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                       r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
IMAGE = re.compile(r"^[a-z0-9]([a-z0-9._\-/:]*[a-z0-9])?(:[\w][\w.\-]{0,127})?(@sha256:[0-9a-f]{64})?$")
OLDEST_KUBERNETES = (1, 31)  # podFailurePolicy, which the Jobs rely on, is GA from 1.31
MAX_GPUS = 16  # more than any node offers: a higher --gpus is a typo, and its pods would never be scheduled
ON_DEMAND_GRACE, SPOT_GRACE = 120, 15  # GKE: a spot node's shutdown gives ordinary pods its first 15 s
# The grace period must hold the step in flight and a save. A reference-size checkpoint (every net, both Adam
# states and the pools) takes a few seconds to upload (benchmarks/RESULTS.md, "Checkpoint save"); twice that,
# and a step, round up to 10 s.
SHORTEST_GRACE = 10
# Each pod's requests unless --cpu/--memory say otherwise; "dataflow" is the launcher pod of a Dataflow run.
DEFAULT_CPU = {"train": "8", "preprocess": "4", "tensorboard": "1", "dataflow": "1", "serve": "4"}
DEFAULT_MEMORY = {"train": "48Gi", "preprocess": "16Gi", "tensorboard": "4Gi", "dataflow": "2Gi", "serve": "8Gi"}
# TF Serving's published images for `submit serve` without --image (CPU; GPU with --gpus 1). Not run here: the
# exported ops are TensorFlow's standard ones, which TF Serving 2.19 has; see docs/operations.md.
SERVING_VERSION = "2.20.0"  # TF Serving built on TensorFlow 2.20: it reads what this TensorFlow saves
SERVING_IMAGE, SERVING_GPU_IMAGE = f"tensorflow/serving:{SERVING_VERSION}", f"tensorflow/serving:{SERVING_VERSION}-gpu"
UID = 10001  # the images' user (k8s/Dockerfile*): non-root, fixed, as the restricted profile wants


@dataclasses.dataclass(frozen=True)
class SubmitConfig:
    kind: str = config_field("train", "what to run", choices=KINDS)
    image: str = config_field("", "the container image: k8s/Dockerfile (train, tensorboard) or "
                              f"k8s/Dockerfile.beam (preprocess); serve: TF Serving's ({SERVING_IMAGE}, or "
                              f"{SERVING_GPU_IMAGE} with --gpus 1) unless given")
    name: str = config_field("", f"the job's name, a DNS-1123 label of at most {MAX_NAME} characters "
                             "(default: KIND-DATE-TIME)")
    namespace: str = config_field("default", "Kubernetes namespace")
    service_account: str = config_field("cyclegan", "the pods' Kubernetes service account (GCS access through "
                                        "Workload Identity)")
    gcp_service_account: str = config_field("", "also render the service account, annotated for Workload "
                                            "Identity with this Google service account (NAME@PROJECT.iam."
                                            "gserviceaccount.com)")
    cpu: str = config_field("", "CPU request per pod (default: " + ", ".join(
        f"{value} {kind}" for kind, value in DEFAULT_CPU.items()) + "; train's per node)")
    memory: str = config_field("", "memory request and limit per pod (default: " + ", ".join(
        f"{value} {kind}" for kind, value in DEFAULT_MEMORY.items()) + ")")
    # train
    data: str = config_field("", "train: the records (the --output of preprocess), usually gs://")
    model_dir: str = config_field("", "train: the model directory, usually gs:// (checkpoints, logs)")
    preset: str = config_field("reference", "train: the trainer's preset", choices=tuple(sorted(PRESETS)))
    gpus: int = config_field(1, "train: GPUs per node (0: CPU only); serve: GPUs per replica, 0 (the default "
                             "there) or 1", minimum=0, maximum=MAX_GPUS)
    nodes: int = config_field(1, "train: nodes; more than 1 runs MultiWorkerMirroredStrategy", minimum=1)
    accelerator: str = config_field("nvidia-h100-80gb", "train: GKE accelerator type of the GPU node pool")
    machine_type: str = config_field("", "the GPU node pool's machine type (e.g. g2-standard-8): a GPU pod requests "
                                     "its GPUs' share of what one holds for pods (default: the smallest machine "
                                     "that carries the pod's GPUs; k8s/machines.py)")
    spot: bool = config_field(False, "train: run on spot (preemptible) nodes")
    queue: str = config_field("", "Kueue local queue to submit to (adds the queue-name label)")
    topology: str = config_field("", "train, with --queue: the node label of the topology level (e.g. "
                                 "cloud.google.com/gce-topology-block) that all workers must share, through Kueue's "
                                 "topology-aware scheduling")
    network_profile: str = config_field("none", "train, several nodes of 8 GPUs: attach the pods to GKE's GPU NICs "
                                        "so NCCL uses them: tcpx (A3 High, GPUDirect-TCPX), tcpxo (A3 Mega, "
                                        "GPUDirect-TCPXO) or rdma (A3 Ultra, GPUDirect RDMA); leaves the restricted "
                                        "Pod Security profile", choices=("none", "tcpx", "tcpxo", "rdma"))
    networks: str = config_field("", "with --network_profile: the cluster's GKE Network names for the GPU NICs, "
                                 "comma-separated in NIC order (default: GKE's guide's: vpc1..vpc4 for tcpx, "
                                 "vpc1..vpc8 for tcpxo, rdma-0..rdma-7 for rdma)")
    network_daemon_image: str = config_field("", "with --network_profile tcpx or tcpxo: the receive daemon's image, "
                                             "the one paired with the NCCL plugin the cluster's nodes run "
                                             "(default: the newest pair GKE publishes; k8s/fast_network.py)")
    nccl_as_root: bool = config_field(False, "with --network_profile: run the trainer as GKE's NCCL samples run "
                                      "theirs, as root with IPC_LOCK added (to pin memory), instead of non-root with "
                                      "every capability dropped, which has not been run on A3 nodes")
    backend: str = config_field("job", "train, several nodes: an Indexed Job with a headless Service, or a JobSet "
                                "(restarts the whole worker group when one fails)", choices=("job", "jobset"))
    jobset_version: str = config_field("0.6", "train, --backend jobset: the cluster's JobSet release (MAJOR.MINOR); "
                                       "from 0.10 a preemption (exit 75), a stall (exit 6) or a disruption of one "
                                       "worker restarts the whole group at once, uncounted, instead of each worker "
                                       "waiting out --peer_timeout")
    kubernetes_version: str = config_field("1.33", "the cluster's minor version: from 1.33 a multi-node Job also "
                                           "gets a successPolicy (worker 0 done = Job done)")
    backoff_limit: int = config_field(6, f"restarts for real crashes (exit {exit_status.PREEMPTED} and node "
                                     "disruptions are not counted)",
                                     minimum=0)
    grace_period: int = config_field(0, "seconds between SIGTERM and SIGKILL, in which the trainer saves (0: "
                                     f"{ON_DEMAND_GRACE}, or {SPOT_GRACE} with --spot: what GKE gives a pod on a "
                                     "preempted spot node unless its node pool is configured for more)", minimum=0)
    priority_class: str = config_field("", "the pods' PriorityClass (Kueue also orders its queue by it)")
    node_lost_seconds: int = config_field(60, "train, several nodes: evict a worker this many seconds after its "
                                          "node stopped answering (Kubernetes' default: 300)", minimum=1)
    ttl_hours: int = config_field(168, "delete the finished job after this many hours", minimum=1)
    deadline_hours: int = config_field(0, "fail the job after this many hours running (0: never)", minimum=0)
    max_pending_minutes: int = config_field(0, "train, several nodes: give up when not every worker has started "
                                            "within this many minutes at the run's first start (no capacity, not "
                                            "admitted): the workers that did start wait that long for the others, "
                                            f"then exit {exit_status.NEVER_GATHERED}, which fails the run; later "
                                            "starts (after a preemption) wait --startup_timeout, counted (0: every "
                                            "start does)", minimum=0)
    peer_timeout: int = config_field(TrainConfig.peer_timeout, "train, several nodes: seconds before a worker whose "
                                     f"peer died exits with {exit_status.PREEMPTED}, so that the whole group "
                                     "restarts from the newest checkpoint", minimum=10)
    check: bool = config_field(False, "ask the cluster whether it has what the job needs (namespace, service "
                               "account, queue, priority class, pull secrets, nodes of the accelerator), print the "
                               "answer and create nothing")
    no_check: bool = config_field(False, "create the objects without asking the cluster first (the check runs by "
                                  "default)")
    request_timeout: int = config_field(30, "seconds the action may wait for the Kubernetes API in all, retries "
                                        "included, before giving up", minimum=1)
    # preprocess
    input: str = config_field("", "preprocess: the raw dataset root (trainA/ trainB/ testA/ testB/), usually gs://")
    output: str = config_field("", "preprocess: where the records go, usually gs://")
    runner: str = config_field("local", "preprocess: Beam's local runner in the pod, or a launcher pod that runs "
                               "the job on Dataflow and waits for it", choices=("local", "dataflow"))
    project: str = config_field("", "preprocess on Dataflow: the Google Cloud project")
    region: str = config_field("", "preprocess on Dataflow: the region")
    temp_location: str = config_field("", "preprocess on Dataflow: a gs:// folder for temporary files")
    # tensorboard
    logdir: str = config_field("", "tensorboard: the run's logs, e.g. gs://BUCKET/runs/NAME/logs")
    # serve
    model: str = config_field("", "serve: one exported direction in TF Serving's layout (`cyclegan export "
                              "--versioned`), e.g. gs://BUCKET/export/a2b, which holds 1/, 2/, ...")
    replicas: int = config_field(1, "serve: server replicas", minimum=1)
    kserve: bool = config_field(False, "serve: a KServe InferenceService (modelFormat tensorflow) instead of a "
                                "Deployment and a Service")




def for_kind(kind, config=None):
    """The SubmitConfig a `submit KIND` starts from, before its flags: serve runs on the CPU unless --gpus says."""
    return dataclasses.replace(config or SubmitConfig(), kind=kind, **({"gpus": 0} if kind == "serve" else {}))


def with_defaults(config):
    """`config` with what its flags left to the kind: serve's image is TF Serving's."""
    if config.kind == "serve" and not config.image:
        return dataclasses.replace(config, image=SERVING_GPU_IMAGE if config.gpus else SERVING_IMAGE)
    return config


def minor_version(version, flag="--kubernetes_version", example="1.33"):
    match = re.match(r"^v?(\d+)\.(\d+)", version)
    if not match:
        raise UsageError(f"{flag} {version}: expected MAJOR.MINOR, e.g. {example}")
    return int(match.group(1)), int(match.group(2))


OLDEST_JOBSET = (0, 6)  # failurePolicy.rules and network.publishNotReadyAddresses (k8s/render.py)
MESSAGE_RULES_JOBSET = (0, 10)  # onJobFailureMessagePatterns (JobSet PR #1033)


def jobset_version(config):
    version = minor_version(config.jobset_version, "--jobset_version", "0.10")
    if version < OLDEST_JOBSET:
        raise UsageError(f"--jobset_version {config.jobset_version}: the JobSet needs v0.6.0 or later (its failure "
                         "policy rules); upgrade JobSet, or use --backend job")
    return version


# The flags that only some kinds read; a value given to another kind would be ignored without a word.
ONLY_FOR = {
    **dict.fromkeys(("data", "model_dir", "preset", "nodes", "topology", "network_profile", "networks",
                     "network_daemon_image", "nccl_as_root", "backend", "jobset_version", "node_lost_seconds",
                     "max_pending_minutes", "peer_timeout"), ("train",)),
    **dict.fromkeys(("gpus", "accelerator", "machine_type", "spot"), ("train", "serve")),
    **dict.fromkeys(("input", "output", "runner", "project", "region", "temp_location"), ("preprocess",)),
    "logdir": ("tensorboard",),
    **dict.fromkeys(("model", "replicas", "kserve"), ("serve",)),
}


def check_config(config):
    """A UsageError for the first flag that cannot make a valid job."""
    untouched = for_kind(config.kind)
    for name, kinds in ONLY_FOR.items():
        if config.kind not in kinds and getattr(config, name) != getattr(untouched, name):
            raise UsageError(f"--{name} is for submit {' and '.join(kinds)}; submit {config.kind} does not use it")
    if not config.image:
        raise UsageError("--image is required: the container image the pods run (see k8s/Dockerfile)")
    if config.name and not (DNS_LABEL.match(config.name) and len(config.name) <= MAX_NAME):
        raise UsageError(f"--name {config.name}: must be lower-case letters, digits and '-', start with a letter, "
                         f"end with a letter or digit, and be at most {MAX_NAME} characters")
    if not IMAGE.match(config.image):
        raise UsageError(f"--image {config.image!r}: not an image reference (REGISTRY/PATH[:TAG][@sha256:DIGEST], "
                         "lower-case, no spaces)")
    if not DNS_LABEL.match(config.namespace):
        raise UsageError(f"--namespace {config.namespace}: not a valid namespace name")
    if not (DNS_SUBDOMAIN.match(config.service_account) and len(config.service_account) <= 253):
        raise UsageError(f"--service_account {config.service_account!r}: not a valid service account name "
                         "(lower-case letters, digits, '-' and '.')")
    for flag, value in (("--queue", config.queue), ("--accelerator", config.accelerator)):
        if not (LABEL_VALUE.match(value) and len(value) <= 63):
            raise UsageError(f"{flag} {value!r}: not a valid label value (at most 63 letters, digits, '-', '_' or "
                             "'.', starting and ending with a letter or digit)")
    if config.cpu and not (CPU_QUANTITY.match(config.cpu) and float(config.cpu.rstrip("m")) > 0):
        raise UsageError(f"--cpu {config.cpu}: not a CPU quantity above 0 (cores or millicores, e.g. 8, 2.5, 500m)")
    if config.memory and not (QUANTITY.match(config.memory) and any(c in "123456789" for c in
                                                                     config.memory.split("e")[0].split("E")[0])):
        raise UsageError(f"--memory {config.memory}: not a Kubernetes quantity above 0 (e.g. 48Gi, 512Mi)")
    check_fields(config)
    if config.priority_class and not (DNS_SUBDOMAIN.match(config.priority_class) and
                                      len(config.priority_class) <= 253):
        raise UsageError(f"--priority_class {config.priority_class!r}: not a valid PriorityClass name")
    if config.topology and not config.queue:
        raise UsageError("--topology needs --queue: Kueue places the workers in one topology block")
    if config.topology and not LABEL_KEY.match(config.topology):
        raise UsageError(f"--topology {config.topology!r}: not a node label key (e.g. "
                         "cloud.google.com/gce-topology-block)")
    if config.grace_period and config.grace_period < SHORTEST_GRACE:
        raise UsageError(f"--grace_period {config.grace_period}: below {SHORTEST_GRACE} s, the trainer cannot finish "
                         "its step and save a reference-size checkpoint before SIGKILL (benchmarks/RESULTS.md, "
                         "\"Checkpoint save\")")
    if config.max_pending_minutes and (config.kind != "train" or config.nodes < 2):
        raise UsageError("--max_pending_minutes is for training on several nodes, whose started workers wait for the "
                         "others; one pod that is not scheduled holds nothing (Kueue's waitForPodsReady bounds that "
                         "on the cluster's side: docs/kubernetes.md)")
    if config.network_profile != "none":
        check_network_profile(config)
    elif config.networks or config.network_daemon_image or config.nccl_as_root:
        raise UsageError("--networks, --network_daemon_image and --nccl_as_root go with --network_profile")
    jobset_version(config)
    if minor_version(config.kubernetes_version) < OLDEST_KUBERNETES:
        raise UsageError(f"--kubernetes_version {config.kubernetes_version}: the Jobs need podFailurePolicy, GA "
                         f"from {'.'.join(map(str, OLDEST_KUBERNETES))}; upgrade the cluster")
    required = {"train": (("--data", config.data), ("--model_dir", config.model_dir)),
                "preprocess": (("--input", config.input), ("--output", config.output)),
                "tensorboard": (("--logdir", config.logdir),), "serve": (("--model", config.model),)}[config.kind]
    missing = [flag for flag, value in required if not value]
    if config.kind == "preprocess" and config.runner == "dataflow":
        missing += [flag for flag, value in (("--project", config.project), ("--region", config.region),
                                             ("--temp_location", config.temp_location)) if not value]
    if missing:
        raise UsageError(f"submit {config.kind} needs {', '.join(missing)}")
    if config.gpus and config.kind in ("train", "serve"):
        pod_size(config, config.kind)  # a request that fits no node is refused here, before anything is printed
    if config.kind == "serve" and config.gpus > 1:
        raise UsageError(f"--gpus {config.gpus}: a TF Serving replica uses one GPU; add --replicas instead")
    if config.kind == "serve":
        check_serving_model(config)
    if config.check and config.no_check:
        raise UsageError("--check and --no-check: choose one")


SERVING_MEMORY_AT_LEAST = 1 << 30  # TF Serving with a reference generator loaded: below this a replica never starts


def check_serving_model(config):
    """--model must be a direction folder on GCS, the numbered versions under it, as TF Serving reads it."""
    model = config.model.rstrip("/")
    if not re.match(r"^gs://[^/]+/.+", model):
        raise UsageError(f"--model {config.model}: TF Serving in the cluster reads the model from a bucket; upload "
                         "the export (`cyclegan export --versioned --output gs://BUCKET/PATH`) and pass "
                         "gs://BUCKET/PATH/a2b")
    if re.search(r"/\d+$", model):
        raise UsageError(f"--model {config.model}: a version folder; pass the folder that holds the numbered "
                         f"versions, {model.rsplit('/', 1)[0]} (TF Serving serves the highest)")
    if config.memory and quantity_bytes(config.memory) < SERVING_MEMORY_AT_LEAST:
        raise UsageError(f"--memory {config.memory}: below 1Gi a TF Serving replica cannot load the model and is "
                         "never Ready")


def check_network_profile(config):
    from k8s.fast_network import GPUS, PROFILES, default_networks

    flag = f"--network_profile {config.network_profile}"
    wanted_networks = len(default_networks(config.network_profile))
    names = [name.strip() for name in config.networks.split(",") if name.strip()]
    if config.networks and len(names) != wanted_networks:
        raise UsageError(f"--networks {config.networks}: {flag} attaches {wanted_networks} GPU NICs, so it needs "
                         f"{wanted_networks} GKE Network names (got {len(names)})")
    if bad := [name for name in names if not (DNS_LABEL.match(name) and len(name) <= 63)]:
        raise UsageError(f"--networks: {bad[0]!r} is not a GKE Network name (lower-case letters, digits and '-')")
    if config.network_daemon_image and not PROFILES[config.network_profile]["sidecar"]:
        raise UsageError(f"--network_daemon_image: {flag} runs no daemon in the pod")
    if config.network_daemon_image and not IMAGE.match(config.network_daemon_image):
        raise UsageError(f"--network_daemon_image {config.network_daemon_image!r}: not an image reference")
    wanted = PROFILES[config.network_profile]["accelerator"]
    if config.kind != "train" or config.nodes < 2:
        raise UsageError(f"{flag} is for training on several nodes (--nodes 2 or more): one node's GPUs talk over "
                         "NVLink, not the network")
    if config.gpus != GPUS:
        raise UsageError(f"{flag} needs --gpus {GPUS}: a node's GPU NICs pair with all of its GPUs")
    if config.accelerator != wanted:
        raise UsageError(f"{flag} runs on {wanted} nodes: pass --accelerator {wanted} (got {config.accelerator})")


def pod_size(config, kind):
    """(cpu, memory) a pod requests: --cpu/--memory; else for a GPU pod (train, serve) its GPUs' share of the
    machine it runs on (k8s/machines.py; serve's at most its defaults); else the defaults."""
    if config.gpus and kind in ("train", "serve"):
        caps = (None, None) if kind == "train" else (int(DEFAULT_CPU[kind]), int(DEFAULT_MEMORY[kind][:-2]))
        sized = machines.gpu_pod_size(config, *caps)
        if sized:
            return sized
    return config.cpu or DEFAULT_CPU[kind], config.memory or DEFAULT_MEMORY[kind]




def grace_period(config):
    """--grace_period, or its default for the node kind."""
    return config.grace_period or (SPOT_GRACE if config.spot else ON_DEMAND_GRACE)
