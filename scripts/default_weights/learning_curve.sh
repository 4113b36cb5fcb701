#!/usr/bin/env bash
# Learning curve of the v7 recipe (v6 weights fine-tuned on SevenNet-0 labels, 25 epochs): train
# on the first N stable structures of the v7 training database (one core each, CPU), evaluate
# on the held-out test database, and plot held-out IoU against N with the full run's point
# (551 training structures: the GPU run's 612 stable minus its 10 % validation split).
#   bash scripts/default_weights/learning_curve.sh      (after the v7 databases are in runs/adp_v7)
set -euo pipefail
cd "$(dirname "$0")/../.."
RUN=runs/adp_v7/curve
mkdir -p "$RUN"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# v6, the weights the v7 recipe starts from (the shipped file is trained on all labels)
bash scripts/default_weights/v6_weights.sh "$RUN"
for n in ${SIZES:-100 200 400}; do
    [ -f "$RUN/n$n.db" ] || .venv/bin/python -c "
import sys
from ase.db import connect
src, dst, n = connect(sys.argv[1]), connect(sys.argv[2]), int(sys.argv[3])
for k, row in enumerate(src.select(status='ok', sort='id')):
    if k == n:
        break
    dst.write(row.toatoms(), key_value_pairs=row.key_value_pairs, data=row.data)
" runs/adp_v7/train.db "$RUN/n$n.db" "$n"
    grep -q "^best epoch" "$RUN/n$n.log" 2>/dev/null ||
        .venv/bin/python -W ignore -m ase_cartnet.cli train cartnet --db "$RUN/n$n.db" \
            --out "$RUN/n$n" --head harmonic --dim 256 --batch-size 32 --loss l1 --select iou \
            --threads 1 --epochs 25 --lr 3e-4 --init "$RUN/v6_weights.pt" \
            > "$RUN/n$n.log" 2>&1
done
# the later points (all labels, two seeds) come from the reports of more_labels.sh runs
.venv/bin/python -m benchmarks.learning_curve --test-db runs/adp_v7/test.db \
    --run 100="$RUN/n100/best.pt" --run 200="$RUN/n200/best.pt" --run 400="$RUN/n400/best.pt" \
    --run 551=runs/adp_v7/finetune.best.pt \
    --report 551=benchmarks/results_cartnet_v7.json \
    --report 804=benchmarks/results_more_labels_seed0.json \
    --report 804=benchmarks/results_more_labels_seed1.json \
    --report 1425=benchmarks/results_stiff_labels_seed0.json \
    --report 1425=benchmarks/results_stiff_labels_seed1.json \
    --report 1921=benchmarks/results_all_labels_seed0.json \
    --report 1921=benchmarks/results_all_labels_seed1.json \
    --png docs/learning_curve_v7.png --json benchmarks/results_learning_curve_v7.json
