"""--network_profile: what GKE's GPU machines need in a pod for NCCL to use their GPU NICs instead of plain TCP on
the primary interface (about 4 GB/s per node; benchmarks/RESULTS.md, "Multi-node scaling, on paper").

Every field below is taken from GKE's published manifests in GoogleCloudPlatform/container-engine-accelerators:
    tcpxo   A3 Mega (H100 Mega), GPUDirect-TCPXO: gpudirect-tcpxo/nccl-test-latest.yaml
    rdma    A3 Ultra (H200), GPUDirect RDMA:       gpudirect-rdma/nccl-test.yaml
and GKE's guide "Maximize GPU network bandwidth in Standard mode clusters", which has the cluster's side: the GKE
Network objects these pods attach to (vpc1..vpc8, rdma-0..rdma-7), and the DaemonSet that installs the NCCL
plugin under /home/kubernetes/bin on each node. Two things are ours: the TCPXO daemon runs as a native sidecar (an
init container with restartPolicy Always, Kubernetes 1.29+) so that the Job completes when training does, and it
states the root user that its image runs as, since the pod's own securityContext asks for non-root.

Both leave the restricted Pod Security profile (and the baseline one: host paths; TCPXO's daemon also runs as root
with NET_ADMIN), so the namespace must allow privileged pods; `submit` says so.
"""
import json

TCPXO_DEVICES = [*(f"/dev/nvidia{i}" for i in range(8)), "/dev/nvidiactl", "/dev/nvidia-uvm",
                 "/dev/dmabuf_import_helper"]

PROFILES = {
    "tcpxo": {
        "accelerator": "nvidia-h100-mega-80gb",
        "interfaces": [("eth0", "default"), *((f"eth{i}", f"vpc{i}") for i in range(1, 9))],
        "nccl_setup": "NCCL_LIB_DIR=/usr/local/nvidia/lib64 source /usr/local/nvidia/lib64/nccl-env-profile.sh",
        "env": {"LD_LIBRARY_PATH": "/usr/local/nvidia/lib64",
                "NCCL_FASTRAK_LLCM_DEVICE_DIRECTORY": "/dev/aperture_devices"},
        "mounts": {"nvidia": ("/home/kubernetes/bin/nvidia/lib64", "/usr/local/nvidia/lib64"),
                   "aperture-devices": ("/dev/aperture_devices", "/dev/aperture_devices")},
        "shm": "1Gi",
        "sidecar": {
            "name": "tcpxo-daemon", "image": "us-docker.pkg.dev/gce-ai-infra/gpudirect-tcpxo/tcpgpudmarxd-dev:v1.0.9",
            "restartPolicy": "Always", "command": ["/bin/sh", "-c"],
            "args": ["chmod 755 /fts/entrypoint_rxdm_container.sh && exec /fts/entrypoint_rxdm_container.sh "
                     "--num_hops=2 --num_nics=8 --uid= --alsologtostderr"],
            "securityContext": {"runAsUser": 0, "runAsNonRoot": False,
                                "capabilities": {"add": ["NET_ADMIN", "NET_BIND_SERVICE"]}},
            "env": [{"name": "LD_LIBRARY_PATH", "value": "/usr/local/nvidia/lib64"}],
            "volumeMounts": [{"name": "nvidia", "mountPath": "/usr/local/nvidia/lib64"},
                             {"name": "sys", "mountPath": "/hostsysfs"},
                             {"name": "proc-sys", "mountPath": "/hostprocsysfs"}]},
        "sidecar_volumes": {"sys": "/sys", "proc-sys": "/proc/sys"},
        "annotations": {"devices.gke.io/container.tcpxo-daemon": "".join(f"- path: {d}\n" for d in TCPXO_DEVICES)},
    },
    "rdma": {
        "accelerator": "nvidia-h200-141gb",
        "interfaces": [("eth0", "default"), *((f"eth{i + 2}", f"rdma-{i}") for i in range(8))],
        "nccl_setup": "source /usr/local/gib/scripts/set_nccl_env.sh",
        "env": {"LD_LIBRARY_PATH": "/usr/local/nvidia/lib64"},
        "mounts": {"library-dir-host": ("/home/kubernetes/bin/nvidia", "/usr/local/nvidia"),
                   "gib": ("/home/kubernetes/bin/gib", "/usr/local/gib")},
        "shm": "250Gi",
        "sidecar": None, "sidecar_volumes": {}, "annotations": {},
    },
}
GPUS = 8  # the GPU NICs pair with a whole node's GPUs: GKE's manifests take all eight


def annotations(profile):
    """The pod template's annotations: GKE's multi-network interfaces, and the devices the sidecar needs."""
    spec = PROFILES[profile]
    interfaces = [{"interfaceName": nic, "network": network} for nic, network in spec["interfaces"]]
    return {"networking.gke.io/default-interface": "eth0",
            "networking.gke.io/interfaces": json.dumps(interfaces), **spec["annotations"]}


def attach(profile, pod):
    """The trainer pod's spec with the profile's host mounts, environment, shared memory size and sidecar; the
    trainer starts after the NCCL plugin's environment script has run in its shell."""
    spec = PROFILES[profile]
    trainer, *others = pod["containers"]
    command = ["/bin/bash", "-c", f'{spec["nccl_setup"]} && exec "$0" "$@"', *trainer["command"]]
    trainer = {**trainer, "command": command,
               "env": [*trainer["env"], *({"name": k, "value": v} for k, v in spec["env"].items())],
               "volumeMounts": [*trainer["volumeMounts"], *({"name": name, "mountPath": inside}
                                                            for name, (_, inside) in spec["mounts"].items())]}
    host_paths = {**{name: host for name, (host, _) in spec["mounts"].items()}, **spec["sidecar_volumes"]}
    volumes = [{**v, "emptyDir": {**v["emptyDir"], "sizeLimit": spec["shm"]}} if v["name"] == "dshm" else v
               for v in pod["volumes"]]
    volumes += [{"name": name, "hostPath": {"path": path}} for name, path in host_paths.items()]
    out = {**pod, "containers": [trainer, *others], "volumes": volumes}
    if spec["sidecar"]:
        out["initContainers"] = [spec["sidecar"]]
    return out
