#!/usr/bin/env bash
# Everything a GPU machine with JAX but no TensorFlow needs to measure our step there (benchmarks/xla_step_jax.py):
# install the carried wheels, run the reference nets in float32 and mixed bfloat16 at per-device batch 1, 2, 4, 8,
# and keep the table. Made to end within 5 minutes on an H100-class GPU.
#
#   here:   make device-wheels              (Keras, namex, optree into .device_wheels/, ignored by git)
#   there:  bash benchmarks/gpu_run.sh      (with .device_wheels carried; the table lands in $OUT or gpu_out/)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu_out}
python=${PYTHON:-python3}
mkdir -p "$out"
"$python" -m pip install --quiet --no-index --no-deps .device_wheels/*.whl
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/device.txt" || true
PYTHONUNBUFFERED=1 timeout 270 "$python" -m benchmarks.xla_step_jax --preset reference --batches 1 2 4 8 \
    --steps 10 --repeat 2 --json "$out/xla_step_jax.json" 2>&1 | tee "$out/xla_step_jax.txt"
