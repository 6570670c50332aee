"""TensorBoard: what the chief writes to <model_dir>/logs (local, gs:// or ram://); other workers write nothing.

Scalars: every loss term, both learning rates, the loss scales (mixed_float16), pairs/s, step time and input wait.
Images: a fixed held-out batch as six rows, real A, G(A), F(G(A)), real B, F(B), G(F(B)) (G: A->B, F: B->A).
The run's config and dataset fingerprint as hparams. An optional profiler trace over a window of steps. With
--eval_every, the evaluation of `cyclegan evaluate` as eval/* scalars and <model_dir>/eval/report-STEP.json.
"""
import json
import dataclasses

import keras
import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api

from preprocessing.flags import view
from trainer.config import RANKED_ERRORS
from trainer.model.pixels import to_uint8
from trainer.run import data
from trainer.run.model_dir import EVAL, LOGS, model_path


def held_out_grid(nets, real_a, real_b):
    """[1, 6 * H, N * W, 3] uint8 from two lists of HxWx3 images: one row per kind of image, one column per held-out
    example. Each image is translated at its own size, as `translate` does, and then centred on a cell of the
    largest height and width among them (the modes that keep each image's size or aspect ratio make them differ)."""
    def translate(name, images):
        return [nets[name](image[None], training=False)[0] for image in images]

    fake_b, fake_a = translate("G_AB", real_a), translate("G_BA", real_b)
    rows = [real_a, fake_b, translate("G_BA", fake_b), real_b, fake_a, translate("G_AB", fake_a)]
    height = max(image.shape[0] for row in rows for image in row)
    width = max(image.shape[1] for row in rows for image in row)
    rows = [tf.concat([tf.image.resize_with_crop_or_pad(tf.cast(image, tf.float32), height, width)
                       for image in row], axis=1) for row in rows]  # N images side by side
    widest = max(row.shape[1] for row in rows)  # a domain with fewer test images than asked for
    grid = tf.concat([tf.image.resize_with_crop_or_pad(row, height, widest) for row in rows], axis=0)
    return to_uint8(grid)[None]


class Summaries:
    def __init__(self, config, chief, trainer, manifest):
        self.config, self.trainer, self.chief = config, trainer, chief
        self.logdir = model_path(config.model_dir, LOGS)
        self.writer = tf.summary.create_file_writer(self.logdir) if chief else tf.summary.create_noop_writer()
        self.held_out = None
        if chief and config.image_every:
            self.held_out = [data.held_out_images(config.data, manifest, domain, view(config, data.Input),
                                                 config.summary_images)
                             for domain in "AB"]
        self._profiling = False
        self.evaluator = None
        if chief and config.eval_every:
            from trainer.evaluation.evaluator import Evaluator
            from trainer.serving.translator import Scaling, make_translator

            self.evaluator = Evaluator(config.eval_data, config.eval_images, config.inception_weights,
                                       view(config, Scaling))
            self.translators = [make_translator(trainer.nets[name]) for name in ("G_AB", "G_BA")]
        if chief:
            hparams = {k: v for k, v in dataclasses.asdict(config).items() if isinstance(v, (bool, int, float, str))}
            hparams["dataset_fingerprint"] = manifest.fingerprint
            with self.writer.as_default():
                # the evaluation's errors as the hparams plugin's metrics: its table view then compares runs by them
                hparams_api.hparams_config([hparams_api.HParam(name) for name in hparams],
                                           [hparams_api.Metric(f"eval/{name}") for name in RANKED_ERRORS])
                hparams_api.hparams(hparams, trial_id=config.model_dir)

    def scalars(self, step, losses, signals, pairs_per_second, step_time, input_wait):
        if not self.chief:
            return
        with self.writer.as_default(step=step):
            for name, value in losses.items():
                tf.summary.scalar(f"loss/{name}", value)
            for name, value in signals.items():  # trainer/run/health.py says what each means
                tf.summary.scalar(f"health/{name}", value)
            for name, optimizer in (("generators", self.trainer.g_opt), ("discriminators", self.trainer.d_opt)):
                tf.summary.scalar(f"learning_rate/{name}", optimizer.learning_rate)
                if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                    tf.summary.scalar(f"loss_scale/{name}", optimizer.dynamic_scale)
            tf.summary.scalar("perf/pairs_per_second", pairs_per_second)
            tf.summary.scalar("perf/step_time_seconds", step_time)
            tf.summary.scalar("perf/input_wait_seconds", input_wait)

    def images(self, step):
        if self.held_out is None:
            return
        with self.writer.as_default(step=step):
            tf.summary.image("held_out/A_GA_FGA_B_FB_GFB", held_out_grid(self.trainer.nets, *self.held_out),
                             description="rows: real A, G(A), F(G(A)), real B, F(B), G(F(B))")

    def evaluate(self, step, stopping=lambda: False):
        """The evaluation report of the current generators (None on other workers); evaluator.Stopped when
        `stopping()` turns true before it ends."""
        if self.evaluator is None:
            return None
        report = self.evaluator(*(translator.translate for translator in self.translators), stopping=stopping)
        with self.writer.as_default(step=step):
            for key, value in report.items():
                if isinstance(value, float):
                    tf.summary.scalar(f"eval/{key}", value)
        tf.io.gfile.makedirs(model_path(self.config.model_dir, EVAL))
        with tf.io.gfile.GFile(model_path(self.config.model_dir, EVAL, f"report-{step}.json"), "w") as f:
            f.write(json.dumps(report, indent=2) + "\n")
        return report

    def profile(self, step):
        """Call before each step: starts the trace at profile_start and stops it profile_steps steps later."""
        start = self.config.profile_start
        if not (self.chief and start):
            return
        if step == start:
            tf.profiler.experimental.start(self.logdir)
            self._profiling = True
        elif self._profiling and step == start + self.config.profile_steps:
            self.close_profile()

    def close_profile(self):
        if self._profiling:
            tf.profiler.experimental.stop()
            self._profiling = False

    def close(self):
        self.close_profile()
        self.writer.flush()
