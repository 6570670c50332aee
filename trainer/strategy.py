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


def make(kind="auto", cpu_replicas=1):
    if kind == "multi_worker" or (kind == "auto" and tf_config_workers() > 1):
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_physical_devices("GPU")
    if kind == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    if gpus:
        return tf.distribute.MirroredStrategy()
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")][:max(cpu_replicas, 1)]
    return tf.distribute.MirroredStrategy(cpus)


def is_chief(strategy):
    """The worker that writes checkpoints and summaries (task 0, or the only one)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0 and
                                             "chief" not in resolver.cluster_spec().as_dict())


def describe(strategy):
    """The public name (MultiWorkerMirroredStrategy's class is CollectiveAllReduceStrategy)."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"
    return type(strategy).__name__
