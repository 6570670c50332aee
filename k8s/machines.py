"""How large a GPU pod may be: the machine types that carry GKE's accelerators, what a pod can have of one, and the
requests that follow (--machine_type, or the smallest machine that carries the pod's GPUs).

A pod sized as a share of the largest machine does not fit the smaller ones: one L4 is 1/8 of a g2-standard-96,
10 vCPUs, which no g2-standard-4, -8 or -12 has. So a pod takes its GPUs' share of a machine it fits on.
"""
import math

from k8s.quantities import cpu_cores, quantity_bytes
from preprocessing.flags import UsageError

# Machine type -> (vCPUs, memory GB, GKE accelerator, GPUs), from Google Cloud's accelerator-optimized machine tables.
MACHINE_TYPES = {
    **{f"a3-highgpu-{n}g": (26 * n, 234 * n, "nvidia-h100-80gb", n) for n in (1, 2, 4, 8)},
    "a3-megagpu-8g": (208, 1872, "nvidia-h100-mega-80gb", 8),
    "a3-ultragpu-8g": (224, 2952, "nvidia-h200-141gb", 8),
    "a4-highgpu-8g": (224, 3968, "nvidia-b200", 8),
    **{f"a2-ultragpu-{n}g": (12 * n, 170 * n, "nvidia-a100-80gb", n) for n in (1, 2, 4, 8)},
    **{f"a2-highgpu-{n}g": (12 * n, 85 * n, "nvidia-tesla-a100", n) for n in (1, 2, 4, 8)},
    "a2-megagpu-16g": (96, 1360, "nvidia-tesla-a100", 16),
    **{f"g2-standard-{cpus}": (cpus, 4 * cpus, "nvidia-l4", gpus)
       for cpus, gpus in ((4, 1), (8, 1), (12, 1), (16, 1), (24, 2), (32, 1), (48, 4), (96, 8))},
}
# What GKE keeps of a node for itself (its "allocatable resources" tiers): of CPU 6% of the first core, 1% of the
# next, 0.5% of the next 2 and 0.25% above 4; of memory 25% of the first 4 GiB, 20% of the next 4, 10% of the next
# 8, 6% of the next 112 and 2% above 128, plus a 100 MiB eviction threshold.
CPU_RESERVED = ((1, 0.06), (1, 0.01), (2, 0.005), (math.inf, 0.0025))
MEMORY_RESERVED_GIB = ((4, 0.25), (4, 0.2), (8, 0.1), (112, 0.06), (math.inf, 0.02))
EVICTION_GIB = 100 / 1024
# GKE's own DaemonSets on a GPU node (logging, metrics, the device plugin, networking) request about this much;
# a margin of ours, since it varies with the cluster's add-ons.
DAEMONSETS_CPU, DAEMONSETS_GIB = 0.5, 1.5


def _tiered(amount, tiers):
    reserved, left = 0.0, amount
    for size, rate in tiers:
        reserved += min(left, size) * rate
        left -= min(left, size)
    return reserved


def allocatable(machine_type):
    """(vCPUs, GiB) that pods may request on one node of `machine_type`, GKE's DaemonSets subtracted."""
    vcpus, gigabytes, _, _ = MACHINE_TYPES[machine_type]
    gib = gigabytes * 1e9 / 2 ** 30
    return (vcpus - _tiered(vcpus, CPU_RESERVED) - DAEMONSETS_CPU,
            gib - _tiered(gib, MEMORY_RESERVED_GIB) - EVICTION_GIB - DAEMONSETS_GIB)


def carrying(accelerator, gpus):
    """The machine types with at least `gpus` of `accelerator`, smallest first."""
    return sorted((name for name, (_, _, kind, count) in MACHINE_TYPES.items()
                   if kind == accelerator and count >= gpus), key=lambda name: MACHINE_TYPES[name][:2])


def machine_for(config):
    """The machine a GPU pod is sized for: --machine_type (checked), or the smallest that carries its GPUs; None
    for an accelerator not in the table, where the defaults apply."""
    if config.machine_type:
        if config.machine_type not in MACHINE_TYPES:
            raise UsageError(f"--machine_type {config.machine_type}: not a GPU machine type this tool knows ("
                             f"{', '.join(sorted(MACHINE_TYPES))}); pass --cpu and --memory instead")
        _, _, kind, count = MACHINE_TYPES[config.machine_type]
        if kind != config.accelerator or count < config.gpus:
            raise UsageError(f"--machine_type {config.machine_type} carries {count} {kind}, not --gpus "
                             f"{config.gpus} of --accelerator {config.accelerator}")
        return config.machine_type
    if not any(kind == config.accelerator for _, _, kind, _ in MACHINE_TYPES.values()):
        return None
    fitting = carrying(config.accelerator, config.gpus)
    if not fitting:
        most = max(count for _, _, kind, count in MACHINE_TYPES.values() if kind == config.accelerator)
        raise UsageError(f"--gpus {config.gpus}: no machine carries more than {most} {config.accelerator} per node; "
                         "use --nodes for more")
    return fitting[0]


def gpu_pod_size(config, cap_cpu=None, cap_gib=None):
    """(cpu, memory) of a GPU pod: --cpu/--memory, else its GPUs' share of its machine's allocatable resources (at
    most `cap_cpu` vCPUs and `cap_gib` GiB when given); None for an accelerator not in the table. A UsageError for
    a request that no node of --machine_type (or of the largest machine carrying the GPUs) can hold."""
    machine = machine_for(config)
    if machine is None:
        return None
    cpu_free, gib_free = allocatable(machine)
    share = config.gpus / MACHINE_TYPES[machine][3]
    cpu = config.cpu or str(max(1, min(int(cpu_free * share), cap_cpu or math.inf)))
    memory = config.memory or f"{max(1, min(int(gib_free * share), cap_gib or math.inf))}Gi"
    largest = machine if config.machine_type else carrying(config.accelerator, config.gpus)[-1]
    cpu_most, gib_most = allocatable(largest)
    if cpu_cores(cpu) > cpu_most or quantity_bytes(memory) > gib_most * 2 ** 30:
        where = f"--machine_type {machine}" if config.machine_type else f"the largest machine that carries them, {largest},"
        raise UsageError(f"--cpu {cpu} --memory {memory} with --gpus {config.gpus} {config.accelerator} fits no node: "
                         f"{where} has {cpu_most:.1f} vCPUs and {gib_most:.0f}Gi for pods (GKE's reservations and "
                         "DaemonSets subtracted); ask for less")
    return cpu, memory
