"""What every benchmark shares: the machine's description, a table, the JSON file of the results, and a
synthetic dataset preprocessed by the real job."""
import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # where `python -m benchmarks.NAME` runs


def parser(description):
    """A benchmark's command line: its docstring as help, no abbreviations, and --json."""
    out = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
                                  allow_abbrev=False)
    out.add_argument("--json", default="", help="also write the rows and the machine's description here")
    return out


def machine(backend="tensorflow"):
    """The machine and the framework that ran a benchmark: TensorFlow, or JAX where TensorFlow is not installed."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    out = {"cpu": cpu, "cores": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform()}
    if backend == "jax":
        import jax

        return {**out, "gpus": [d.device_kind for d in jax.devices() if d.platform == "gpu"], "jax": jax.__version__}
    import tensorflow as tf

    return {**out, "gpus": [d.name for d in tf.config.list_physical_devices("GPU")], "tensorflow": tf.__version__}


class Replicas:
    """MirroredStrategies over the first 1, 2, ... local devices: every GPU, or the CPU split into `most` logical
    devices (which must happen before TensorFlow starts its devices), made as the trainer makes them
    (trainer/run/strategy.py). One strategy per device set, kept: a second one over the same GPUs breaks collectives."""

    def __init__(self, most):
        import tensorflow as tf

        from trainer.run.strategy import split_cpu

        if not tf.config.list_physical_devices("GPU"):
            split_cpu(most)
        self.devices = [d.name for d in tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")]
        self._strategies = {}

    def strategy(self, replicas):
        """The strategy over `replicas` devices, or None when there are fewer."""
        from trainer.run.strategy import mirrored

        if replicas > len(self.devices):
            return None
        if replicas not in self._strategies:
            self._strategies[replicas] = mirrored(self.devices[:replicas])
        return self._strategies[replicas]


def table(rows, columns):
    """rows: dicts; columns: (header, key, format). Printed aligned, as the README's tables."""
    cells = [[header for header, _, _ in columns]]
    for row in rows:
        cells.append([("" if row.get(key) is None else fmt.format(row[key])) for _, key, fmt in columns])
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    for line in cells:
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths)), flush=True)


def write_json(path, benchmark, rows, backend="tensorflow", **extra):
    if not path:
        return
    with open(path, "w") as f:
        json.dump({"benchmark": benchmark, "machine": machine(backend), **extra, "rows": rows}, f, indent=2)
    print(f"wrote {path}")


@contextlib.contextmanager
def synthetic_records(images, size=96):
    """The records folder of `images` synthetic training images per domain, preprocessed by the real job, in a
    temporary folder that is deleted afterwards."""
    from pipeline import cli, synth

    work = tempfile.mkdtemp(prefix="cyclegan-bench-")
    try:
        raw, records = os.path.join(work, "raw"), os.path.join(work, "records")
        synth.write(raw, synth.SynthConfig(train=images, test=4, size=size))
        if cli.main(["--input", raw, "--output", records]) != 0:
            raise SystemExit("preprocessing the synthetic dataset failed")
        yield records
    finally:
        shutil.rmtree(work, ignore_errors=True)
