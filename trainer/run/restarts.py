"""The run's start log, and the budget that ends a restart loop.

A job that keeps failing before its next checkpoint (a bad node, a step that always crashes, preemptions closer
together than the saves) restarts from the same step for as long as the scheduler lets it: exit 75 is not
counted against any restart limit. Every start is recorded in <model_dir>/starts.json, and a start that would
resume from the same step as the `limit` starts before it refuses, with a status that is counted.
"""
import datetime
import json

import tensorflow as tf

from preprocessing import exit_status
from trainer.files import write_whole
from trainer.run.model_dir import STARTS, model_path

KEPT = 1000  # the log keeps the newest starts: enough to read a run's history, bounded for a run that never ends


class NoProgress(Exception):
    exit_status = exit_status.NO_PROGRESS

    def __init__(self, path, step, starts):
        super().__init__(f"the last {starts} starts all resumed from step {step} and this one would too: a restart "
                         f"loop (see {path}). Find why the run stops before its next checkpoint (the previous "
                         f"starts' logs; lower --checkpoint_every or set --checkpoint_minutes if preemptions come "
                         f"faster than saves), then start once with --max_restarts_without_progress 0. Exiting "
                         f"with {exit_status.NO_PROGRESS}")


def read(model_dir):
    path = model_path(model_dir, STARTS)
    if not tf.io.gfile.exists(path):
        return []
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def record(model_dir, step, worker, limit, now=None):
    """Log this start (from `step`, by `worker`); NoProgress if the `limit` starts before it resumed from `step`
    too (limit 0: no limit). The refused start is logged as well, so the log tells the whole story."""
    starts = read(model_dir)
    same = 0
    for start in reversed(starts):
        if start["step"] != step:
            break
        same += 1
    refused = bool(limit) and same >= limit
    starts.append({"time": (now or datetime.datetime.now(datetime.timezone.utc)).isoformat(timespec="seconds"),
                   "worker": worker, "step": step, **({"refused": True} if refused else {})})
    tf.io.gfile.makedirs(model_dir)
    write_whole(model_path(model_dir, STARTS), json.dumps(starts[-KEPT:], indent=1) + "\n")
    if refused:
        raise NoProgress(model_path(model_dir, STARTS), step, same)
