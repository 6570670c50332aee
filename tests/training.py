"""The trainer tests' shared configuration and ways to run it: in this process, or as `python -m trainer`."""
import dataclasses
import sys

from tests.helpers import read_until, start, stop
from trainer.config import PRESETS
from trainer.run import loop

SMALL = dataclasses.replace(PRESETS["tiny"], ngf=8, ndf=8, n_blocks=2, batch_size=2, log_every=1, pool_size=3,
                            image_every=0, checkpoint_every=0)


def run(config, strategy, **changes):
    lines = []
    trainer, history = loop.train(dataclasses.replace(config, **changes), strategy=strategy, say=lines.append)
    return trainer, history, lines


def train_command(records, model_dir, steps, *extra):
    return [sys.executable, "-m", "trainer", "--preset", "tiny", "--ngf", "4", "--ndf", "4", "--n_blocks", "1",
            "--batch_size", "1", "--steps", str(steps), "--log_every", "1", "--checkpoint_every", "1000",
            "--image_every", "0", "--data", records, "--model_dir", model_dir, *extra]


def run_until(command, marker, signals):
    """Start `command`, send each of `signals` once a line holds `marker`; (status, output)."""
    proc = start(command)
    output = read_until(proc, marker)
    status, rest, _ = stop(proc, *signals)
    return status, "".join(output) + rest
