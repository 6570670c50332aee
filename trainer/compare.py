"""`cyclegan compare`: several training runs side by side.

    cyclegan compare RUN_DIR... [--metric M] [--json]

One row per model directory (local or gs://): the identity fields whose values differ between the runs, the step
of the newest checkpoint, the last training rate TensorBoard's logs hold, and the metric at the best evaluation
(checkpoints/best/best.json, else the lowest report) and at the latest one (eval/report-STEP.json). Rows are
sorted by the best value, lowest first (every metric here is an error); runs without it come last. --json prints
the same rows as a JSON list for scripts.
"""
import dataclasses
import json
import re
import sys

from preprocessing.flags import UsageError, job_parser
from preprocessing.process import prepare_libraries
from trainer.config import RANKED_ERRORS, identity_fields
from trainer.evaluation.evaluator import evaluation_set, finite

RATE_TAG = "perf/pairs_per_second"


@dataclasses.dataclass
class Row:
    run: str
    config: dict
    step: int  # of the newest checkpoint; 0 without one
    pairs_per_second: float  # the last one logged; 0.0 without logs
    reports: dict  # step -> evaluation report
    best: dict  # best.json, or None


def read_run(model_dir):
    import tensorflow as tf

    from trainer import files
    from trainer.run import best, checkpoints
    from trainer.run.model_dir import EVAL, LOGS, model_path

    record = checkpoints.read_run_record(model_dir, "is it a `cyclegan train` model directory?")
    newest = checkpoints.checkpoint_candidates(model_dir)
    step = checkpoints.step_of(newest[0]) if newest else 0
    reports = {}
    for path in tf.io.gfile.glob(model_path(model_dir, EVAL, "report-*.json")):
        reports[int(re.search(r"report-(\d+)\.json$", path).group(1))] = files.read_json_object(
            path, advice="remove it, or run `cyclegan evaluate --checkpoint` for that step again")
    rate, stamp = 0.0, -1.0
    for path in tf.io.gfile.glob(model_path(model_dir, LOGS, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == RATE_TAG and event.wall_time > stamp:
                    rate, stamp = float(tf.make_ndarray(value.tensor)), event.wall_time
    return Row(model_dir.rstrip("/"), record["config"], step, rate, reports, best.read_record(model_dir))


def chosen_metric(rows, asked):
    """--metric, or the first of RANKED_ERRORS that some run's evaluation computed."""
    if asked:
        return asked
    return next((name for name in RANKED_ERRORS for row in rows for report in row.reports.values()
                 if finite(report, name) is not None), None)


def summarise(row, metric, differing):
    """One row as a plain dict: what the table and --json show."""
    scored = {step: report[metric] for step, report in row.reports.items() if finite(report, metric) is not None}
    if row.best and row.best["metric"] == metric and finite(row.best, "value") is not None:
        best = {"value": row.best["value"], "step": row.best["step"]}
    elif scored:
        step = min(scored, key=scored.get)
        best = {"value": scored[step], "step": step}
    else:
        best = None
    latest = {"value": scored[max(scored)], "step": max(scored)} if scored else None
    return {"run": row.run, "differs": {name: row.config.get(name) for name in differing}, "step": row.step,
            "pairs_per_second": round(row.pairs_per_second, 2), "metric": metric, "best": best, "latest": latest}


def table(summaries):
    def at(value):
        return f"{value['value']:.4f} @ {value['step']}" if value else "-"

    fields = list(summaries[0]["differs"]) if summaries else []
    metric = summaries[0]["metric"] if summaries else ""
    header = ["run", *fields, "step", "pairs/s", f"best {metric}", f"latest {metric}"]
    rows = [[s["run"], *(str(s["differs"][name]) for name in fields), str(s["step"]),
             f"{s['pairs_per_second']:.1f}", at(s["best"]), at(s["latest"])] for s in summaries]
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in [header, *rows]]


def main(argv, prog="cyclegan compare"):
    parser = job_parser(prog, __doc__)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="model directories of `cyclegan train`")
    parser.add_argument("--metric", choices=RANKED_ERRORS, help="the metric to sort by (default: the first of "
                        f"{', '.join(RANKED_ERRORS)} that an evaluation computed)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    prepare_libraries()
    import tensorflow as tf

    rows = []
    for run in args.runs:
        try:
            rows.append(read_run(run))
        except (UsageError, tf.errors.OpError, OSError) as err:  # one damaged or unreachable run leaves the others
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
            print(f"{prog}: warning: {run} left out: {reason}", file=sys.stderr, flush=True)
    if not rows:
        raise UsageError(f"none of the {len(args.runs)} runs can be read (see the warnings above)")
    metric = chosen_metric(rows, args.metric)
    if metric is None:
        raise UsageError(f"none of the {len(rows)} runs has an evaluation report: train with --eval_every and "
                         "--eval_data, or run `cyclegan evaluate`")
    sets = {json.dumps(evaluation_set(report)) for row in rows for report in row.reports.values()
            if finite(report, metric) is not None}
    if len(sets) > 1:
        print(f"{prog}: warning: the runs' evaluations ran on different sets ({'; '.join(sorted(sets))}): their "
              f"{metric} figures do not compare; evaluate them on one --eval_data", file=sys.stderr, flush=True)
    differing = [name for name in sorted(identity_fields())
                 if len({json.dumps(row.config.get(name)) for row in rows}) > 1]
    summaries = sorted((summarise(row, metric, differing) for row in rows),
                       key=lambda s: (s["best"] is None, s["best"]["value"] if s["best"] else 0.0))
    if args.json:
        print(json.dumps(summaries, indent=2, allow_nan=False))
        return 0
    for line in table(summaries):
        print(line)
    if not differing and len(rows) > 1:
        print(f"{prog}: the runs train the same config (they differ in how they ran, if at all)")
    return 0
