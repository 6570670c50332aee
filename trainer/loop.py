"""The training loop: strategy, data, step, progress, weights. One screen, on purpose."""
import hashlib
import time

import tensorflow as tf

from preprocessing.schema import load_manifest
from trainer import data, networks, strategy as strategies
from trainer.step import CycleGANTrainer

LOSS_ORDER = ("G_AB_gan", "G_BA_gan", "cycle_A", "cycle_B", "identity_A", "identity_B", "D_A", "D_B")


def steps_per_epoch(manifest, global_batch):
    """As the reference: an epoch is max(|A|, |B|) images, so the schedule means the same on any number of GPUs."""
    images = max(manifest["splits"]["trainA"]["written"], manifest["splits"]["trainB"]["written"])
    return max(1, images // global_batch)


def weights_fingerprint(nets):
    digest = hashlib.sha256()
    for name in sorted(nets):
        for weight in nets[name].weights:
            digest.update(weight.numpy().tobytes())
    return digest.hexdigest()


def format_duration(seconds):
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


def train(config, strategy=None, manifest=None, report=print):
    """Train as `config` says (`manifest`: config.data's, if already read); the trainer and per-step losses."""
    strategy = strategy or strategies.make(config.strategy, config.cpu_replicas)
    manifest = manifest or load_manifest(config.data)
    global_batch = config.batch_size * strategy.num_replicas_in_sync
    per_epoch = steps_per_epoch(manifest, global_batch)
    total = config.steps or (config.epochs or config.n_epochs + config.n_epochs_decay) * per_epoch
    xla = config.xla == "on" or (config.xla == "auto" and bool(tf.config.list_physical_devices("GPU")))
    trainer = CycleGANTrainer(config, strategy, per_epoch, precision=config.precision, xla=xla)
    report(f"train: {strategies.describe(strategy)} with {strategy.num_replicas_in_sync} replica(s), global batch "
           f"{global_batch}, {per_epoch} steps per epoch, {total} steps, {config.precision}, XLA {'on' if xla else 'off'}")
    for line in networks.parameter_report(trainer.nets):
        report(line)

    dataset = strategy.distribute_datasets_from_function(lambda context: data.train_dataset(
        config.data, manifest, config, context.get_per_replica_batch_size(global_batch), context))
    iterator = iter(dataset)
    history, started = [], None
    for step in range(1, total + 1):
        losses = {name: float(value) for name, value in trainer.train_step(iterator).items()}
        history.append(losses)
        if step == 1:
            started = time.monotonic()  # rates exclude the first step, which traces and compiles
        if step % config.log_every == 0 or step == total:
            elapsed = time.monotonic() - started
            rate = (step - 1) / elapsed if step > 1 and elapsed > 0 else 0.0
            eta = format_duration((total - step) / rate) if rate else "?"
            terms = " ".join(f"{name} {losses[name]:.3f}" for name in LOSS_ORDER if name in losses)
            report(f"step {step}/{total} epoch {(step - 1) // per_epoch + 1} | {rate * global_batch:.1f} pairs/s "
                   f"| ETA {eta} | {terms}")

    fingerprint = weights_fingerprint(trainer.nets)
    report(f"weights sha256 {fingerprint}")
    if config.model_dir and strategies.is_chief(strategy):
        path = tf.train.Checkpoint(**trainer.nets).write(f"{config.model_dir.rstrip('/')}/weights/final")
        report(f"wrote the four networks' weights to {path}")
    return trainer, history
