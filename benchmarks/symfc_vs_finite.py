"""Cheaper teacher labels: symfc's fit to random-displacement supercells against phonopy's finite
displacements, on teacher-relaxed structures of a training database.

For each stable row of ``--db`` (a ``phonon_ref.build_dataset`` output: the structure is already
relaxed by the teacher), both methods compute force constants with the same teacher, supercell and
mesh (phonon_ref's defaults), and the ADPs at ``--temperatures`` are compared per atom: the largest
relative U_eq difference, the voxel IoU and S12 of symfc against finite displacements, and the
force calls each method needed. Rows are taken from the most displacements down (the cells where
symfc can save most), or in database order with ``--order db``.

    .venv/bin/python benchmarks/symfc_vs_finite.py --db runs/adp_v7/train.db --teacher sevennet \
        -n 24 --json benchmarks/results_symfc_vs_finite.json
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

from ase_cartnet.adp import iou, s12, u_equiv

TEMPERATURES = (100.0, 300.0, 600.0)


def stable_rows(db_path: str, n: int, order: str):
    """(source_id, relaxed Atoms, finite-displacement force calls) of up to ``n`` stable rows."""
    from ase.db import connect

    with connect(db_path) as db:
        rows = [
            (r.source_id, r.toatoms(), int(r.data["n_force_calls"]))
            for r in db.select(status="ok", include_data=True)
        ]
    if order == "calls":
        rows.sort(key=lambda row: -row[2])
    return rows[:n]


def compare(atoms, teacher: str, calc, n_snapshots: int | None, distance: float) -> dict:
    """Both methods on one structure: their U, force calls and CPU seconds; the metrics."""
    from phonon_ref import PhononReference

    out: dict = {"formula": atoms.get_chemical_formula(), "atoms": len(atoms)}
    u = {}
    for method in ("finite", "symfc"):
        extra = {"n_snapshots": n_snapshots, "displacement": distance} if method == "symfc" else {}
        cpu0 = time.process_time()
        ref = PhononReference(
            atoms,
            calculator=calc,
            calculator_name=teacher,
            progress=False,
            on_imaginary="ignore",
            fc_method=method,
            **extra,
        )
        result = ref.run(list(TEMPERATURES))
        out[f"{method}_cpu_s"] = time.process_time() - cpu0
        out[f"{method}_force_calls"] = ref.n_force_calls
        out[f"{method}_stable"] = bool(result.is_stable)
        u[method] = np.asarray(result.u_cart).reshape(-1, 3, 3)
    if not (out["finite_stable"] and out["symfc_stable"]):
        return out
    ueq_f, ueq_s = u_equiv(u["finite"]), u_equiv(u["symfc"])
    out["max_rel_ueq"] = float(np.max(np.abs(ueq_s - ueq_f) / ueq_f))
    out["mean_iou"] = float(np.mean(iou(u["symfc"], u["finite"])))
    out["min_iou"] = float(np.min(iou(u["symfc"], u["finite"])))
    out["mean_s12"] = float(np.mean(s12(u["symfc"], u["finite"])))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="teacher ADP database (build_dataset)")
    parser.add_argument("--teacher", default="sevennet")
    parser.add_argument("-n", type=int, default=24, help="structures")
    parser.add_argument("--order", choices=("calls", "db"), default="calls")
    parser.add_argument("--n-snapshots", type=int, default=None, help="default: symfc's estimate")
    parser.add_argument("--symfc-displacement", type=float, default=0.01, help="Å")
    parser.add_argument("--json", help="write the rows and summary here")
    args = parser.parse_args(argv)

    import torch

    from phonon_ref.calculators import get_calculator

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    calc = get_calculator(args.teacher)
    rows = []
    for source_id, atoms, _ in stable_rows(args.db, args.n, args.order):
        row = {
            "source_id": source_id,
            **compare(atoms, args.teacher, calc, args.n_snapshots, args.symfc_displacement),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    both = [r for r in rows if "mean_iou" in r]
    summary = {
        "teacher": args.teacher,
        "symfc_displacement": args.symfc_displacement,
        "n_snapshots": args.n_snapshots or "auto",
        "structures": len(rows),
        "stable_with_both": len(both),
        "stability_disagreements": sum(r["finite_stable"] != r["symfc_stable"] for r in rows),
        "force_calls_finite": sum(r["finite_force_calls"] for r in rows),
        "force_calls_symfc": sum(r["symfc_force_calls"] for r in rows),
        "cpu_s_finite": sum(r["finite_cpu_s"] for r in rows),
        "cpu_s_symfc": sum(r["symfc_cpu_s"] for r in rows),
        "max_rel_ueq": max((r["max_rel_ueq"] for r in both), default=float("nan")),
        "median_max_rel_ueq": float(np.median([r["max_rel_ueq"] for r in both])) if both else None,
        "structures_ueq_within_1pct": sum(r["max_rel_ueq"] <= 0.01 for r in both),
        "mean_iou": float(np.mean([r["mean_iou"] for r in both])) if both else None,
        "min_iou": min((r["min_iou"] for r in both), default=float("nan")),
        "structures_iou_98": sum(r["min_iou"] >= 98.0 for r in both),
    }
    print(json.dumps(summary, indent=1))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"summary": summary, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
