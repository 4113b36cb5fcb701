#!/bin/bash
# DeepRelax teacher pairs: MP-20 prototypes with chemically similar substitutions, relaxed by
# CHGNet (BFGS + FrechetCellFilter to 0.01 eV/Å). Resumable: rerun after an interruption.
# Held-out pairs from the MP-20 test split first (evaluation, steps-saved benchmark; one pattern,
# no frames), then the training pairs from the val and train_subset splits: SUBSTITUTIONS species
# patterns per prototype (default 3) and up to KEEP_FRAMES trajectory frames per relaxation
# (default 8) as extra (frame -> relaxed) pairs. WORKERS=N runs each on N dask workers.
set -e
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
WORKERS="${WORKERS:-0}"
build() {
    .venv/bin/python -W ignore -m ase_cartnet.train.deeprelax_teacher "$@" --max-atoms 20 \
        --workers "$WORKERS" --no-progress
}
build ../shared/data/mp_20/test.csv.gz -o runs/deeprelax/teacher_test.db --limit "${TEST_LIMIT:-400}" --seed 1
for split in val train_subset_847; do
    build "../shared/data/mp_20/$split.csv.gz" -o "runs/deeprelax/teacher_train.db" \
        --limit "${TRAIN_LIMIT:-3000}" --substitutions "${SUBSTITUTIONS:-3}" \
        --keep-frames "${KEEP_FRAMES:-8}"
done
