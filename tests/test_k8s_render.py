"""What `cyclegan submit --dry-run` renders: valid for every Kubernetes version we claim, restricted pods, and the
rules the API server and the Job controller enforce; the golden examples in k8s/examples/ are its output."""
import json
import os
import re
import subprocess

import kubernetes_validate
import pytest
import yaml

from k8s import examples
from k8s.cli import parse_submit
from k8s.render import render
from preprocessing.flags import UsageError
from preprocessing.lease import RUN_ENV
from tests.helpers import BIN
from tests.k8s_server_rules import job_specs, pod_specs, server_side_violations

VERSIONS = ("1.31", "1.32", "1.33", "1.34", "1.35")
TRAIN = ["--image", "img:1", "--data", "gs://b/records", "--model_dir", "gs://b/runs/x", "--name", "run"]
SPREAD = {
    "1 gpu": ["train", *TRAIN],
    "8 gpus spot": ["train", *TRAIN, "--gpus", "8", "--spot"],
    "cpu": ["train", *TRAIN, "--gpus", "0", "--cpu", "4"],
    "4 nodes": ["train", *TRAIN, "--gpus", "8", "--nodes", "4", "--queue", "team-a", "--deadline_hours", "48",
                "--priority_class", "training", "--topology", "cloud.google.com/gce-topology-block"],
    "4 nodes jobset": ["train", *TRAIN, "--gpus", "8", "--nodes", "4", "--backend", "jobset", "--spot"],
    "preprocess": ["preprocess", "--image", "beam:1", "--input", "gs://b/raw", "--output", "gs://b/rec", "--cpu", "16"],
    "dataflow": ["preprocess", "--image", "beam:1", "--input", "gs://b/raw", "--output", "gs://b/rec", "--runner",
                 "dataflow", "--project", "p", "--region", "europe-west4", "--temp_location", "gs://b/tmp"],
    "tensorboard": ["tensorboard", "--image", "img:1", "--logdir", "gs://b/runs/x/logs", "--gcp_service_account",
                    "sa@p.iam.gserviceaccount.com"],
    "serve": ["serve", "--model", "gs://b/export/a2b", "--name", "h2z-serve", "--replicas", "2"],
    "serve gpu": ["serve", "--model", "gs://b/export/a2b", "--name", "h2z-serve", "--gpus", "1", "--accelerator",
                  "nvidia-l4"],
}
QUEUE = "kueue.x-k8s.io/queue-name"
KSERVE = ["serve", "--model", "gs://b/export/a2b/", "--name", "h2z-serve", "--kserve", "--gpus", "1", "--accelerator",
          "nvidia-l4", "--replicas", "2", "--priority_class", "serving"]
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
ALLOWED_VOLUMES = {"configMap", "downwardAPI", "emptyDir", "projected", "secret", "csi", "persistentVolumeClaim",
                   "ephemeral", "image"}


def objects_for(argv, version="1.33"):
    config, extra, _ = parse_submit(argv[0], [*argv[1:], "--kubernetes_version", version])
    return render(config, extra)[1]


def restricted_violations(pod):
    """Pod Security Standards, "restricted" profile (v1.31+), checked field by field."""
    problems = []
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            problems.append(flag)
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            problems.append(f"volume {volume['name']}: {kinds}")
    pod_sc = pod.get("securityContext", {})
    for container in pod.get("initContainers", []) + pod["containers"]:
        sc = container.get("securityContext", {})
        name = container["name"]
        if not (sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True):
            problems.append(f"{name}: runAsNonRoot")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            problems.append(f"{name}: runAsUser 0")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation")
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            problems.append(f"{name}: capabilities.drop ALL")
        if set(sc.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: capabilities.add")
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile")
        if any(port.get("hostPort") for port in container.get("ports", [])):
            problems.append(f"{name}: hostPort")
    return problems


def invariant_violations(objects, version):
    """Rules the API server or the Job controller enforce, and the ones our trainer relies on."""
    problems = []
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    for obj in objects:
        name = obj["metadata"]["name"]
        if not (DNS_LABEL.match(name) and len(name) <= 63):
            problems.append(f"{obj['kind']} name {name!r}")
        for spec in job_specs(obj):
            pod = spec["template"]["spec"]
            if "podFailurePolicy" in spec and pod["restartPolicy"] != "Never":
                problems.append("podFailurePolicy needs restartPolicy Never")
            if "podFailurePolicy" in spec and spec.get("podReplacementPolicy", "Failed") != "Failed":
                problems.append("podReplacementPolicy must be Failed with a podFailurePolicy")
            indexed = spec.get("completionMode") == "Indexed"
            if "successPolicy" in spec and not (indexed and tuple(map(int, version.split("."))) >= (1, 33)):
                problems.append("successPolicy needs an Indexed Job on 1.33+")
            if indexed:
                job_name = (f"{name}-workers-0" if obj["kind"] == "JobSet" else name)
                hosts = [f"{job_name}-{i}" for i in range(spec["completions"])]
                problems += [f"hostname {h}" for h in hosts if not (DNS_LABEL.match(h) and len(h) <= 63)]
                subdomain = obj["spec"]["network"]["subdomain"] if obj["kind"] == "JobSet" else pod.get("subdomain")
                if obj["kind"] == "Job":
                    service = services.get(subdomain)
                    if not service:
                        problems.append(f"subdomain {subdomain} names no Service")
                    else:
                        selector = service["spec"]["selector"].items()
                        if not selector <= spec["template"]["metadata"]["labels"].items():
                            problems.append("the headless Service does not select the pods")
                        if service["spec"].get("clusterIP") != "None" or not service["spec"].get(
                                "publishNotReadyAddresses"):
                            problems.append("the workers' Service must be headless and publish unready pods")
                env = {e["name"]: e for e in pod["containers"][0]["env"]}
                tf_config = env["TF_CONFIG"]["value"].replace("$(WORKER_INDEX)", "0")
                workers = json.loads(tf_config)["cluster"]["worker"]
                if workers != [f"{h}.{subdomain}:2222" for h in hosts]:
                    problems.append(f"TF_CONFIG workers {workers}")
                names = list(env)
                if names.index("WORKER_INDEX") > names.index("TF_CONFIG"):  # $(VAR) sees only earlier variables
                    problems.append("WORKER_INDEX is defined after TF_CONFIG")
        if obj["kind"] == "Deployment":
            if not obj["spec"]["selector"]["matchLabels"].items() <= obj["spec"]["template"]["metadata"][
                    "labels"].items():
                problems.append("the Deployment's selector does not match its pods")
    return problems


@pytest.mark.parametrize("version", VERSIONS)
def test_every_rendered_object_validates_strictly_offline(version):
    for case, argv in SPREAD.items():
        for obj in objects_for(argv, version):
            if obj["kind"] == "JobSet":  # no CRD schema offline: check what it holds as a batch/v1 Job
                for replicated in obj["spec"]["replicatedJobs"]:
                    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"},
                           "spec": replicated["template"]["spec"]}
                    kubernetes_validate.validate(job, version, strict=True)
                continue
            kubernetes_validate.validate(obj, version, strict=True)  # raises with the path of what is wrong


@pytest.mark.parametrize("version", VERSIONS)
def test_pods_are_restricted_and_the_api_servers_rules_hold(version):
    for case, argv in SPREAD.items():
        objects = objects_for(argv, version)
        assert invariant_violations(objects, version) == [], case
        assert server_side_violations(objects) == [], case
        for obj in objects:
            for pod in pod_specs(obj):
                assert restricted_violations(pod) == [], (case, obj["kind"])
                assert not any("key" in str(env).lower() and "credentials" in str(env).lower()
                               for c in pod["containers"] for env in c.get("env", []))  # Workload Identity only


def test_every_job_pod_names_its_run_so_that_a_replacement_pod_takes_its_lease_over():
    """train holds the model directory and preprocess its output folder (preprocessing/lease.py): a pod replaced
    after its node was lost must not be refused by its predecessor's lease, which looks alive for a while."""
    for case, argv in SPREAD.items():
        if argv[0] in ("tensorboard", "serve"):
            continue
        name, objects = render(*parse_submit(argv[0], argv[1:])[:2])
        for obj in objects:
            for pod in pod_specs(obj) if obj["kind"] in ("Job", "JobSet") else []:
                env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
                assert env[RUN_ENV] == name, case


# JobSet v0.6.0's jobset.x-k8s.io/v1alpha2 API as far as a rendered JobSet's fields go: the fields and rules of
# api/jobset/v1alpha2/jobset_types.go (a rule's name pattern and required fields, the webhook's job failure
# reasons) less what came after v0.6.0 by the release notes (RestartJob actions, groupName, dependsOn,
# volumeClaimPolicies, restartStrategy, onJobFailureMessagePatterns). The oldest release with every rendered field.
RULE_NAME = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
JOB_FAILURE_REASONS = ["BackoffLimitExceeded", "DeadlineExceeded", "FailedIndexes", "MaxFailedIndexesExceeded",
                       "PodFailurePolicy"]
JOBSET_V0_6 = {
    "type": "object", "additionalProperties": False, "required": ["replicatedJobs"],
    "properties": {
        "replicatedJobs": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["name", "template"],
            "properties": {"name": {"type": "string"}, "replicas": {"type": "integer"},
                           "template": {"type": "object", "required": ["spec"]}}}},
        "network": {"type": "object", "additionalProperties": False, "properties": {
            "enableDNSHostnames": {"type": "boolean"}, "subdomain": {"type": "string"},
            "publishNotReadyAddresses": {"type": "boolean"}}},
        "successPolicy": {"type": "object", "additionalProperties": False, "required": ["operator"], "properties": {
            "operator": {"enum": ["All", "Any"]}, "targetReplicatedJobs": {"type": "array"}}},
        "failurePolicy": {"type": "object", "additionalProperties": False, "properties": {
            "maxRestarts": {"type": "integer"},
            "rules": {"type": "array", "items": {
                "type": "object", "additionalProperties": False, "required": ["name", "action"], "properties": {
                    "name": {"type": "string", "pattern": RULE_NAME},
                    "action": {"enum": ["FailJobSet", "RestartJobSet", "RestartJobSetAndIgnoreMaxRestarts"]},
                    "onJobFailureReasons": {"type": "array", "uniqueItems": True,
                                            "items": {"enum": JOB_FAILURE_REASONS}},
                    "targetReplicatedJobs": {"type": "array", "items": {"type": "string"}}}}}}},
        "startupPolicy": {"type": "object"}, "suspend": {"type": "boolean"}, "coordinator": {"type": "object"},
        "managedBy": {"type": "string"}, "ttlSecondsAfterFinished": {"type": "integer", "minimum": 0},
    },
}


# JobSet v0.10.0 adds onJobFailureMessagePatterns to a rule (jobset PR #1033; api/jobset/v1alpha2/jobset_types.go:
# regexes in RE2 syntax, unique items).
JOBSET_V0_10 = json.loads(json.dumps(JOBSET_V0_6))
JOBSET_V0_10["properties"]["failurePolicy"]["properties"]["rules"]["items"]["properties"][
    "onJobFailureMessagePatterns"] = {"type": "array", "uniqueItems": True, "items": {"type": "string"}}
# What the Job controller writes into a child Job's Failed condition when a podFailurePolicy FailJob rule matches
# (pkg/controller/job/pod_failure_policy.go).
EXIT_MESSAGE = "Container trainer for pod ns/{pod} failed with exit code {code} matching FailJob rule at index {index}"
CONDITION_MESSAGE = "Pod ns/{pod} has condition DisruptionTarget matching FailJob rule at index {index}"


def jobset_action(jobset, reason, message):
    """What the JobSet controller does on a child Job's failure: its first rule that matches the reason and (from
    v0.10) one of the message patterns, searched as Go's regexp.MatchString does; RestartJobSet when none does."""
    for rule in jobset["spec"]["failurePolicy"]["rules"]:
        reasons, patterns = rule.get("onJobFailureReasons", []), rule.get("onJobFailureMessagePatterns", [])
        if (not reasons or reason in reasons) and (not patterns or any(re.search(p, message) for p in patterns)):
            return rule["action"]
    return "RestartJobSet"


def child_failure(job_spec, code=None, disrupted=False):
    """(reason, message) of the child Job's failure for one worker pod's exit `code` (or a disruption)."""
    for index, rule in enumerate(job_spec["podFailurePolicy"]["rules"]):
        matched = (disrupted and "onPodConditions" in rule) or (
            code is not None and code in rule.get("onExitCodes", {}).get("values", []))
        if matched and rule["action"] == "FailJob":
            template = CONDITION_MESSAGE if disrupted else EXIT_MESSAGE
            return "PodFailurePolicy", template.format(pod="w-0", code=code, index=index)
        if matched:
            return None  # Ignore: the pod is replaced in place, and the child Job does not fail
    return "BackoffLimitExceeded", "Job has reached the specified backoff limit"  # backoffLimit 0


def test_jobset_v0_10_restarts_the_group_at_once_on_preemption_and_fails_on_what_needs_a_person():
    import jsonschema

    argv = [*SPREAD["4 nodes jobset"], "--jobset_version", "0.10"]
    jobset, _ = objects_for(argv)
    jsonschema.validate(jobset["spec"], JOBSET_V0_10)
    with pytest.raises(jsonschema.ValidationError):  # the field v0.6.0 lacks: the default rendering avoids it
        jsonschema.validate(jobset["spec"], JOBSET_V0_6)
    (job_spec,) = job_specs(jobset)
    kubernetes_validate.validate({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"},
                                  "spec": job_spec}, "1.33", strict=True)
    outcome = {code: jobset_action(jobset, *child_failure(job_spec, code)) for code in (2, 4, 5, 75, 6, 1, 3)}
    assert outcome == {2: "FailJobSet", 4: "FailJobSet", 5: "FailJobSet", 75: "RestartJobSetAndIgnoreMaxRestarts",
                       6: "RestartJobSetAndIgnoreMaxRestarts", 1: "RestartJobSet", 3: "RestartJobSet"}
    assert jobset_action(jobset, *child_failure(job_spec, disrupted=True)) == "RestartJobSetAndIgnoreMaxRestarts"
    old, _ = objects_for(SPREAD["4 nodes jobset"])  # v0.6: exit 75 and disruptions replaced inside the child Job
    (old_spec,) = job_specs(old)
    assert child_failure(old_spec, 75) is None and child_failure(old_spec, disrupted=True) is None
    assert {code: jobset_action(old, *child_failure(old_spec, code)) for code in (2, 4, 1)} == {
        2: "FailJobSet", 4: "FailJobSet", 1: "RestartJobSet"}
    for version, message in (("0.5", "the JobSet needs v0.6.0 or later"), ("ten", "expected MAJOR.MINOR, e.g. 0.10")):
        with pytest.raises(UsageError, match=re.escape(message)):
            parse_submit("train", [*argv[1:-2], "--jobset_version", version])


def test_the_jobset_holds_only_what_jobset_v0_6_0_defines():
    import jsonschema

    for argv in (SPREAD["4 nodes jobset"], FAST["rdma jobset"]):
        jobset = objects_for(argv)[0]
        assert jobset["apiVersion"] == "jobset.x-k8s.io/v1alpha2"
        jsonschema.validate(jobset["spec"], JOBSET_V0_6)  # raises naming the field v0.6.0 does not have
    bad = {**jobset["spec"], "failurePolicy": {"rules": [{"action": "RestartJob", "name": "r"}]}}
    with pytest.raises(jsonschema.ValidationError):  # an action that came after v0.6.0
        jsonschema.validate(bad, JOBSET_V0_6)


# KServe's serving.kserve.io/v1beta1 InferenceService as far as a rendered one's fields go, written from its API
# types (pkg/apis/serving/v1beta1 of kserve/kserve at 0217bdab: PredictorSpec = the model's ModelSpec + an inline
# PodSpec + ComponentExtensionSpec; ModelSpec = ModelFormat, runtime, PredictorExtensionSpec with an inline
# Container). The inline PodSpec and Container fields are checked against Kubernetes' own schema below.
CONTAINER_FIELDS = {"image", "args", "env", "resources", "securityContext", "ports"}
POD_FIELDS = {"serviceAccountName", "securityContext", "nodeSelector", "tolerations", "priorityClassName"}
KSERVE_V1BETA1 = {
    "type": "object", "additionalProperties": False, "required": ["predictor"],
    "properties": {"predictor": {
        "type": "object", "additionalProperties": False, "required": ["model"],
        "properties": {
            "minReplicas": {"type": "integer", "minimum": 0}, "maxReplicas": {"type": "integer", "minimum": 0},
            **{field: {} for field in POD_FIELDS},
            "model": {"type": "object", "additionalProperties": False, "required": ["modelFormat"], "properties": {
                "modelFormat": {"type": "object", "additionalProperties": False, "required": ["name"],
                                "properties": {"name": {"type": "string"}, "version": {"type": "string"}}},
                "runtime": {"type": "string"}, "storageUri": {"type": "string"}, "runtimeVersion": {"type": "string"},
                "protocolVersion": {"enum": ["v1", "v2", "grpc-v1", "grpc-v2"]},
                **{field: {} for field in CONTAINER_FIELDS}}}}}},
}


@pytest.mark.parametrize("version", VERSIONS)
def test_the_inference_service_holds_only_what_kserve_defines_and_a_restricted_pod(version):
    import jsonschema

    (service,) = objects_for(KSERVE, version)
    assert service["apiVersion"] == "serving.kserve.io/v1beta1" and service["kind"] == "InferenceService"
    jsonschema.validate(service["spec"], KSERVE_V1BETA1)  # raises naming a field KServe does not have
    predictor = service["spec"]["predictor"]
    model = predictor["model"]
    assert model["modelFormat"] == {"name": "tensorflow"} and model["storageUri"] == "gs://b/export/a2b"
    assert model["image"] == "tensorflow/serving:2.20.0-gpu" and predictor["minReplicas"] == 2
    (cpu_service,) = objects_for([arg for arg in KSERVE if arg not in ("--gpus", "1")], version)
    # KServe's runtime defaults to TF Serving 2.6.2, which cannot read this TensorFlow's SavedModels
    assert cpu_service["spec"]["predictor"]["model"]["runtimeVersion"] == "2.20.0"
    assert "image" not in cpu_service["spec"]["predictor"]["model"]
    container = {"name": "kserve-container", **{k: v for k, v in model.items() if k in CONTAINER_FIELDS}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
           "spec": {"containers": [container], **{k: v for k, v in predictor.items() if k in POD_FIELDS}}}
    kubernetes_validate.validate(pod, version, strict=True)  # the inline PodSpec and Container, as Kubernetes'
    assert restricted_violations(pod["spec"]) == []
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"predictor": {**predictor, "tensorflow": {}}}, KSERVE_V1BETA1)
    cpu = objects_for(["serve", "--model", "gs://b/export/a2b", "--name", "x", "--kserve"])[0]
    assert "image" not in cpu["spec"]["predictor"]["model"]  # the runtime's own


def test_the_serving_deployment_probes_the_model_status_and_scales():
    deployment, service = objects_for(SPREAD["serve"])
    assert deployment["spec"]["replicas"] == 2
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "tensorflow/serving:2.20.0" and container["args"] == [
        "--model_name=h2z-serve", "--model_base_path=gs://b/export/a2b", "--port=8500", "--rest_api_port=8501"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["exec"]["command"] == container["startupProbe"]["exec"]["command"]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert [p["port"] for p in service["spec"]["ports"]] == [8501, 8500]
    gpu, _ = objects_for(SPREAD["serve gpu"])
    pod = gpu["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["containers"][0]["image"] == "tensorflow/serving:2.20.0-gpu"
    config, extra, _ = parse_submit("serve", [*SPREAD["serve"][1:], "--", "--enable_batching"])
    assert render(config, extra)[1][0]["spec"]["template"]["spec"]["containers"][0]["args"][-1] == "--enable_batching"
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    for argv, message in ((["--gpus", "2"], "--gpus 2: a TF Serving replica uses one GPU"),
                          (["--kserve", "--", "--enable_batching"], "with --kserve, KServe's TensorFlow runtime"),
                          (["--memory", "1"], "--memory 1: below 1Gi a TF Serving replica cannot load the model"),
                          (["--", "--rest_api_port=9000"], "after --: --rest_api_port is set by submit itself"),
                          (["--", "--model_name", "x", "--port", "1"], "after --: --model_name, --port is set"),
                          (["--model", "exports/a2b"], "--model exports/a2b: TF Serving in the cluster reads the "
                                                       "model from a bucket"),
                          (["--model", "gs://b"], "--model gs://b: TF Serving in the cluster reads"),
                          (["--model", "gs://b/export/a2b/3"], "a version folder; pass the folder that holds the "
                                                               "numbered versions, gs://b/export/a2b"),
                          (["--nodes", "4"], "--nodes is for submit train; submit serve does not use it"),
                          (["--data", "gs://b/r"], "--data is for submit train; submit serve does not use it")):
        with pytest.raises(UsageError, match=re.escape(message)):
            parse_submit("serve", [*SPREAD["serve"][1:], *argv])
    with pytest.raises(UsageError, match="submit serve needs --model"):
        parse_submit("serve", ["--name", "x"])
    with pytest.raises(UsageError, match="--replicas is for submit serve; submit train does not use it"):
        parse_submit("train", [*TRAIN, "--replicas", "3"])


def test_the_checkers_catch_what_they_check():
    """The two checkers above are only worth something if they fail on a broken object."""
    (job,) = objects_for(SPREAD["1 gpu"])
    pod = job["spec"]["template"]["spec"]
    broken = json.loads(json.dumps(pod))
    broken["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    broken["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    assert len(restricted_violations(broken)) == 2
    indexed, service, _ = objects_for(SPREAD["4 nodes"])
    indexed["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    indexed["spec"]["template"]["spec"]["subdomain"] = "elsewhere"
    assert len(invariant_violations([service, indexed], "1.33")) == 3  # + TF_CONFIG's hosts no longer match
    assert "successPolicy" in indexed["spec"]
    assert "successPolicy" not in objects_for(SPREAD["4 nodes"], "1.32")[0]["spec"]


def test_failure_semantics_scheduling_and_shapes_match_the_trainer():
    (job,) = objects_for(SPREAD["8 gpus spot"])
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert [(r["action"], r.get("onExitCodes", {}).get("values")) for r in rules] == [
        ("FailJob", [2, 4, 5]), ("Ignore", [6, 75]), ("Ignore", None)]
    from tests.podrunner import matches

    first = lambda code: next(r["action"] for r in rules if matches(r, "trainer", code))  # noqa: E731
    assert [first(code) for code in (2, 4, 5)] == ["FailJob"] * 3  # a restart loop, a collapse: no more start-ups
    assert [any(matches(r, "trainer", code) for r in rules) for code in (1, 3)] == [False, False]  # counted
    assert rules[2]["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb",
                                   "cloud.google.com/gke-spot": "true"}
    assert {t["key"] for t in pod["tolerations"]} == {"nvidia.com/gpu", "cloud.google.com/gke-spot"}
    assert {"mountPath": "/dev/shm", "name": "dshm"} in container["volumeMounts"]
    # 8 H100s of an a3-highgpu-8g (208 vCPUs, 1,872 GB): what GKE leaves pods of it; /dev/shm a quarter of that
    assert container["resources"]["requests"] == {"cpu": "206", "memory": "1700Gi"}
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{1700 * 1024 // 4}Mi"}} in pod["volumes"]
    # a spot node's shutdown gives a pod 15 s; on-demand nodes the trainer gets 120 s, and either can be raised
    assert pod["terminationGracePeriodSeconds"] == 15 and job["spec"]["ttlSecondsAfterFinished"] == 7 * 86400
    assert objects_for(SPREAD["1 gpu"])[0]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 120
    raised = objects_for([*SPREAD["8 gpus spot"], "--grace_period", "90"])[0]
    assert raised["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 90
    assert container["command"] == ["cyclegan", "train"]
    assert not [t for t in pod["tolerations"] if t["effect"] == "NoExecute"]  # one node: Kubernetes' default

    indexed, service, budget = objects_for(SPREAD["4 nodes"])
    worker = indexed["spec"]["template"]
    assert worker["spec"]["priorityClassName"] == "training" and worker["metadata"]["annotations"] == {
        "kueue.x-k8s.io/podset-required-topology": "cloud.google.com/gce-topology-block"}
    lost = [(t["key"], t["tolerationSeconds"]) for t in worker["spec"]["tolerations"] if t["effect"] == "NoExecute"]
    assert lost == [("node.kubernetes.io/unreachable", 60), ("node.kubernetes.io/not-ready", 60)]
    assert budget["spec"]["maxUnavailable"] == 0 and budget["spec"]["selector"]["matchLabels"].items() <= worker[
        "metadata"]["labels"].items()
    assert indexed["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert "kueue.x-k8s.io/queue-name" not in indexed["spec"]["template"]["metadata"]["labels"]
    assert not {QUEUE for obj in (service, budget) if QUEUE in obj["metadata"]["labels"]}  # Kueue admits the Job only
    assert indexed["spec"]["activeDeadlineSeconds"] == 48 * 3600
    assert indexed["spec"]["successPolicy"] == {"rules": [{"succeededIndexes": "0"}]}
    assert "--peer_timeout" in indexed["spec"]["template"]["spec"]["containers"][0]["args"]
    jobset, jobset_budget = objects_for(SPREAD["4 nodes jobset"])
    assert jobset_budget["kind"] == "PodDisruptionBudget"
    assert jobset["spec"]["failurePolicy"]["rules"] == [{"name": "failOnUsageError", "action": "FailJobSet",
                                                         "onJobFailureReasons": ["PodFailurePolicy"]}]
    assert jobset["spec"]["replicatedJobs"][0]["template"]["spec"]["backoffLimit"] == 0

    (dataflow,) = objects_for(SPREAD["dataflow"])
    args = dataflow["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--runner") + 1] == "DataflowRunner" and args[args.index("--sdk_container_image") + 1] \
        == "beam:1"
    # a retried launcher would start another billed job; a stopped one cancels its job, so no autoscaler moves it
    assert dataflow["spec"]["backoffLimit"] == 0 and dataflow["spec"]["template"]["metadata"]["annotations"] == {
        "cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}
    assert dataflow["metadata"]["annotations"] == {"cyclegan/dataflow-job": "p/europe-west4/" + args[
        args.index("--job_name") + 1]}
    (local,) = objects_for(SPREAD["preprocess"])
    assert "--direct_num_workers=16" in local["spec"]["template"]["spec"]["containers"][0]["args"]
    (small,) = objects_for(["preprocess", *SPREAD["preprocess"][1:-1], "500m"])  # millicores: one worker
    assert "--direct_num_workers=1" in small["spec"]["template"]["spec"]["containers"][0]["args"]
    (cpu_train,) = objects_for([*SPREAD["cpu"][:-1], "2500m"])
    assert cpu_train["spec"]["template"]["spec"]["containers"][0]["args"][-2:] == ["--cpu_replicas", "2"]
    account, deployment, service = objects_for(SPREAD["tensorboard"])
    assert account["metadata"]["annotations"] == {"iam.gke.io/gcp-service-account": "sa@p.iam.gserviceaccount.com"}
    assert deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] == 6006
    assert service["spec"]["type"] == "ClusterIP"


FAST = {  # --network_profile: GKE's GPU NICs for NCCL, on nodes of 8 GPUs
    "tcpx": ["train", *TRAIN, "--gpus", "8", "--nodes", "2", "--network_profile", "tcpx"],
    "tcpxo": ["train", *TRAIN, "--gpus", "8", "--nodes", "2", "--network_profile", "tcpxo", "--accelerator",
              "nvidia-h100-mega-80gb"],
    "rdma jobset": ["train", *TRAIN, "--gpus", "8", "--nodes", "4", "--network_profile", "rdma", "--accelerator",
                    "nvidia-h200-141gb", "--backend", "jobset", "--topology", "cloud.google.com/gce-topology-block",
                    "--queue", "q"],
}


@pytest.mark.parametrize("version", VERSIONS)
def test_fast_network_profiles_attach_gkes_nics_and_leave_only_what_they_must_of_restricted(version):
    for case, argv in FAST.items():
        objects = objects_for(argv, version)
        assert invariant_violations(objects, version) == [], case
        assert server_side_violations(objects) == [], case
        (spec,) = [spec for obj in objects for spec in job_specs(obj)]
        job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"}, "spec": spec}
        kubernetes_validate.validate(job, version, strict=True)
        template, pod = spec["template"], spec["template"]["spec"]
        nics = json.loads(template["metadata"]["annotations"]["networking.gke.io/interfaces"])
        assert len(nics) == (5 if case == "tcpx" else 9) and nics[0] == {"interfaceName": "eth0", "network": "default"}
        assert ("kueue.x-k8s.io/podset-required-topology" in template["metadata"]["annotations"]) == ("jobset" in case)
        trainer = pod["containers"][0]
        # the trainer's own command and arguments run unchanged, after the plugin's environment script if any
        if case == "tcpx":
            assert trainer["command"] == ["cyclegan", "train"]
        else:
            assert trainer["command"][:2] == ["/bin/bash", "-c"] and trainer["command"][3:] == ["cyclegan", "train"]
            assert trainer["command"][2].endswith(' && exec "$0" "$@"')
        assert trainer["args"][:2] == ["--preset", "reference"]
        host_paths = sorted(v["name"] for v in pod["volumes"] if "hostPath" in v)
        shm = [v["emptyDir"].get("sizeLimit") for v in pod["volumes"] if v["name"] == "dshm"]
        problems = restricted_violations(pod)
        assert [p for p in problems if p.startswith("trainer")] == [], case  # the trainer itself stays restricted
        if case in ("tcpx", "tcpxo"):
            (daemon,) = pod["initContainers"]
            assert daemon["name"] == f"{case}-daemon" and daemon["restartPolicy"] == "Always"  # a native sidecar
            assert f"devices.gke.io/container.{case}-daemon" in template["metadata"]["annotations"]
            assert sorted(problems) == sorted([*(f"volume {n}: {{'hostPath'}}" for n in host_paths),
                                               *(f"{case}-daemon: {p}" for p in (
                                                   "runAsNonRoot", "runAsUser 0", "allowPrivilegeEscalation",
                                                   "capabilities.drop ALL", "capabilities.add"))])
        if case == "tcpx":  # fast_network.TCPX_SOURCES' files at their commits, field for field
            assert host_paths == ["libraries", "proc-sys", "sys", "tcpx-socket"] and shm == [f"{1700 * 1024 // 4}Mi"]
            assert [n["network"] for n in nics[1:]] == ["vpc1", "vpc2", "vpc3", "vpc4"]
            assert daemon["image"] == "us-docker.pkg.dev/gce-ai-infra/gpudirect-tcpx/tcpgpudmarxd-dev:v2.0.12"
            # nccl-test-latest.yaml@089e0224: `- \"--verbose 128 2 0 \"`, a plain scalar, backslashes and all
            assert daemon["command"] == ["/tcpgpudmarxd/build/app/tcpgpudmarxd", "--gpu_nic_preset", "a3vm",
                                         "--gpu_shmem_type", "fd", "--uds_path", "/run/tcpx", "--setup_param",
                                         r'\"--verbose 128 2 0 \"']
            assert daemon["securityContext"]["capabilities"] == {"add": ["NET_ADMIN"]}
            env = {e["name"]: e.get("value") for e in trainer["env"]}
            nccl = {name: value for name, value in env.items() if name.startswith("NCCL_")}
            # nccl-config.yaml@0e5609b0, run-nccl.sh's -x list; the client prefix is this pod's daemon socket
            assert nccl == {
                "NCCL_GPUDIRECTTCPX_UNIX_CLIENT_PREFIX": "/run/tcpx",
                "NCCL_SOCKET_IFNAME": "eth0", "NCCL_ALGO": "Ring,Tree", "NCCL_PROTO": "Simple", "NCCL_CROSS_NIC": "0",
                "NCCL_NET_GDR_LEVEL": "PIX", "NCCL_P2P_PXN_LEVEL": "0",
                "NCCL_GPUDIRECTTCPX_SOCKET_IFNAME": "eth1,eth2,eth3,eth4", "NCCL_GPUDIRECTTCPX_CTRL_DEV": "eth0",
                "NCCL_DYNAMIC_CHUNK_SIZE": "524288", "NCCL_P2P_NET_CHUNKSIZE": "524288",
                "NCCL_P2P_PCI_CHUNKSIZE": "524288", "NCCL_P2P_NVL_CHUNKSIZE": "1048576", "NCCL_BUFFSIZE": "4194304",
                "NCCL_NSOCKS_PERTHREAD": "4", "NCCL_SOCKET_NTHREADS": "1",
                "NCCL_GPUDIRECTTCPX_TX_BINDINGS": "eth1:8-21,112-125;eth2:8-21,112-125;eth3:60-73,164-177;"
                                                  "eth4:60-73,164-177",
                "NCCL_GPUDIRECTTCPX_RX_BINDINGS": "eth1:22-35,126-139;eth2:22-35,126-139;eth3:74-87,178-191;"
                                                  "eth4:74-87,178-191",
                "NCCL_GPUDIRECTTCPX_PROGRAM_FLOW_STEERING_WAIT_MICROS": "500000"}
            assert {"name": "tcpx-socket", "mountPath": "/run/tcpx"} in trainer["volumeMounts"]
            assert template["metadata"]["annotations"]["devices.gke.io/container.tcpx-daemon"].count("- path:") == 10
        elif case == "tcpxo":  # the newest pair of gpudirect-tcpxo/README.md; the health file on a shared emptyDir
            assert host_paths == ["aperture-devices", "nvidia", "proc-sys", "sys"] and shm == ["1Gi"]
            assert daemon["image"].endswith("/gpudirect-tcpxo/tcpgpudmarxd-dev:v1.0.21")
            assert daemon["args"][0].endswith("entrypoint_rxdm_container.sh --num_hops=2")  # retired flags gone
            assert {"name": "HEALTH_CHECK_LOG_FILE", "value": "/run/tcpxo-health/health-check"} in daemon["env"]
            # no startup probe: the kubelet would restart a failing daemon for ever, the pod stuck in Init
            assert "startupProbe" not in daemon
            shared = {"name": "tcpxo-health", "mountPath": "/run/tcpxo-health"}
            assert shared in daemon["volumeMounts"] and shared in trainer["volumeMounts"]
            assert {"name": "tcpxo-health", "emptyDir": {}} in pod["volumes"]
            assert "[ -e /run/tcpxo-health/health-check ]" in trainer["command"][2]
        else:
            assert host_paths == ["gib", "library-dir-host"] and shm == ["250Gi"] and "initContainers" not in pod
            assert [n["network"] for n in nics[1:]] == [f"rdma-{i}" for i in range(8)]
            assert sorted(problems) == [f"volume {n}: {{'hostPath'}}" for n in host_paths]
    done = subprocess.run([os.path.join(BIN, "cyclegan"), "submit", *FAST["tcpxo"], "--dry-run"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "pod-security.kubernetes.io/enforce=privileged" in done.stderr


def test_pods_are_sized_from_the_accelerators_machine_and_a_run_gives_up_waiting_for_capacity():
    sizes = {}
    for accelerator, gpus in (("nvidia-h100-80gb", 1), ("nvidia-h200-141gb", 8), ("nvidia-l4", 2), ("other-gpu", 8)):
        (job,) = objects_for(["train", *TRAIN, "--gpus", str(gpus), "--accelerator", accelerator])
        sizes[accelerator] = job["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
    # the smallest machine that carries the GPUs, less GKE's reservations (k8s/machines.py): a3-highgpu-1g (26
    # vCPUs, 234 GB), a3-ultragpu-8g (224, 2,952 GB), g2-standard-24 (24, 96 GB, 2 L4)
    assert sizes == {"nvidia-h100-80gb": {"cpu": "25", "memory": "205Gi"},
                     "nvidia-h200-141gb": {"cpu": "222", "memory": "2685Gi"},
                     "nvidia-l4": {"cpu": "23", "memory": "80Gi"},
                     "other-gpu": {"cpu": "8", "memory": "48Gi"}}  # an unknown machine: the defaults
    l4 = ["train", *TRAIN, "--gpus", "1", "--accelerator", "nvidia-l4"]
    for flags, expected in (([], {"cpu": "3", "memory": "10Gi"}),  # g2-standard-4: 3.4 vCPUs, 10.8 GiB for pods
                            (["--machine_type", "g2-standard-8"], {"cpu": "7", "memory": "24Gi"}),
                            (["--machine_type", "g2-standard-16"], {"cpu": "15", "memory": "52Gi"})):
        (job,) = objects_for([*l4, *flags])
        assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"] == expected, flags
    (serve, *_) = objects_for(SPREAD["serve gpu"])  # 1 L4: serve's 4 vCPUs and 8Gi, at most a g2-standard-4's
    assert serve["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "3",
                                                                                          "memory": "8Gi"}
    for flags, message in (
            (["--cpu", "100", "--gpus", "8"], "--cpu 100 --memory 342Gi with --gpus 8 nvidia-l4 fits no node: the "
                                              "largest machine that carries them, g2-standard-96, has 95.2 vCPUs"),
            (["--machine_type", "g2-standard-8", "--memory", "30Gi"], "fits no node: --machine_type g2-standard-8"),
            (["--machine_type", "g2-standard-8", "--gpus", "2"], "--machine_type g2-standard-8 carries 1 nvidia-l4, "
                                                                 "not --gpus 2"),
            (["--gpus", "16"], "--gpus 16: no machine carries more than 8 nvidia-l4 per node"),
            (["--machine_type", "n2-standard-8"], "not a GPU machine type this tool knows")):
        with pytest.raises(UsageError, match=re.escape(message)):
            parse_submit("train", [*l4[1:], *flags])
    (cpu_job,) = objects_for(SPREAD["cpu"])  # --cpu 4, memory by default: /dev/shm is a quarter of the 48Gi limit
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "12288Mi"}} in cpu_job["spec"]["template"][
        "spec"]["volumes"]
    job, _, _ = objects_for([*SPREAD["4 nodes"], "--max_pending_minutes", "20"])
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    # the first gang-up only: its timeout exits 7, which fails the run; a later start's (exit 3) stays counted
    assert args[args.index("--first_start_timeout") + 1] == "1200" and "--startup_timeout" not in args
    assert job["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] == [2, 4, 5, 7]
    jobset, _ = objects_for([*SPREAD["4 nodes jobset"], "--jobset_version", "0.10", "--max_pending_minutes", "20"])
    (spec,) = job_specs(jobset)
    assert jobset_action(jobset, *child_failure(spec, 7)) == "FailJobSet"  # no capacity: the run ends, uncounted
    assert jobset_action(jobset, *child_failure(spec, 3)) != "FailJobSet"  # a slow replacement node: restarted
    with pytest.raises(UsageError, match="--max_pending_minutes is for training on several nodes"):
        parse_submit("train", [*TRAIN, "--max_pending_minutes", "5"])
    with pytest.raises(UsageError, match="after --: --first_start_timeout is set by submit itself"):
        parse_submit("train", [*SPREAD["4 nodes"][1:], "--", "--first_start_timeout", "60"])


def test_a_clusters_own_network_names_and_daemon_image_are_used_and_checked():
    names = ",".join(f"gpu-nic-{i}" for i in range(4))
    daemon = "europe-docker.pkg.dev/platform/mirror/tcpgpudmarxd-dev:v2.0.11"
    (job, _, _) = objects_for([*FAST["tcpx"], "--networks", names, "--network_daemon_image", daemon])
    template = job["spec"]["template"]
    nics = json.loads(template["metadata"]["annotations"]["networking.gke.io/interfaces"])
    assert [(n["interfaceName"], n["network"]) for n in nics] == [
        ("eth0", "default"), *((f"eth{i + 1}", f"gpu-nic-{i}") for i in range(4))]
    assert template["spec"]["initContainers"][0]["image"] == daemon
    for flags, message in ((["--networks", "a,b"], "--network_profile tcpx attaches 4 GPU NICs, so it needs 4 GKE "
                                                   "Network names (got 2)"),
                           (["--networks", "a,b,c,Bad_Name"], "'Bad_Name' is not a GKE Network name"),
                           (["--network_daemon_image", "not an image"], "not an image reference")):
        with pytest.raises(UsageError, match=re.escape(message)):
            parse_submit("train", [*FAST["tcpx"][1:], *flags])
    with pytest.raises(UsageError, match="--network_profile rdma runs no daemon in the pod"):
        parse_submit("train", [*FAST["rdma jobset"][1:], "--network_daemon_image", daemon])
    with pytest.raises(UsageError, match="go with --network_profile"):
        parse_submit("train", [*TRAIN, "--networks", "a"])


def test_golden_examples_are_what_the_renderer_writes():
    written = sorted(f for f in os.listdir(examples.FOLDER) if f.endswith(".yaml"))
    assert written == sorted(examples.EXAMPLES), "run: python -m k8s.examples"
    for filename, argv in examples.EXAMPLES.items():
        with open(os.path.join(examples.FOLDER, filename)) as f:
            objects = list(yaml.safe_load_all(f))
        assert objects == examples.rendered(argv), f"{filename}: run python -m k8s.examples"
        assert server_side_violations(objects) == [], filename


def test_bad_flags_get_one_line_errors():
    cases = (
        (["train", "--data", "d", "--model_dir", "m"], "--image is required"),
        (["train", *TRAIN, "--name", "Bad_Name"], "--name Bad_Name: must be lower-case"),
        (["train", *TRAIN, "--name", "x" * 41], "at most 40 characters"),
        (["train", "--image", "i"], "submit train needs --data, --model_dir"),
        (["preprocess", "--image", "i", "--input", "a", "--output", "b", "--runner", "dataflow"],
         "needs --project, --region, --temp_location"),
        (["train", *TRAIN, "--memory", "lots"], "--memory lots: not a Kubernetes quantity"),
        (["train", *TRAIN, "--cpu", "4Gi"], "--cpu 4Gi: not a CPU quantity"),
        (["train", *TRAIN, "--nodes", "0"], "--nodes 0: must be at least 1"),
        (["train", *TRAIN, "--gpus", "8", "--network_profile", "tcpxo"], "is for training on several nodes"),
        (["train", *TRAIN, "--nodes", "2", "--network_profile", "rdma"], "--network_profile rdma needs --gpus 8"),
        (["train", *TRAIN, "--nodes", "2", "--gpus", "8", "--network_profile", "tcpxo"],
         "runs on nvidia-h100-mega-80gb nodes: pass --accelerator nvidia-h100-mega-80gb"),
        (["train", *TRAIN, "--nodes", "2", "--gpus", "0", "--network_profile", "rdma"], "needs --gpus 8"),
    )
    for argv, message in cases:
        with pytest.raises(UsageError, match=re.escape(message)):
            parse_submit(argv[0], argv[1:])
    done = subprocess.run([os.path.join(BIN, "cyclegan"), "submit", "train", "--image", "i", "--dry-run",
                           "--bogus"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "unrecognized arguments: --bogus" in done.stderr
    printed = subprocess.run([os.path.join(BIN, "cyclegan"), "submit", *SPREAD["4 nodes"], "--dry-run"],
                             capture_output=True, text=True, timeout=120)
    assert printed.returncode == 0 and [o["kind"] for o in yaml.safe_load_all(printed.stdout)] == ["Job", "Service",
                                                                                        "PodDisruptionBudget"]


def test_both_dockerfiles_pin_their_published_bases_and_run_as_the_manifests_user():
    """What holds for a build on the published bases too (tests/test_k8s_images.py builds them on a local one)."""
    from k8s.config import UID
    from tests.helpers import REPO

    with open(os.path.join(REPO, "constraints.txt")) as f:
        pins = dict(line.strip().split("==") for line in f if "==" in line)
    packages = ("preprocessing", "pipeline", "trainer", "k8s")
    for dockerfile, base, extra in (("Dockerfile", f"tensorflow/tensorflow:{pins['tensorflow']}-gpu", "train"),
                                    ("Dockerfile.beam", f"apache/beam_python3.11_sdk:{pins['apache-beam']}",
                                     "preprocess")):
        with open(os.path.join(REPO, "k8s", dockerfile)) as f:
            text = f.read()
        assert f"ARG BASE={base}\nFROM ${{BASE}}\n" in text, dockerfile
        assert f'pip install --constraint constraints.txt ".[{extra}]"' in text and f"USER {UID}:{UID}" in text
        assert f"--uid {UID} --gid {UID} --home-dir /home/cyclegan" in text  # the pods' HOME
        assert all(f"COPY {package}/ {package}/" in text for package in packages), dockerfile


def test_what_the_api_server_would_refuse_is_refused_before_printing():
    refused = (
        (["--image", "my image:1"], "--image 'my image:1': not an image reference"),
        (["--queue", "team queue"], "--queue 'team queue': not a valid label value"),
        (["--accelerator", "a" * 64], "--accelerator"),
        (["--service_account", "Trainer_SA"], "--service_account 'Trainer_SA': not a valid service account name"),
        (["--gpus", "17"], "--gpus 17: must be between 0 and 16"),
        (["--cpu", "0"], "--cpu 0: not a CPU quantity above 0"),
        (["--memory", "0Gi"], "--memory 0Gi: not a Kubernetes quantity above 0"),
        (["--kubernetes_version", "1.30"], "--kubernetes_version 1.30: the Jobs need podFailurePolicy, GA from 1.31"),
        (["--topology", "cloud.google.com/gce-topology-block"], "--topology needs --queue"),
        (["--queue", "q", "--topology", "no spaces"], "--topology 'no spaces': not a node label key"),
        (["--priority_class", "High_Priority"], "--priority_class 'High_Priority': not a valid PriorityClass name"),
        (["--grace_period", "5"], "--grace_period 5: below 10 s, the trainer cannot finish its step and save"),
        (["--nodes", "2", "--node_lost_seconds", "0"], "--node_lost_seconds 0: must be at least 1"),
    )
    for flags, message in refused:
        with pytest.raises(UsageError, match=re.escape(message)):
            parse_submit("train", [*TRAIN, *flags])
    for memory in ("1Ei", "1.5Gi", "1e9", "128974848", "129M", "0.5Ti"):  # every form the API server takes
        config, extra, _ = parse_submit("train", [*TRAIN, "--memory", memory, "--cpu", "500m", "--gpus", "0"])
        (job,) = render(config, extra)[1]
        assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] == memory
    done = subprocess.run([os.path.join(BIN, "cyclegan"), "submit", "train", *TRAIN, "--backend", "jobset",
                           "--dry-run"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and [o["kind"] for o in yaml.safe_load_all(done.stdout)] == ["Job"]
    assert "--backend jobset is for several nodes" in done.stderr and "renders a batch/v1 Job" in done.stderr


def test_flags_after_the_separator_are_checked_as_the_trainer_would():
    for extra, message in ((["--bogus"], "after --: --bogus: not a `cyclegan train` flag"),
                           (["--batch_size", "0"], "after --: --batch_size 0: must be at least 1"),
                           (["--precision", "fp8"], "after --: argument --precision: invalid choice: 'fp8'"),
                           (["--model_dir=gs://elsewhere"], "after --: --model_dir is set by submit itself"),
                           (["--preset", "tiny"], "after --: --preset is set by submit itself"),
                           (["--peer_timeout", "9"], "after --: --peer_timeout is set by submit itself"),
                           (["--cpu_replicas", "2"], "after --: --cpu_replicas is set by submit itself"),
                           (["--dry_run"], "after --: --dry_run would end every pod before training"),
                           (["--max_restarts_without_progress", "0"],
                            "after --: --max_restarts_without_progress 0 turns off the guard"),
                           (["--lr", "nan"], "after --: argument --lr: 'nan' is not a finite number"),
                           (["--preprocess", "scale_width"], "after --: --preprocess scale_width keeps each image's "
                                                             "own size")):
        with pytest.raises(UsageError, match=re.escape(message)):
            parse_submit("train", [*TRAIN, "--", *extra])
    config, extra, _ = parse_submit("train", [*TRAIN, "--", "--batch_size", "4", "--precision", "mixed_bfloat16"])
    args = render(config, extra)[1][0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[-4:] == ["--batch_size", "4", "--precision", "mixed_bfloat16"]


def _copy(obj):
    return json.loads(json.dumps(obj))


SERVER_RULES_BROKEN = {
    # (what the server refuses, how to break a rendered object that way): each must be caught alone
    "exit codes unsorted": ("ordered and unique", lambda job: job["spec"]["podFailurePolicy"]["rules"][1][
        "onExitCodes"].update(values=[75, 6])),
    "exit codes repeated": ("ordered and unique", lambda job: job["spec"]["podFailurePolicy"]["rules"][1][
        "onExitCodes"].update(values=[6, 6])),
    "exit code 0 with In": ("0 cannot be used", lambda job: job["spec"]["podFailurePolicy"]["rules"][0][
        "onExitCodes"].update(values=[0, 2])),
    "256 exit codes": ("1 to 255", lambda job: job["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"].update(
        values=list(range(1, 257)))),
    "no such container": ("names none of", lambda job: job["spec"]["podFailurePolicy"]["rules"][0][
        "onExitCodes"].update(containerName="sidecar")),
    "21 rules": ("at most 20", lambda job: job["spec"]["podFailurePolicy"]["rules"].extend(
        [job["spec"]["podFailurePolicy"]["rules"][2]] * 18)),
    "condition status": ("condition status", lambda job: job["spec"]["podFailurePolicy"]["rules"][2][
        "onPodConditions"][0].update(status="true")),
    "FailIndex without per-index limit": ("FailIndex needs", lambda job: job["spec"]["podFailurePolicy"]["rules"][0]
                                          .update(action="FailIndex")),
    "Indexed without completions": ("needs completions", lambda job: job["spec"].pop("completions")),
    "per-index limit on a NonIndexed Job": ("needs completionMode Indexed", lambda job: [
        job["spec"].pop("successPolicy"), job["spec"].update(completionMode="NonIndexed", backoffLimitPerIndex=1)]),
    "maxFailedIndexes above completions": ("maxFailedIndexes above", lambda job: job["spec"].update(
        backoffLimitPerIndex=1, maxFailedIndexes=99)),
    "successPolicy count": ("succeededCount", lambda job: job["spec"].update(
        successPolicy={"rules": [{"succeededCount": 99}]})),
    "deadline zero": ("activeDeadlineSeconds 0", lambda job: job["spec"].update(activeDeadlineSeconds=0)),
    "negative ttl": ("ttlSecondsAfterFinished -1", lambda job: job["spec"].update(ttlSecondsAfterFinished=-1)),
    "long Job name": ("job-name label", lambda job: job["metadata"].update(name="r" * 64)),
    "name not DNS": ("not a DNS subdomain", lambda job: job["metadata"].update(name="Run_1")),
    "label value too long": ("not a valid label value", lambda job: job["metadata"]["labels"].update(
        {"app.kubernetes.io/instance": "x" * 64})),
    "label key": ("not a qualified name", lambda job: job["metadata"]["labels"].update({"-bad": "x"})),
    "request above limit": ("above its limit", lambda job: job["spec"]["template"]["spec"]["containers"][0][
        "resources"].update(requests={"memory": "2Ti"}, limits={"memory": "1Ti"})),
    "quantity": ("quantity", lambda job: job["spec"]["template"]["spec"]["containers"][0]["resources"][
        "requests"].update(cpu="1.5 cores")),
    "GPU request unequal": ("equal to its limit", lambda job: job["spec"]["template"]["spec"]["containers"][0][
        "resources"]["requests"].update({"nvidia.com/gpu": "4"})),
    "probe handlers": ("exactly one handler", lambda job: job["spec"]["template"]["spec"]["containers"][0].update(
        livenessProbe={"exec": {"command": ["true"]}, "tcpSocket": {"port": 2222}})),
    "liveness success threshold": ("successThreshold must be 1", lambda job: job["spec"]["template"]["spec"][
        "containers"][0].update(livenessProbe={"exec": {"command": ["true"]}, "successThreshold": 2})),
    "probe port name": ("names no container port", lambda job: job["spec"]["template"]["spec"]["containers"][
        0].update(readinessProbe={"tcpSocket": {"port": "grpc"}})),
    "container restartPolicy": ("restartPolicy is allowed only", lambda job: job["spec"]["template"]["spec"][
        "containers"][0].update(restartPolicy="Always")),
    "duplicate container": ("not unique", lambda job: job["spec"]["template"]["spec"].update(
        initContainers=[{**job["spec"]["template"]["spec"]["containers"][0], "restartPolicy": "Always"}])),
}


@pytest.mark.parametrize("case", SERVER_RULES_BROKEN)
def test_each_server_side_rule_is_caught_on_a_broken_job(case):
    expected, breaks = SERVER_RULES_BROKEN[case]
    indexed, service, *rest = objects_for(SPREAD["4 nodes"])
    assert server_side_violations([indexed, service, *rest]) == []
    broken = _copy(indexed)
    breaks(broken)
    problems = server_side_violations([broken])
    assert problems and all(expected in p for p in problems), problems


def test_each_jobset_webhook_rule_is_caught():
    (jobset,) = [o for o in objects_for([*SPREAD["4 nodes jobset"], "--jobset_version", "0.10"])
                 if o["kind"] == "JobSet"]
    assert server_side_violations([jobset]) == []
    breaks = {
        "not a DNS-1035 label": lambda js: js["spec"]["replicatedJobs"][0].update(name="1workers"),
        "is longer than 63": lambda js: js["metadata"].update(name="j" * 60),
        "not a replicatedJob": lambda js: js["spec"]["successPolicy"].update(targetReplicatedJobs=["ps"]),
        "rule names": lambda js: js["spec"]["failurePolicy"]["rules"][1].update(
            name=js["spec"]["failurePolicy"]["rules"][0]["name"]),
        "does not compile": lambda js: js["spec"]["failurePolicy"]["rules"][0].update(
            onJobFailureMessagePatterns=["index (0$"]),
        "maxRestarts is negative": lambda js: js["spec"]["failurePolicy"].update(maxRestarts=-1),
    }
    for expected, breaking in breaks.items():
        broken = _copy(jobset)
        breaking(broken)
        problems = server_side_violations([broken])
        assert problems and any(expected in p for p in problems), (expected, problems)


def test_nccl_as_root_runs_the_trainer_as_gkes_samples_do_and_only_with_a_profile():
    (job, _, _) = objects_for([*FAST["tcpx"], "--nccl_as_root"])
    pod = job["spec"]["template"]["spec"]
    trainer = pod["containers"][0]
    assert trainer["securityContext"] == {"runAsNonRoot": False, "runAsUser": 0, "capabilities": {"add": ["IPC_LOCK"]},
                                          "seccompProfile": {"type": "RuntimeDefault"}}
    assert server_side_violations([job]) == []
    (plain, _, _) = objects_for(FAST["tcpx"])
    assert "trainer: runAsNonRoot" not in restricted_violations(plain["spec"]["template"]["spec"])
    with pytest.raises(UsageError, match="--nccl_as_root go with --network_profile"):
        parse_submit("train", [*TRAIN, "--nccl_as_root"])


@pytest.mark.parametrize("state, ready", [("AVAILABLE", True), ("LOADING", False), ("END", False), (None, False)])
def test_the_serving_probe_passes_only_an_available_model(state, ready):
    """The rendered probe's own command, against a server answering as TF Serving's status endpoint does: 200
    with the state in the body, whatever the state (None: nothing listening)."""
    import http.server
    import socket
    import threading

    (deployment, _) = objects_for(SPREAD["serve"])
    command = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["exec"]["command"]
    with socket.socket() as probe_port:
        probe_port.bind(("127.0.0.1", 0))
        port = probe_port.getsockname()[1]
    body = json.dumps({"model_version_status": [{"version": "1", "state": state,
                                                 "status": {"error_code": "OK", "error_message": ""}}]}, indent=1)

    class Status(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/v1/models/h2z-serve" else 404)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", port), Status) if state else None
    if server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        script = command[2].replace("/127.0.0.1/8501", f"/127.0.0.1/{port}")
        done = subprocess.run([command[0], command[1], script], capture_output=True, timeout=30)
        assert (done.returncode == 0) == ready, done.stderr
    finally:
        if server:
            server.shutdown()


@pytest.mark.parametrize("ready_after_s, status", [(1, 0), (None, 8)])
def test_the_tcpxo_trainer_waits_for_its_daemon_and_ends_its_pod_on_a_broken_node(tmp_path, ready_after_s, status):
    """The rendered trainer command itself, in bash, with the daemon's health file made by a process standing in for
    the daemon (or never), the wait shortened from its 120 s to 3 s and the NCCL script and trainer stood in for."""
    from k8s import fast_network

    (job, _, _) = objects_for(FAST["tcpxo"])
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    ready = tmp_path / "health-check"
    script = (command[2].replace(fast_network.HEALTH_FILE, str(ready)).replace(
        f"seq {fast_network.DAEMON_WAIT_S}", "seq 3").replace(fast_network.PROFILES["tcpxo"]["nccl_setup"], "true"))
    daemon = subprocess.Popen(["bash", "-c", f"sleep {ready_after_s} && touch {ready}"]) if ready_after_s else None
    done = subprocess.run([command[0], command[1], script, "echo", "trainer started"], capture_output=True, text=True,
                          timeout=60)
    if daemon:
        daemon.wait()
    assert done.returncode == status, done.stderr
    if status:
        assert "tcpxo-daemon not ready after 120 s" in done.stderr and "exiting 8 so that the pod is replaced" in (
            done.stderr)
    else:
        assert done.stdout == "trainer started\n"
