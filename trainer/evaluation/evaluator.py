"""The evaluation of a pair of translators on a raw dataset's test images: the report of `cyclegan evaluate` and
of the trainer's --eval_every (see trainer/evaluate.py for what each figure means)."""
import json
import math

import numpy as np

from preprocessing.flags import UsageError
from preprocessing.schema import TRUTH_FOLDER
from trainer.evaluation import metrics


class Key:
    """The report's keys, as report.json and the trainer's logs spell them (trainer/evaluate.py says what each
    figure means)."""
    EVAL_DATA = "eval_data"  # the dataset root evaluated on: figures of different sets do not compare
    TEST_IMAGES_A = "test_images_a"
    TEST_IMAGES_B = "test_images_b"
    GROUND_TRUTH_NOTE = "ground_truth_note"
    GROUND_TRUTH_SIZE_MISMATCHES = "ground_truth_size_mismatches"
    GROUND_TRUTH_IMAGES = "ground_truth_images"
    GROUND_TRUTH_MAE = "ground_truth_mae"
    IDENTITY_MAE = "identity_mae"
    PSNR = "psnr"
    IDENTITY_PSNR = "identity_psnr"
    GROUND_TRUTH_MAE_VS_IDENTITY = "ground_truth_mae_vs_identity"
    COLOUR_MAP_MAE = "colour_map_mae"
    COLOUR_MAP_MAE_VS_IDENTITY = "colour_map_mae_vs_identity"
    CYCLE_MAE_A = "cycle_mae_a"
    CYCLE_MAE_B = "cycle_mae_b"
    CYCLE_MAE = "cycle_mae"
    FID = "fid"
    KID = "kid"
    FID_B2A = "fid_b2a"
    KID_B2A = "kid_b2a"
    FID_SKIPPED = "fid_skipped"


class Evaluator:
    """Test images read once; evaluates any pair of translators (exported signatures or live generators)."""

    def __init__(self, data_root, limit=0, inception_weights="", scaling=None):
        import tensorflow as tf

        from trainer.serving.image_files import list_inputs, read_image

        root = self.root = data_root.rstrip("/")
        self.scaling = scaling  # translator.Scaling: each image as the model meets it, its translation at its size
        # first: a wrong weights file is named before any image is read or translated
        self.inception = metrics.InceptionFeatures(inception_weights) if inception_weights else None
        self.images, self.names = {}, {}
        for domain in "AB":
            try:
                found = list_inputs(f"{root}/test{domain}")
            except UsageError:
                raise UsageError(f"{data_root}: no test{domain}/ folder to evaluate on") from None
            found = found[:limit] if limit else found
            if not found:
                raise UsageError(f"{data_root}/test{domain}: no images to evaluate on")
            self.names[domain] = [relative for _, relative in found]
            self.images[domain] = [read_image(path) for path, _ in found]
        truth_paths = {i: f"{root}/{TRUTH_FOLDER}/{name}" for i, name in enumerate(self.names["A"])}
        self.truth = {i: read_image(path) for i, path in truth_paths.items() if tf.io.gfile.exists(path)}
        # a truth of another size than its test A image cannot be compared pixel by pixel: left out, and named
        self.mismatched = [f"{root}/{TRUTH_FOLDER}/{self.names['A'][i]} is {truth.shape[1]}x{truth.shape[0]}, "
                           f"its test A image {self.images['A'][i].shape[1]}x{self.images['A'][i].shape[0]}"
                           for i, truth in self.truth.items() if truth.shape != self.images["A"][i].shape]
        self.truth = {i: truth for i, truth in self.truth.items() if truth.shape == self.images["A"][i].shape}
        count, total = len(self.truth), len(truth_paths)
        self.truth_note = None
        if count < total:
            self.truth_note = (f"{root}/{TRUTH_FOLDER}/ holds the truth of {count} of the {total} test A images"
                               + (f" at their size ({len(self.mismatched)} of another size, e.g. "
                                  f"{self.mismatched[0]})" if self.mismatched else "")
                               + ("; the ground-truth metrics are computed on those" if count else
                                  ": no ground-truth metrics (they need the true B image of a test A image under "
                                  "its name, at its size)"))
        self.real_features = ({d: self.inception(self.images[d]) for d in "AB"} if self.inception else None)

    def __call__(self, a2b, b2a, output=None, stopping=lambda: False):
        """The report (a dict); with `output`, also the translations and report.json there. Stopped, raising
        Stopped, between two images once `stopping()` turns true: an evaluation takes minutes that a preempted
        node does not have."""
        import tensorflow as tf

        from trainer.serving.image_files import write_image
        from trainer.serving.translator import translate_pixels

        def translate(direction, images):
            out = []
            for image in images:
                if stopping():
                    raise Stopped()
                out.append(translate_pixels(direction, image, self.scaling))
            return out

        # b2a None: an export of one direction (an import of one generator); what needs the other is skipped
        fake = {"B": translate(a2b, self.images["A"]), **({"A": translate(b2a, self.images["B"])} if b2a else {})}
        cycled = {"A": translate(b2a, fake["B"]), "B": translate(a2b, fake["A"])} if b2a else None
        report = self.report(fake, cycled, stopping)
        if output:
            out = output.rstrip("/")
            for direction, source, domain in (("a2b", "A", "B"), ("b2a", "B", "A")):
                for name, pixels in zip(self.names[source], fake.get(domain, [])):
                    write_image(pixels, f"{out}/{direction}/{name}")
            with tf.io.gfile.GFile(f"{out}/report.json", "w") as f:
                f.write(json.dumps(report, indent=2) + "\n")
        return report

    def report(self, fake, cycled, stopping):
        """The metrics of the translations `fake` (by the domain they are in) and `cycled` (None: one direction)."""
        report = {Key.EVAL_DATA: self.root, Key.TEST_IMAGES_A: len(self.images["A"]),
                  Key.TEST_IMAGES_B: len(self.images["B"])}
        if self.truth_note:
            report[Key.GROUND_TRUTH_NOTE] = self.truth_note
        if self.mismatched:
            report[Key.GROUND_TRUTH_SIZE_MISMATCHES] = self.mismatched
        if self.truth:
            known = sorted(self.truth)
            truth, real, translated = ([images[i] for i in known] for images in (self.truth, self.images["A"],
                                                                                 fake["B"]))
            report[Key.GROUND_TRUTH_IMAGES] = len(known)
            report[Key.GROUND_TRUTH_MAE] = mean(metrics.mae, translated, truth)
            report[Key.IDENTITY_MAE] = mean(metrics.mae, real, truth)
            report[Key.PSNR] = mean(metrics.psnr, translated, truth)
            report[Key.IDENTITY_PSNR] = mean(metrics.psnr, real, truth)
            report[Key.GROUND_TRUTH_MAE_VS_IDENTITY] = ratio(report[Key.GROUND_TRUTH_MAE], report[Key.IDENTITY_MAE])
            # the baseline no trained model may see: the best colour map, fit on these very test pairs
            report[Key.COLOUR_MAP_MAE] = mean(metrics.mae, metrics.best_colour_map(real, truth), truth)
            report[Key.COLOUR_MAP_MAE_VS_IDENTITY] = ratio(report[Key.COLOUR_MAP_MAE], report[Key.IDENTITY_MAE])
        if cycled:
            report[Key.CYCLE_MAE_A] = mean(metrics.mae, cycled["A"], self.images["A"])
            report[Key.CYCLE_MAE_B] = mean(metrics.mae, cycled["B"], self.images["B"])
            report[Key.CYCLE_MAE] = (report[Key.CYCLE_MAE_A] + report[Key.CYCLE_MAE_B]) / 2
        else:
            report.update({Key.CYCLE_MAE_A: None, Key.CYCLE_MAE_B: None, Key.CYCLE_MAE: None})
        if self.inception and not stopping():
            fake_b = self.inception(fake["B"])
            report[Key.FID] = metrics.fid(fake_b, self.real_features["B"])
            report[Key.KID] = metrics.kid(fake_b, self.real_features["B"])
            fake_a = self.inception(fake["A"]) if "A" in fake else None
            report[Key.FID_B2A] = metrics.fid(fake_a, self.real_features["A"]) if fake_a is not None else None
            report[Key.KID_B2A] = metrics.kid(fake_a, self.real_features["A"]) if fake_a is not None else None
        else:
            report.update({Key.FID: None, Key.KID: None, Key.FID_SKIPPED: "no --inception_weights file given; FID and "
                           "KID need Inception-v3's ImageNet weights"})
        return report


class Stopped(Exception):
    """The evaluation was asked to stop before it ended (a stop signal): it has no report."""


def evaluation_set(report):
    """What an evaluation ran on (its data root and test image counts): metrics of different sets do not rank."""
    return [report.get(key) for key in (Key.EVAL_DATA, Key.TEST_IMAGES_A, Key.TEST_IMAGES_B)]


def finite(report, key):
    """`report[key]` when it is a finite number; None when the report lacks it, skipped it, or it is NaN or inf.
    What ranks checkpoints and runs (--best_metric, `cyclegan compare`)."""
    value = report.get(key)
    return value if isinstance(value, float) and math.isfinite(value) else None


def ratio(mae, identity_mae):
    """An MAE relative to the untrained baseline's; None (undefined, reported so) when the truths equal the inputs."""
    return mae / identity_mae if identity_mae else None


def mean(metric, xs, ys):
    return float(np.mean([metric(x, y) for x, y in zip(xs, ys)]))


def table(report):
    """The report as aligned lines."""
    rows = [("ground-truth MAE (G(test A) vs truth)", Key.GROUND_TRUTH_MAE),
            ("identity MAE (untrained baseline)", Key.IDENTITY_MAE),
            ("ground-truth MAE / identity MAE", Key.GROUND_TRUTH_MAE_VS_IDENTITY),
            ("best colour map's MAE / identity MAE", Key.COLOUR_MAP_MAE_VS_IDENTITY), ("PSNR dB (identity)", Key.PSNR),
            ("cycle MAE A->B->A", Key.CYCLE_MAE_A), ("cycle MAE B->A->B", Key.CYCLE_MAE_B),
            ("FID A->B", Key.FID), ("KID A->B", Key.KID), ("FID B->A", Key.FID_B2A), ("KID B->A", Key.KID_B2A)]
    lines = []
    for label, key in rows:
        if key not in report:
            continue
        value = report[key]
        undefined = key in (Key.GROUND_TRUTH_MAE_VS_IDENTITY, Key.COLOUR_MAP_MAE_VS_IDENTITY)
        text = ("undefined (the truths equal the inputs)" if undefined else "skipped") if value is None else (
            f"{value:.4f}")
        if key == Key.PSNR:
            text = f"{value:.2f} ({report[Key.IDENTITY_PSNR]:.2f})"
        lines.append(f"  {label:<40} {text}")
    if report.get(Key.FID_SKIPPED):
        lines.append(f"  (FID/KID: {report[Key.FID_SKIPPED]})")
    if report.get(Key.GROUND_TRUTH_NOTE):
        lines.append(f"  (ground truth: {report[Key.GROUND_TRUTH_NOTE]})")
    return lines
