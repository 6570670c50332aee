"""The training loop: set-up (`start`), one step (`train_step`), and the periodic actions after each step (a table:
progress, summaries, images, evaluation, checkpoints). `train` reads on one screen."""
import dataclasses
import hashlib
import math
import time

import psutil
import tensorflow as tf

from preprocessing import lease
from preprocessing.flags import view
from trainer import files
from preprocessing.schema import TRAIN, load_manifest
from trainer.evaluation.evaluator import Key, Stopped
from trainer.model import networks
from trainer.model.step import HEALTH, CycleGANTrainer, requests
from trainer.run import best as best_checkpoint
from trainer.run import checkpoints, data, data_checks, health, imported, preemption, restarts, summaries
from trainer.run import strategy as strategies
from trainer.run.watchdog import StallWatchdog, injected_stall

EVAL_SHOWN = (Key.GROUND_TRUTH_MAE, Key.IDENTITY_MAE, Key.CYCLE_MAE, Key.FID, Key.KID)
LOSS_ORDER = ("G_AB_gan", "G_BA_gan", "cycle_A", "cycle_B", "identity_A", "identity_B", "D_A", "D_B")


def steps_per_epoch(manifest, global_batch):
    """As the reference: an epoch is max(|A|, |B|) images, so the schedule means the same on any number of GPUs."""
    images = max(manifest.written(name) for name in TRAIN)
    return max(1, images // global_batch)


def total_steps(config, per_epoch):
    """The step a run ends at: --steps, or --epochs (else the schedule's n_epochs + n_epochs_decay) of epochs."""
    return config.steps or (config.epochs or config.n_epochs + config.n_epochs_decay) * per_epoch


def schedule_overrun(config, per_epoch, total):
    """Why the last steps of `total` would change nothing (the learning rate is 0 from the schedule's end on), or
    None. The schedule is the run's identity, so it is not stretched to the steps asked for: it is said instead."""
    end = (config.n_epochs + config.n_epochs_decay) * per_epoch
    if total <= end:
        return None
    asked = f"--steps {config.steps}" if config.steps else f"--epochs {config.epochs}"
    return (f"{asked} runs past the learning-rate schedule, which reaches 0 at step {end} (--n_epochs "
            f"{config.n_epochs} + --n_epochs_decay {config.n_epochs_decay} epochs of {per_epoch} steps): its last "
            f"{total - end} steps train at learning rate 0 and change nothing; raise --n_epochs or --n_epochs_decay "
            "to train longer")


def fetch_losses(results):
    """A step's results -> (whether any replica asked to stop, whether any asked to save, the losses as floats,
    the health signals as floats)."""
    stop, save = (float(count) > 0 for count in results["requests"].numpy())
    losses = {name: float(value) for name, value in results.items() if name not in ("requests", "health")}
    return stop, save, losses, dict(zip(HEALTH, results["health"].numpy().tolist()))


class NonFiniteLoss(Exception):
    """A step's losses are not finite: the run has diverged, and its state is not saved."""

    def __init__(self, step, terms, newest):
        super().__init__(f"step {step}: the loss terms {', '.join(terms)} are not finite (the run diverged; lower "
                         f"--lr?); nothing of this state was saved; the newest checkpoint is "
                         f"{newest or 'none: no step was saved'}")


def non_finite(losses, precision):
    """The loss terms that are NaN or infinite. Under mixed_float16 an overflow is the loss scale's to handle (it
    skips that step and lowers the scale), so none count there."""
    if precision == "mixed_float16":
        return []
    return [name for name, value in losses.items() if not math.isfinite(value)]


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


@dataclasses.dataclass
class Run:
    """What the loop works with, once `start` has set it up."""
    config: object
    strategy: object
    manifest: object
    trainer: CycleGANTrainer
    state: checkpoints.RunState
    inputs: object  # this worker's batches
    logs: summaries.Summaries
    best: best_checkpoint.BestCheckpoint
    watch: health.HealthWatch
    holder: object  # the model directory's lease.Lease (the chief's), or None
    chief: bool
    workers: int
    global_batch: int
    per_epoch: int
    total: int  # the last step
    first: int  # the step this start resumed from
    saved_at: float = dataclasses.field(default_factory=time.monotonic)
    saved_step: int = -1


@dataclasses.dataclass
class Tick:
    """One finished step, as the periodic actions see it."""
    step: int
    losses: dict
    stop: bool  # a replica asked to stop (SIGTERM, Ctrl-C): save and end
    save: bool  # a replica asked for a save (--checkpoint_minutes)
    seconds: float  # the step's own time, input included


def train(config, strategy=None, manifest=None, say=print, compile_cache=None):
    """Train as `config` says, resuming from config.model_dir's checkpoints; the trainer and per-step losses.
    `compile_cache` (trainer.run.compile_cache) is published after the first step.

    Raises UsageError when another run holds the model directory (preprocessing.lease), lease.LeaseLost when
    another run took it over, restarts.NoProgress when the starts before this one kept resuming from its step,
    preemption.Preempted after saving when SIGTERM or Ctrl-C arrives (on any worker),
    preemption.PeerLost when another worker stopped answering, and NonFiniteLoss at the first step whose losses
    are not finite, before anything of that step is saved.
    """
    run = start(config, strategy or strategies.create(view(config, strategies.Distribution), say), manifest, say)
    history, window, step = [], ProgressWindow(), run.first
    try:
        with preemption.stop_flag(say) as stop_request, StallWatchdog(config.stall_minutes, run.first, say) as dog:
            actions = periodic_actions(run, window, say, compile_cache, stop_request)
            for step in range(run.first + 1, run.total + 1):
                tick = train_step(run, step, window, stop_request)
                dog.step_done(step, tick.seconds)
                history.append(tick.losses)
                for due, action in actions:
                    if due(tick):
                        action(tick)
    except preemption.peer_errors() as err:
        if run.workers == 1:
            raise
        raise preemption.PeerLost(step, err) from None
    finally:
        run.logs.close()
        run.state.close()
        if run.holder:
            run.holder.release()

    say(f"weights sha256 {weights_fingerprint(run.trainer.nets)}")
    if config.model_dir and run.chief:
        say(f"checkpoint {run.state.manager.latest_checkpoint} holds step {int(run.trainer.step.numpy())}; logs "
               f"in {run.logs.logdir}")
    return run.trainer, history


def start(config, strategy, manifest, say):
    """The lease (first: a second run on the directory is refused before anything takes time), the networks, the
    state restored from the newest checkpoint and this worker's input, positioned where the run stopped."""
    chief, workers = strategies.is_chief(strategy), strategies.num_workers(strategy)
    holder = (lease.Lease(config.model_dir, config.lease_timeout, other_storage=files.GfileStorage)
              if chief and config.model_dir else None)
    if holder:
        holder.take(say)
    try:
        manifest = manifest or load_manifest(config.data)
        global_batch = config.batch_size * strategy.num_replicas_in_sync
        per_epoch = steps_per_epoch(manifest, global_batch)
        total = total_steps(config, per_epoch)
        xla = config.xla == "on" or (config.xla == "auto" and bool(tf.config.list_physical_devices("GPU")))
        trainer = CycleGANTrainer(config, strategy, per_epoch, precision=config.precision, xla=xla)
        say(f"train: {strategies.describe(strategy)} with {strategy.num_replicas_in_sync} replica(s), "
               f"global batch {global_batch}, {per_epoch} steps per epoch, {total} steps, {config.precision}, "
               f"XLA {'on' if xla else 'off'}")
        for line in networks.parameter_report(trainer.nets):
            say(line)
        idle = schedule_overrun(config, per_epoch, total)
        if idle:
            say(f"warning: {idle}")
        context = tf.distribute.InputContext(workers, strategies.worker_index(strategy),
                                             strategy.num_replicas_in_sync)

        def batches(seed):  # this worker's share of each global batch
            inputs = view(dataclasses.replace(config, seed=seed), data.Input)
            return iter(data.train_dataset(config.data, manifest, inputs, global_batch // workers,
                                           input_context=context))

        inputs = batches(config.seed) if workers == 1 else None  # one worker: its position is checkpointed
        state = checkpoints.RunState(config, trainer, inputs, chief, input_batch=global_batch // workers)
        first = state.restore_or_start(manifest, say)
        if state.fresh and config.init_from:
            imported.initialize_from(config, trainer.nets, say)
        if holder and first < total:
            restarts.record(config.model_dir, first, strategies.worker_index(strategy),
                            config.max_restarts_without_progress)
        if workers > 1:  # see trainer.run.checkpoints: the workers' positions are not saved, so the order is reseeded
            inputs = batches(config.seed + first)
        elif first and not state.input_restored:  # saved with another batch per worker, or by several workers
            say(f"the input order restarts at step {first}, reseeded from it: the checkpoint's input position "
                   f"is of another number of replicas or workers")
            inputs = batches(config.seed + first)
            state.replace_input(inputs)
        logs = summaries.Summaries(config, chief, trainer, manifest)
        best = best_checkpoint.BestCheckpoint(config, state, strategy, chief, say)
    except BaseException:
        if holder:
            holder.release()
        raise
    return Run(config, strategy, manifest, trainer, state, inputs, logs, best,
               health.HealthWatch(first, loss_scaled=config.precision == "mixed_float16"), holder,
               chief, workers, global_batch, per_epoch, total, first)


def train_step(run, step, window, stop_request):
    """One step on the next batch: its Tick. NonFiniteLoss if its losses are not finite."""
    config = run.config
    run.logs.profile(step)
    began = time.monotonic()
    try:
        batch = next(run.inputs)
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as err:
        raise (data_checks.read_error(config.data, run.manifest, err) or err) from None
    real_a, real_b = strategies.distribute(run.strategy, batch)
    injected_stall(step)
    fed = time.monotonic()
    save_due = bool(config.checkpoint_minutes) and time.monotonic() - run.saved_at >= 60 * config.checkpoint_minutes
    results = run.trainer.train_step(real_a, real_b, requests(stop_request.requested, save_due))
    stop, save, losses, signals = fetch_losses(results)
    diverged = non_finite(losses, config.precision)
    if diverged:
        raise NonFiniteLoss(step, diverged, run.state.manager.latest_checkpoint)
    seconds = time.monotonic() - began
    window.add(step == run.first + 1, losses, signals, fed - began, seconds)
    return Tick(step, losses, stop, save, seconds)


def periodic_actions(run, window, say, compile_cache, stop_request):
    """[(due, action)] that the loop walks after each step, in order: a new periodic action is one row."""
    config, total, first = run.config, run.total, run.first
    started = psutil.Process().create_time()

    def every(n):  # every n steps and at the last one; never when n is 0
        return lambda tick: bool(n) and (tick.step % n == 0 or tick.step == total)

    def progress(tick):
        speed = (f"{window.rate() * run.global_batch:.1f} pairs/s | ETA {window.eta(total - tick.step)}"
                 if window.rate() else f"first step done {time.time() - started:.1f} s after the process started")
        say(f"step {tick.step}/{total} epoch {(tick.step - 1) // run.per_epoch + 1} | {speed} | "
               + " ".join(f"{name} {tick.losses[name]:.3f}" for name in LOSS_ORDER if name in tick.losses))

    def evaluate(tick):
        # One worker stops its evaluation at a stop signal and saves the step, within a spot node's 15 s; with
        # several, the others wait in the next step's collectives, so the chief's evaluation runs to its end.
        stopping = (lambda: stop_request.requested) if run.workers == 1 else (lambda: False)
        try:
            evaluation = run.logs.evaluate(tick.step, stopping)
        except Stopped:
            say(f"eval at step {tick.step}: stopped by {stop_request.signal_name}")
            if run.saved_step == tick.step:  # saved just before evaluating
                raise preemption.Preempted(tick.step, run.state.manager.latest_checkpoint,
                                           stop_request.signal_name) from None
            save(dataclasses.replace(tick, stop=True))
        best = run.best.offer(tick.step, evaluation)
        if evaluation:
            say(f"eval at step {tick.step}: " + ", ".join(
                f"{key} {evaluation[key]:.4f}" for key in EVAL_SHOWN if evaluation.get(key) is not None)
                + (f" | {best}" if best else ""))

    def log(tick):
        losses, signals, *rates = window.flush(run.global_batch)
        run.logs.scalars(tick.step, losses, signals, *rates)
        for alarm in run.watch.observe(tick.step, losses, signals):
            if config.stop_on_collapse:
                kept = run.state.set_aside_from(alarm.since, say) if run.chief else None
                raise health.Collapsed(alarm, kept)
            say(alarm.line())

    def save(tick):
        if run.holder:
            run.holder.ensure_held(tick.step)
        path, run.saved_at, run.saved_step = run.state.save(), time.monotonic(), tick.step
        if tick.stop:
            raise preemption.Preempted(tick.step, path, stop_request.signal_name)

    first_step = lambda tick: tick.step == first + 1  # noqa: E731
    return [
        (lambda tick: bool(compile_cache) and run.chief and first_step(tick),
         lambda tick: compile_cache.publish(say)),
        # the first step's line says the run is up, and how long that took
        (lambda tick: every(config.log_every)(tick) or first_step(tick), progress),
        (every(config.log_every), log),
        (every(config.image_every), lambda tick: run.logs.images(tick.step)),
        # saved before evaluating: a stop or a stall during an evaluation then loses nothing of the step
        (lambda tick: tick.stop or tick.save or every(config.checkpoint_every)(tick) or tick.step == total, save),
        (every(config.eval_every), evaluate),
    ]


class ProgressWindow:
    """Losses and timings since the last report, and the run's rate. A start's first step traces and compiles, so
    timings leave it out."""

    def __init__(self):
        self.run_steps, self.run_seconds = 0, 0.0
        self.reset()

    def reset(self):
        self.steps, self.losses, self.signals, self.timed, self.wait, self.busy = 0, {}, {}, 0, 0.0, 0.0

    def add(self, first, losses, signals, wait, seconds):
        self.steps += 1
        for sums, values in ((self.losses, losses), (self.signals, signals)):
            for name, value in values.items():
                sums[name] = sums.get(name, 0.0) + value
        if not first:
            self.timed, self.wait, self.busy = self.timed + 1, self.wait + wait, self.busy + seconds
            self.run_steps, self.run_seconds = self.run_steps + 1, self.run_seconds + seconds

    def rate(self):
        """Steps per second since this start."""
        return self.run_steps / self.run_seconds if self.run_seconds else 0.0

    def eta(self, steps_left):
        return format_duration(steps_left / self.rate()) if self.rate() else "?"

    def flush(self, global_batch):
        """(mean losses, mean health signals, pairs/s, mean step seconds, mean input-wait seconds); the window then
        starts afresh."""
        timed = max(self.timed, 1)
        out = ({name: value / self.steps for name, value in self.losses.items()},
               {name: value / self.steps for name, value in self.signals.items()}, self.rate() * global_batch,
               self.busy / timed, self.wait / timed)
        self.reset()
        return out
