#!/usr/bin/env bash
# Create ./.venv and install ase-cartnet with the CPU build of PyTorch.
# Usage: bash scripts/setup.sh [extras]   (default extras: all = dev + teacher)
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-all}"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# The CPU wheel of torch 2.13.0 (an unpinned torch would pull a multi-GB CUDA build).
.venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[${EXTRAS}]"
