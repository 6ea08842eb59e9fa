#!/usr/bin/env bash
# Issue 13's one prepared GPU benchmark (bench/bench_gpu.py): FLUX.1-dev geometry with random weights on one
# H100/H200: one table, and runs/gpu.json (or $OUT/gpu.json on the device tool's machine).
#
#   bench/gpu.sh --smoke      # here, on the CPU first: the same code paths at narrow widths
#   bench/gpu.sh              # on the GPU machine (a few minutes)
#
# The GPU machine has torch, transformers, peft and accelerate but no diffusers, and reaches no package index:
# fetch the missing wheels here once with bench/gpu_wheels.sh (into .whl/), carry .whl to the machine, and this
# script installs them into /tmp before it runs. artaug itself runs from src/ (no install needed).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
if ! "$PY" -c "import diffusers" 2>/dev/null; then
    if ! ls .whl/*.whl >/dev/null 2>&1; then
        echo "error: diffusers is not installed and no wheels are in .whl/: run bench/gpu_wheels.sh where pip works" >&2
        exit 2
    fi
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/artaug-site .whl/*.whl
    export PYTHONPATH="/tmp/artaug-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$PY" bench/bench_gpu.py --out "${OUT:-runs}/gpu.json" "$@"
