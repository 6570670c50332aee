"""The whole trainer beside its bare step (end to end), and the trainer's peak host memory.

    .venv/bin/python -m benchmarks.trainer_bench [--steps 600] [--memory_steps 3] [--json results.json]

End to end: `cyclegan train --preset tiny` in a process of its own, reading the real preprocessing job's
TFRecords from disk (synthetic images), augmenting, logging, writing summaries and checkpoints at their default
intervals (every 10, 500 and 500 steps). Its pairs/s by the wall clock, from its first progress line to its
last (so the checkpoint and images at step 500 count), is divided by the bare step's: the trainer's own
train_step on in-memory batches (step_bench.py), same config and devices, measured before it in this run. Goal:
at least 0.95. The rate the trainer reports itself (its steps' own time) is printed beside it.

Memory: the peak resident memory (the kernel's ru_maxrss of that process alone) of `cyclegan train` with the tiny
preset (the end-to-end run) and with the reference preset over --memory_steps steps at batch 1.
"""
import os
import re
import subprocess
import sys
import time

from benchmarks import results
from preprocessing.process import prepare_libraries


def run_trainer(records, model_dir, log, *flags):
    """`cyclegan train` in its own process -> (pairs/s by the wall clock from its first progress line to its last,
    pairs/s it reported itself, its peak RSS in MB). The wall-clock rate counts everything between those lines,
    the checkpoints and image summaries written there included; the trainer's own counts its steps only."""
    stamped = []
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "trainer", "--data", records, "--model_dir", model_dir,
                                 *flags], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        for line in proc.stdout:
            stamped.append((time.monotonic(), line))
            out.write(line)
        _, status, usage = os.wait4(proc.pid, 0)
    text = "".join(line for _, line in stamped)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"cyclegan train failed:\n{text[-3000:]}")
    global_batch = int(re.search(r"global batch (\d+)", text).group(1))
    progress = [(when, int(match.group(1)), float(match.group(2))) for when, line in stamped
                if (match := re.match(r"step (\d+)/\d+ .*\| ([\d.]+) pairs/s \|", line))]
    if not progress:  # a run of one step has only its first-step line, which has no rate
        return None, None, usage.ru_maxrss / 1024
    (first_at, first_step, _), (last_at, last_step, reported) = progress[0], progress[-1]
    wall = (last_step - first_step) * global_batch / (last_at - first_at) if last_step > first_step else None
    return wall, reported, usage.ru_maxrss / 1024  # kilobytes on Linux


def main(argv=None):
    parser = results.parser(__doc__)
    parser.add_argument("--steps", type=int, default=600, help="steps of the end-to-end tiny run")
    parser.add_argument("--bare_steps", type=int, default=40, help="timed steps of the bare step")
    parser.add_argument("--memory_steps", type=int, default=3, help="steps of the reference preset's memory run")
    parser.add_argument("--images", type=int, default=240, help="synthetic training images per domain")
    args = parser.parse_args(argv)
    from trainer.config import PRESETS

    log_every = PRESETS["tiny"].log_every
    if args.steps <= log_every:  # its rate is timed between two progress lines: its first and its last
        parser.error(f"--steps {args.steps}: the end-to-end run needs more than {log_every} steps (it logs every "
                     f"{log_every}; its rate is timed between its first and last progress lines)")
    prepare_libraries()
    from benchmarks.step_bench import run_case

    with results.synthetic_records(args.images) as records:
        work = os.path.dirname(records)
        print(f"machine: {results.machine()}", flush=True)
        bare = run_case(results.Replicas(1), "tiny", "float32", False, 4, 1, args.bare_steps, repeat=2,
                        peer=False)["ours_pairs_s"]
        whole, reported, tiny_mb = run_trainer(records, os.path.join(work, "tiny"), os.path.join(work, "tiny.log"),
                                               "--preset", "tiny", "--steps", str(args.steps))
        _, _, reference_mb = run_trainer(records, os.path.join(work, "reference"), os.path.join(work, "ref.log"),
                                         "--preset", "reference", "--steps", str(args.memory_steps))
        rows = [{"preset": "tiny", "steps": args.steps, "bare_pairs_s": bare, "trainer_pairs_s": whole,
                 "ratio": whole / bare, "reported_pairs_s": reported, "peak_mb": tiny_mb},
                {"preset": "reference", "steps": args.memory_steps, "peak_mb": reference_mb}]
        results.table(rows, [("preset", "preset", "{}"), ("steps", "steps", "{}"),
                     ("bare step pairs/s", "bare_pairs_s", "{:.4g}"), ("trainer pairs/s", "trainer_pairs_s", "{:.4g}"),
                     ("as it reports", "reported_pairs_s", "{:.4g}"),
                     ("trainer / bare", "ratio", "{:.3f}"), ("peak RSS MB", "peak_mb", "{:.0f}")])
        results.write_json(args.json, "trainer", rows, images=args.images)
    return 0


if __name__ == "__main__":
    sys.exit(main())
