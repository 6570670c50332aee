"""Checkpoint save: how long the trainer's full-state save of a preset takes, against the grace period a pod
gets between SIGTERM and SIGKILL (15 s on a preempted GKE spot node).

    .venv/bin/python -m benchmarks.save_bench                      # reference and tiny
    .venv/bin/python -m benchmarks.save_bench --presets reference --repeats 3

The save is trainer.run.checkpoints.RunState.save (every net, both optimizers' state, the pools and the step), into
  local      a folder on this machine's disk
  ram        TensorFlow's ram:// filesystem: the serialisation alone, no storage
and the same checkpoint files uploaded to a GCS emulator on loopback with google-cloud-storage, as an upload of
those bytes over HTTP (TensorFlow's own gs:// client cannot be pointed at an emulator). The best of --repeats.
"""
import os
import shutil
import tempfile
import time
import uuid

from benchmarks import results
from tests import gcs_emulator


def best_of(repeats, work):
    seconds = []
    for _ in range(repeats):
        began = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - began)
    return min(seconds)


def main(argv=None):
    parser = results.parser(__doc__)
    parser.add_argument("--presets", nargs="+", default=["reference", "tiny"])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)

    from preprocessing.process import prepare_libraries

    prepare_libraries()
    import dataclasses

    from google.cloud import storage

    from trainer.config import PRESETS
    from trainer.model.step import CycleGANTrainer
    from trainer.run import checkpoints, strategy as strategies

    print(f"machine: {results.machine()}", flush=True)
    emulator = gcs_emulator.start(project="bench")
    rows = []
    try:
        bucket = storage.Client().create_bucket("bench")
        for preset in args.presets:
            work = tempfile.mkdtemp(prefix="cyclegan-save-")
            try:
                config = PRESETS[preset]
                trainer = CycleGANTrainer(config, strategies.create(dataclasses.replace(config, strategy="one_device")),
                                          steps_per_epoch=1)
                row = {"preset": preset}
                for target, model_dir in (("local", work), ("ram", f"ram://save-{uuid.uuid4().hex}")):
                    state = checkpoints.RunState(dataclasses.replace(config, model_dir=model_dir,
                                                                     keep_checkpoints=1), trainer)
                    row[target] = best_of(args.repeats, state.save)
                folder = os.path.join(work, "checkpoints")
                files = [os.path.join(folder, name) for name in os.listdir(folder) if name.startswith("ckpt-")]
                row["mb"] = sum(os.path.getsize(path) for path in files) / 1e6

                def upload():
                    for path in files:
                        bucket.blob(f"{preset}/{os.path.basename(path)}").upload_from_filename(path)

                row["emulator"] = best_of(args.repeats, upload)
                rows.append(row)
                print(f"{preset}: {row['mb']:.0f} MB, local {row['local']:.2f} s, ram {row['ram']:.2f} s, "
                      f"emulator upload {row['emulator']:.2f} s", flush=True)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
    results.table(rows, [("preset", "preset", "{}"), ("checkpoint MB", "mb", "{:.0f}"),
                         ("local disk s", "local", "{:.2f}"), ("ram:// s", "ram", "{:.2f}"),
                         ("upload to emulator s", "emulator", "{:.2f}")])
    results.write_json(args.json, "save", rows, repeats=args.repeats)


if __name__ == "__main__":
    main()
