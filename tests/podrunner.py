"""Run a rendered Job's pods as the kubelet and the Job controller would, on this machine, without Kubernetes.

    unshare --mount --net --fork -- python -m tests.podrunner SPEC.json RESULT.json

Inside the private mount and network namespaces that `unshare` made (nothing leaves them): a Linux bridge, and
for each pod a network namespace on it with its own address, hostname and /etc/hosts, where the headless
Service's DNS names (<job>-<index>.<service>) resolve to the other pods. Each pod's container runs verbatim: its
command and args, its env with the downward-API fields filled in and $(VAR) expanded as the kubelet does, its
emptyDir volumes mounted where the pod mounts them. Two modes:
    process     the command runs from this checkout's virtualenv (first on PATH); images, resource limits and
                runAsUser are not applied (this machine's Python lives in root's home)
    container   (SPEC "containers": true) each pod runs its image with podman (k8s/podman/*.conf), in the pod's
                network namespace: user and group from the securityContext, readOnlyRootFilesystem where set,
                emptyDirs as volumes (memory-backed ones as tmpfs of their sizeLimit), the memory limit as the
                container's (past it the kernel kills it: 137, as the kubelet reports an OOM kill), env and args
                verbatim; SPEC "shared" folders of this machine are mounted at the same paths (the test's data)

The Job controller's part: parallelism, completions and completion indexes, restartPolicy Never (a failed pod is
replaced by a new one with the same index), the podFailurePolicy's rules in order (FailJob, Ignore, Count),
backoffLimit, and the successPolicy's succeededIndexes. SPEC may ask for one pod to be killed once its log shows a
line, to exercise the failure path.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

BRIDGE, SUBNET = "cyclegan0", "10.244.0"


def sh(*args):
    subprocess.run(args, check=True)


def network(pods):
    """The bridge, and per pod a namespace with one veth on it; {pod: address}."""
    sh("mount", "-t", "tmpfs", "tmpfs", "/run")  # `ip netns` keeps its files there; private to this namespace
    sh("ip", "link", "set", "lo", "up")
    sh("ip", "link", "add", BRIDGE, "type", "bridge")
    sh("ip", "addr", "add", f"{SUBNET}.1/24", "dev", BRIDGE)
    sh("ip", "link", "set", BRIDGE, "up")
    addresses = {}
    for number, pod in enumerate(pods):
        address = f"{SUBNET}.{10 + number}"
        sh("ip", "netns", "add", pod)
        sh("ip", "link", "add", f"veth{number}", "type", "veth", "peer", "name", "eth0", "netns", pod)
        sh("ip", "link", "set", f"veth{number}", "master", BRIDGE, "up")
        sh("ip", "netns", "exec", pod, "ip", "addr", "add", f"{address}/24", "dev", "eth0")
        sh("ip", "netns", "exec", pod, "ip", "link", "set", "eth0", "up")
        sh("ip", "netns", "exec", pod, "ip", "link", "set", "lo", "up")
        addresses[pod] = address
    return addresses


def field(path, pod):
    """A downward-API fieldRef, as the kubelet fills it."""
    match = re.fullmatch(r"metadata\.annotations\['([^']+)'\]", path)
    if match:
        return pod["annotations"][match.group(1)]
    return {"metadata.name": pod["name"], "metadata.namespace": pod["namespace"], "status.podIP": pod["ip"],
            "spec.serviceAccountName": pod["service_account"]}[path]


def expand(value, defined):
    """$(VAR) as the kubelet expands it: only variables defined before; $$(VAR) stays literal."""
    return re.sub(r"\$(\$?)\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: f"$({m.group(2)})" if m.group(1) else defined.get(m.group(2), m.group(0)), value)


def container_env(container, pod, path):
    env = {"PATH": path, "HOSTNAME": pod["hostname"], "LANG": "C.UTF-8"}
    if "index" in pod:
        env["JOB_COMPLETION_INDEX"] = str(pod["index"])  # the Job controller sets it for Indexed Jobs
    for entry in container.get("env", []):
        if "valueFrom" in entry:
            env[entry["name"]] = field(entry["valueFrom"]["fieldRef"]["fieldPath"], pod)
        else:
            env[entry["name"]] = expand(entry.get("value", ""), env)
    return env


def mount_script(pod_spec, container, workdir):
    """Shell lines that mount the container's emptyDir volumes in the pod's own mount namespace."""
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    lines = []
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        assert set(volume) == {"name", "emptyDir"}, f"the runner knows emptyDir volumes only: {volume}"
        target = mount["mountPath"]
        if not os.path.exists(target):  # e.g. /home/cyclegan: an empty tmpfs over its parent, then the folder
            lines.append(f"mount -t tmpfs tmpfs {os.path.dirname(target)} && mkdir -p {target}")
        if volume["emptyDir"].get("medium") == "Memory":
            lines.append(f"mount -t tmpfs tmpfs {target}")
        else:
            source = os.path.join(workdir, "volumes", f"{pod_spec['_pod']}-{mount['name']}")
            os.makedirs(source, exist_ok=True)
            lines.append(f"mount --bind {source} {target}")
    return lines


def quantity(value):
    """A Kubernetes memory quantity (48Gi, 512Mi, 1e9) as podman's byte count."""
    units = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9}
    number, unit = re.fullmatch(r"([0-9.e+]+)([A-Za-z]*)", value).groups()
    return str(int(float(number) * units.get(unit, 1)))


def podman_run(name, spec, container, pod, env, hosts, workdir, shared):
    """The `podman run` that starts `container` as the kubelet would (see the module's docstring)."""
    security = {**spec.get("securityContext", {}), **container.get("securityContext", {})}
    command = ["podman", "run", "--rm", "--name", name, "--network", f"ns:/run/netns/{pod['netns']}",
               "--hostname", pod["hostname"], "--user", f"{security['runAsUser']}:{security['runAsGroup']}",
               "--volume", f"{hosts}:/etc/hosts:ro"]
    if security.get("readOnlyRootFilesystem"):
        command.append("--read-only")
    memory = container.get("resources", {}).get("limits", {}).get("memory")
    if memory:
        command += ["--memory", quantity(memory), "--memory-swap", quantity(memory)]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        empty_dir = volumes[mount["name"]]["emptyDir"]
        if empty_dir.get("medium") == "Memory":
            size = f",size={quantity(empty_dir['sizeLimit'])}" if "sizeLimit" in empty_dir else ""
            command += ["--tmpfs", f"{mount['mountPath']}:rw,mode=1777{size}"]
        else:
            source = os.path.join(workdir, "volumes", f"{pod['name']}-{mount['name']}")
            os.makedirs(source, mode=0o777, exist_ok=True)
            os.chmod(source, 0o777)  # an emptyDir is writable by the pod's user (fsGroup)
            command += ["--volume", f"{source}:{mount['mountPath']}"]
    for folder in shared:
        command += ["--volume", f"{folder}:{folder}"]
    for key, value in env.items():
        command += ["--env", f"{key}={value}"]
    entrypoint = json.dumps(container["command"]) if "command" in container else None
    return [*command, *(["--entrypoint", entrypoint] if entrypoint else []), container["image"],
            *container.get("args", [])]


class Pod:
    def __init__(self, spec, pod, attempt, workdir, path, shared=None):
        self.pod, self.attempt = pod, attempt
        (container,) = spec["containers"]
        self.container = container["name"]
        self.name = f"{pod['name']}-attempt{attempt}"
        hosts = os.path.join(workdir, f"hosts-{pod['name']}")
        with open(hosts, "w") as f:
            f.write("127.0.0.1 localhost\n" + "".join(f"{line}\n" for line in pod["hosts"]))
        self.log = os.path.join(workdir, f"{self.name}.log")
        if shared is not None:  # container mode
            env = {key: value for key, value in container_env(container, pod, path).items()
                   if key not in ("PATH", "HOSTNAME")}  # the image's PATH; --hostname sets the other
            with open(self.log, "w") as out:
                self.process = subprocess.Popen(
                    podman_run(self.name, spec, container, pod, env, hosts, workdir, shared),
                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            self.containerized = True
            return
        self.containerized = False
        script = " && ".join([f"hostname {pod['hostname']}", f"mount --bind {hosts} /etc/hosts",
                              *mount_script({**spec, "_pod": pod["name"]}, container, workdir),
                              'exec "$@"'])
        with open(self.log, "w") as out:
            self.process = subprocess.Popen(
                ["ip", "netns", "exec", pod["netns"], "unshare", "--uts", "--mount", "--", "sh", "-c", script,
                 "pod", *container["command"], *container.get("args", [])],
                env=container_env(container, pod, path), stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=pod.get("workdir") or workdir)

    def exit_code(self):
        code = self.process.poll()
        if code is None:
            return None
        return 128 - code if code < 0 else code  # a signal, as the container runtime reports it

    def signal(self, signum):
        if self.containerized:  # to the container's process, as the kubelet's runtime sends it
            subprocess.run(["podman", "kill", "--signal", str(signum), self.name], capture_output=True)
            return
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass


def matches(rule, container, code, condition=None):
    if "onExitCodes" in rule:
        exits = rule["onExitCodes"]
        if exits.get("containerName", container) != container or code is None:
            return False
        inside = code in exits["values"]
        return inside if exits["operator"] == "In" else not inside
    return condition is not None and any(c["type"] == condition for c in rule.get("onPodConditions", []))


def run_job(job, namespace, addresses, subdomain_hosts, workdir, path, kill, deadline, shared=None):
    """The Job controller's loop over one Job; (status, events)."""
    spec = job["spec"]
    pod_spec = spec["template"]["spec"]
    indexed = spec.get("completionMode") == "Indexed"
    completions = spec.get("completions", 1)
    rules = spec.get("podFailurePolicy", {}).get("rules", [])
    success_indexes = [int(rule["succeededIndexes"]) for rule in spec.get("successPolicy", {}).get("rules", [])
                       if rule.get("succeededIndexes", "").isdigit()]
    name = job["metadata"]["name"]
    assert pod_spec["restartPolicy"] == "Never", "the runner replaces failed pods, as for restartPolicy Never"

    def pod_for(index):
        hostname = f"{name}-{index}" if indexed else name
        netns = f"{name}-{index}"
        return {"name": netns, "namespace": namespace, "hostname": hostname, "netns": netns,
                "ip": addresses[netns], "service_account": pod_spec.get("serviceAccountName", "default"),
                "annotations": {"batch.kubernetes.io/job-completion-index": str(index)} if indexed else {},
                "hosts": subdomain_hosts, **({"index": index} if indexed else {})}

    attempts = {index: 0 for index in range(completions)}
    running = {index: Pod(pod_spec, pod_for(index), 0, workdir, path, shared) for index in range(completions)}
    succeeded, failures, events, killed = set(), 0, [], False
    while True:
        if time.monotonic() > deadline:
            for pod in running.values():
                pod.signal(signal.SIGKILL)
            return "DeadlineExceeded", events
        if kill and not killed and kill["index"] in running:
            pod = running[kill["index"]]
            with open(pod.log, errors="replace") as f:
                if kill["after_log"] in f.read():
                    pod.signal(kill["signal"])
                    killed = True
                    events.append({"index": kill["index"], "attempt": pod.attempt, "killed": kill["signal"]})
        for index, pod in list(running.items()):
            code = pod.exit_code()
            if code is None:
                continue
            del running[index]
            if code == 0:
                succeeded.add(index)
                events.append({"index": index, "attempt": pod.attempt, "exit": 0, "action": "Succeeded"})
                continue
            action = next((rule["action"] for rule in rules if matches(rule, pod.container, code)), "Count")
            events.append({"index": index, "attempt": pod.attempt, "exit": code, "action": action})
            if action == "FailJob":
                for other in running.values():
                    other.signal(signal.SIGTERM)
                return "Failed", events
            if action == "Count":
                failures += 1
                if failures > spec.get("backoffLimit", 6):
                    for other in running.values():
                        other.signal(signal.SIGTERM)
                    return "Failed", events
            attempts[index] += 1
            running[index] = Pod(pod_spec, pod_for(index), attempts[index], workdir, path, shared)
        if any(index in succeeded for index in success_indexes) or len(succeeded) == completions:
            for other in running.values():  # the successPolicy ends the Job: the others are terminated
                other.signal(signal.SIGTERM)
            return "Complete", events
        time.sleep(0.2)


def main(spec_path, result_path):
    with open(spec_path) as f:
        spec = json.load(f)
    objects, workdir = spec["objects"], spec["workdir"]
    (job,) = [o for o in objects if o["kind"] == "Job"]
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    name, namespace = job["metadata"]["name"], job["metadata"]["namespace"]
    indexed = job["spec"].get("completionMode") == "Indexed"
    completions = job["spec"].get("completions", 1)
    pods = [f"{name}-{index}" for index in range(completions)]
    addresses = network(pods)
    subdomain = job["spec"]["template"]["spec"].get("subdomain")
    hosts = []
    if indexed and subdomain:
        assert subdomain in services, f"the pods' subdomain {subdomain} names no Service"
        for index, pod in enumerate(pods):  # what the cluster DNS answers for the headless Service
            fqdn = f"{pod}.{subdomain}.{namespace}.svc.cluster.local"
            hosts.append(f"{addresses[pod]} {fqdn} {pod}.{subdomain}.{namespace} {pod}.{subdomain}")
    shared = spec.get("shared", []) if spec.get("containers") else None
    status, events = run_job(job, namespace, addresses, hosts, workdir, spec["path"], spec.get("kill"),
                             time.monotonic() + spec.get("timeout", 600), shared)
    with open(result_path, "w") as f:
        json.dump({"status": status, "events": events}, f, indent=2)


if __name__ == "__main__":
    main(*sys.argv[1:3])
