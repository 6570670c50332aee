"""What a model directory holds, named once for the trainer, the commands and `cyclegan submit`.

    <model_dir>/checkpoints/   full-state checkpoints (trainer/run/checkpoints.py)
    <model_dir>/run.json       the config and dataset fingerprint of the run's first start
    <model_dir>/starts.json    every start: when, which worker, the step it resumed from (trainer/run/restarts.py)
    <model_dir>/lease.json     who writes here now, and their heartbeat (preprocessing/lease.py names it)
    <model_dir>/logs/          TensorBoard summaries (trainer/run/summaries.py)
    <model_dir>/eval/          evaluation reports, report-STEP.json
    <model_dir>/xla_cache/     XLA's compiled functions (trainer/run/compile_cache.py)

Plain strings, no TensorFlow: `cyclegan submit` uses them too.
"""
CHECKPOINTS = "checkpoints"
RUN_RECORD = "run.json"
STARTS = "starts.json"
LOGS = "logs"
EVAL = "eval"
XLA_CACHE = "xla_cache"


def model_path(model_dir, *parts):
    """A path under `model_dir` (local, gs:// or ram://)."""
    return "/".join([model_dir.rstrip("/"), *parts])
