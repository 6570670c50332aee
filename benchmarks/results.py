"""What every benchmark shares: the machine's description, a table, and the JSON file of the results."""
import json
import os
import platform
import sys


def machine():
    import tensorflow as tf

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
            "python": sys.version.split()[0], "tensorflow": tf.__version__, "platform": platform.platform()}


def table(rows, columns):
    """rows: dicts; columns: (header, key, format). Printed aligned, as the README's tables."""
    cells = [[header for header, _, _ in columns]]
    for row in rows:
        cells.append([("" if row.get(key) is None else fmt.format(row[key])) for _, key, fmt in columns])
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    for line in cells:
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths)), flush=True)


def write_json(path, benchmark, rows, **extra):
    if not path:
        return
    with open(path, "w") as f:
        json.dump({"benchmark": benchmark, "machine": machine(), **extra, "rows": rows}, f, indent=2)
    print(f"wrote {path}")
