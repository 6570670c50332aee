"""What a real API server (and JobSet's admission webhook) checks beyond the OpenAPI schema, for every field the
renderer writes. kubernetes_validate sees types and enums only: an unsorted exit-code list, a request above its
limit or a 70-character label value pass it and are refused with a 422 by the server. Each rule names the upstream
source it is read from; tests/test_k8s_render.py breaks each one once to see it caught.

Sources (kubernetes/kubernetes, kubernetes-sigs/jobset):
  JOB    pkg/apis/batch/validation/validation.go  (validateJobSpec, validatePodFailurePolicy*, validateSuccessPolicy)
  CORE   pkg/apis/core/validation/validation.go   (ValidateResourceRequirements, validateProbe, validateContainers)
  NAMES  staging/src/k8s.io/apimachinery/pkg/util/validation/validation.go (IsDNS1123Label/Subdomain,
         IsDNS1035Label, IsQualifiedName, IsValidLabelValue)
  JOBSET pkg/webhooks/jobset_webhook.go            (ValidateCreate: names, generated Job names, failure and
         success policies' targetReplicatedJobs)
"""
import re
from decimal import Decimal

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")

MAX_POD_FAILURE_POLICY_RULES = 20  # JOB: maxPodFailurePolicyRules
MAX_EXIT_CODE_VALUES = 255  # JOB: maxPodFailurePolicyOnExitCodesValues
MAX_POD_CONDITIONS_PATTERNS = 20  # JOB: maxPodFailurePolicyOnPodConditionsPatterns
MAX_INDEXED_COMPLETIONS = 100_000  # JOB: maxParallelismForIndexedJob / completions with backoffLimitPerIndex
MAX_PARALLELISM_PER_INDEX = 10_000  # JOB: maxParallelismForIndexedJobWithBackoffLimitPerIndex (sic: parallelism)
MAX_JOBSET_JOB_NAME = 63  # JOBSET: a generated Job name (jobset-replicatedjob-index) is a pod hostname prefix
QUANTITY = re.compile(r"^([+-]?[0-9.]+)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|)$")
SUFFIX = {"": 1, "m": Decimal("0.001"), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def quantity(text):
    """A resource.Quantity as a Decimal, or None where the server's parser would refuse it."""
    match = QUANTITY.match(str(text))
    if not match:
        return None
    try:
        return Decimal(match.group(1)) * SUFFIX[match.group(2)]
    except ArithmeticError:
        return None


def job_specs(obj):
    """The batch/v1 JobSpecs an object holds: its own, or each of a JobSet's replicated jobs."""
    if obj["kind"] == "Job":
        return [obj["spec"]]
    if obj["kind"] == "JobSet":
        return [rj["template"]["spec"] for rj in obj["spec"]["replicatedJobs"]]
    return []


def pod_specs(obj):
    if obj["kind"] == "Deployment":
        return [obj["spec"]["template"]["spec"]]
    return [spec["template"]["spec"] for spec in job_specs(obj)]


def name_and_label_violations(obj):
    """NAMES. Job and Deployment names are DNS subdomains, a Service's a DNS-1035 label; a Job's name also becomes
    its pods' batch.kubernetes.io/job-name label value (JOB: at most 63), and an InferenceService's a DNS-1035 label
    its own webhook holds to."""
    problems = []
    name, kind = obj["metadata"]["name"], obj["kind"]
    if kind in ("Service", "InferenceService", "JobSet"):
        if not (DNS1035_LABEL.match(name) and len(name) <= 63):
            problems.append(f"{kind} name {name!r} is not a DNS-1035 label")
    elif not (DNS1123_SUBDOMAIN.match(name) and len(name) <= 253):
        problems.append(f"{kind} name {name!r} is not a DNS subdomain")
    if kind == "Job" and len(name) > 63:
        problems.append(f"Job name {name!r} is longer than the 63 characters of its job-name label")
    label_sets = [obj["metadata"].get("labels", {})]
    for spec in job_specs(obj) + ([obj["spec"]] if kind == "Deployment" else []):
        label_sets.append(spec["template"]["metadata"].get("labels", {}))
    if kind == "Deployment":
        label_sets.append(obj["spec"]["selector"]["matchLabels"])
    if kind == "Service":
        label_sets.append(obj["spec"].get("selector", {}))
    for labels in filter(None, label_sets):
        for key, value in labels.items():
            prefix, _, short = key.rpartition("/")
            if prefix and not (DNS1123_SUBDOMAIN.match(prefix) and len(prefix) <= 253):
                problems.append(f"label key {key!r}: prefix is not a DNS subdomain")
            if not (QUALIFIED_NAME.match(short) and len(short) <= 63):
                problems.append(f"label key {key!r} is not a qualified name")
            if value and not (QUALIFIED_NAME.match(value) and len(value) <= 63):
                problems.append(f"label {key}={value!r}: not a valid label value (63 characters, alphanumeric ends)")
    return problems


def pod_failure_policy_violations(spec):
    """JOB: validatePodFailurePolicy, validatePodFailurePolicyRuleOnExitCodes, ...OnPodConditions."""
    problems = []
    policy = spec.get("podFailurePolicy")
    if not policy:
        return problems
    pod = spec["template"]["spec"]
    containers = {c["name"] for c in pod["containers"] + pod.get("initContainers", [])}
    rules = policy["rules"]
    if len(rules) > MAX_POD_FAILURE_POLICY_RULES:
        problems.append(f"podFailurePolicy holds {len(rules)} rules, at most {MAX_POD_FAILURE_POLICY_RULES}")
    for i, rule in enumerate(rules):
        where = f"podFailurePolicy.rules[{i}]"
        if ("onExitCodes" in rule) == ("onPodConditions" in rule):
            problems.append(f"{where}: exactly one of onExitCodes and onPodConditions")
        if rule["action"] == "FailIndex" and "backoffLimitPerIndex" not in spec:
            problems.append(f"{where}: FailIndex needs backoffLimitPerIndex")
        codes = rule.get("onExitCodes")
        if codes:
            values = codes["values"]
            if codes.get("containerName") is not None and codes["containerName"] not in containers:
                problems.append(f"{where}: containerName {codes['containerName']!r} names none of {sorted(containers)}")
            if not 1 <= len(values) <= MAX_EXIT_CODE_VALUES:
                problems.append(f"{where}: {len(values)} values, 1 to {MAX_EXIT_CODE_VALUES} allowed")
            if any(b <= a for a, b in zip(values, values[1:])):
                problems.append(f"{where}: values {values} must be ordered and unique")
            if codes["operator"] == "In" and 0 in values:
                problems.append(f"{where}: value 0 cannot be used with In")
        conditions = rule.get("onPodConditions")
        if conditions is not None:
            if not 1 <= len(conditions) <= MAX_POD_CONDITIONS_PATTERNS:
                problems.append(f"{where}: {len(conditions)} pod condition patterns")
            problems += [f"{where}: condition status {c.get('status')!r}" for c in conditions
                         if c.get("status") not in ("True", "False", "Unknown")]
    if spec["template"]["spec"].get("restartPolicy") != "Never":
        problems.append("podFailurePolicy needs restartPolicy Never")
    return problems


def job_spec_violations(spec):
    """JOB: validateJobSpec's bounds and its Indexed Job rules."""
    problems = pod_failure_policy_violations(spec)
    for field in ("parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished"):
        if field in spec and spec[field] < 0:
            problems.append(f"{field} {spec[field]} is negative")
    if "activeDeadlineSeconds" in spec and spec["activeDeadlineSeconds"] <= 0:
        problems.append(f"activeDeadlineSeconds {spec['activeDeadlineSeconds']} must be positive")
    indexed = spec.get("completionMode") == "Indexed"
    if indexed:
        completions = spec.get("completions")
        if completions is None:
            problems.append("an Indexed Job needs completions")
        elif completions > MAX_INDEXED_COMPLETIONS:
            problems.append(f"completions {completions} above {MAX_INDEXED_COMPLETIONS} for an Indexed Job")
        if spec.get("parallelism", 1) > MAX_INDEXED_COMPLETIONS:
            problems.append("parallelism above 100000 for an Indexed Job")
    if "backoffLimitPerIndex" in spec:
        if not indexed:
            problems.append("backoffLimitPerIndex needs completionMode Indexed")
        if spec.get("parallelism", 1) > MAX_PARALLELISM_PER_INDEX:
            problems.append(f"parallelism above {MAX_PARALLELISM_PER_INDEX} with backoffLimitPerIndex")
    if "maxFailedIndexes" in spec:
        if "backoffLimitPerIndex" not in spec:
            problems.append("maxFailedIndexes needs backoffLimitPerIndex")
        elif spec["maxFailedIndexes"] > spec.get("completions", 0):
            problems.append("maxFailedIndexes above completions")
    if "successPolicy" in spec:
        if not indexed:
            problems.append("successPolicy needs completionMode Indexed")
        for rule in spec["successPolicy"].get("rules", []):
            count = rule.get("succeededCount")
            if count is not None and not 0 <= count <= spec.get("completions", 0):
                problems.append(f"successPolicy succeededCount {count} outside 0..completions")
            if "succeededIndexes" not in rule and count is None:
                problems.append("a successPolicy rule needs succeededIndexes or succeededCount")
    if "podFailurePolicy" in spec and spec.get("podReplacementPolicy", "Failed") != "Failed":
        problems.append("podReplacementPolicy must be Failed with a podFailurePolicy")
    return problems


def probe_violations(container, kind, probe):
    """CORE: validateProbe and the per-kind rules in validateContainers / validateInitContainers."""
    problems = []
    where = f"{container['name']}.{kind}"
    handlers = [h for h in ("exec", "httpGet", "tcpSocket", "grpc") if h in probe]
    if len(handlers) != 1:
        problems.append(f"{where}: exactly one handler, not {handlers}")
    for field in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"):
        if field in probe and probe[field] < (0 if field == "initialDelaySeconds" else 1):
            problems.append(f"{where}: {field} {probe[field]}")
    if kind in ("livenessProbe", "startupProbe") and probe.get("successThreshold", 1) != 1:
        problems.append(f"{where}: successThreshold must be 1")
    if kind == "readinessProbe" and "terminationGracePeriodSeconds" in probe:
        problems.append(f"{where}: terminationGracePeriodSeconds is not allowed on a readiness probe")
    port = (probe.get("httpGet") or probe.get("tcpSocket") or probe.get("grpc") or {}).get("port")
    if isinstance(port, int) and not 1 <= port <= 65535:
        problems.append(f"{where}: port {port}")
    if isinstance(port, str):
        named = {p.get("name") for p in container.get("ports", [])}
        if not (IANA_SVC_NAME.match(port) and len(port) <= 15 and port in named):
            problems.append(f"{where}: port {port!r} names no container port")
    return problems


def container_violations(pod):
    """CORE: names unique across containers, ports, resources (requests <= limits, extended resources equal),
    probes, and restartPolicy Always only on init containers (sidecars), which take no lifecycle-less probes."""
    problems = []
    init, regular = pod.get("initContainers", []), pod["containers"]
    names = [c["name"] for c in init + regular]
    if len(names) != len(set(names)):
        problems.append(f"container names {names} are not unique")
    for container in init + regular:
        name = container["name"]
        if not (DNS1123_LABEL.match(name) and len(name) <= 63):
            problems.append(f"container name {name!r}")
        sidecar = container.get("restartPolicy") == "Always"
        if container.get("restartPolicy") and (container not in init or not sidecar):
            problems.append(f"{name}: restartPolicy is allowed only as Always on an init container")
        for port in container.get("ports", []):
            if not 1 <= port["containerPort"] <= 65535:
                problems.append(f"{name}: containerPort {port['containerPort']}")
        resources = container.get("resources", {})
        requests, limits = resources.get("requests", {}), resources.get("limits", {})
        for resource, value in {**requests, **limits}.items():
            amount = quantity(value)
            if amount is None or amount < 0:
                problems.append(f"{name}: {resource} quantity {value!r}")
        for resource, value in requests.items():
            if resource in limits and (quantity(value) or 0) > (quantity(limits[resource]) or 0):
                problems.append(f"{name}: {resource} request {value} above its limit {limits[resource]}")
            if "/" in resource and not resource.startswith("kubernetes.io/") and (
                    resource not in limits or quantity(value) != quantity(limits[resource])):
                problems.append(f"{name}: extended resource {resource} must be requested equal to its limit")
        for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
            if kind in container:
                if container in init and not sidecar:
                    problems.append(f"{name}: {kind} on an init container that is not a sidecar")
                problems += probe_violations(container, kind, container[kind])
    grace = pod.get("terminationGracePeriodSeconds")
    if grace is not None and grace < 0:
        problems.append(f"terminationGracePeriodSeconds {grace}")
    return problems


def jobset_violations(jobset):
    """JOBSET: ValidateCreate's rules that the CRD's schema does not carry."""
    problems = []
    spec = jobset["spec"]
    replicated = [rj["name"] for rj in spec["replicatedJobs"]]
    if len(replicated) != len(set(replicated)):
        problems.append(f"replicatedJobs names {replicated} are not unique")
    for rj in spec["replicatedJobs"]:
        if not DNS1035_LABEL.match(rj["name"]):
            problems.append(f"replicatedJob name {rj['name']!r} is not a DNS-1035 label")
        longest = f"{jobset['metadata']['name']}-{rj['name']}-{rj.get('replicas', 1) - 1}"
        if len(longest) > MAX_JOBSET_JOB_NAME:
            problems.append(f"generated Job name {longest!r} is longer than {MAX_JOBSET_JOB_NAME}")
    subdomain = spec.get("network", {}).get("subdomain")
    if subdomain and not (DNS1123_SUBDOMAIN.match(subdomain) and len(subdomain) <= 63):
        problems.append(f"network.subdomain {subdomain!r}")
    failure = spec.get("failurePolicy", {})
    if failure.get("maxRestarts", 0) < 0:
        problems.append("failurePolicy.maxRestarts is negative")
    rule_names = [r["name"] for r in failure.get("rules", [])]
    if len(rule_names) != len(set(rule_names)):
        problems.append(f"failurePolicy rule names {rule_names} are not unique")
    for rule in failure.get("rules", []):
        if not re.match(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", rule["name"]) or len(rule["name"]) > 128:
            problems.append(f"failurePolicy rule name {rule['name']!r}")
        problems += [f"failurePolicy rule {rule['name']} targets {t!r}, not a replicatedJob"
                     for t in rule.get("targetReplicatedJobs", []) if t not in replicated]
        problems += [f"failurePolicy rule {rule['name']}: pattern {p!r} does not compile"
                     for p in rule.get("onJobFailureMessagePatterns", []) if not _compiles(p)]
    success = spec.get("successPolicy", {})
    problems += [f"successPolicy targets {t!r}, not a replicatedJob"
                 for t in success.get("targetReplicatedJobs", []) if t not in replicated]
    if spec.get("ttlSecondsAfterFinished", 0) < 0:
        problems.append("ttlSecondsAfterFinished is negative")
    return problems


def _compiles(pattern):
    try:
        re.compile(pattern)
        return True
    except re.error:
        return False


def server_side_violations(objects):
    """Everything above, over a rendered list of objects."""
    problems = []
    for obj in objects:
        problems += name_and_label_violations(obj)
        for spec in job_specs(obj):
            problems += job_spec_violations(spec)
        for pod in pod_specs(obj):
            problems += container_violations(pod)
        if obj["kind"] == "JobSet":
            problems += jobset_violations(obj)
    return problems
