"""What a submitted job needs from the cluster, asked of the API before anything is created: a job whose
namespace, service account, queue or priority class is missing is accepted and then never starts a pod (or is
refused after half its objects exist), and the error it leaves is far from the flag that caused it.

One line per problem; `problems` are what would certainly fail, `warnings` what may.
"""
from preprocessing.flags import UsageError

KUEUE = ("kueue.x-k8s.io", "v1beta1", "localqueues")
ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"


def _exists(read):
    """True, False (404), or the refusal's reason when this account may not look."""
    from kubernetes.client.exceptions import ApiException

    try:
        read()
        return True
    except ApiException as err:
        if err.status == 404:
            return False
        return f"{err.status} {err.reason}"


def check(api, config, objects):
    """([problems], [warnings]) of `objects` (render's) against the cluster `api` reaches."""
    from kubernetes import client

    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    namespace, problems, warnings = config.namespace, [], []

    def need(found, missing, what):
        if found is False:
            problems.append(missing)
        elif found is not True:
            warnings.append(f"cannot check {what} ({found}): this account may not read it")

    need(_exists(lambda: core.read_namespace(namespace)),
         f"namespace {namespace} does not exist: create it (kubectl create namespace {namespace}) or pass "
         "--namespace", f"namespace {namespace}")
    if not any(obj["kind"] == "ServiceAccount" for obj in objects):  # one submit creates is not needed before
        need(_exists(lambda: core.read_namespaced_service_account(config.service_account, namespace)),
             f"service account {config.service_account} does not exist in namespace {namespace}: pass "
             "--gcp_service_account to create it with Workload Identity, or --service_account to name another",
             f"service account {config.service_account}")
    if config.queue:
        need(_exists(lambda: custom.get_namespaced_custom_object(*KUEUE[:2], namespace, KUEUE[2], config.queue)),
             f"--queue {config.queue}: no Kueue LocalQueue of that name in namespace {namespace} (or no Kueue): "
             "the Job would stay suspended", f"local queue {config.queue}")
    if config.priority_class:
        need(_exists(lambda: client.SchedulingV1Api(api).read_priority_class(config.priority_class)),
             f"--priority_class {config.priority_class}: no PriorityClass of that name: the API server refuses "
             "the pods", f"priority class {config.priority_class}")
    pods = [pod for obj in objects for pod in _pod_specs(obj)]
    for secret in sorted({ref["name"] for pod in pods for ref in pod.get("imagePullSecrets", [])}):
        need(_exists(lambda: core.read_namespaced_secret(secret, namespace)),
             f"image pull secret {secret} does not exist in namespace {namespace}: the pods could not pull their "
             "image", f"secret {secret}")
    accelerators = sorted({pod.get("nodeSelector", {}).get(ACCELERATOR_LABEL) for pod in pods} - {None})
    for accelerator in accelerators:
        try:
            nodes = core.list_node(label_selector=f"{ACCELERATOR_LABEL}={accelerator}", limit=1).items
        except Exception as err:  # listing nodes is often not granted to those who submit jobs
            warnings.append(f"cannot list the nodes to look for {accelerator} ({getattr(err, 'status', err)})")
            continue
        if not nodes:
            warnings.append(f"no node carries {ACCELERATOR_LABEL}={accelerator} now: the pods wait unless a node "
                            "pool of it scales up from zero (check --accelerator and the cluster's node pools)")
    if getattr(config, "spot", False) and getattr(config, "topology", ""):
        warnings.append("--spot with --topology: Kueue places every worker in one topology block, and a spot "
                        "preemption there waits for capacity in that same block")
    return problems, warnings


def _pod_specs(obj):
    spec = obj.get("spec", {})
    if obj["kind"] == "Job":
        return [spec["template"]["spec"]]
    if obj["kind"] == "JobSet":
        return [rj["template"]["spec"]["template"]["spec"] for rj in spec["replicatedJobs"]]
    if obj["kind"] == "Deployment":
        return [spec["template"]["spec"]]
    if obj["kind"] == "InferenceService":
        return [spec["predictor"]]
    return []


def run(api, config, objects, say):
    """Print the warnings; a UsageError listing the problems, one per line, if there are any."""
    problems, warnings = check(api, config, objects)
    for warning in warnings:
        say(f"check: warning: {warning}")
    if problems:
        raise UsageError("the cluster lacks what the job needs (nothing was created):\n  " + "\n  ".join(problems)
                         + "\n(--no-check skips these checks)")
    return warnings
