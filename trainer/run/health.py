"""Watching a run's balance: the step's health signals (trainer/model/step.py, HEALTH), averaged over each log
window, and one alarm per episode of the three ways GAN training fails while its losses keep printing.

    discriminator wins   D_A's or D_B's loss below D_LOSS_FLOOR for PATIENCE_STEPS steps in a row: it tells real
                         from fake outright, and its verdict no longer teaches the generator anything (the
                         reference's maintainers: "if D's loss is almost 0 for a while, your training might have
                         collapsed")
    generator collapse   a generator's output variance over the batch below COLLAPSE_SHARE of the variance of the
                         real images it imitates, for PATIENCE_STEPS steps in a row, once it has been above that
                         share or the run is past COLLAPSE_WARMUP_STEPS: its outputs are alike whatever the input.
                         An untrained generator's outputs vary little (about 1% of the real images' variance on
                         the discs task, rising past 5% only after tens of steps, later at a lower --lr), so a low
                         share is a collapse only when it falls from a level reached, or lasts past the warm-up.
                         Needs a global batch of 2 or more (one image has no variance over the batch).
    exploding gradient   a network's gradient norm not finite, or above EXPLOSION_FACTOR times the median of its
                         earlier logs (once there are WARMUP of them); at once, no patience

An alarm fires once when its condition starts to hold (after the patience) and re-arms when the condition stops
holding: one line per episode, not per log.
"""
import dataclasses
import math
import statistics

from preprocessing import exit_status

D_LOSS_FLOOR = 0.01  # a balanced LSGAN discriminator sits near 0.25, a vanilla one near 0.69
COLLAPSE_SHARE = 0.05
EXPLOSION_FACTOR = 100.0
WARMUP = 5  # logs of gradient norms before their median means anything
# Counted in steps, not logs, so that --log_every does not change when an alarm fires; the reference trains for
# 200 epochs of a thousand or more steps, so both are short next to a run.
PATIENCE_STEPS = 50
COLLAPSE_WARMUP_STEPS = 500
ADVICE = {
    "discriminator": "lower the discriminators' --lr, or check the data: a domain told apart by something trivial "
                     "(image size, borders, compression) lets a discriminator win",
    "collapse": "lower --lr, or raise --lambda_a/--lambda_b so the cycle keeps the outputs tied to the inputs; "
                "check that each domain's training images vary",
    "gradient": "lower --lr; check the data for broken images; under mixed_float16, try float32",
}


@dataclasses.dataclass(frozen=True)
class Alarm:
    signal: str  # e.g. "D_B loss", "G_AB output variance", "G_AB gradient norm"
    kind: str  # a key of ADVICE
    step: int
    detail: str
    since: int  # the first step of the logs in which it held

    def line(self):
        return f"health alarm at step {self.step}: {self.signal} {self.detail}; {ADVICE[self.kind]}"


class Collapsed(Exception):
    """--stop_on_collapse: an alarm ended the run, without saving the state it reached."""
    exit_status = exit_status.COLLAPSED

    def __init__(self, alarm, kept):
        before = (f"the newest checkpoint, {kept}, is from before it" if kept else
                  "no checkpoint from before it is left (--keep_checkpoints rotated them out, or none was saved)")
        super().__init__(f"{alarm.line()}. Stopped (--stop_on_collapse) without saving: the episode began at step "
                         f"{alarm.since}; {before}. Exiting with {exit_status.COLLAPSED}")


class HealthWatch:
    def __init__(self, first_step=0, loss_scaled=False):
        self.patience, self.warmup = PATIENCE_STEPS, COLLAPSE_WARMUP_STEPS  # read here, so tests may lower them
        self.streaks, self.norms, self.began, self.said, self.reached = {}, {}, {}, set(), set()
        self.logged = first_step  # the step of the last log: the next window starts after it
        # under mixed_float16 a step whose scaled gradients overflow is the loss scale's to handle (it is skipped
        # and the scale lowered): a non-finite norm there is not an explosion
        self.loss_scaled = loss_scaled

    def observe(self, step, losses, health):
        """One log window's mean losses and health signals -> the alarms whose episode starts at this log."""
        alarms = self._observe(step, losses, health)
        self.logged = step
        return alarms

    def _streak(self, signal, holds):
        """The signal's count of logs in a row that held, this one included; notes where a streak began."""
        count = self.streaks[signal] = self.streaks.get(signal, 0) + 1 if holds else 0
        if count == 1:
            self.began[signal] = self.logged + 1
        return count

    def _observe(self, step, losses, health):
        alarms = []
        for d in ("D_A", "D_B"):
            if d in losses:
                alarms += self._persistent(step, f"{d} loss", "discriminator", losses[d] < D_LOSS_FLOOR,
                                           f"below {D_LOSS_FLOOR} for {self.patience} steps ({losses[d]:.4f})")
        for g, target in (("G_AB", "B"), ("G_BA", "A")):
            real, fake = health[f"{target}_variance"], health[f"{g}_output_variance"]
            share = fake / real if real > 0 else math.inf  # a batch of one: no variance to compare
            if COLLAPSE_SHARE <= share < math.inf:
                self.reached.add(g)
            fell = g in self.reached or step > self.warmup
            alarms += self._persistent(step, f"{g} output variance", "collapse", share < COLLAPSE_SHARE and fell,
                                       f"{share:.1%} of real {target} images' for {self.patience} steps")
        for net in ("G_AB", "G_BA", "D_A", "D_B"):
            alarms += self._exploding(step, net, health[f"{net}_grad_norm"])
        return alarms

    def _persistent(self, step, signal, kind, holds, detail):
        """One alarm per episode: once the condition has held for `patience` steps, through the log at `step`."""
        if not self._streak(signal, holds):
            self.said.discard(signal)
            return []
        if signal in self.said or step - self.began[signal] + 1 < self.patience:
            return []
        self.said.add(signal)
        return [Alarm(signal, kind, step, detail, self.began[signal])]

    def _exploding(self, step, net, norm):
        if self.loss_scaled and not math.isfinite(norm):
            return []
        earlier = self.norms.setdefault(net, [])
        median = statistics.median(earlier) if len(earlier) >= WARMUP else None
        holds = not math.isfinite(norm) or (median is not None and norm > EXPLOSION_FACTOR * median)
        signal = f"{net} gradient norm"
        if self._streak(signal, holds) != 1:  # no longer holding (0), or an episode already said (2 and on)
            if not holds:
                earlier.append(norm)
            return []
        detail = (f"is {norm}" if not math.isfinite(norm) else
                  f"{norm:.3g} is {norm / median:.0f}x the median of its earlier logs ({median:.3g})")
        return [Alarm(signal, "gradient", step, detail, self.began[signal])]
