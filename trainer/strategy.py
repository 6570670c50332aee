"""Which tf.distribute strategy a run uses.

auto: MultiWorkerMirroredStrategy when TF_CONFIG names more than one worker; else MirroredStrategy over every
visible GPU; else MirroredStrategy over the CPU (split into `cpu_replicas` logical devices when asked).
"""
import json
import os

import tensorflow as tf

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


def make(kind="auto", cpu_replicas=1, peer_timeout=300):
    if kind == "multi_worker" or (kind == "auto" and tf_config_workers() > 1):
        watch_peers(peer_timeout)
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_physical_devices("GPU")
    if kind == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    if gpus:
        return tf.distribute.MirroredStrategy()
    return mirrored([d.name for d in tf.config.list_logical_devices("CPU")][:max(cpu_replicas, 1)])


def mirrored(devices):
    """MirroredStrategy over `devices`. Over logical CPUs the replicas' values are summed on the first device and
    the sum copied back (ReductionToOneDevice) rather than with TensorFlow's default for CPUs, ring collectives.
    The replicas share one memory, where a copy and an add are all a sum needs (measured in benchmarks/RESULTS.md,
    "Per-step host overhead"). GPUs keep TensorFlow's default, NCCL."""
    on_cpus = all(tf.DeviceSpec.from_string(d).device_type == "CPU" for d in devices)
    return tf.distribute.MirroredStrategy(devices,
                                          cross_device_ops=tf.distribute.ReductionToOneDevice() if on_cpus else None)


def watch_peers(timeout_s):
    """Make a dead peer worker an error within `timeout_s` rather than a collective that waits forever.

    MultiWorkerMirroredStrategy starts TensorFlow's coordination service, whose heartbeats notice a worker that
    stopped answering and abort every collective on the others (a killed process on a live host is noticed at
    once, by its closed connections). The strategy configures the service with defaults unless it is configured
    already, so this sets it up the same way with the heartbeat and shutdown timeouts of --peer_timeout.
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
