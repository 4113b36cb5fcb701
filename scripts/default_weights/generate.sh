#!/usr/bin/env bash
# Build the default-weights ADP databases with the CHGNet teacher (issue #4). Resumable: rerun
# the same command after an interruption and finished structures are skipped.
#   bash scripts/default_weights/generate.sh        (from the repository root, after setup)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=runs/adp_default
mkdir -p "$OUT"
# Continue from the committed snapshot of an earlier session, if this checkout has no run yet.
.venv/bin/python scripts/default_weights/snapshot.py --restore
if [ ! -f "$OUT/train.csv.gz" ] || [ ! -f "$OUT/test.csv.gz" ]; then
    .venv/bin/python -W ignore scripts/default_weights/select_structures.py --out data/adp_default --csv-dir "$OUT"
fi
TEMPS="20 50 100 150 200 300 400 600 800"
# Single-threaded teacher processes: the test split in-process, the training split on
# TRAIN_WORKERS dask worker processes (default 2; the builder's executor path), so the larger split
# keeps going on every core once the test split is done. A generator that dies (e.g. the
# out-of-memory killer on a huge supercell) is restarted; in-process, the in-flight marker of the
# dataset builder retries that structure once and then records it as a failed row.
TRAIN_WORKERS="${TRAIN_WORKERS:-2}"
run_split() {
    local split=$1 workers=$2
    for attempt in 1 2 3 4 5 6 7 8 9 10; do
        if OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python -m phonon_ref.dataset \
            "$OUT/$split.csv.gz" -o "$OUT/$split.db" --calculator chgnet -T $TEMPS --no-progress \
            --workers "$workers" >> "$OUT/$split.log" 2>&1; then
            return 0
        fi
        echo "generator for $split stopped with an error (attempt $attempt); restarting" >> "$OUT/$split.log"
    done
}
# SPLITS chooses which splits to (re)generate, e.g. SPLITS=train once the test split is large enough.
for split in ${SPLITS:-train test}; do
    if [ "$split" = train ]; then run_split train "$TRAIN_WORKERS" & else run_split "$split" 0 & fi
done
wait
