"""Evaluation: FID/KID against NumPy/SciPy, the evaluator on known answers, the synthetic data, the demo."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.linalg
import tensorflow as tf
from PIL import Image

from pipeline import synth
from preprocessing.schema import TRUTH_FOLDER
from tests.helpers import REPO
from trainer.evaluation import metrics
from trainer.evaluation.evaluator import Evaluator, table


def scipy_fid(x, y):
    mu_x, mu_y = x.mean(0), y.mean(0)
    cov_x, cov_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root = scipy.linalg.sqrtm(cov_x @ cov_y).real
    return ((mu_x - mu_y) ** 2).sum() + np.trace(cov_x + cov_y - 2 * root)


def loop_kid(x, y):
    """The unbiased MMD^2 of the cubic polynomial kernel, written out as sums over pairs."""
    d, m = x.shape[1], len(x)
    k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_fid_and_kid_match_numpy_and_scipy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 12))
    y = rng.normal(0.3, 1.2, size=(80, 12)) @ rng.normal(size=(12, 12)) * 0.4
    assert metrics.fid(x, y) == pytest.approx(scipy_fid(x, y), rel=1e-6)
    assert metrics.fid(x, x) == pytest.approx(0.0, abs=1e-8)
    assert metrics.fid(x, y) > 1.0
    assert metrics.kid(x, y) == pytest.approx(loop_kid(x, y), rel=1e-9)
    draws, subsets = np.random.default_rng(5), []
    for _ in range(3):  # subsets of 30 drawn as metrics.kid draws them
        rows_x, rows_y = draws.choice(80, 30, replace=False), draws.choice(80, 30, replace=False)
        subsets.append(loop_kid(x[rows_x], y[rows_y]))
    assert metrics.kid(x, y, subsets=3, subset_size=30, seed=5) == pytest.approx(np.mean(subsets), rel=1e-9)


def test_synthetic_data_is_deterministic_unpaired_and_its_truth_is_the_transform(tmp_path):
    config = synth.SynthConfig(train=6, test=3, size=40, seed=3)
    synth.write(str(tmp_path / "one"), config)
    synth.write(str(tmp_path / "two"), config)
    synth.write(str(tmp_path / "other"), synth.SynthConfig(train=6, test=3, size=40, seed=4))
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.*"))
    assert len(files) == 2 * 6 + 3 * 3
    for name in files:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    assert (tmp_path / "one" / files[0]).read_bytes() != (tmp_path / "other" / files[0]).read_bytes()

    def pixels(folder):
        return [np.asarray(Image.open(p)) for p in sorted((tmp_path / "one" / folder).iterdir())]

    for a in pixels("testA") + pixels("trainA"):  # domain A: red leads
        assert (a[..., 0].astype(int) >= a[..., 1:].max(-1)).mean() > 0.95
    train_a, train_b = pixels("trainA"), pixels("trainB")
    for b in train_b:  # no B image is the transform of an A image: nothing is paired
        for a in train_a:
            assert a.shape != b.shape or np.abs(synth.a_to_b(a).astype(int) - b).mean() > 10
    for a, truth in zip(pixels("testA"), pixels(TRUTH_FOLDER)):
        np.testing.assert_array_equal(truth, synth.a_to_b(a))


def as_translator(function):
    return lambda images: {"images": tf.constant(function(images.numpy()))}


@pytest.fixture(scope="module")
def small_synth(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synth"))
    synth.write(root, synth.SynthConfig(train=1, test=5, size=40, seed=1))
    return root


def test_evaluator_on_known_answers(small_synth, tmp_path):
    evaluator = Evaluator(small_synth)
    identity = as_translator(lambda x: x)
    report = evaluator(identity, identity)
    assert report["ground_truth_mae"] == report["identity_mae"] > 0.1
    assert report["ground_truth_mae_vs_identity"] == 1.0 and report["cycle_mae"] == 0.0
    assert report["fid"] is None and "inception_weights" in report["fid_skipped"]

    exact = evaluator(as_translator(synth.a_to_b), as_translator(lambda x: x[..., [1, 2, 0]]), str(tmp_path))
    assert exact["ground_truth_mae"] == 0.0 and exact["psnr"] == float("inf") and exact["cycle_mae"] == 0.0
    assert sorted(os.listdir(tmp_path / "a2b")) == sorted(os.listdir(os.path.join(small_synth, "testA")))
    assert (tmp_path / "report.json").exists() and len(os.listdir(tmp_path / "b2a")) == 5
    assert any("identity MAE" in line for line in table(exact))


def test_the_discs_task_grows_each_dot_into_a_disc_in_place(tmp_path):
    import scipy.ndimage

    synth.write(str(tmp_path), synth.SynthConfig(train=2, test=3, size=64, seed=2, task="discs"))
    for name in sorted(os.listdir(tmp_path / "testA")):
        a, truth = (np.asarray(Image.open(tmp_path / folder / name)) for folder in ("testA", TRUTH_FOLDER))
        background = (a == synth.BACKGROUND).all(-1)
        assert (background | (a == synth.DOT_COLOUR).all(-1)).all()  # two colours, as the truth has
        dots, count = scipy.ndimage.label(~background)
        discs, disc_count = scipy.ndimage.label(~(truth == synth.BACKGROUND).all(-1))
        assert disc_count == count >= 5
        dot_boxes = scipy.ndimage.find_objects(dots)
        for disc in scipy.ndimage.find_objects(discs):
            inside = set(np.unique(dots[disc])) - {0}
            assert len(inside) == 1, (name, disc)  # one dot under each disc, and (counts equal) one disc per dot
            dot = dot_boxes[inside.pop() - 1]
            assert [s.stop - s.start for s in dot] == [2 * synth.DOT + 1] * 2
            if all(s.stop - s.start == 2 * synth.DISC + 1 for s in disc):  # not cut by the image's edge
                assert [s.start + synth.DISC for s in disc] == [s.start + synth.DOT for s in dot], (name, disc)


def test_the_best_colour_map_solves_the_colour_task_and_not_the_spatial_one(small_synth, tmp_path):
    """The baseline row: on the colour task a per-pixel colour map is all a model needs; on the discs task no colour
    map comes close, so a model that beats it has learned shapes."""
    identity = as_translator(lambda x: x)
    colour = Evaluator(small_synth)(identity, identity)
    assert colour["colour_map_mae_vs_identity"] < 0.01  # (R, G, B) -> (B, R, G) is a colour map
    assert any("best colour map's MAE / identity MAE" in line for line in table(colour))

    synth.write(str(tmp_path / "discs"), synth.SynthConfig(train=1, test=5, size=64, seed=1, task="discs"))
    spatial = Evaluator(str(tmp_path / "discs"))(identity, identity)
    assert spatial["colour_map_mae_vs_identity"] >= 0.6, spatial


def test_partial_or_missing_truth_is_said_and_used_where_it_exists(small_synth, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(small_synth, root)
    truth = sorted((root / TRUTH_FOLDER).iterdir())
    for path in truth[1:]:
        path.unlink()
    exact = as_translator(synth.a_to_b)
    report = Evaluator(str(root))(exact, exact)
    assert report["ground_truth_images"] == 1 and report["ground_truth_mae"] == 0.0
    assert f"truth of 1 of the {len(truth)} test A images" in report["ground_truth_note"]
    assert any("ground truth: " in line for line in table(report))
    truth[0].unlink()
    report = Evaluator(str(root))(exact, exact)
    assert "ground_truth_mae" not in report and "no ground-truth metrics" in report["ground_truth_note"]


@pytest.mark.slow
def test_fid_and_kid_come_from_the_inception_weights_file(small_synth, tmp_path):
    import keras

    weights = str(tmp_path / "inception.weights.h5")  # random weights: this checks the plumbing, not the numbers
    keras.applications.InceptionV3(include_top=False, pooling="avg", weights=None,
                                   input_shape=(299, 299, 3)).save_weights(weights)
    evaluator = Evaluator(small_synth, limit=4, inception_weights=weights)
    identity = as_translator(lambda x: x)
    report = evaluator(identity, identity)
    assert report["test_images_a"] == 4 and "fid_skipped" not in report
    assert np.isfinite(report["fid"]) and report["fid"] > 0 and np.isfinite(report["kid"])
    same = metrics.fid(evaluator.real_features["B"], evaluator.real_features["B"])
    assert same == pytest.approx(0.0, abs=1e-6)


@pytest.mark.slow
def test_shortened_demo_runs_end_to_end(tmp_path):
    out = str(tmp_path / "demo")
    done = subprocess.run([sys.executable, "-m", "cyclegan", "demo", out, "--steps", "6", "--train", "16",
                           "--test", "4"], cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=600)
    assert done.returncode == 0, done.stdout
    for stage in ("synth", "preprocess", "train", "export", "translate", "evaluate"):
        assert f"$ cyclegan {stage} " in done.stdout
    assert "eval at step 3: ground_truth_mae" in done.stdout and "step 6/6" in done.stdout
    assert sorted(os.listdir(f"{out}/translated/testA")) == sorted(os.listdir(f"{out}/raw/testA"))
    assert f"tensorboard --logdir {out}/model/logs" in done.stdout
    assert "ground-truth MAE / identity MAE" in done.stdout and os.path.exists(f"{out}/eval/report.json")


@pytest.mark.slow
def test_the_tiny_preset_learns_the_spatial_task_beyond_any_per_pixel_map(tmp_path):
    """150 steps of `cyclegan demo --task discs` (about 45 s of training on 2 cores): the model must beat, with a
    margin, the better of the identity and the best colour map, which sees one pixel's colour at a time."""
    out = str(tmp_path / "demo")
    done = subprocess.run([sys.executable, "-m", "cyclegan", "demo", out, "--task", "discs", "--steps", "150",
                           "--train", "60", "--test", "8"], cwd=REPO, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=600)
    assert done.returncode == 0, done.stdout
    assert "--preprocess crop" in done.stdout and "so no per-pixel map beats" in done.stdout
    with open(f"{out}/eval/report.json") as f:
        report = json.load(f)
    per_pixel = min(1.0, report["colour_map_mae_vs_identity"])
    assert report["colour_map_mae_vs_identity"] >= 0.6
    assert report["ground_truth_mae_vs_identity"] <= 0.6 * per_pixel, report


def test_truths_equal_to_the_inputs_make_the_ratios_undefined_not_a_crash(small_synth, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(small_synth, root)
    for truth in (root / TRUTH_FOLDER).iterdir():
        shutil.copy(root / "testA" / truth.name, truth)  # the identity is the truth: its MAE is 0
    identity = as_translator(lambda x: x)
    report = Evaluator(str(root))(identity, identity, str(tmp_path / "out"))
    assert report["identity_mae"] == 0.0 and report["ground_truth_mae_vs_identity"] is None
    assert report["colour_map_mae_vs_identity"] is None
    assert json.loads((tmp_path / "out" / "report.json").read_text())["ground_truth_mae_vs_identity"] is None
    assert any("undefined (the truths equal the inputs)" in line for line in table(report))
