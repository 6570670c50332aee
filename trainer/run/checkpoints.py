"""Full-state checkpoints in the model directory, and the run record that a resumed run is checked against.

    checkpoints/ckpt-STEP.*   tf.train.CheckpointManager: the newest `keep_checkpoints` of them
    checkpoints/checkpoint    the manager's state file, rewritten only after a checkpoint is complete, so a
                              half-written checkpoint is never the latest one
    checkpoints/damaged/      checkpoints newer than the one a start resumed from, which did not load
    checkpoints/collapsed/    checkpoints saved during the episode of a health alarm that ended the run
    run.json                  the config and dataset fingerprint of the run's first start

(folder names: trainer/run/model_dir.py)

Under MultiWorkerMirroredStrategy every worker takes part in a save (the variables' values are gathered with
collectives), but only the chief writes into the model directory; the others write to a scratch folder and delete
it. The input iterator is saved only with a single worker: each worker reads its own files, and one checkpoint
cannot hold every worker's position, so a multi-worker run resumes with its input reseeded by the step, as does a
run resumed with another batch per worker (another number of replicas or workers). The image pools carry over to
any number of replicas (trainer/model/pool.py).
"""
import dataclasses
import json
import re
import shutil
import tempfile

import tensorflow as tf

from preprocessing.flags import UsageError
from trainer import files
from trainer.config import identity_fields
from trainer.run import preemption
from trainer.run.model_dir import CHECKPOINTS, RUN_RECORD, model_path

DAMAGED = "damaged"  # checkpoints/damaged/: the checkpoints a start found it could not load
COLLAPSED = "collapsed"  # checkpoints/collapsed/: those saved during a health alarm's episode (--stop_on_collapse)
CHECKPOINT_FILE = re.compile(r"^(ckpt-(\d+))\.(index|data-\d+-of-\d+)$")


class SaveError(Exception):
    """A checkpoint could not be written; its partial files are gone and the older checkpoints are intact."""


class RunState:
    """Everything a run saves and restores. `input_iterator` (one worker only) yields batches of `input_batch`
    images; it is restored only from a checkpoint whose iterator yielded batches of that size, so that a run resumes
    on any number of replicas or workers (`input_restored` says whether it was)."""

    def __init__(self, config, trainer, input_iterator=None, chief=True, input_batch=0):
        self.config, self.chief = config, chief
        objects = trainer.checkpointables()
        self.input_batch, self.input_restored = None, False
        if input_iterator is not None:
            self.input_batch = tf.Variable(input_batch, dtype=tf.int64, trainable=False, name="input_batch")
            objects.update(input=input_iterator, input_batch=self.input_batch)
        self.objects = objects
        self.checkpoint = tf.train.Checkpoint(**objects)
        self.step = trainer.step
        self.scratch = None if chief else tempfile.mkdtemp(prefix="cyclegan-worker-checkpoints-")
        directory = model_path(config.model_dir, CHECKPOINTS) if chief else self.scratch
        self.manager = self._manager(directory)

    def _manager(self, directory):
        """The CheckpointManager of self.checkpoint (made again when what it saves changes)."""
        return tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=self.config.keep_checkpoints,
                                          step_counter=self.step)

    def restore_or_start(self, manifest, say=print):
        """Resume from the newest checkpoint that loads, after checking the run record; the step to continue
        from. A model directory that holds checkpoints never starts over: if none loads, a UsageError."""
        self.fresh = not checkpoint_candidates(self.config.model_dir)
        if self.fresh:
            if self.chief:
                write_run_record(self.config, manifest)
            return 0
        check_run_record(self.config, manifest, say)
        restored = restore_newest(self._checkpoint_for, self.config.model_dir, say)
        if self.chief:
            self.set_aside_newer_than(restored, say)
        say(f"resumed from {restored} at step {int(self.step.numpy())}")
        return int(self.step.numpy())

    def _checkpoint_for(self, prefix):
        """What to read `prefix` into: everything, or all but the input iterator when the checkpoint's iterator
        yielded batches of another size (another number of replicas or workers) or was not saved (several
        workers), which the loop then starts afresh from the step."""
        if self.input_batch is None:
            return self.checkpoint
        # the reader opens the prefix itself: tf.train.list_variables would take a ram:// prefix for a folder
        reader = tf.compat.v1.train.NewCheckpointReader(prefix)
        key = "input_batch/.ATTRIBUTES/VARIABLE_VALUE"
        has_input = any(name.startswith("input/") for name in reader.get_variable_to_shape_map())
        fits = has_input and (not reader.has_tensor(key) or reader.get_tensor(key) == self.input_batch.numpy())
        self.input_restored = fits
        if fits:
            return self.checkpoint
        return tf.train.Checkpoint(**{k: v for k, v in self.objects.items() if k not in ("input", "input_batch")})

    def replace_input(self, iterator):
        """Save `iterator` from now on (the loop's fresh one, when the saved one did not fit)."""
        self.objects["input"] = iterator
        self.checkpoint = tf.train.Checkpoint(**self.objects)
        self.manager = self._manager(self.manager.directory)

    def set_aside_newer_than(self, restored, say):
        """Move the checkpoints newer than `restored` (they did not load) into checkpoints/damaged/ and out of the
        manager's rotation, which would otherwise delete good older checkpoints and keep them. Moved, not deleted:
        what did not load here may still be recoverable."""
        candidates = checkpoint_candidates(self.config.model_dir)
        self._set_aside(candidates[:candidates.index(restored)], DAMAGED, "which does not load", say)

    def set_aside_from(self, step, say):
        """Move the checkpoints of `step` and later into checkpoints/collapsed/ (a health alarm's episode began at
        `step`), so that a restart resumes from before it; the newest checkpoint left, or None."""
        candidates = checkpoint_candidates(self.config.model_dir)
        during = [prefix for prefix in candidates if step_of(prefix) >= step]
        self._set_aside(during, COLLAPSED, f"saved after the episode began at step {step}", say)
        return candidates[len(during)] if len(candidates) > len(during) else None

    def _set_aside(self, prefixes, folder_name, why, say):
        """Move `prefixes` (the newest of the folder's checkpoints) into checkpoints/FOLDER_NAME/ and out of the
        manager's state, which then names the newest one left."""
        if not prefixes:
            return
        folder = model_path(self.manager.directory, folder_name)
        tf.io.gfile.makedirs(folder)
        for prefix in prefixes:
            for path in tf.io.gfile.glob(f"{prefix}.*"):
                tf.io.gfile.rename(path, model_path(folder, path.rsplit("/", 1)[-1]), overwrite=True)
            say(f"moved {prefix}, {why}, to {folder}/")
        left = checkpoint_candidates(self.config.model_dir)
        listed = tf.train.get_checkpoint_state(self.manager.directory)
        kept = [(path, stamp) for path, stamp in zip(listed.all_model_checkpoint_paths,
                                                     listed.all_model_checkpoint_timestamps)
                if model_path(self.manager.directory, path.rsplit("/", 1)[-1]) not in prefixes] if listed else []
        if left:  # names relative to the folder, as the manager writes them; it rotates only what has a timestamp
            tf.compat.v1.train.update_checkpoint_state(
                self.manager.directory, left[0].rsplit("/", 1)[-1],
                all_model_checkpoint_paths=[path.rsplit("/", 1)[-1] for path, _ in kept],
                all_model_checkpoint_timestamps=[stamp for _, stamp in kept])
        elif tf.io.gfile.exists(model_path(self.manager.directory, "checkpoint")):
            tf.io.gfile.remove(model_path(self.manager.directory, "checkpoint"))
        self.manager = self._manager(self.manager.directory)

    def save(self):
        """Write ckpt-STEP; if that fails (a full disk, lost access), remove what it wrote and raise SaveError.
        The checkpoints before it are left as they are."""
        try:
            return self.manager.save(checkpoint_number=self.step)
        except preemption.peer_errors():  # the save's collectives lost a worker: not a storage problem
            raise
        except Exception as err:  # SaveV2 reports a full disk as ResourceExhaustedError, others as OpError/OSError
            name = f"ckpt-{int(self.step.numpy())}"
            partial = [model_path(self.manager.directory, entry.rstrip("/"))
                       for entry in tf.io.gfile.listdir(self.manager.directory)
                       if entry.rstrip("/") == f"{name}_temp" or entry.startswith(f"{name}.")]
            for path in partial:
                (tf.io.gfile.rmtree if tf.io.gfile.isdir(path) else tf.io.gfile.remove)(path)
            reason = (str(err).strip().splitlines() or [type(err).__name__])[-1].split("; ")[-1][:200]
            kept = self.manager.latest_checkpoint
            raise SaveError(f"could not write checkpoint {model_path(self.manager.directory, name)} ({reason}); "
                            f"removed its partial files. " + (f"The newest complete checkpoint, {kept}, is intact: "
                            if kept else "No checkpoint was written yet: ") + "free space (or fix access) and "
                            "start the same command again") from None

    def close(self):
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)


def checkpoint_candidates(model_dir):
    """Every checkpoint prefix with a file in model_dir/checkpoints, newest (highest step) first.

    Read from the folder itself, not only from the manager's state file, so that a damaged or deleted newest
    checkpoint (or state file) cannot hide the older ones."""
    folder = model_path(model_dir, CHECKPOINTS)
    if not tf.io.gfile.isdir(folder):
        return []
    steps = {}
    for name in tf.io.gfile.listdir(folder):
        match = CHECKPOINT_FILE.match(name.rstrip("/"))
        if match:
            steps[match.group(1)] = int(match.group(2))
    return [model_path(folder, prefix) for prefix in sorted(steps, key=steps.get, reverse=True)]


def model_dir_of(prefix):
    """The model directory a checkpoint prefix (MODEL_DIR/checkpoints/ckpt-STEP) lies in."""
    return prefix.rsplit("/", 2)[0] if prefix.count("/") >= 2 else "."


def step_of(prefix):
    """The step a checkpoint prefix (.../ckpt-STEP) was saved at."""
    return int(prefix.rsplit("-", 1)[1])


def load_failure(err):
    """Why a checkpoint did not load, in one line: the first line of the error, without the variable values some
    errors go on to print (thousands of lines for a whole network); TensorFlow's words for a file that is not a
    checkpoint index said plainly."""
    line = (str(err).strip().splitlines() or [type(err).__name__])[0].split(" Target variable:")[0][:300]
    if "sstable" in line or "Unable to open table file" in line:
        return f"its index file is damaged or not a checkpoint's ({line[:120]})"
    return line


def prefix_of(path):
    """A checkpoint's prefix from the prefix itself or from the name of one of its files (ckpt-10.index,
    ckpt-10.data-00000-of-00001), a natural slip when copying a path from a listing."""
    return re.sub(r"\.(index|data-\d+-of-\d+)$", "", path)


def restore_newest(checkpoint, model_dir, say=print, flag="--model_dir"):
    """Read the newest of model_dir's checkpoints that loads into `checkpoint` (or into `checkpoint(prefix)`, when
    what to read depends on the checkpoint), reporting each one skipped and why; its prefix, or None when there is
    none. A UsageError when there are checkpoints but none loads."""
    failures = []
    for prefix in checkpoint_candidates(model_dir):
        try:
            into = checkpoint(prefix) if callable(checkpoint) else checkpoint
            into.read(prefix).assert_existing_objects_matched().expect_partial()
            return prefix
        except Exception as err:  # a damaged file raises anything from OpError and AssertionError to IndexError
            reason = load_failure(err)
            say(f"warning: skipped checkpoint {prefix}: it does not load ({reason})")
            failures.append(f"{prefix.rsplit('/', 1)[-1]}: {reason}")
    if failures:
        advice = ("If they are damaged, restore them; if the networks changed (--force_resume), train them in a new "
                  "--model_dir" if flag == "--model_dir" else f"Restore them if they are damaged, or give {flag} "
                  "another run or checkpoint")
        raise UsageError(f"{flag} {model_dir}: none of its checkpoints loads into this run's networks "
                         f"({'; '.join(failures)}). The files are left as they are. {advice}")
    return None


def write_run_record(config, manifest):
    record = {"config": dataclasses.asdict(config), "dataset_fingerprint": manifest.fingerprint}
    tf.io.gfile.makedirs(config.model_dir)
    with tf.io.gfile.GFile(model_path(config.model_dir, RUN_RECORD), "w") as f:
        f.write(json.dumps(record, indent=2) + "\n")


def read_run_record(model_dir, missing):
    """The run record of `model_dir`; a UsageError that says `missing` when there is none."""
    path = model_path(model_dir, RUN_RECORD)
    if not tf.io.gfile.exists(path):
        raise UsageError(files.cannot_read("--model_dir", model_dir) or f"{path} does not exist: {missing}")
    record = files.read_json_object(path, ("config",), "restore it from a copy (it records what the run trains)")
    if not isinstance(record["config"], dict):
        raise UsageError(f"{path}: damaged (its config is not an object); restore it from a copy")
    return record


def identity_changes(recorded, now):
    """["name old -> new"] of the fields that say what a run trains, where the config dict `now` differs from the
    `recorded` one of a run record. The other fields (how to run) may change freely; a field gone is a change."""
    free = set(now) - identity_fields()
    return [f"{name} {value!r} -> {now.get(name)!r}" for name, value in sorted(recorded.items())
            if name not in free and now.get(name) != value]


def check_run_record(config, manifest, say):
    """A UsageError when this run trains something else than the checkpoints it would resume (unless forced)."""
    if config.force_resume and not tf.io.gfile.exists(model_path(config.model_dir, RUN_RECORD)):
        say(f"warning: --model_dir {config.model_dir} has checkpoints but no {RUN_RECORD}; resuming unchecked "
               f"(--force_resume)")
        return
    record = read_run_record(config.model_dir, "it should lie beside the checkpoints it describes; restore it, or "
                                               "pass --force_resume to resume without checking the config")
    changed = identity_changes(record["config"], dataclasses.asdict(config))
    if record["dataset_fingerprint"] != manifest.fingerprint:
        changed.append(f"dataset fingerprint {record['dataset_fingerprint'][:12]} -> {manifest.fingerprint[:12]}")
    if not changed:
        return
    message = f"--model_dir {config.model_dir} holds a run with another config or dataset: {'; '.join(changed)}"
    if not config.force_resume:
        raise UsageError(f"{message}. Use a new --model_dir, or pass --force_resume to continue this run anyway")
    say(f"warning: {message}; resuming anyway (--force_resume)")
