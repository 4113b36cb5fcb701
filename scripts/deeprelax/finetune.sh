#!/bin/bash
# Stage 2 of the shipped DeepRelax ensemble: fine-tune every stage-1 replicate (synthetic pairs
# only, scripts/deeprelax/train.sh) on CHGNet teacher pairs plus synthetic pairs. Resumable per
# replicate. Then: .venv/bin/python scripts/deeprelax/export_weights.py
set -e
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
STAGE1=runs/deeprelax/stage1_ensemble.pt
FROZEN=runs/deeprelax/teacher_train_frozen.db
# stage 1 as shipped before the fine-tuning (git history), unless train.sh's export is there
[ -f "$STAGE1" ] || git show 0a74d1b:ase_cartnet/weights/deeprelax_ensemble.pt > "$STAGE1"
# a fixed copy of the (possibly still growing) teacher database, so the split stays the same
[ -f "$FROZEN" ] || .venv/bin/python -c "
import sqlite3, sys
with sqlite3.connect(sys.argv[1]) as src, sqlite3.connect(sys.argv[2]) as dst:
    src.backup(dst)
" runs/deeprelax/teacher_train.db "$FROZEN"
.venv/bin/ase-cartnet train deeprelax --init "$STAGE1" \
  --db "$FROZEN" runs/deeprelax/train_synthetic.db --limit "${LIMIT:-3000}" \
  --out runs/deeprelax/finetune --replicates 5 --epochs "${EPOCHS:-12}" --batch-size 32 \
  --lr 1e-3 --threads 1 --no-progress
