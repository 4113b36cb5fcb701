#!/usr/bin/env bash
# Retrain the default CartNet weights and their no-direction baseline (paper ablation 4) on a
# frozen copy of the generation databases, evaluate both and ship the model with its card.
# Resumable: each training resumes from its last.pt; finished steps are skipped.
#   V=v5 bash scripts/default_weights/retrain.sh      (from the repository root, after setup)
# The recipe (defaults: the shipped v6 one): HEAD=harmonic|cholesky (the harmonic head trains on
# joint samples, a structure at all its temperatures), DIM, EPOCHS, BATCH, LOSS=l1|relative_l1.
# TRAIN_ONLY=1 stops after the two trainings (to compare recipes side by side on validation
# before one of them is shipped).
set -euo pipefail
cd "$(dirname "$0")/../.."
V="${V:-v5}"
FROZEN=runs/adp_default/frozen
RUN="runs/$V"
mkdir -p "$FROZEN" "$RUN"
for split in train test; do  # consistent SQLite copies, safe while the generator writes
    [ -f "$FROZEN/${split}_$V.db" ] || .venv/bin/python -c "
import sqlite3, sys
with sqlite3.connect(sys.argv[1]) as src, sqlite3.connect(sys.argv[2]) as dst:
    src.backup(dst)
" "runs/adp_default/$split.db" "$FROZEN/${split}_$V.db"
done
RECIPE="--head ${HEAD:-harmonic} --epochs ${EPOCHS:-100} --dim ${DIM:-256} --threads 1 \
--batch-size ${BATCH:-16} --loss ${LOSS:-l1} --select iou"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# the model and its baseline train side by side, one core each
( cd "$RUN" && ../../.venv/bin/ase-cartnet train cartnet --db "../adp_default/frozen/train_$V.db" \
    --out main $RECIPE > main.log 2>&1 ) &
MAIN=$!
( cd "$RUN" && ../../.venv/bin/ase-cartnet train cartnet --db "../adp_default/frozen/train_$V.db" \
    --out nodir --no-direction $RECIPE > nodir.log 2>&1 ) &
NODIR=$!
wait "$MAIN"
wait "$NODIR"
[ -z "${TRAIN_ONLY:-}" ] || exit 0
EXPORT=".venv/bin/python scripts/default_weights/export.py --checkpoint $RUN/main/best.pt \
--train-db $FROZEN/train_$V.db --test-db $FROZEN/test_$V.db"
ORIGIN="SQLite backup of runs/adp_default/{train,test}.db, the rows of data/adp_default/progress/"
# ship first, so that the evaluation runs on exactly the shipped file (the default weights)
[ -f "$RUN/eval.json" ] || $EXPORT --train-db-origin "$ORIGIN"
EVAL=".venv/bin/python benchmarks/eval_cartnet_default.py --train-db $FROZEN/train_$V.db \
--test-db $FROZEN/test_$V.db --ablation $RUN/nodir/best.pt --speed-structures 6 \
--json $RUN/eval.json"
[ -f "$RUN/eval.json" ] || $EVAL | tee "$RUN/eval.txt"
$EXPORT --train-db-origin "$ORIGIN" --metrics "$RUN/eval.json" --eval-command "$EVAL"
