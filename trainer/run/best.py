"""The best checkpoint: the run's state at the evaluation whose metric was the lowest so far, kept outside the
step rotation.

    checkpoints/best/ckpt-STEP.*   the state (all of it, as a step checkpoint holds it)
    checkpoints/best/best.json     {"metric", "value", "step", "checkpoint"}: written whole after the state, so it
                                   always names a complete one; the older state goes only after it

The manager's rotation (--keep_checkpoints) deletes only the checkpoints it wrote in checkpoints/, and a resumed
run reads best.json back, so a worse evaluation after a restart does not replace the best. Every metric here is an
error (lower is better). The evaluation runs on the chief alone; with several workers, its verdict reaches the
others through one all-reduce of a flag, so that all of them take part in the save, as in every other one.
"""
import json

import tensorflow as tf

from preprocessing.flags import UsageError
from trainer.config import RANKED_ERRORS
from trainer.evaluation.evaluator import evaluation_set, finite
from trainer.files import read_json_object, remove, write_whole
from trainer.run import strategy as strategies
from trainer.run.checkpoints import SaveError, load_failure
from trainer.run.model_dir import CHECKPOINTS, model_path

BEST, RECORD = "best", "best.json"


def folder(model_dir):
    return model_path(model_dir, CHECKPOINTS, BEST)


def read_record(model_dir):
    """best.json of a model directory, or None when no evaluation has improved on anything yet."""
    path = model_path(folder(model_dir), RECORD)
    if not tf.io.gfile.exists(path):
        return None
    return read_json_object(path, ("checkpoint", "metric", "value", "step"),
                            "remove the best/ folder; the next evaluation keeps a new best checkpoint")


def checkpoint_of(model_dir):
    """The best checkpoint's prefix and record, or a UsageError saying why there is none."""
    record = read_record(model_dir)
    if record is None:
        raise UsageError(f"--checkpoint best: {folder(model_dir)} holds no best checkpoint: the run keeps one only "
                         "when it evaluates (--eval_every, --eval_data) with a --best_metric other than none")
    return model_path(folder(model_dir), record["checkpoint"]), record


def chosen_metric(asked, report):
    """The metric to rank by: --best_metric, or under auto the first of RANKED_ERRORS that `report` holds as a
    finite number; None if the report lacks it."""
    names = RANKED_ERRORS if asked == "auto" else (asked,)
    return next((name for name in names if finite(report, name) is not None), None)


class BestCheckpoint:
    """Offered each evaluation's report (None on the workers that do not evaluate), it saves the state when the
    metric improves on the best so far."""

    def __init__(self, config, state, strategy, chief, say):
        self.asked = config.best_metric if config.model_dir else "none"
        self.state, self.strategy, self.chief, self.say = state, strategy, chief, say
        self.directory = folder(config.model_dir) if chief else folder(state.scratch)
        self.record = read_record(config.model_dir) if chief and config.model_dir else None
        self.workers = strategies.num_workers(strategy)
        self.warned = False

    def offer(self, step, report):
        """Save the state as the best when `report` improves on it; the line to add to the evaluation's, or ''."""
        if self.asked == "none":
            return ""
        improved = self.chief and self._improves(report)
        if self.workers > 1:
            improved = self._agreed(improved)
        if improved:
            self._save(step, report)
        if not self.record:
            return ""
        return f"best {self.record['metric']} {self.record['value']:.4f} at step {self.record['step']}"

    def _improves(self, report):
        metric = chosen_metric(self.asked, report or {})
        if metric is None:
            if report is not None and not self.warned:
                self.say(f"warning: --best_metric {self.asked}: the evaluation does not compute it on its data "
                         f"(it has {', '.join(k for k in RANKED_ERRORS if finite(report, k) is not None)}); no best "
                         "checkpoint is kept")
                self.warned = True
            return False
        self.metric = metric
        if self.record and self.record["metric"] != metric:
            self.say(f"best checkpoint: this run ranks by {metric}, the kept one by {self.record['metric']}: the "
                     "next evaluation replaces it")
            self.record = None
        if self.record and self.record.get("evaluated_on", evaluation_set(report)) != evaluation_set(report):
            self.say(f"best checkpoint: the kept one was evaluated on {self.record['evaluated_on']}, this evaluation "
                     f"on {evaluation_set(report)}: their figures do not rank, so the next best replaces it")
            self.record = None
        if finite(report, metric) is None:  # a NaN evaluation is never the best, and never replaces it
            return False
        kept = self.record and finite(self.record, "value")
        return kept is None or report[metric] < kept

    def _agreed(self, improved):
        """The chief's verdict on every worker: a sum over all replicas of 1 from the chief's, 0 from the others'."""
        flag = 1.0 if improved else 0.0
        per_replica = self.strategy.run(lambda: tf.constant(flag))
        return float(self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)) > 0

    def _save(self, step, report):
        name = f"ckpt-{step}"
        old = self.record["checkpoint"] if self.record else None
        try:
            self.state.checkpoint.write(model_path(self.directory, name))
        except Exception as err:  # a full disk, lost access: the kept best and best.json stay as they were
            for entry in (entry.rstrip("/") for entry in tf.io.gfile.listdir(self.directory)):
                if entry.split(".")[0] == name or entry.startswith(f"{name}_temp"):  # SaveV2's sharded temp folder
                    remove(model_path(self.directory, entry))
            raise SaveError(f"could not write the best checkpoint {self.directory}/{name} "
                            f"({load_failure(err)}); removed its partial files; free space (or fix access) and "
                            "start the same command again") from None
        if not self.chief:
            return
        metric = self.metric
        self.record = {"metric": metric, "value": report[metric], "step": step, "checkpoint": name,
                       "evaluated_on": evaluation_set(report)}
        write_whole(model_path(self.directory, RECORD), json.dumps(self.record, indent=2) + "\n")
        for entry in tf.io.gfile.listdir(self.directory):  # the one it replaces, and any a crash left behind
            if entry.startswith("ckpt-") and entry.split(".")[0] != name:
                remove(model_path(self.directory, entry))
        if old != name:
            self.say(f"best checkpoint: {metric} {report[metric]:.4f} at step {step} -> {self.directory}/{name}")
