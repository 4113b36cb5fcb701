#!/bin/bash
# Train the shipped DeepRelax ensemble (resumable per replicate: rerun after an interruption).
# Needs the teacher pairs (scripts/deeprelax/build_teacher_pairs.sh); writes the synthetic pairs
# (2,500 MP-20 val structures, strained and rattled) first. About 20 CPU-minutes per replicate.
# Several processes can share the ensemble: FIRST=2 REPLICATES=1 bash scripts/deeprelax/train.sh
# trains replicate 2 alone (same seed and validation split as in one run).
# Then: .venv/bin/python scripts/deeprelax/export_weights.py
set -e
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
[ -f runs/deeprelax/train_synthetic.db ] || .venv/bin/python -c "
from ase_cartnet.train.deeprelax_data import build_synthetic_db
build_synthetic_db('../shared/data/mp_20/val.csv.gz', 'runs/deeprelax/train_synthetic.db', seed=0, limit=2500)
"
.venv/bin/ase-cartnet train deeprelax \
  --db runs/deeprelax/teacher_train.db runs/deeprelax/train_synthetic.db \
  --out runs/deeprelax/ensemble --replicates "${REPLICATES:-3}" --first-replicate "${FIRST:-0}" \
  --epochs 30 --batch-size 16 \
  --hidden 128 --layers 3 --rbf 64 --pcoe-dim 64 --max-neighbours 24 --disp-cutoff 6.0 \
  --frames-per-pair 0 --threads 1 --no-progress
