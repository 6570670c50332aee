"""Multi-node scaling of the reference step, on paper: the table in RESULTS.md, "Multi-node scaling, on paper".

    .venv/bin/python -m benchmarks.scaling_model

A model, not a measurement: no cluster or GPU was available. Every input is a named constant below, with where it
comes from; change one and run again.
"""
import math

GPUS_PER_NODE = 8
FLOP_PER_PAIR = 1884.6e9  # the reference step per image pair (RESULTS.md, "Step throughput", reference preset)
GPU_FLOPS = 300e12  # assumed: 30% of an H100's 989 TFLOP/s dense bf16 (NVIDIA's H100 SXM datasheet)
# 2 x 11,378,179 generator + 2 x 2,764,737 discriminator parameters
PARAMETERS = 2 * 11_378_179 + 2 * 2_764_737
BYTES_PER_PACK = 32 << 20  # TrainConfig.bytes_per_pack: the gradients go in packs, one all-reduce each
# Host time of one step (RESULTS.md, "Per-step host overhead", XLA on): 0.80 ms at one replica and 0.54 ms
# per added replica, measured on CPU devices here. Assumed to overlap the GPUs' work (asynchronous dispatch).
HOST_MS_FIRST, HOST_MS_PER_REPLICA = 0.80, 0.54
# Each node's network for the GPUs' traffic, GB/s: plain TCP through the host NIC (NVIDIA's AI Cluster Runtime guide
# for GKE: NCCL's TCP fallback); Google Cloud, "Networking and GPU machines": a3-highgpu-8g 1,000 Gbps of which the
# host NIC 200 (TCPX: 800 Gbps), a3-megagpu-8g 1,800 of which 200 (TCPXO: 1,600), a3-ultragpu-8g 3,600 of which 400
# (RDMA: 3,200).
NETWORKS = {"TCP": 4.0, "TCPX": 100.0, "TCPXO": 200.0, "RDMA": 400.0}
# Assumed latency of one ring step between two nodes, and over NVLink inside one (microseconds).
HOP_US = {"TCP": 30.0, "TCPX": 10.0, "TCPXO": 10.0, "RDMA": 5.0}
NVLINK_HOP_US = 1.0
NVLINK_GBS = 450.0  # NVLink 4 per GPU, one direction (NVIDIA's H100 SXM datasheet: 900 GB/s both ways)


def packs(gradient_bytes):
    return math.ceil(gradient_bytes / BYTES_PER_PACK)


def allreduce_ms(nodes, network, gradient_bytes):
    """TensorFlow's NCCL all-reduce is one flat ring over every GPU of every node: each GPU, and each node's
    network (one ring edge leaves each node), carries 2(G-1)/G of the bytes; every pack pays the ring's latency,
    2(G-1) steps of which 2N cross the network."""
    gpus = nodes * GPUS_PER_NODE
    share = 2 * (gpus - 1) / gpus * gradient_bytes
    if nodes == 1:
        return share / (NVLINK_GBS * 1e9) * 1e3 + packs(gradient_bytes) * 2 * (gpus - 1) * NVLINK_HOP_US / 1e3
    bandwidth = share / (NETWORKS[network] * 1e9) * 1e3
    latency = packs(gradient_bytes) * 2 * ((gpus - nodes) * NVLINK_HOP_US + nodes * HOP_US[network]) / 1e3
    return bandwidth + latency


def step_ms(nodes, network, batch, gradient_bytes):
    compute = FLOP_PER_PAIR * batch / GPU_FLOPS * 1e3
    host = HOST_MS_FIRST + HOST_MS_PER_REPLICA * (GPUS_PER_NODE - 1)  # each worker drives its node's 8 replicas
    return max(compute, host) + allreduce_ms(nodes, network, gradient_bytes)


def table():
    rows = [("TCP", 4, 1), ("TCP", 4, 4), ("TCP", 2, 4), ("TCPX", 4, 1), ("TCPX", 4, 4), ("TCPXO", 4, 1),
            ("TCPXO", 4, 4), ("RDMA", 4, 1), ("RDMA", 4, 4)]
    lines = ["| network | gradients | batch/GPU | packs | 1 node | 2 nodes | 4 nodes | 8 nodes |",
             "|---|---|---|---|---|---|---|---|"]
    for network, width, batch in rows:
        gradient_bytes = PARAMETERS * width
        one = step_ms(1, network, batch, gradient_bytes)
        cells = [f"{one:.1f}"]
        for nodes in (2, 4, 8):
            ms = step_ms(nodes, network, batch, gradient_bytes)
            cells.append(f"{ms:.1f} ({nodes * one / ms:.2f}x)")
        name = f"{network}, {NETWORKS[network]:g} GB/s"
        lines.append(f"| {name} | {'float32' if width == 4 else 'bfloat16'} | {batch} | {packs(gradient_bytes)} | "
                     + " | ".join(cells) + " |")
    return lines


def main():
    host = HOST_MS_FIRST + HOST_MS_PER_REPLICA * (GPUS_PER_NODE - 1)
    print(f"gradients: {PARAMETERS / 1e6:.2f} M values, {PARAMETERS * 4 / 1e6:.1f} MB in float32, "
          f"{packs(PARAMETERS * 4)} packs of {BYTES_PER_PACK >> 20} MiB; host time per step and worker {host:.2f} ms")
    for line in table():
        print(line)


if __name__ == "__main__":
    main()
