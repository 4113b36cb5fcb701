#!/bin/bash
# Train the shipped DeepRelax ensemble (resumable per replicate: rerun after an interruption).
# Then: .venv/bin/python scripts/deeprelax/export_weights.py
set -e
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
.venv/bin/ase-cartnet train deeprelax --synthetic-from ../shared/data/mp_20/val.csv.gz \
  --db runs/deeprelax/train_synthetic.db --out runs/deeprelax/ensemble --replicates 5 \
  --epochs 4 --batch-size 32 --lr 2e-3 --hidden 64 --layers 2 --rbf 32 --pcoe-dim 32 \
  --max-neighbours 16 --threads 1 --no-progress
