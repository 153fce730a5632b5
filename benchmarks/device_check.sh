#!/usr/bin/env bash
# The GPU run of issue "Performance II": parity, bf16/fp16, speed (eager and torch.compile), one
# full-size bf16-mixed training step per task, within 8 minutes on one CUDA GPU. Results go to
# benchmarks/results_gpu.txt. `--quick` runs a seconds-scale version on the CPU (CI keeps it alive).
# Usage: bash benchmarks/device_check.sh [--quick] [--device cpu|cuda]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
if [[ " $* " == *" --quick "* ]]; then
    exec timeout 600 "$PYTHON" benchmarks/device_check.py "$@"
fi
timeout 480 "$PYTHON" benchmarks/device_check.py "$@" 2>&1 | tee benchmarks/results_gpu.txt
