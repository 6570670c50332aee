"""The best checkpoint: kept at the evaluation with the lowest metric, outside the rotation, across a SIGTERM and a
resume, and exported by name; `cyclegan compare` of several evaluated runs."""
import dataclasses
import json
import os
import signal
import subprocess

import pytest
import tensorflow as tf

from preprocessing.flags import UsageError
from tests.helpers import BIN
from tests.training import SMALL, run
from trainer.run import best, loop, preemption, summaries, trained


@pytest.mark.slow
def test_the_best_checkpoint_survives_rotation_and_a_resume_and_exports(tiny_records, two_cpus, tmp_path,
                                                                       monkeypatch):
    """A scripted evaluation (cycle_mae 9, 7, 8, 6, 10 at steps 2 to 10) stands in for the real one: what is
    tested is what the loop keeps, not what the evaluator measures (tests/test_evaluate.py)."""
    values, fingerprints = iter([9.0, 7.0, 8.0, 6.0, 10.0]), {}

    def scripted(self, step, stopping=lambda: False):
        fingerprints[step] = loop.weights_fingerprint(self.trainer.nets)
        if step == 4:  # after the second evaluation, as a preempted node would receive it
            os.kill(os.getpid(), signal.SIGTERM)
        return {"cycle_mae": next(values), "identity_mae": 1.0, "eval_data": "raw", "test_images_a": 4,
                "test_images_b": 4}

    monkeypatch.setattr(summaries.Summaries, "evaluate", scripted)
    model_dir = str(tmp_path / "model")
    config = dataclasses.replace(SMALL, data=tiny_records[0], eval_data=tiny_records[1], model_dir=model_dir,
                                 eval_every=2, checkpoint_every=2, keep_checkpoints=1, steps=10)
    with pytest.raises(preemption.Preempted):
        run(config, two_cpus)
    assert best.read_record(model_dir) == {"metric": "cycle_mae", "value": 7.0, "step": 4, "checkpoint": "ckpt-4",
                                           "evaluated_on": ["raw", 4, 4]}

    _, _, lines = run(config, two_cpus)
    evals = [line for line in lines if line.startswith("eval at step")]
    # step 6's 8.0 is worse than the 7.0 kept before the stop: the resumed run knew it and kept step 4's
    assert evals[0].endswith("| best cycle_mae 7.0000 at step 4"), evals
    assert evals[1].endswith("| best cycle_mae 6.0000 at step 8") and evals[2].endswith("at step 8"), evals
    assert f"best checkpoint: cycle_mae 6.0000 at step 8 -> {model_dir}/checkpoints/best/ckpt-8" in lines
    assert best.read_record(model_dir)["step"] == 8
    assert sorted(os.listdir(f"{model_dir}/checkpoints/best")) == [
        "best.json", "ckpt-8.data-00000-of-00001", "ckpt-8.index"]
    assert not [name for name in os.listdir(f"{model_dir}/checkpoints") if name.startswith("ckpt-8")]  # rotated

    said = []
    trained.export(model_dir, str(tmp_path / "export"), "best", say=said.append)
    assert "best checkpoint: cycle_mae 6.0000 at step 8" in said
    with open(tmp_path / "export" / "export.json") as f:
        assert json.load(f)["step"] == 8
    _, nets, checkpoint, step = trained.load_run(model_dir, "best", say=said.append)
    assert step == 8 and checkpoint == f"{model_dir}/checkpoints/best/ckpt-8"
    assert loop.weights_fingerprint(nets) == fingerprints[8]  # the state the fourth evaluation saw


def test_best_without_one_kept_says_how_to_get_one(tiny_records, tmp_path):
    model_dir = tmp_path / "model"
    (model_dir / "checkpoints").mkdir(parents=True)
    with pytest.raises(UsageError, match="holds no best checkpoint: the run keeps one only when it evaluates"):
        best.checkpoint_of(str(model_dir))


@pytest.mark.slow
def test_compare_sorts_runs_by_their_evaluation_and_names_what_differs(tiny_records, two_cpus, tmp_path):
    records, raw = tiny_records
    runs = [str(tmp_path / f"identity_{weight}") for weight in (0.0, 0.5, 1.0)]
    for weight, model_dir in zip((0.0, 0.5, 1.0), runs):
        run(dataclasses.replace(SMALL, data=records, eval_data=raw, eval_every=2, steps=2, lambda_identity=weight,
                                model_dir=model_dir), two_cpus)
    done = subprocess.run([os.path.join(BIN, "cyclegan"), "compare", *runs, "--metric", "cycle_mae"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split()[:4] == ["run", "lambda_identity", "step", "pairs/s"]
    assert "best cycle_mae" in header and len(rows) == 3
    values = [float(row.split()[4]) for row in rows]
    expected = sorted((best.read_record(path)["value"], path) for path in runs)
    assert values == sorted(values) and [row.split()[0] for row in rows] == [path for _, path in expected]
    assert {row.split()[1] for row in rows} == {"0.0", "0.5", "1.0"} and all(row.split()[2] == "2" for row in rows)

    as_json = json.loads(subprocess.run([os.path.join(BIN, "cyclegan"), "compare", *runs, "--json"],
                                        capture_output=True, text=True, timeout=300, check=True).stdout)
    assert as_json[0]["metric"] == "ground_truth_mae"  # auto: the synthetic data has ground truth
    assert [row["best"]["value"] for row in as_json] == sorted(row["best"]["value"] for row in as_json)
    assert all(row["pairs_per_second"] > 0 and row["latest"]["step"] == 2 for row in as_json)

    events = [event for path in tf.io.gfile.glob(f"{runs[0]}/logs/events.out.tfevents.*")
              for event in tf.compat.v1.train.summary_iterator(path)]
    experiment = [value.metadata.plugin_data.content for event in events for value in event.summary.value
                  if value.tag == "_hparams_/experiment"]
    assert experiment and b"eval/ground_truth_mae" in experiment[0]  # the hparams plugin's metrics

    missing = subprocess.run([os.path.join(BIN, "cyclegan"), "compare", str(tmp_path)], capture_output=True,
                             text=True, timeout=300)
    assert missing.returncode == 2 and f"{tmp_path}/run.json does not exist" in missing.stderr

    # damaged records: one line naming the file; compare leaves out only the damaged run
    import shutil

    damaged = {"best": ("checkpoints/best/best.json", "{garbage"), "report": ("eval/report-2.json", "[1, 2]"),
               "record": ("run.json", "[]")}
    copies = {}
    for name, (relative, text) in damaged.items():
        copies[name] = str(tmp_path / f"damaged_{name}")
        shutil.copytree(runs[0], copies[name])
        (tmp_path / f"damaged_{name}" / relative).write_text(text)
    nan_best = str(tmp_path / "nan_best")
    shutil.copytree(runs[1], nan_best)
    record = json.loads((tmp_path / "nan_best" / "checkpoints/best/best.json").read_text())
    (tmp_path / "nan_best" / "checkpoints/best/best.json").write_text(json.dumps({**record, "value": float("nan")}))
    done = subprocess.run([os.path.join(BIN, "cyclegan"), "compare", runs[2], *copies.values(), nan_best, "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    warnings = done.stderr.strip().splitlines()
    assert len(warnings) == 3 and all("warning:" in line and "left out" in line and "damaged" in line
                                      for line in warnings), warnings
    for name, (relative, _) in damaged.items():
        assert any(f"{copies[name]}/{relative}" in line for line in warnings)

    def no_constants(name):
        raise ValueError(f"{name} is not JSON")

    rows = json.loads(done.stdout, parse_constant=no_constants)
    assert [row["run"] for row in rows] == sorted([runs[2], nan_best], key=lambda r: next(
        row["best"]["value"] for row in rows if row["run"] == r))
    assert "evaluated_on" in best.read_record(runs[2])  # the set the best was ranked on
    other_set = str(tmp_path / "other_set")  # a run evaluated elsewhere: its figures do not rank with the others'
    shutil.copytree(runs[1], other_set)
    report_path = tmp_path / "other_set" / "eval" / "report-2.json"
    report_path.write_text(json.dumps({**json.loads(report_path.read_text()), "eval_data": "gs://b/other"}))
    mixed = subprocess.run([os.path.join(BIN, "cyclegan"), "compare", runs[2], other_set], capture_output=True,
                           text=True, timeout=300)
    assert mixed.returncode == 0 and "the runs' evaluations ran on different sets" in mixed.stderr, mixed.stderr
    for command in ("export", "evaluate"):
        args = ["--output", str(tmp_path / "out"), *(["--data", raw] if command == "evaluate" else [])]
        refused = subprocess.run([os.path.join(BIN, "cyclegan"), command, "--model_dir", copies["best"],
                                  "--checkpoint", "best", *args], capture_output=True, text=True, timeout=300)
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert f"{copies['best']}/checkpoints/best/best.json: damaged (not JSON" in refused.stderr


def test_a_stop_signal_during_an_evaluation_ends_it_at_the_next_image_with_the_step_saved(tiny_records, two_cpus,
                                                                                          tmp_path, monkeypatch):
    from trainer.serving import translator

    records, raw = tiny_records
    real_translate, calls = translator.translate_pixels, []

    def translate_then_signal(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the second image of the evaluation at step 3: as a spot node's notice would come
            os.kill(os.getpid(), signal.SIGTERM)
        return real_translate(*args, **kwargs)

    monkeypatch.setattr(translator, "translate_pixels", translate_then_signal)
    model_dir = tmp_path / "model"
    config = dataclasses.replace(SMALL, data=records, eval_data=raw, eval_every=3, steps=6, model_dir=str(model_dir))
    with pytest.raises(preemption.Preempted) as stopped:
        run(config, two_cpus)
    assert stopped.value.step == 3 and len(calls) == 2  # no image translated after the signal
    assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")).endswith("ckpt-3")
    assert not (model_dir / "eval" / "report-3.json").exists()
