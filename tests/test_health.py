"""The health watch: its alarms on synthetic signal series (one line per episode, none on a healthy run), the
signals in a real run's TensorBoard logs, and a forced collapse that fires the alarm and, asked to, ends the run."""
import dataclasses
import math
import os

import keras
import pytest
import tensorflow as tf

from tests.training import SMALL, run
from trainer.model.step import HEALTH
from trainer.run import health, loop

HEALTHY_LOSSES = {"D_A": 0.25, "D_B": 0.22, "G_AB_gan": 0.3}


def healthy_signals(**changes):
    signals = {name: 1.0 for name in HEALTH}
    signals.update(A_variance=0.1, B_variance=0.1, G_AB_output_variance=0.08, G_BA_output_variance=0.09)
    return {**signals, **changes}


def watch_series(series):
    """[(losses, signals)] logged every 10 steps -> [(log index, alarm)] from one HealthWatch."""
    watch = health.HealthWatch()
    return [(i, alarm) for i, (losses, signals) in enumerate(series)
            for alarm in watch.observe(10 * (i + 1), losses, signals)]


def test_a_healthy_series_raises_nothing():
    series = [({**HEALTHY_LOSSES, "D_A": 0.2 + 0.05 * math.sin(i)}, healthy_signals(G_AB_grad_norm=1 + i % 3))
              for i in range(60)]
    assert watch_series(series) == []


def test_a_winning_discriminator_is_one_alarm_per_episode():
    low = {**HEALTHY_LOSSES, "D_B": 0.001}
    # low for 7 logs (fires at the 5th: 50 steps), healthy for 3, low again for 5 (fires again), then 3 (too short)
    series = [low] * 7 + [HEALTHY_LOSSES] * 3 + [low] * 5 + [HEALTHY_LOSSES] + [low] * 3
    alarms = watch_series([(losses, healthy_signals()) for losses in series])
    assert [(i, alarm.signal) for i, alarm in alarms] == [(4, "D_B loss"), (14, "D_B loss")]
    assert "below 0.01 for 50 steps" in alarms[0][1].line() and "lower the discriminators' --lr" in alarms[0][1].line()


def test_collapsed_outputs_alarm_and_a_batch_of_one_does_not():
    collapsed = healthy_signals(G_BA_output_variance=0.001)  # 1% of real A images' variance
    alarms = watch_series([(HEALTHY_LOSSES, healthy_signals())] * 2 + [(HEALTHY_LOSSES, collapsed)] * 10)
    assert [(i, alarm.signal) for i, alarm in alarms] == [(6, "G_BA output variance")]  # fell from 90%: 50 steps
    assert "1.0% of real A images' for 50 steps" in alarms[0][1].line()
    # an untrained generator starts low and rises slowly: no alarm, however often the run logs
    rising = [healthy_signals(G_BA_output_variance=0.001 * (1 + i / 8)) for i in range(48)]
    assert watch_series([(HEALTHY_LOSSES, signals) for signals in rising]) == []
    # one that never rises is a collapse once the warm-up is over (step 500): 50 steps after it
    alarms = watch_series([(HEALTHY_LOSSES, collapsed)] * 60)
    assert [(i, alarm.since) for i, alarm in alarms] == [(54, 501)]
    one_image = healthy_signals(A_variance=0.0, B_variance=0.0, G_AB_output_variance=0.0, G_BA_output_variance=0.0)
    assert watch_series([(HEALTHY_LOSSES, one_image)] * 12) == []


def test_an_exploding_gradient_alarms_at_once_and_rearms():
    norms = [1.0] * 6 + [500.0, 800.0, 1.0, 1.0, float("nan")]
    alarms = watch_series([(HEALTHY_LOSSES, healthy_signals(D_A_grad_norm=n)) for n in norms])
    assert [(i, alarm.signal) for i, alarm in alarms] == [(6, "D_A gradient norm"), (10, "D_A gradient norm")]
    assert "500 is 500x the median of its earlier logs (1)" in alarms[0][1].line()
    assert "is nan" in alarms[1][1].line()
    early = [(HEALTHY_LOSSES, healthy_signals(D_A_grad_norm=n)) for n in [1.0, 900.0, 1.0]]  # before WARMUP logs
    assert watch_series(early) == []
    overflow = health.HealthWatch(loss_scaled=True)  # mixed_float16: an overflowed step is the loss scale's to skip
    assert [overflow.observe(i, HEALTHY_LOSSES, healthy_signals(D_A_grad_norm=n)) for i, n in enumerate(norms)][10] == []


def zero_generator_output(monkeypatch, name, from_step):
    """Test-only: before every step from `from_step` on, zero the last convolution of generator `name`, so that its
    outputs are the same for every input (a collapse that training cannot undo)."""
    real_step = loop.train_step

    def collapsing(run_, step, window, stop_request):
        if step >= from_step:
            last = [layer for layer in run_.trainer.nets[name].layers if isinstance(layer, keras.layers.Conv2D)][-1]
            for weight in last.weights:
                weight.assign(tf.zeros_like(weight))
        return real_step(run_, step, window, stop_request)

    monkeypatch.setattr(loop, "train_step", collapsing)


@pytest.mark.slow
def test_a_forced_collapse_fires_the_alarm_and_stop_on_collapse_ends_the_run(tiny_records, two_cpus, tmp_path,
                                                                             monkeypatch):
    zero_generator_output(monkeypatch, "G_AB", from_step=4)
    monkeypatch.setattr(health, "PATIENCE_STEPS", 10)  # a short run: the alarm after 10 steps, not 50
    config = dataclasses.replace(SMALL, data=tiny_records[0], model_dir=str(tmp_path / "model"), steps=16,
                                 log_every=2, checkpoint_every=1, keep_checkpoints=20)
    _, _, lines = run(config, two_cpus)
    # logs every 2 steps: the window of steps 3-4 is half collapsed, those from 5 on wholly; 10 steps end at 14
    assert [line for line in lines if line.startswith("health alarm")] == [
        "health alarm at step 14: G_AB output variance 0.0% of real B images' for 10 steps; "
        + health.ADVICE["collapse"]]

    events = [event for path in tf.io.gfile.glob(f"{tmp_path}/model/logs/events.out.tfevents.*")
              for event in tf.compat.v1.train.summary_iterator(path)]
    tags = {value.tag for event in events for value in event.summary.value}
    assert {f"health/{name}" for name in HEALTH} <= tags

    stopped = tmp_path / "stopped"
    with pytest.raises(health.Collapsed, match="Stopped \\(--stop_on_collapse\\) without saving: the episode began "
                                                "at step 5; the newest checkpoint, .*ckpt-4, is from before it"):
        run(config, two_cpus, model_dir=str(stopped), stop_on_collapse=True)
    # the checkpoints saved during the episode are set aside: a restart resumes from before it
    assert sorted(os.listdir(stopped / "checkpoints" / "collapsed")) == sorted(
        f"ckpt-{step}.{suffix}" for step in range(5, 14) for suffix in ("data-00000-of-00001", "index"))
    assert tf.train.latest_checkpoint(str(stopped / "checkpoints")).endswith("ckpt-4")


@pytest.mark.slow
def test_a_healthy_discs_run_logging_every_step_is_not_stopped_as_a_collapse(two_cpus, tmp_path):
    """An untrained generator's outputs vary little on the discs task (about 1% of the real images' variance):
    with --stop_on_collapse and --log_every 1 the run must go on learning, not end at its start."""
    from pipeline import cli, synth

    raw, records = str(tmp_path / "raw"), str(tmp_path / "records")
    synth.write(raw, synth.SynthConfig(train=12, test=2, size=64, task="discs"))
    assert cli.main(["--input", raw, "--output", records]) == 0
    config = dataclasses.replace(SMALL, data=records, model_dir=str(tmp_path / "model"), steps=24, log_every=1,
                                 stop_on_collapse=True)
    _, history, lines = run(config, two_cpus)
    assert not [line for line in lines if line.startswith("health alarm")]
    assert len(history) == 24
