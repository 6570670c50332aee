"""The reference's --preprocess modes: each mode's shapes on non-square images, training's refusals, the stored
records against the mode's size, and a model trained at one scale translating at it."""
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from preprocessing.flags import UsageError
from tests.helpers import BIN, REPO, gradient
from tests.training import SMALL, run, train_command
from trainer.model import scale_modes

SEED = tf.constant([3, 4], tf.int64)
# (height, width) -> each mode's (training shape, test-time shape) at load_size 286, crop_size 256: the
# reference's arithmetic (__scale_width: width to 286, height 286 * h / w truncated, at least 256; the scale-only
# modes and none rounded to multiples of 4, as __make_power_2 does).
EXPECTED = {
    (200, 300): {"resize_and_crop": ((256, 256), (256, 256)), "crop": ((256, 256), (200, 300)),
                 "scale_width_and_crop": ((256, 256), (256, 288)), "scale_width": ((256, 288), (256, 288)),
                 "none": ((200, 300), (200, 300))},
    (300, 200): {"resize_and_crop": ((256, 256), (256, 256)), "crop": ((256, 256), (300, 200)),
                 "scale_width_and_crop": ((256, 256), (428, 288)), "scale_width": ((428, 288), (428, 288)),
                 "none": ((300, 200), (300, 200))},
}


@pytest.mark.parametrize("height, width", sorted(EXPECTED))
def test_each_mode_gives_the_references_shapes_and_keeps_the_aspect_where_it_scales(height, width):
    image = tf.constant(np.asarray(gradient(width, height)))
    for mode, (train_shape, test_shape) in EXPECTED[(height, width)].items():
        trained = scale_modes.for_training(image, SEED, mode, 286, 256)
        tested = scale_modes.for_testing(image, mode, 286, 256)
        assert (tuple(trained.shape[:2]), tuple(tested.shape[:2])) == (train_shape, test_shape), mode
    # where the height is not raised to crop_size, the whole-image modes keep the aspect ratio (within the rounding)
    kept = [EXPECTED[(height, width)][mode][1] for mode in ("none", "scale_width") if height > width or mode == "none"]
    assert all(abs(h / w - height / width) < 0.02 for h, w in kept)


def test_crops_and_flips_depend_on_the_seed_alone():
    image = tf.constant(np.asarray(gradient(300, 200)))
    for mode in scale_modes.CROPPED:
        first = scale_modes.for_training(image, SEED, mode, 286, 256)
        np.testing.assert_array_equal(first, scale_modes.for_training(image, SEED, mode, 286, 256))
        others = [scale_modes.for_training(image, tf.constant([seed, 9], tf.int64), mode, 286, 256)
                  for seed in range(6)]
        assert any(not np.array_equal(first, other) for other in others), mode
    # the flip comes after the crop: a flipped output is the mirror image of a crop of the scaled image
    scaled = scale_modes.scale(image, "scale_width_and_crop", 286, 256).numpy()
    out = scale_modes.for_training(image, SEED, "scale_width_and_crop", 286, 256).numpy()
    crops = [scaled[y:y + 256, x:x + 256] for y in range(scaled.shape[0] - 255) for x in range(scaled.shape[1] - 255)]
    assert any(np.array_equal(out, c) or np.array_equal(out, c[:, ::-1]) for c in crops)


def test_a_source_smaller_than_the_crop_is_scaled_up_to_hold_it():
    image = tf.constant(np.asarray(gradient(100, 60)))
    assert scale_modes.for_training(image, SEED, "crop", 72, 64).shape == (64, 64, 3)
    assert tuple(int(s) for s in scale_modes.scaled_shape(60, 100, "crop", 72, 64)) == (64, 107)


def train_refusal(*flags, records="unused"):
    """`cyclegan train`'s last stderr line, which must be its one error line (argparse's comes after its usage)."""
    done = subprocess.run([sys.executable, "-m", "trainer", "--preset", "tiny", "--data", records, "--dry_run",
                           *flags], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 or lines[0].startswith("usage:"), done.stderr
    return lines[-1]


def test_bad_modes_and_sizes_are_one_line_naming_the_flag(tiny_records):
    assert "--preprocess: invalid choice: 'stretch'" in train_refusal("--preprocess", "stretch")
    whole = train_refusal("--preprocess", "scale_width")
    assert whole.endswith("--preprocess scale_width keeps each image's own size, and a training step takes one size "
                          "(its batch, its image pool): train with resize_and_crop, crop, scale_width_and_crop; "
                          "translate and evaluate then meet whole images at the mode's test-time scale")
    assert "--load_size 64 is below --crop_size 128, which --preprocess scale_width_and_crop crops from" in \
        train_refusal("--preprocess", "scale_width_and_crop", "--load_size", "64", "--crop_size", "128")
    small = train_refusal("--preprocess", "scale_width_and_crop", "--load_size", "320", records=tiny_records[0])
    assert (f"--data {tiny_records[0]}: --load_size 320 with --preprocess scale_width_and_crop needs images of at "
            "least 320 px, and this dataset was preprocessed with --max_size 286") in small
    assert "Rerun `cyclegan preprocess --max_size 320 --overwrite` on the raw images" in small
    crop = train_refusal("--preprocess", "crop", "--crop_size", "288", "--load_size", "16", records=tiny_records[0])
    assert "--crop_size 288 with --preprocess crop needs images of at least 288 px" in crop


def test_held_out_images_of_several_sizes_share_one_grid():
    """Under crop and none each held-out image keeps its size, so they differ within and across domains: each is
    translated at its own size (a net sees no padding) and then centred on one cell size."""
    from trainer.run.summaries import held_out_grid

    seen = []

    def negate(images, training):
        seen.append(tuple(images.shape[1:3]))
        return -images

    real_a = [tf.fill([40, 52, 3], 0.5), tf.fill([44, 48, 3], 0.5)]
    real_b = [tf.fill([48, 36, 3], -0.5)]  # fewer than asked for
    grid = held_out_grid({"G_AB": negate, "G_BA": negate}, real_a, real_b)
    assert grid.shape == (1, 6 * 48, 2 * 52, 3)
    assert sorted(set(seen)) == [(40, 52), (44, 48), (48, 36)]
    rows = tf.split(grid[0], 6, axis=0)
    # real A, G(A), F(G(A)) at the first cell's centre; real B, F(B), G(F(B)): one cell, centred on the row
    centre = [int(row[24, 26 if i < 3 else 52, 0]) for i, row in enumerate(rows)]
    assert centre[0] == centre[2] == centre[4] > centre[1] == centre[3] == centre[5], centre
    assert int(rows[3][24, 10, 0]) == 128  # beside B's one image: the canvas, 0 in [-1, 1]


@pytest.mark.slow
def test_the_mode_is_part_of_the_runs_identity(tiny_records, two_cpus, tmp_path):
    config = dataclasses.replace(SMALL, data=tiny_records[0], model_dir=str(tmp_path / "model"),
                                 preprocess="scale_width_and_crop")
    run(config, two_cpus, steps=1)
    record = json.loads((tmp_path / "model" / "run.json").read_text())
    assert record["config"]["preprocess"] == "scale_width_and_crop"
    with pytest.raises(UsageError, match="preprocess"):
        run(config, two_cpus, steps=2, preprocess="resize_and_crop")


@pytest.mark.slow
def test_a_model_trained_on_scaled_crops_translates_at_its_test_time_scale(tmp_path):
    from pipeline import cli

    raw = tmp_path / "raw"
    for d, domain in enumerate("AB"):  # 4:3 and 3:4 photos
        (raw / f"train{domain}").mkdir(parents=True)
        for i in range(6):
            gradient(120, 90, seed=100 * d + i).save(raw / f"train{domain}" / f"w{i}.png")
            gradient(90, 120, seed=100 * d + 50 + i).save(raw / f"train{domain}" / f"t{i}.png")
    records, model_dir, export = str(tmp_path / "records"), str(tmp_path / "model"), tmp_path / "export"
    assert cli.main(["--input", str(raw), "--output", records]) == 0
    flags = ["--preprocess", "scale_width_and_crop", "--load_size", "72", "--crop_size", "64",
             "--image_every", "1"]  # the image grids: held-out images of two sizes, at the test-time scale
    trained = subprocess.run(train_command(records, model_dir, 2, *flags), cwd=REPO, capture_output=True, text=True,
                             timeout=300)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    grids = [tf.io.decode_png(value.tensor.string_val[2]).shape
             for path in tf.io.gfile.glob(f"{model_dir}/logs/events.out.tfevents.*")
             for event in tf.compat.v1.train.summary_iterator(path) for value in event.summary.value
             if value.tag == "held_out/A_GA_FGA_B_FB_GFB"]
    # six rows of held-out images at the test-time scale (width 72; 64 high for 4:3, 96 for 3:4), on one canvas
    assert grids and all(shape[1] % 72 == 0 and shape[0] // 6 in (64, 96) for shape in grids), grids
    subprocess.run([os.path.join(BIN, "cyclegan"), "export", "--model_dir", model_dir, "--output", str(export)],
                   check=True, capture_output=True, timeout=300)
    record = json.loads((export / "export.json").read_text())
    assert record["scale"] == {"preprocess": "scale_width_and_crop", "load_size": 72, "crop_size": 64,
                               "test_time": "scale_width"}

    photos = tmp_path / "photos"
    photos.mkdir()
    gradient(160, 120).save(photos / "landscape.png")  # 4:3
    gradient(120, 160).save(photos / "portrait.png")  # 3:4
    sizes = {}
    for output_size in ("input", "scaled"):
        out = tmp_path / f"out-{output_size}"
        done = subprocess.run([os.path.join(BIN, "cyclegan"), "translate", "--model", f"{export}/a2b", "--input",
                               str(photos), "--output", str(out), "--output_size", output_size],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "--preprocess scale_width_and_crop --load_size 72 --crop_size 64" in done.stdout
        sizes[output_size] = {name: Image.open(out / name).size for name in ("landscape.png", "portrait.png")}
    assert sizes["input"] == {"landscape.png": (160, 120), "portrait.png": (120, 160)}
    # width to load_size 72; height 72 * 3 / 4 = 54 -> at least crop_size 64; 72 * 4 / 3 = 96
    assert sizes["scaled"] == {"landscape.png": (72, 64), "portrait.png": (72, 96)}
