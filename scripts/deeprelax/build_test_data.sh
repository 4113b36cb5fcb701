#!/bin/bash
# Held-out synthetic pairs for scripts/deeprelax/export_weights.py and benchmarks/eval_deeprelax.py
set -e
cd "$(dirname "$0")/../.."
OMP_NUM_THREADS=1 .venv/bin/python - <<'PY'
from ase_cartnet.train.deeprelax_data import build_synthetic_db

data = "../shared/data"
build_synthetic_db(f"{data}/mp_20/test.csv.gz", "runs/deeprelax/test_synthetic.db", seed=1, limit=500)
build_synthetic_db(f"{data}/perov_5/test.csv.gz", "runs/deeprelax/perov5_test_synthetic.db", seed=1, limit=200)
build_synthetic_db(f"{data}/carbon_24/test.csv.gz", "runs/deeprelax/carbon24_test_synthetic.db", seed=1, limit=200)
PY
