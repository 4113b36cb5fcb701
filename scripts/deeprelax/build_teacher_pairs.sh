#!/bin/bash
# DeepRelax teacher pairs (issue 5 (b)): MP-20 prototypes with chemically similar substitutions,
# relaxed by CHGNet (BFGS + FrechetCellFilter to 0.01 eV/Å). Resumable: rerun after an interruption.
# Held-out pairs from the MP-20 test split first (evaluation, steps-saved benchmark), then the
# training pairs from the val split. WORKERS=N runs each on N dask workers (default in-process).
set -e
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
WORKERS="${WORKERS:-0}"
build() {
    .venv/bin/python -W ignore -m ase_cartnet.train.deeprelax_teacher "$@" --max-atoms 20 \
        --workers "$WORKERS" --no-progress
}
build ../shared/data/mp_20/test.csv.gz -o runs/deeprelax/teacher_test.db --limit 150 --seed 1
build ../shared/data/mp_20/val.csv.gz -o runs/deeprelax/teacher_train.db --limit "${TRAIN_LIMIT:-3000}"
