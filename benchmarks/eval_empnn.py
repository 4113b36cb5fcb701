"""Table 2 of the EMPNN paper on our models: lattice denoising on the MP-20, Carbon-24 and Perov-5
test splits (../shared/data), beside the paper's numbers.

Every test structure is deformed once, ρ̃ = exp(A) ρ with symmetrised A ~ N(0, σ²) (the same
draw for every model, seeded), and each model returns a lattice. Metrics (eqns 11–12): the mean
absolute error of the lengths (Å) and angles (°) against the original lattice, for the noisy and
the denoised cells, and the improvement = noisy − denoised (higher is better), plus the share of
structures whose length error went down.

    .venv/bin/python benchmarks/eval_empnn.py --data-dir ../shared/data \\
        --model ketbra=runs/empnn/ketbra/best.pt --model ff=runs/empnn/ff/best.pt \\
        [--limit 1000] [--sigma 0.1] [--json runs/empnn/eval.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ase_cartnet.io.checkpoint import load_model
from ase_cartnet.train.empnn_data import load_split
from ase_cartnet.train.empnn_task import evaluate_batches, noisy_batches

DATASETS = ("carbon_24", "mp_20", "perov_5")
PAPER = {  # Table 2: (lengths Å, angles °) improvements
    "EMPNN |•⟩⟨•| ⊆ Γ1 (edge ket-bra)": {
        "carbon_24": (0.084, 1.266),
        "mp_20": (0.115, 1.437),
        "perov_5": (0.290, 5.487),
    },
    "EMPNN |γ⟩⟨γ| ⊆ Γ2 (triplet ket-bra)": {
        "carbon_24": (0.056, 0.596),
        "mp_20": (0.053, 0.283),
        "perov_5": (0.287, 5.209),
    },
    "FF": {"carbon_24": (-0.191, -5.277), "mp_20": (-0.304, -3.304), "perov_5": (0.303, 6.438)},
    "DFT (VASP)": {
        "carbon_24": (0.164, 5.442),
        "mp_20": (0.345, 5.648),
        "perov_5": (0.150, -1.446),
    },
}


def evaluate(model, batches) -> dict[str, float]:
    started = time.perf_counter()
    result = evaluate_batches(model, batches, details=True)
    seconds = time.perf_counter() - started
    return {**result, "ms_per_structure": 1e3 * seconds / max(result["n"], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--model", action="append", required=True, help="name=checkpoint")
    parser.add_argument("--limit", type=int, default=1000, help="test structures per dataset")
    parser.add_argument("--sigma", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=2023)
    parser.add_argument("--cache", default="runs/empnn/cache")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    models = {}
    for item in args.model:
        name, _, path = item.partition("=")
        models[name] = load_model(path, "empnn").model
    ks = {m.config.k for m in models.values()}
    if len(ks) != 1:
        raise SystemExit(f"models use different kNN graphs (k = {sorted(ks)})")
    k = ks.pop()

    results: dict[str, dict[str, dict[str, float]]] = {}
    for dataset in DATASETS:
        crystals = load_split(
            args.data_dir, dataset, "test", limit=args.limit, seed=0, cache_dir=args.cache
        )
        batches = noisy_batches(crystals, args.sigma, k, True, args.seed, args.batch_size)
        results[dataset] = {name: evaluate(model, batches) for name, model in models.items()}
        print(f"{dataset}: done ({len(crystals)} test structures)", flush=True)

    print(
        f"\nLattice denoising, test splits ({args.limit} structures each at most), "
        f"σ = {args.sigma} (symmetrised A), seed {args.seed}"
    )
    print(
        "improvement = noisy error − denoised error (Å for lengths, ° for angles; higher is better)"
    )
    header = "| model | " + " | ".join(f"{d} lengths | {d} angles" for d in DATASETS) + " |"
    print(header)
    print("|" + "---|" * (1 + 2 * len(DATASETS)))
    any_name = next(iter(models))
    print(
        "| noisy error (ours) | "
        + " | ".join(
            f"{results[d][any_name]['length_noisy']:.3f} | "
            f"{results[d][any_name]['angle_noisy']:.3f}"
            for d in DATASETS
        )
        + " |"
    )
    for name in models:
        print(
            f"| {name} (ours) | "
            + " | ".join(
                f"{results[d][name]['length_improvement']:.3f} | "
                f"{results[d][name]['angle_improvement']:.3f}"
                for d in DATASETS
            )
            + " |"
        )
    for name, row in PAPER.items():
        print(
            f"| {name} (paper) | "
            + " | ".join(f"{row[d][0]:.3f} | {row[d][1]:.3f}" for d in DATASETS)
            + " |"
        )
    print("\nshare of structures with a lower length error, and model time per structure:")
    for name in models:
        print(
            f"  {name}: "
            + ", ".join(
                f"{d} {100 * results[d][name]['improved_fraction']:.1f} % "
                f"({results[d][name]['ms_per_structure']:.1f} ms)"
                for d in DATASETS
            )
        )
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = {"sigma": args.sigma, "seed": args.seed, "limit": args.limit, "results": results}
        out.write_text(json.dumps(payload, indent=1) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
