#!/bin/bash
# The structure-context remedy for the size error, against its control: the shipped v7 weights
# fine-tuned 15 more epochs on the same SevenNet-0 labels, split and schedule, once with the
# whole-crystal pathway (--structure-context, zero-initialised) and once without; then both on
# the held-out set and the DFT phonopy examples. Two CPU cores: about an hour in all.
set -e
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PY=.venv/bin/python
COMMON="--db runs/adp_v7/train.db --head harmonic --dim 256 --batch-size 32 --loss l1 --select iou --epochs 15 --lr 3e-4 --init ase_cartnet/weights/cartnet_adp_default.pt --threads 1"
$PY -m ase_cartnet.cli train cartnet $COMMON --out runs/v8/ctx --structure-context
$PY -m ase_cartnet.cli train cartnet $COMMON --out runs/v8/plain
for arm in ctx plain; do
  PYTHONPATH=. $PY -W ignore benchmarks/eval_cartnet_default.py --train-db runs/adp_v7/train.db \
    --test-db runs/adp_v7/test.db --model runs/v8/$arm/best.pt --json runs/v8/eval_$arm.json \
    --speed-structures 0 > runs/v8/eval_$arm.log 2>&1
done
