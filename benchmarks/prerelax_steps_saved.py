"""Whether the DeepRelax pre-relaxer saves teacher work: teacher steps and time to relax held-out
teacher pairs from the unrelaxed structure vs from the DeepRelax prediction.

For every pair of a teacher database (:mod:`ase_cartnet.train.deeprelax_teacher`; the unrelaxed
structure is a prototype substitution), in one process, on one thread:

* **from unrelaxed** — ``BFGS(FrechetCellFilter(atoms))`` with the teacher (CHGNet) to ``fmax``
  (default 0.05 eV/Å, no symmetry constraint), counting force calls (BFGS steps + 1) and time;
* **DeepRelax** — the shipped (or given) ensemble predicts all structures in batches (model +
  EDG solver, timed), then the same BFGS runs from each prediction;
* **DeepRelax if trusted** — the workflow the adapter suggests: start from the prediction only
  when its global uncertainty is below the model card's threshold, else from the unrelaxed input
  (each pair's cost is taken from the two runs above).

Prints force calls (mean, median), the fraction saved (1 − total calls from the prediction /
total from unrelaxed), wall times, DeepRelax's time per structure and its speed-up over the
teacher's own relaxation, and the final energies' agreement (meV/atom: both starts should reach
the same minimum).

    .venv/bin/python benchmarks/prerelax_steps_saved.py --pairs runs/deeprelax/teacher_test.db \\
        --limit 60 --json benchmarks/results_prerelax_steps_saved.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def teacher_relax(atoms, calc, fmax: float, max_steps: int) -> dict[str, float]:
    """Force calls, seconds, converged, final energy per atom of BFGS + FrechetCellFilter."""
    from phonon_ref.relax import relax

    result = relax(atoms, calc, fmax=fmax, max_steps=max_steps, fix_symmetry=False)
    return {
        "force_calls": result.steps + 1,  # BFGS: one force call per step plus the first
        "seconds": result.seconds,
        "converged": result.converged,
        "energy_per_atom": result.energy / len(atoms),
    }


def summarise(runs: list[dict[str, float]]) -> dict[str, float]:
    calls = np.array([r["force_calls"] for r in runs], dtype=float)
    return {
        "force_calls_total": float(calls.sum()),
        "force_calls_mean": float(calls.mean()),
        "force_calls_median": float(np.median(calls)),
        "seconds_total": float(sum(r["seconds"] for r in runs)),
        "converged_fraction": float(np.mean([r["converged"] for r in runs])),
    }


VARIANTS = {
    "DeepRelax": {"symmetrize": False},
    "DeepRelax, symmetrized": {"symmetrize": True},
    "DeepRelax lattice only, symmetrized": {"symmetrize": True, "steps": 0},
}
"""Prediction variants (keyword arguments of ``predict``): the paper's output; with the input's
space group imposed; and the predicted lattice with the input's fractional coordinates (no
solver steps), symmetrized."""


def measure(pairs, ensemble, metadata, calc, fmax, max_steps, batch_size) -> dict:
    from ase_cartnet.calculators.deeprelax import predict

    inputs = [p.initial for p in pairs]
    threshold = metadata.get("uncertainty_threshold")
    predict(ensemble, inputs[:batch_size], batch_size=batch_size)  # warm-up
    predictions, seconds = {}, {}
    for name, options in VARIANTS.items():
        started = time.perf_counter()
        predictions[name] = predict(
            ensemble, inputs, batch_size=batch_size, threshold=threshold, **options
        )
        seconds[name] = time.perf_counter() - started
    runs: dict[str, list[dict]] = {"from unrelaxed": []} | {name: [] for name in VARIANTS}
    for k, pair in enumerate(pairs):
        runs["from unrelaxed"].append(teacher_relax(pair.initial, calc, fmax, max_steps))
        for name in VARIANTS:
            runs[name].append(teacher_relax(predictions[name][k].atoms, calc, fmax, max_steps))
        calls = " → ".join(str(runs[n][-1]["force_calls"]) for n in runs)
        print(
            f"{k + 1}/{len(pairs)} {pair.key} ({len(pair.initial)} atoms): {calls}", file=sys.stderr
        )
    base_runs = runs["from unrelaxed"]
    for name in VARIANTS:
        trusted = [bool(p.uncertainty.trusted) for p in predictions[name]]
        runs[f"{name} if trusted"] = [
            m if t else i for i, m, t in zip(base_runs, runs[name], trusted, strict=True)
        ]
    report = {
        "n_pairs": len(pairs),
        "n_atoms_max": max(len(p.initial) for p in pairs),
        "fmax": fmax,
        "batch_size": batch_size,
        "trusted_fraction": float(
            np.mean([p.uncertainty.trusted for p in predictions["DeepRelax"]])
        ),
        "deeprelax_seconds_per_structure": {n: seconds[n] / len(pairs) for n in VARIANTS},
        "starts": {name: summarise(r) for name, r in runs.items()},
    }
    base = report["starts"]["from unrelaxed"]
    for name, rows in runs.items():
        if name == "from unrelaxed":
            continue
        row = report["starts"][name]
        row["force_calls_saved"] = 1.0 - row["force_calls_total"] / base["force_calls_total"]
        per_pair = [
            1.0 - m["force_calls"] / i["force_calls"] for i, m in zip(base_runs, rows, strict=True)
        ]
        row["force_calls_saved_median_per_pair"] = float(np.median(per_pair))
        row["seconds_saved"] = 1.0 - row["seconds_total"] / base["seconds_total"]
        delta = np.array(
            [
                m["energy_per_atom"] - i["energy_per_atom"]
                for i, m in zip(base_runs, rows, strict=True)
            ]
        )
        row["final_energy_vs_unrelaxed_start_mev_per_atom"] = {
            "median_abs": float(1000 * np.median(np.abs(delta))),
            "within_5_mev": float(np.mean(np.abs(delta) < 5e-3)),
            "lower_by_5_mev": float(np.mean(delta < -5e-3)),
            "higher_by_5_mev": float(np.mean(delta > 5e-3)),
        }
    report["speedup_vs_teacher_relaxation"] = base["seconds_total"] / seconds["DeepRelax"]
    return report


def format_report(report: dict) -> str:
    lines = [
        f"Teacher relaxations to fmax {report['fmax']} eV/Å, {report['n_pairs']} held-out pairs "
        f"(≤ {report['n_atoms_max']} atoms)",
        "",
        "| start | force calls, mean | median | total | saved | teacher time (s) | converged | "
        "same minimum (±5 meV/atom) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in report["starts"].items():
        saved = f"{100 * r['force_calls_saved']:.0f} %" if "force_calls_saved" in r else "—"
        energy = r.get("final_energy_vs_unrelaxed_start_mev_per_atom")
        same = f"{100 * energy['within_5_mev']:.0f} %" if energy else "—"
        lines.append(
            f"| {name} | {r['force_calls_mean']:.1f} | {r['force_calls_median']:.0f} | "
            f"{r['force_calls_total']:.0f} | {saved} | {r['seconds_total']:.1f} | "
            f"{100 * r['converged_fraction']:.0f} % | {same} |"
        )
    per = report["deeprelax_seconds_per_structure"]
    lines += [
        "",
        f"DeepRelax (model + solver, batches of {report['batch_size']}): "
        + ", ".join(f"{name} {1000 * t:.0f} ms" for name, t in per.items())
        + f" per structure; the teacher's own relaxation from the unrelaxed input takes "
        f"{report['speedup_vs_teacher_relaxation']:.0f}× longer; trusted "
        f"{100 * report['trusted_fraction']:.0f} %.",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    from ase_cartnet.calculators.deeprelax import load_deeprelax
    from ase_cartnet.train.deeprelax_data import pairs_from_db
    from phonon_ref.calculators import get_calculator

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", default="runs/deeprelax/teacher_test.db")
    parser.add_argument("--model", default=None, help="checkpoint (default: shipped ensemble)")
    parser.add_argument("--calculator", default="chgnet")
    parser.add_argument("--limit", type=int, default=60)
    parser.add_argument("--fmax", type=float, default=0.05, help="eV/Å")
    parser.add_argument("--max-steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--json", help="write the report here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    pairs = pairs_from_db(args.pairs, limit=args.limit)
    ensemble, metadata = load_deeprelax(args.model)
    calc = get_calculator(args.calculator)
    report = measure(pairs, ensemble, metadata, calc, args.fmax, args.max_steps, args.batch_size)
    report["model"] = args.model or "shipped ensemble"
    report["pairs"] = str(args.pairs)
    print(format_report(report))
    if args.json:
        from ase_cartnet.io.atomic import atomic_write

        with atomic_write(Path(args.json)) as handle:
            json.dump(report, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
