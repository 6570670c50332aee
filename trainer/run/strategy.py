"""Which tf.distribute strategy a run uses.

auto: MultiWorkerMirroredStrategy when TF_CONFIG names more than one worker; else MirroredStrategy over every
visible GPU; else MirroredStrategy over the CPU (split into `cpu_replicas` logical devices when asked).
"""
import dataclasses
import json
import os
import socket
import time

import tensorflow as tf

from preprocessing import exit_status
from preprocessing.flags import UsageError
from trainer.run import preemption

def tf_config_workers():
    cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def split_cpu(replicas):
    """Present the CPU as `replicas` logical devices; must run before TensorFlow initialises its devices."""
    (cpu,) = tf.config.list_physical_devices("CPU")
    if len(tf.config.get_logical_device_configuration(cpu) or [None]) != replicas:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)


def prepare_devices(cpu_replicas):
    """Before any TensorFlow op: without GPUs, split the CPU so that MirroredStrategy has replicas to mirror."""
    if cpu_replicas > 1 and not tf.config.list_physical_devices("GPU"):
        split_cpu(cpu_replicas)


def slow_on_this_cpu(precision):
    """Whether a mixed precision runs far slower than float32 on this machine's CPU, as measured: float16 on every
    CPU; bfloat16 on one without AVX-512 (/proc/cpuinfo), as on the AVX2 CPU measured; with AVX-512 it ran near or above
    float32's speed (benchmarks/RESULTS.md, "Mixed precision on a CPU")."""
    if precision == "float32":
        return False
    if precision == "mixed_float16":
        return True
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), []))
    except OSError:
        return False  # not Linux: nothing to go by
    return bool(flags) and "avx512f" not in flags


@dataclasses.dataclass(frozen=True)
class Distribution:
    """How a run spreads over devices and workers (the TrainConfig fields of the same names)."""
    strategy: str
    cpu_replicas: int
    peer_timeout: int
    startup_timeout: int
    first_start_timeout: int
    model_dir: str
    collective: str
    bytes_per_pack: int


def create(config: Distribution, say=print):
    """The strategy `config.strategy` names; several workers wait for each other here, for at most
    config.startup_timeout seconds."""
    kind = config.strategy
    if kind == "multi_worker" or (kind == "auto" and tf_config_workers() > 1):
        first = bool(config.first_start_timeout) and not run_started(config.model_dir)
        timeout = config.first_start_timeout if first else config.startup_timeout
        watch_peers(config.peer_timeout, timeout)
        options = communication(config.collective, bool(tf.config.list_physical_devices("GPU")),
                                config.bytes_per_pack)
        wait_for_peers(timeout, say, first=first)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    gpus = tf.config.list_physical_devices("GPU")
    if kind == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    if gpus:
        return tf.distribute.MirroredStrategy()
    return mirrored([d.name for d in tf.config.list_logical_devices("CPU")][:max(config.cpu_replicas, 1)])


def communication(collective, gpus, bytes_per_pack):
    """--collective, whether the workers have GPUs, --bytes_per_pack -> the workers' all-reduce options.

    TensorFlow's own default (AUTO) resolves to its ring over gRPC outside graph-mode NCCL, so GPUs are asked for
    NCCL by name: it is what uses NVLink within a node and GKE's fast-network plugins across nodes."""
    implementation = tf.distribute.experimental.CommunicationImplementation
    if collective == "nccl" and not gpus:
        raise UsageError("--collective nccl: this worker has no GPU; NCCL only reduces between GPUs (use auto or "
                         "ring on CPUs)")
    chosen = {"nccl": implementation.NCCL, "ring": implementation.RING,
              "auto": implementation.NCCL if gpus else implementation.RING}[collective]
    return tf.distribute.experimental.CommunicationOptions(bytes_per_pack=bytes_per_pack, implementation=chosen)


def run_started(model_dir):
    """Whether an earlier start of the run got its workers together (the chief then wrote run.json)."""
    from trainer.run.model_dir import RUN_RECORD, model_path

    return bool(model_dir) and tf.io.gfile.exists(model_path(model_dir, RUN_RECORD))


class PeersMissing(Exception):
    """Several workers, and not all of them joined within --startup_timeout (--first_start_timeout at first)."""

    def __init__(self, timeout_s, missing, first=False):
        self.exit_status = exit_status.NEVER_GATHERED if first else exit_status.PEERS_MISSING
        flag, outcome = (("--first_start_timeout", "the run's first start: the cluster has no room for the whole "
                          "group; final") if first else ("--startup_timeout", "counted against the job's restarts"))
        super().__init__(f"{len(missing)} worker(s) did not join within {flag} {timeout_s} s: "
                         f"{', '.join(missing)}; their pods may be unschedulable or their nodes gone. Exiting with "
                         f"{self.exit_status} ({outcome})")


def peer_addresses():
    """(this worker's port, {'worker N': 'host:port'} of the others) from TF_CONFIG."""
    spec = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = spec.get("task", {})
    me = f"{task.get('type', 'worker')} {task.get('index', 0)}"
    addresses = {f"{job} {index}": address for job in ("chief", "worker")
                 for index, address in enumerate(spec.get("cluster", {}).get(job, []))}
    return int(addresses.pop(me).rpartition(":")[2]), addresses


def unreachable(addresses):
    """The names of the `addresses` whose port does not accept a connection."""
    missing = []
    for name, address in addresses.items():
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=2).close()
        except OSError:
            missing.append(name)
    return missing


def wait_for_peers(timeout_s, say=print, every_s=30, first=False):
    """Return once every peer worker in TF_CONFIG accepts connections; PeersMissing after `timeout_s`.

    TensorFlow's own wait (the coordination service's registration) holds the interpreter: no signal handler runs
    and nothing is printed until it ends, after an hour by default. So the workers meet here first: each one listens
    on its own port until it reaches all the others, reports who is missing every `every_s` seconds, and stops on
    SIGTERM or Ctrl-C (preemption.StoppedWaiting). Then it frees the port for TensorFlow's server, whose own wait
    is short because every peer is known to be up."""
    port, peers = peer_addresses()
    try:
        listener = socket.create_server(("", port), backlog=64)
    except OSError as err:
        raise UsageError(f"TF_CONFIG: this worker's port {port} cannot be listened on ({err.strerror})") from None
    began = next_report = time.monotonic()
    next_report += every_s
    try:
        with preemption.stop_while_waiting():
            while True:
                missing = unreachable(peers)
                now = time.monotonic()
                if not missing:
                    return
                if now - began >= timeout_s:
                    raise PeersMissing(timeout_s, [f"{name} ({peers[name]})" for name in missing], first)
                if now >= next_report:
                    next_report += every_s
                    flag = "--first_start_timeout" if first else "--startup_timeout"
                    say(f"waiting for peer workers: {now - began:.0f} s of {flag} {timeout_s} s; "
                           f"not answering: {', '.join(missing)}")
                time.sleep(1)
    finally:
        listener.close()


def mirrored(devices):
    """MirroredStrategy over `devices`. Over logical CPUs the replicas' values are summed on the first device and
    the sum copied back (ReductionToOneDevice) rather than with TensorFlow's default for CPUs, ring collectives.
    The replicas share one memory, where a copy and an add are all a sum needs (measured in benchmarks/RESULTS.md,
    "Per-step host overhead"). GPUs keep TensorFlow's default, NCCL."""
    on_cpus = all(tf.DeviceSpec.from_string(d).device_type == "CPU" for d in devices)
    return tf.distribute.MirroredStrategy(devices,
                                          cross_device_ops=tf.distribute.ReductionToOneDevice() if on_cpus else None)


def watch_peers(timeout_s, startup_timeout_s):
    """Make a dead peer worker an error within `timeout_s` rather than a collective that waits forever.

    MultiWorkerMirroredStrategy starts TensorFlow's coordination service, whose heartbeats notice a worker that
    stopped answering and abort every collective on the others (a killed process on a live host is noticed at
    once, by its closed connections). The strategy configures the service with defaults unless it is configured
    already, so this sets it up the same way with the heartbeat and shutdown timeouts of --peer_timeout, and the
    registration timeout (an hour by default) a minute past --startup_timeout (wait_for_peers comes first).
    """
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.distribute import multi_worker_util
    from tensorflow.python.eager import context

    cluster = tf.distribute.cluster_resolver.TFConfigClusterResolver().cluster_spec()
    if context.context().coordination_service is not None or not cluster.jobs:
        return
    jobs = [coordination_config_pb2.CoordinatedJob(name=job, num_tasks=cluster.num_tasks(job))
            for job in ("chief", "worker") if job in cluster.jobs]
    context.context().configure_coordination_service(
        service_type="standalone", service_leader=multi_worker_util.coordination_leader(cluster),
        coordinated_jobs=jobs, heartbeat_timeout_in_ms=timeout_s * 1000,
        cluster_register_timeout_in_ms=(startup_timeout_s + 60) * 1000,
        shutdown_barrier_timeout_in_ms=timeout_s * 1000)


def worker_index(strategy):
    """This worker's place among the workers (0 is the chief, which writes checkpoints and summaries)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return 0
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return 0 if resolver.task_type == "chief" else resolver.task_id + int(has_chief)


def is_chief(strategy):
    return worker_index(strategy) == 0


def num_workers(strategy):
    return strategy.num_replicas_in_sync // len(strategy.extended.worker_devices)


def distribute(strategy, batch):
    """This worker's batch (a nest of tensors) -> per-replica slices, each placed on its replica's device.

    The input is a plain tf.data iterator per worker rather than a distributed one because plain iterators can be
    checkpointed; the slicing costs one host-to-device copy of a small image batch per step.
    """
    devices = strategy.extended.worker_devices
    per_replica = tf.nest.flatten(batch)[0].shape[0] // len(devices)

    def replica_slice(context):
        local = context.replica_id_in_sync_group % len(devices)
        with tf.device(devices[local]):
            return tf.nest.map_structure(lambda t: tf.identity(t[local * per_replica:(local + 1) * per_replica]),
                                         batch)

    return strategy.experimental_distribute_values_from_function(replica_slice)


def describe(strategy):
    """The public name (MultiWorkerMirroredStrategy's class is CollectiveAllReduceStrategy)."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"
    return type(strategy).__name__
