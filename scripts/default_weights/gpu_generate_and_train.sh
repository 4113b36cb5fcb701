#!/usr/bin/env bash
# One GPU session for the default CartNet weights: SevenNet-0 teacher labels for the training and
# held-out candidates (phonon_ref.dataset, worker processes sharing the GPU), then the candidate
# trainings side by side on the GPU, each with the project's `ase-cartnet train cartnet` command.
# Time-boxed: generation stops after GEN_SECONDS (finished rows are committed one transaction each,
# so the databases resume later anywhere); each training stops after TRAIN_SECONDS at the latest
# (best.pt holds its best validated epoch; last.pt resumes it anywhere).
#   OUT=results GEN_SECONDS=320 bash scripts/default_weights/gpu_generate_and_train.sh
# Wheels of missing packages may lie in .whl/ (installed into /tmp/site first); the candidate CSVs
# are runs/adp_default/{train,test}.csv.gz (select_structures.py).
set -u
cd "$(dirname "$0")/../.."
RESULTS="${OUT:-runs/gpu}"
RUN="${RUN:-runs/v7_gpu}"
PY="${PY:-python3}"
DEVICE="${DEVICE:-cuda}"
GEN_SECONDS="${GEN_SECONDS:-320}"
TEST_WORKERS="${TEST_WORKERS:-4}"
TRAIN_WORKERS="${TRAIN_WORKERS:-11}"
TRAIN_SECONDS="${TRAIN_SECONDS:-210}"
EPOCHS="${EPOCHS:-80}"
FT_EPOCHS="${FT_EPOCHS:-40}"
LIMIT="${LIMIT:-}"
mkdir -p "$RESULTS" "$RUN"
WHEELS="${WHEELS:-.whl}"
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$WHEELS"/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$PWD"
else
    export PYTHONPATH="$PWD"
fi
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1
"$PY" -c "import torch, sevenn, phonopy, ase; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'sevenn', sevenn.__version__, 'phonopy', phonopy.__version__, 'ase', ase.__version__)"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv 2>/dev/null || true
TEMPS="20 50 100 150 200 300 400 600 800"
# timeout signals its whole process group, so the pools' spawned workers stop with it
generate() {  # split workers
    timeout -k 5 "$GEN_SECONDS" "$PY" -W ignore -m phonon_ref.dataset \
        "runs/adp_default/$1.csv.gz" -o "$RUN/$1.db" --calculator sevennet --device "$DEVICE" \
        -T $TEMPS --workers "$2" --pool process --no-progress ${LIMIT:+--limit $LIMIT} \
        > "$RUN/gen_$1.log" 2>&1
}
date +%T
generate test "$TEST_WORKERS" &
generate train "$TRAIN_WORKERS" &
wait
date +%T
for split in train test; do gzip -c "$RUN/$split.db" > "$RESULTS/$split.db.gz"; done
"$PY" - "$RUN" <<'PY'
import sys
from ase.db import connect
for split in ("train", "test"):
    with connect(f"{sys.argv[1]}/{split}.db") as db:
        rows = list(db.select(include_data=False))
        counts = {s: sum(r.status == s for r in rows) for s in ("ok", "unstable", "failed")}
        print(split, len(rows), counts)
PY
# the candidates side by side: SevenNet labels only (main, second seed, no-direction ablation),
# and the CHGNet-trained v6 weights fine-tuned on the SevenNet labels
RECIPE="--head harmonic --dim 256 --batch-size 32 --loss l1 --select iou --threads 2 --device $DEVICE"
train() {  # name, options
    local name=$1; shift
    timeout -k 5 "$TRAIN_SECONDS" "$PY" -W ignore -m ase_cartnet.cli train cartnet \
        --db "$RUN/train.db" --out "$RUN/$name" $RECIPE "$@" > "$RUN/$name.log" 2>&1
}
train main --epochs "$EPOCHS" &
train seed1 --epochs "$EPOCHS" --seed 1 --split-seed 0 &
train nodir --epochs "$EPOCHS" --no-direction &
train finetune --epochs "$FT_EPOCHS" --lr 3e-4 --init ase_cartnet/weights/cartnet_adp_default.pt &
wait
date +%T
for name in main seed1 nodir finetune; do
    [ -f "$RUN/$name/best.pt" ] && cp "$RUN/$name/best.pt" "$RESULTS/$name.best.pt"
done
tar czf "$RESULTS/logs.tgz" "$RUN"/*.log "$RUN"/*/history.json 2>/dev/null
ls -la "$RESULTS"
