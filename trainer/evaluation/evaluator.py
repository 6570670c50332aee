"""The evaluation of a pair of translators on a raw dataset's test images: the report of `cyclegan evaluate` and
of the trainer's --eval_every (see trainer/evaluate.py for what each figure means)."""
import json

import numpy as np

from preprocessing.flags import UsageError
from preprocessing.schema import TRUTH_FOLDER
from trainer.evaluation import metrics


class Evaluator:
    """Test images read once; evaluates any pair of translators (exported signatures or live generators)."""

    def __init__(self, data_root, limit=0, inception_weights=""):
        import tensorflow as tf

        from trainer.serving.image_files import list_inputs, read_image

        root = data_root.rstrip("/")
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

    def __call__(self, a2b, b2a, output=None):
        """The report (a dict); with `output`, also the translations and report.json there."""
        import tensorflow as tf

        from trainer.serving.image_files import write_image
        from trainer.serving.translator import apply

        fake = {"B": [apply(a2b, a) for a in self.images["A"]], "A": [apply(b2a, b) for b in self.images["B"]]}
        cycled = {"A": [apply(b2a, f) for f in fake["B"]], "B": [apply(a2b, f) for f in fake["A"]]}
        report = {"test_images_a": len(self.images["A"]), "test_images_b": len(self.images["B"])}
        if self.truth_note:
            report["ground_truth_note"] = self.truth_note
        if self.mismatched:
            report["ground_truth_size_mismatches"] = self.mismatched
        if self.truth:
            known = sorted(self.truth)
            truth, real, translated = ([images[i] for i in known] for images in (self.truth, self.images["A"],
                                                                                 fake["B"]))
            report["ground_truth_images"] = len(known)
            report["ground_truth_mae"] = mean(metrics.mae, translated, truth)
            report["identity_mae"] = mean(metrics.mae, real, truth)
            report["psnr"] = mean(metrics.psnr, translated, truth)
            report["identity_psnr"] = mean(metrics.psnr, real, truth)
            report["ground_truth_mae_vs_identity"] = report["ground_truth_mae"] / report["identity_mae"]
        report["cycle_mae_a"] = mean(metrics.mae, cycled["A"], self.images["A"])
        report["cycle_mae_b"] = mean(metrics.mae, cycled["B"], self.images["B"])
        report["cycle_mae"] = (report["cycle_mae_a"] + report["cycle_mae_b"]) / 2
        if self.inception:
            fake_b, fake_a = self.inception(fake["B"]), self.inception(fake["A"])
            report["fid"] = metrics.fid(fake_b, self.real_features["B"])
            report["kid"] = metrics.kid(fake_b, self.real_features["B"])
            report["fid_b2a"] = metrics.fid(fake_a, self.real_features["A"])
            report["kid_b2a"] = metrics.kid(fake_a, self.real_features["A"])
        else:
            report.update(fid=None, kid=None, fid_skipped="no --inception_weights file given; FID and KID need "
                                                          "Inception-v3's ImageNet weights")
        if output:
            out = output.rstrip("/")
            for direction, source, domain in (("a2b", "A", "B"), ("b2a", "B", "A")):
                for name, pixels in zip(self.names[source], fake[domain]):
                    write_image(pixels, f"{out}/{direction}/{name}")
            with tf.io.gfile.GFile(f"{out}/report.json", "w") as f:
                f.write(json.dumps(report, indent=2) + "\n")
        return report


def mean(metric, xs, ys):
    return float(np.mean([metric(x, y) for x, y in zip(xs, ys)]))


def table(report):
    """The report as aligned lines."""
    rows = [("ground-truth MAE (G(test A) vs truth)", "ground_truth_mae"), ("identity MAE (untrained baseline)",
            "identity_mae"), ("ground-truth MAE / identity MAE", "ground_truth_mae_vs_identity"),
            ("PSNR dB (identity)", "psnr"), ("cycle MAE A->B->A", "cycle_mae_a"), ("cycle MAE B->A->B", "cycle_mae_b"),
            ("FID A->B", "fid"), ("KID A->B", "kid"), ("FID B->A", "fid_b2a"), ("KID B->A", "kid_b2a")]
    lines = []
    for label, key in rows:
        if key not in report:
            continue
        value = report[key]
        text = "skipped" if value is None else f"{value:.4f}"
        if key == "psnr":
            text = f"{value:.2f} ({report['identity_psnr']:.2f})"
        lines.append(f"  {label:<40} {text}")
    if report.get("fid_skipped"):
        lines.append(f"  (FID/KID: {report['fid_skipped']})")
    if report.get("ground_truth_note"):
        lines.append(f"  (ground truth: {report['ground_truth_note']})")
    return lines
