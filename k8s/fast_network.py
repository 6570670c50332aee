"""--network_profile: what GKE's GPU machines need in a pod for NCCL to use their GPU NICs instead of plain TCP on
the primary interface (about 4 GB/s per node; benchmarks/RESULTS.md, "Multi-node scaling, on paper").

Every field below is taken from GKE's published manifests in GoogleCloudPlatform/container-engine-accelerators:
    tcpx    A3 High (H100, a3-highgpu-8g), GPUDirect-TCPX:  the files and commits in TCPX_SOURCES (the daemon, the
            devices and the mounts of nccl-test-latest.yaml; the NCCL environment of nccl-config.yaml's run-nccl.sh)
    tcpxo   A3 Mega (H100 Mega), GPUDirect-TCPXO: gpudirect-tcpxo/nccl-test-latest.yaml, the daemon and plugin pair
            of gpudirect-tcpxo/README.md's newest release (Jan 9, 2026: daemon v1.0.21 with plugin installer
            v1.0.15; the daemon's --num_nics was retired in v1.0.20, --uid and --alsologtostderr in v1.0.18), and
            the startup probe of gpudirect-tcpxo/best-practice.md
    rdma    A3 Ultra (H200), GPUDirect RDMA:       gpudirect-rdma/nccl-test.yaml
and GKE's guide "Maximize GPU network bandwidth in Standard mode clusters", which has the cluster's side: the GKE
Network objects these pods attach to (vpc1..vpc4, vpc1..vpc8, rdma-0..rdma-7 by default; --networks gives a
cluster's own names), and the DaemonSet that installs the NCCL plugin under /home/kubernetes/bin on each node. The
daemon's version is coupled with the plugin's, which the platform team installs on the nodes: --network_daemon_image
passes the daemon of the pair their cluster runs. Two things are ours: the daemons run as native sidecars (init
containers with restartPolicy Always, Kubernetes 1.29+) so that the Job completes when training does, and they
state the root user their images run as, since the pod's own securityContext asks for non-root.

All three leave the restricted Pod Security profile (and the baseline one: host paths; the TCPX and TCPXO daemons
also run as root with NET_ADMIN), so the namespace must allow privileged pods; `submit` says so. The daemons'
`devices.gke.io` annotation is read by GKE's NRI device injector DaemonSet (nri_device_injector/nri-device-injector.yaml;
it lived in gpudirect-tcpx/ until January 2026), which the platform team installs too.
"""
import json

GPU_DEVICES = [*(f"/dev/nvidia{i}" for i in range(8)), "/dev/nvidiactl", "/dev/nvidia-uvm"]
TCPXO_DEVICES = [*GPU_DEVICES, "/dev/dmabuf_import_helper"]
# The TCPXO daemon writes this file once initialised (a name without "_", as GKE says), on an emptyDir the trainer
# shares. GKE's samples probe it with a startupProbe, but a sidecar whose startup probe keeps failing is restarted
# by the kubelet for ever and the pod sits in Init on a broken node; so the trainer waits for the file itself, for
# DAEMON_WAIT_S, and then exits with NETWORK_DAEMON_DOWN, a counted failure whose pod the Job replaces.
HEALTH_DIR = "/run/tcpxo-health"
HEALTH_FILE = f"{HEALTH_DIR}/health-check"
DAEMON_WAIT_S = 120  # GKE's probe gives the daemon 31 s


# Where TCPX's settings come from, read at these commits: the environment is the `-x` list of run-nccl.sh in
# nccl-config.yaml (which replaced nccl-config-latest.yaml, deleted in 2024), the daemon's argv that of
# nccl-test-latest.yaml. tests/test_k8s_render.py holds the rendered pod to both.
TCPX_SOURCES = {
    "repository": "GoogleCloudPlatform/container-engine-accelerators",
    "gpudirect-tcpx/nccl-config.yaml": "0e5609b09f8daaa066be44cc3aaf49b11e1ea488",  # 2026-06-02
    "gpudirect-tcpx/nccl-test-latest.yaml": "089e022496faec95606d663eda8767078d347e34",  # 2024-07-01
}
TCPX_NCCL_ENV = {
    "NCCL_SOCKET_IFNAME": "eth0", "NCCL_ALGO": "Ring,Tree", "NCCL_PROTO": "Simple", "NCCL_CROSS_NIC": "0",
    "NCCL_NET_GDR_LEVEL": "PIX", "NCCL_P2P_PXN_LEVEL": "0", "NCCL_GPUDIRECTTCPX_SOCKET_IFNAME": "eth1,eth2,eth3,eth4",
    "NCCL_GPUDIRECTTCPX_CTRL_DEV": "eth0", "NCCL_DYNAMIC_CHUNK_SIZE": "524288", "NCCL_P2P_NET_CHUNKSIZE": "524288",
    "NCCL_P2P_PCI_CHUNKSIZE": "524288", "NCCL_P2P_NVL_CHUNKSIZE": "1048576", "NCCL_BUFFSIZE": "4194304",
    "NCCL_NSOCKS_PERTHREAD": "4", "NCCL_SOCKET_NTHREADS": "1",
    "NCCL_GPUDIRECTTCPX_TX_BINDINGS": "eth1:8-21,112-125;eth2:8-21,112-125;eth3:60-73,164-177;eth4:60-73,164-177",
    "NCCL_GPUDIRECTTCPX_RX_BINDINGS": "eth1:22-35,126-139;eth2:22-35,126-139;eth3:74-87,178-191;eth4:74-87,178-191",
    "NCCL_GPUDIRECTTCPX_PROGRAM_FLOW_STEERING_WAIT_MICROS": "500000",
}
# The manifest's plain YAML scalar \"--verbose 128 2 0 \" is these characters, backslashes included: GKE's
# setup.sh receives its words with the quotes escaped, and so runs its route tuning (initcwnd, rto_min).
TCPX_SETUP_PARAM = '\\"--verbose 128 2 0 \\"'

PROFILES = {
    "tcpx": {
        "accelerator": "nvidia-h100-80gb",
        "interfaces": [("eth0", "default"), *((f"eth{i}", f"vpc{i}") for i in range(1, 5))],
        "nccl_setup": None,  # TCPX's plugin ships no environment script: its configuration is the env below
        "ready_file": None,
        # the library path and the daemon's socket are this pod's mounts (run-nccl.sh sets them from its own)
        "env": {"LD_LIBRARY_PATH": "/usr/local/nvidia/lib64", "NCCL_GPUDIRECTTCPX_UNIX_CLIENT_PREFIX": "/run/tcpx",
                **TCPX_NCCL_ENV},
        "mounts": {"libraries": ("/home/kubernetes/bin/nvidia/lib64", "/usr/local/nvidia/lib64"),
                   "tcpx-socket": ("/run/tcpx", "/run/tcpx")},
        "shm": None,
        "sidecar": {
            "name": "tcpx-daemon", "image": "us-docker.pkg.dev/gce-ai-infra/gpudirect-tcpx/tcpgpudmarxd-dev:v2.0.12",
            "restartPolicy": "Always",
            "command": ["/tcpgpudmarxd/build/app/tcpgpudmarxd", "--gpu_nic_preset", "a3vm", "--gpu_shmem_type", "fd",
                        "--uds_path", "/run/tcpx", "--setup_param", TCPX_SETUP_PARAM],
            "securityContext": {"runAsUser": 0, "runAsNonRoot": False, "capabilities": {"add": ["NET_ADMIN"]}},
            "env": [{"name": "LD_LIBRARY_PATH", "value": "/usr/local/nvidia/lib64"}],
            "volumeMounts": [{"name": "libraries", "mountPath": "/usr/local/nvidia/lib64"},
                             {"name": "tcpx-socket", "mountPath": "/run/tcpx"},
                             {"name": "sys", "mountPath": "/hostsysfs"},
                             {"name": "proc-sys", "mountPath": "/hostprocsysfs"}]},
        "sidecar_volumes": {"sys": "/sys", "proc-sys": "/proc/sys"},
        "annotations": {"devices.gke.io/container.tcpx-daemon": "".join(f"- path: {d}\n" for d in GPU_DEVICES)},
    },
    "tcpxo": {
        "accelerator": "nvidia-h100-mega-80gb",
        "interfaces": [("eth0", "default"), *((f"eth{i}", f"vpc{i}") for i in range(1, 9))],
        "nccl_setup": "NCCL_LIB_DIR=/usr/local/nvidia/lib64 source /usr/local/nvidia/lib64/nccl-env-profile.sh",
        "ready_file": HEALTH_FILE,
        "env": {"LD_LIBRARY_PATH": "/usr/local/nvidia/lib64",
                "NCCL_FASTRAK_LLCM_DEVICE_DIRECTORY": "/dev/aperture_devices"},
        "mounts": {"nvidia": ("/home/kubernetes/bin/nvidia/lib64", "/usr/local/nvidia/lib64"),
                   "aperture-devices": ("/dev/aperture_devices", "/dev/aperture_devices")},
        "shm": "1Gi",
        "sidecar": {
            "name": "tcpxo-daemon", "image": "us-docker.pkg.dev/gce-ai-infra/gpudirect-tcpxo/tcpgpudmarxd-dev:v1.0.21",
            "restartPolicy": "Always", "command": ["/bin/sh", "-c"],
            "args": ["chmod 755 /fts/entrypoint_rxdm_container.sh && exec /fts/entrypoint_rxdm_container.sh "
                     "--num_hops=2"],
            "securityContext": {"runAsUser": 0, "runAsNonRoot": False,
                                "capabilities": {"add": ["NET_ADMIN", "NET_BIND_SERVICE"]}},
            "env": [{"name": "LD_LIBRARY_PATH", "value": "/usr/local/nvidia/lib64"},
                    {"name": "HEALTH_CHECK_LOG_FILE", "value": HEALTH_FILE}],
            "volumeMounts": [{"name": "nvidia", "mountPath": "/usr/local/nvidia/lib64"},
                             {"name": "tcpxo-health", "mountPath": HEALTH_DIR},
                             {"name": "sys", "mountPath": "/hostsysfs"},
                             {"name": "proc-sys", "mountPath": "/hostprocsysfs"}]},
        "sidecar_volumes": {"sys": "/sys", "proc-sys": "/proc/sys"},
        "annotations": {"devices.gke.io/container.tcpxo-daemon": "".join(f"- path: {d}\n" for d in TCPXO_DEVICES)},
    },
    "rdma": {
        "accelerator": "nvidia-h200-141gb",
        "interfaces": [("eth0", "default"), *((f"eth{i + 2}", f"rdma-{i}") for i in range(8))],
        "nccl_setup": "source /usr/local/gib/scripts/set_nccl_env.sh",
        "ready_file": None,
        "env": {"LD_LIBRARY_PATH": "/usr/local/nvidia/lib64"},
        "mounts": {"library-dir-host": ("/home/kubernetes/bin/nvidia", "/usr/local/nvidia"),
                   "gib": ("/home/kubernetes/bin/gib", "/usr/local/gib")},
        "shm": "250Gi",
        "sidecar": None, "sidecar_volumes": {}, "annotations": {},
    },
}
GPUS = 8  # the GPU NICs pair with a whole node's GPUs: GKE's manifests take all eight


def default_networks(profile):
    """The GKE Network names GKE's guide gives the profile's GPU NICs."""
    return [network for _, network in PROFILES[profile]["interfaces"][1:]]


def annotations(profile, networks=()):
    """The pod template's annotations: GKE's multi-network interfaces (on `networks`, or GKE's guide's names), and
    the devices the sidecar needs."""
    spec = PROFILES[profile]
    names = list(networks) or default_networks(profile)
    interfaces = [{"interfaceName": "eth0", "network": "default"},
                  *({"interfaceName": nic, "network": name} for (nic, _), name in zip(spec["interfaces"][1:], names))]
    return {"networking.gke.io/default-interface": "eth0",
            "networking.gke.io/interfaces": json.dumps(interfaces), **spec["annotations"]}


def daemon_wait(spec):
    """The trainer's shell step that waits for the daemon's ready file, then exits NETWORK_DAEMON_DOWN."""
    from preprocessing.exit_status import NETWORK_DAEMON_DOWN

    ready, daemon = spec["ready_file"], spec["sidecar"]["name"]
    return (f"for _ in $(seq {DAEMON_WAIT_S}); do [ -e {ready} ] && break; sleep 1; done; [ -e {ready} ] || "
            f"{{ echo \"{daemon} not ready after {DAEMON_WAIT_S} s ({ready} absent): this node's GPUDirect "
            f"components are broken; exiting {NETWORK_DAEMON_DOWN} so that the pod is replaced\" >&2; "
            f"exit {NETWORK_DAEMON_DOWN}; }}")


# GKE's NCCL samples run their NCCL container as root with this capability added (nccl-test-latest.yaml): the
# way out, behind --nccl_as_root, if NCCL as our non-root user with every capability dropped fails on A3 nodes.
SAMPLES_SECURITY = {"runAsNonRoot": False, "runAsUser": 0, "capabilities": {"add": ["IPC_LOCK"]},
                    "seccompProfile": {"type": "RuntimeDefault"}}


def attach(profile, pod, daemon_image="", as_root=False):
    """The trainer pod's spec with the profile's host mounts, environment, shared memory size and sidecar (its
    image `daemon_image` when given); the trainer starts after the NCCL plugin's environment script, if the
    profile has one, has run in its shell. `as_root`: the trainer's security as GKE's samples have it."""
    spec = PROFILES[profile]
    trainer, *others = pod["containers"]
    steps = [daemon_wait(spec) if spec["ready_file"] else None, spec["nccl_setup"]]
    script = " && ".join(step for step in steps if step)
    command = ["/bin/bash", "-c", f'{script} && exec "$0" "$@"', *trainer["command"]] if script else trainer["command"]
    shared = [{"name": "tcpxo-health", "mountPath": HEALTH_DIR}] if spec["ready_file"] else []
    trainer = {**trainer, "command": command,
               "env": [*trainer["env"], *({"name": k, "value": v} for k, v in spec["env"].items())],
               "volumeMounts": [*trainer["volumeMounts"], *({"name": name, "mountPath": inside}
                                                            for name, (_, inside) in spec["mounts"].items()), *shared],
               **({"securityContext": SAMPLES_SECURITY} if as_root else {})}
    host_paths = {**{name: host for name, (host, _) in spec["mounts"].items()}, **spec["sidecar_volumes"]}
    volumes = [{**v, "emptyDir": {**v["emptyDir"], "sizeLimit": spec["shm"]}} if v["name"] == "dshm" and spec["shm"]
               else v for v in pod["volumes"]]
    volumes += [{"name": name, "hostPath": {"path": path}} for name, path in host_paths.items()]
    volumes += [{"name": mount["name"], "emptyDir": {}} for mount in shared]
    out = {**pod, "containers": [trainer, *others], "volumes": volumes}
    if spec["sidecar"]:
        out["initContainers"] = [{**spec["sidecar"], **({"image": daemon_image} if daemon_image else {})}]
    return out
