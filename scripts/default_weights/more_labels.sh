#!/bin/bash
# The v7 recipe on every stable SevenNet-0 row the training database holds now (v6 weights
# fine-tuned 25 epochs, lr 3e-4, one validation split), two seeds side by side, then both on
# the held-out set and the DFT phonopy examples: the next point of the learning curve; then the
# weight mean of the seeds, evaluated the same way (with the same-process speed test).
#   RUN=runs/v8b bash scripts/default_weights/more_labels.sh   (RUN: a fresh folder per data point;
#   its train.db is a fixed copy of runs/adp_v7/train.db taken at the first call)
# SEEDS (default "0 1") picks the seeds; EXTRA adds training options to the recipe, e.g.
#   RUN=runs/v10ctx SEEDS=0 EXTRA=--structure-context bash scripts/default_weights/more_labels.sh
set -e
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
RUN=${RUN:-runs/v8b}
mkdir -p "$RUN"
bash scripts/default_weights/v6_weights.sh "$RUN"
# a fixed copy: the generation may still be writing to runs/adp_v7/train.db
[ -f "$RUN/train.db" ] || .venv/bin/python -c "
import sqlite3, sys
with sqlite3.connect(sys.argv[1]) as src, sqlite3.connect(sys.argv[2]) as dst:
    src.backup(dst)
" runs/adp_v7/train.db "$RUN/train.db"
for seed in ${SEEDS:-0 1}; do
    .venv/bin/python -W ignore -m ase_cartnet.cli train cartnet --db "$RUN/train.db" \
        --out "$RUN/seed$seed" --head harmonic --dim 256 --batch-size 32 --loss l1 --select iou \
        --threads 1 --epochs 25 --lr 3e-4 --init "$RUN/v6_weights.pt" --seed "$seed" \
        --split-seed 0 ${EXTRA:-} > "$RUN/seed$seed.log" 2>&1 &
done
wait
for seed in ${SEEDS:-0 1}; do
    PYTHONPATH=. .venv/bin/python -W ignore benchmarks/eval_cartnet_default.py \
        --train-db "$RUN/train.db" --test-db runs/adp_v7/test.db --model "$RUN/seed$seed/best.pt" \
        --json "$RUN/eval_seed$seed.json" --speed-structures 0 > "$RUN/eval_seed$seed.log" 2>&1 &
done
wait
# the weight mean of the seeds (ase-cartnet train average), evaluated like each of them
runs=(); for seed in ${SEEDS:-0 1}; do runs+=("$RUN/seed$seed/best.pt"); done
if [ "${#runs[@]}" -gt 1 ]; then
    .venv/bin/ase-cartnet train average "${runs[@]}" --out "$RUN/average.pt"
    PYTHONPATH=. .venv/bin/python -W ignore benchmarks/eval_cartnet_default.py \
        --train-db "$RUN/train.db" --test-db runs/adp_v7/test.db --model "$RUN/average.pt" \
        --json "$RUN/eval_average.json" --speed-structures 6 > "$RUN/eval_average.log" 2>&1
fi
