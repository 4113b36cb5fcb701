"""Which universal potential should label CartNet's training data? Each candidate teacher against
DFT harmonic ADPs, per CPU-second.

For every dynamically stable phonopy example of ../shared/data (DFT force sets) and every teacher:
relax the DFT structure with the teacher (positions and cell, symmetry kept), compute its force
constants through phonon_ref twice — with the DFT's own supercell matrix (like for like) and with
phonon_ref's defaults (the training-data settings) — and compare U at 100, 300 and 600 K with the
DFT's (MAE, S12, IoU over all atoms). CPU seconds (process time, one thread) are those of the
relaxation and the default-settings force constants, the cost of one training label.

The fraction of structures a teacher leaves dynamically stable is read from teacher databases
(``--stable-db NAME=PATH``, ``phonon_ref.build_dataset`` outputs) over the source ids they share.

    .venv/bin/python benchmarks/teacher_vs_dft.py --teachers chgnet sevennet sevennet-l3i5 \
        --stable-db chgnet=runs/adp_default/train.db --stable-db sevennet=runs/adp_v7/train.db \
        --json benchmarks/results_teacher_vs_dft.json
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import torch

from ase_cartnet.adp import adp_metrics

TEMPERATURES = (100.0, 300.0, 600.0)
DFT_MESH = (15, 15, 15)


def dft_reference(name: str):
    """(phonopy object, PhononReference) of one DFT example."""
    from phonon_ref import PhononReference
    from phonon_ref.phonopy_examples import load_example

    phonon = load_example(name)
    ref = PhononReference.from_phonopy(phonon, mesh=DFT_MESH, progress=False, on_imaginary="ignore")
    return phonon, ref


def teacher_row(name: str, teacher: str, phonon, dft_ref) -> dict:
    """One (material, teacher) row: metrics against DFT for both supercell choices, stability,
    CPU seconds."""
    from phonon_ref import PhononReference
    from phonon_ref.relax import relax

    u_dft = dft_ref.adps(list(TEMPERATURES))
    row: dict = {"material": name, "teacher": teacher, "atoms": len(dft_ref.atoms)}
    cpu0 = time.process_time()
    rel = relax(dft_ref.atoms, teacher)
    row["relax_steps"] = rel.steps
    row["relax_converged"] = rel.converged
    cpu_relax = time.process_time() - cpu0
    for column, kwargs in (
        ("dft_supercell", {"supercell": np.asarray(phonon.supercell_matrix), "mesh": DFT_MESH}),
        ("defaults", {}),
    ):
        cpu1 = time.process_time()
        ref = PhononReference(
            rel.atoms, calculator=teacher, progress=False, on_imaginary="ignore", **kwargs
        )
        result = ref.run(list(TEMPERATURES))
        cpu = time.process_time() - cpu1
        entry = {"stable": bool(result.is_stable), "min_frequency": float(result.min_frequency)}
        if result.is_stable:
            entry.update(
                adp_metrics(np.concatenate(list(result.u_cart)), np.concatenate(list(u_dft)))
            )
        if column == "defaults":
            row["cpu_seconds"] = cpu_relax + cpu
            entry["force_calls"] = ref.n_force_calls
        row[column] = entry
    return row


def stable_fractions(specs: list[str]) -> dict:
    """{teacher: {"stable": k, "of": n}} over the source ids every database has finished."""
    from ase.db import connect

    status: dict[str, dict[str, str]] = {}
    for spec in specs:
        teacher, _, path = spec.partition("=")
        with connect(path) as db:
            status[teacher] = {
                r.source_id: r.status
                for r in db.select(include_data=False)
                if r.get("status") in ("ok", "unstable")
            }
    common = set.intersection(*(set(s) for s in status.values())) if status else set()
    return {
        t: {"stable": sum(s[i] == "ok" for i in common), "of": len(common)}
        for t, s in status.items()
    }


def summarise(rows: list[dict], teachers: list[str], column: str) -> dict:
    """Means over every atom-temperature of the materials the teacher leaves stable (each
    material weighted by its atoms) and the mean CPU seconds per structure."""
    out = {}
    for teacher in teachers:
        mine = [r for r in rows if r["teacher"] == teacher]
        ok = [r for r in mine if r[column]["stable"]]
        weights = [r["atoms"] for r in ok]

        def pooled(key: str, ok=ok, weights=weights) -> float:
            values = [r[column][key] for r in ok]
            return float(np.average(values, weights=weights)) if ok else float("nan")

        out[teacher] = {
            "materials_stable": len(ok),
            "materials": len(mine),
            "mae": pooled("mae"),
            "s12": pooled("s12"),
            "iou": pooled("iou"),
            "cpu_seconds_per_structure": float(np.mean([r["cpu_seconds"] for r in mine])),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teachers", nargs="+", default=["chgnet", "sevennet", "sevennet-l3i5"])
    parser.add_argument("--materials", nargs="*", default=None, help="default: every stable one")
    parser.add_argument("--stable-db", action="append", default=[], help="TEACHER=PATH")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    from phonon_ref.phonopy_examples import example_names

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    names = args.materials or example_names(stable=True)
    rows = []
    for name in names:
        phonon, dft_ref = dft_reference(name)
        for teacher in args.teachers:
            row = teacher_row(name, teacher, phonon, dft_ref)
            rows.append(row)
            shown = ", ".join(
                f"{c}: " + (f"IoU {row[c]['iou']:.1f} %" if row[c]["stable"] else "unstable")
                for c in ("dft_supercell", "defaults")
            )
            print(f"{name:14s} {teacher:16s} {shown}, {row['cpu_seconds']:.1f} CPU s", flush=True)
            if args.json:  # after every row, so that an interrupted run keeps what it measured
                with open(args.json, "w") as handle:
                    json.dump({"rows": rows, "complete": False}, handle, indent=1)
    results = {
        "temperatures": TEMPERATURES,
        "rows": rows,
        "dft_supercell": summarise(rows, args.teachers, "dft_supercell"),
        "defaults": summarise(rows, args.teachers, "defaults"),
        "stable_fraction": stable_fractions(args.stable_db),
        "complete": True,
    }
    print("\nteacher            like-for-like IoU / S12     defaults IoU / S12    CPU s/structure")
    for t in args.teachers:
        a, b = results["dft_supercell"][t], results["defaults"][t]
        print(
            f"{t:16s} {a['iou']:6.1f} % / {a['s12']:5.2f} % ({a['materials_stable']}/"
            f"{a['materials']})   {b['iou']:6.1f} % / {b['s12']:5.2f} %   "
            f"{b['cpu_seconds_per_structure']:8.1f}"
        )
    for t, f in results["stable_fraction"].items():
        print(f"stable under {t}: {f['stable']} of {f['of']} shared candidates")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
