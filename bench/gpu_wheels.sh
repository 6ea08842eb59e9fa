#!/usr/bin/env bash
# Fetch, where pip works, the wheels bench/gpu.sh needs on the GPU machine (Python 3.12, no package index there):
# the packages artaug uses that its image lacks. They land in .whl/, which git ignores locally (.git/info/exclude).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "diffusers==$("$PY" -c 'import diffusers; print(diffusers.__version__)')" tomli-w importlib-metadata \
    "torchao==$("$PY" -c 'import torchao; print(torchao.__version__)')"
ls -la .whl
