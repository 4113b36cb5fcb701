"""Evaluate a CartNet ADP model (default: the embedded weights) on teacher, DFT and speed tests.

1. Held-out teacher test set (a ``phonon_ref.build_dataset`` database built from the *test*
   splits), all temperatures: MAE (Å²), S12 (%), IoU (%) over non-H atoms, with two baselines
   computed in the same run: a per-element, per-temperature isotropic mean of the training labels,
   and the same architecture trained without direction vectors (paper ablation 4). Also the
   model's predictions averaged over each structure's space group (``symmetrize=True``) and over
   ``--rotations`` test-time rotations.
2. DFT harmonic ADPs of the dynamically stable phonopy examples (../shared/data) at 100, 300 and
   600 K: the same metrics per material, pooled over the ten materials of the v7 issue (the
   test: ``DFT_TEN``) and over the examples of other compositions (the validation used to choose
   between candidates; Al-ABACUS left out, its reference is in bohr).
3. Speed: CartNet wall time per test structure against the teacher's phonon_ref time for the
   same structure, and the ratio: timed in this process on ``--speed-structures`` test structures
   spread over the cell sizes (the like-for-like figure), and against the times stored in the
   database rows over the whole test set (the generation run's: other processes shared the cores,
   and rows made before the force-only CHGNet calls spent about 2.6 times as long on forces).

    .venv/bin/python benchmarks/eval_cartnet_default.py --train-db runs/adp_default/train.db \
        --test-db runs/adp_default/test.db --ablation runs/adp_default/nodir/best.pt \
        [--model CKPT] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from ase_cartnet.adp import adp_metrics, u_equiv
from ase_cartnet.calculators.cartnet_adp import CartNetADP
from ase_cartnet.train.adp_data import ADPStructure, structures_from_db
from ase_cartnet.train.cartnet import cartnet_predictions

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DFT_TEMPERATURES = (100.0, 300.0, 600.0)
DFT_TEN = (
    "Al2O3", "Cr", "MgB2", "MgO", "NaCl", "SiO2-HP", "Si", "SnO2", "TiO2-anatase", "ZnO"
)  # fmt: skip
DFT_BROKEN = ("Al-ABACUS",)  # lengths in bohr: its DFT ADPs are wrong


def same_process_speed(
    calc: CartNetADP, structures: list[ADPStructure], n: int, teacher_name: str = "chgnet"
) -> dict:
    """Teacher ``teacher_name`` (relax + force constants + ADPs, phonon_ref's dataset pipeline, one
    thread) and CartNet (all temperatures of the structure in one call) timed on the same ``n``
    test structures in this process, interleaved: structures evenly spread over the test set
    ordered by cell size (smallest, largest and between), so the ratio is not that of the
    cheapest cells only. The teacher is loaded (and run once) before the timing starts. CartNet
    is timed one structure per call and all structures in one call (``ratio_batched``)."""
    from phonon_ref.dataset import DatasetSettings, process_structure
    from phonon_ref.grids import DEFAULT_MESH_LENGTH, DEFAULT_MIN_LENGTH
    from phonon_ref.harmonic import DEFAULT_FREQ_MIN, DEFAULT_IMAGINARY_TOL
    from phonon_ref.reference import DEFAULT_DISPLACEMENT
    from phonon_ref.relax import DEFAULT_FMAX, DEFAULT_MAX_STEPS

    by_size = np.argsort([len(s.atoms) for s in structures], kind="stable")
    picks = sorted(set(by_size[np.linspace(0, len(structures) - 1, n).round().astype(int)]))
    rows = []
    for k, i in enumerate(picks):
        s = structures[i]
        settings = DatasetSettings(
            calculator=teacher_name, temperatures=tuple(float(t) for t in s.temperatures),
            supercell=DEFAULT_MIN_LENGTH, mesh=DEFAULT_MESH_LENGTH, fmax=DEFAULT_FMAX,
            max_steps=DEFAULT_MAX_STEPS, displacement=DEFAULT_DISPLACEMENT, fix_symmetry=True,
            freq_min=DEFAULT_FREQ_MIN, imaginary_tol=DEFAULT_IMAGINARY_TOL,
            require_converged=True, n_threads=None,
        )  # fmt: skip
        if k == 0:  # warm-up: the teacher is loaded once
            process_structure(s.key, s.atoms, settings, 0)
        start = time.perf_counter()
        process_structure(s.key, s.atoms, settings, 0)
        teacher = time.perf_counter() - start
        model_runs = []
        for _ in range(5):  # the model call is short: the median of 5 against timer noise
            start = time.perf_counter()
            calc.predict_many([s.atoms] * len(s.temperatures), temperatures=list(s.temperatures))
            model_runs.append(time.perf_counter() - start)
        model = float(np.median(model_runs))
        rows.append(
            {"structure": s.key, "atoms": len(s.atoms), "teacher_s": teacher, "cartnet_s": model}
        )
    teacher_total = sum(r["teacher_s"] for r in rows)
    model_total = sum(r["cartnet_s"] for r in rows)
    # The same sweeps in one call, as a user screening many structures would make it.
    atoms = [structures[i].atoms for i in picks for _ in structures[i].temperatures]
    temperatures = [float(t) for i in picks for t in structures[i].temperatures]
    batched_runs = []
    for _ in range(5):
        start = time.perf_counter()
        calc.predict_many(atoms, temperatures=temperatures)
        batched_runs.append(time.perf_counter() - start)
    batched = float(np.median(batched_runs))
    return {
        "structures": rows,
        "ratio": teacher_total / model_total,
        "cartnet_batched_s": batched,
        "ratio_batched": teacher_total / batched,
    }


def test_teacher(db_path: str) -> str:
    """The teacher name stored in the rows of a ``phonon_ref.build_dataset`` database."""
    from ase.db import connect

    with connect(db_path) as db:
        return next(db.select(status="ok", limit=1)).teacher


def isotropic_mean_baseline(train: list[ADPStructure], test: list[ADPStructure]):
    """U = ⟨U_eq⟩(element, T)·I from the training labels (fallback: the element's mean over all
    temperatures scaled by T/⟨T⟩, then the mean over all atoms at that temperature)."""
    sums: dict[tuple[int, float], list[float]] = defaultdict(list)
    for s in train:
        for k, t in enumerate(s.temperatures):
            for z, ueq in zip(
                s.atoms.numbers[s.labelled], u_equiv(s.adps[k][s.labelled]), strict=True
            ):
                sums[(int(z), float(t))].append(float(ueq))
    table = {key: float(np.mean(v)) for key, v in sums.items()}
    by_t: dict[float, list[float]] = defaultdict(list)
    for (_, t), v in table.items():
        by_t[t].append(v)
    preds, targets = [], []
    for s in test:
        for k, t in enumerate(s.temperatures):
            for i in np.flatnonzero(s.labelled):
                key = (int(s.atoms.numbers[i]), float(t))
                value = table.get(key, float(np.mean(by_t.get(float(t), [np.nan]))))
                preds.append(value * np.eye(3))
                targets.append(s.adps[k][i])
    return np.array(preds), np.array(targets)


def per_source(pred, target, structures: list[ADPStructure]) -> dict[str, dict]:
    """The metrics per dataset of origin (the ``mp_20`` of ``mp_20:mp-123``), rows in the order
    :func:`cartnet_predictions` returns them."""
    sources = np.concatenate(
        [
            np.full(int(s.labelled.sum()) * len(s.temperatures), s.key.split(":")[0])
            for s in structures
        ]
    )
    return {
        str(src): {"structures": sum(s.key.split(":")[0] == src for s in structures),
                   **adp_metrics(pred[sources == src], target[sources == src])}
        for src in np.unique(sources)
    }  # fmt: skip


def size_and_shape_errors(pred, target, structures: list[ADPStructure]) -> dict:
    """Where the error lies: the metrics when the prediction keeps its shape but takes the
    target's size (tr U) and the other way round, and the spread of the log size ratio
    ln(tr U_pred / tr U_true), split into its between-structure part (each structure's mean over
    its atoms and temperatures) and the rest. Rows in :func:`cartnet_predictions`' order."""
    trace_p = np.trace(pred, axis1=1, axis2=2)[:, None, None]
    trace_t = np.trace(target, axis1=1, axis2=2)[:, None, None]
    owner = np.concatenate(
        [np.full(int(s.labelled.sum()) * len(s.temperatures), i) for i, s in enumerate(structures)]
    )
    log_ratio = np.log(trace_p.ravel() / trace_t.ravel())
    per_structure = np.bincount(owner, log_ratio) / np.bincount(owner)
    between = per_structure[owner]
    return {
        "true_size_predicted_shape": adp_metrics(pred / trace_p * trace_t, target),
        "true_shape_predicted_size": adp_metrics(target / trace_t * trace_p, target),
        "log_size_ratio_std": float(log_ratio.std()),
        "between_structure_variance_share": float(between.var() / log_ratio.var()),
        "per_structure_size_corrected": adp_metrics(pred * np.exp(-between)[:, None, None], target),
        "size_ratio_by_stiffness": size_ratio_by_stiffness(per_structure, structures),
    }


STIFFNESS_BINS = (0.0, 0.006, 0.01, 0.02, 0.05, np.inf)  # mean label U_eq at 300 K, Å²


def size_ratio_by_stiffness(log_ratio: np.ndarray, structures: list[ADPStructure]) -> list[dict]:
    """The geometric-mean size ratio tr U_pred / tr U_true of the structures in each bin of their
    mean label U_eq at 300 K (``STIFFNESS_BINS``): > 1 where the model predicts too soft. The
    shrinkage toward the training set's typical size shows as > 1 in the stiff bins."""
    u300 = np.array([
        u_equiv(s.adps[int(np.argmin(abs(s.temperatures - 300.0)))][s.labelled]).mean()
        for s in structures
    ])  # fmt: skip
    rows = []
    for low, high in zip(STIFFNESS_BINS[:-1], STIFFNESS_BINS[1:], strict=True):
        sel = (u300 >= low) & (u300 < high)
        ratio = float(np.exp(log_ratio[sel].mean())) if sel.any() else None
        upper = None if np.isinf(high) else high
        rows.append({"u_eq_300_from": low, "u_eq_300_to": upper, "structures": int(sel.sum()),
                     "size_ratio": ratio})  # fmt: skip
    return rows


def per_temperature(pred, target, temps) -> list[dict]:
    rows = []
    for t in np.unique(temps):
        sel = temps == t
        rows.append({"temperature": float(t), **adp_metrics(pred[sel], target[sel])})
    return rows


def dft_examples(calc: CartNetADP) -> list[dict]:
    from phonon_ref import PhononReference
    from phonon_ref.phonopy_examples import example_names, load_example

    rows = []
    for name in example_names(stable=True):
        phonon = load_example(name)
        ref = PhononReference.from_phonopy(
            phonon, mesh=(15, 15, 15), progress=False, on_imaginary="ignore"
        )
        atoms = ref.atoms
        u_ref = ref.adps(list(DFT_TEMPERATURES))
        u_pred = calc.predict_many([atoms] * 3, temperatures=list(DFT_TEMPERATURES))
        heavy = atoms.numbers != 1
        pred = np.concatenate([u[heavy] for u in u_pred])
        ref_u = np.concatenate([u[heavy] for u in u_ref])
        m = adp_metrics(pred, ref_u)
        # ellipsoid size predicted / DFT (geometric mean of tr U ratios): > 1 means too soft
        m["size_ratio"] = float(np.exp(np.mean(np.log(u_equiv(pred) / u_equiv(ref_u)))))
        m["dft_u_eq_300"] = float(u_equiv(u_ref[1][heavy]).mean())
        reduced = atoms.get_chemical_formula(empirical=True)
        rows.append({"material": name, "formula": atoms.get_chemical_formula(), **m,
                     "reduced_formula": reduced})  # fmt: skip
    return rows


def pooled(rows: list[dict]) -> dict:
    """MAE, S12, IoU over all atom-temperatures of ``rows`` (per-material means weighted by
    their atom-temperature counts), and the number of materials."""
    weights = np.array([r["n_atoms"] for r in rows], dtype=float)
    out = {
        k: float(np.dot([r[k] for r in rows], weights) / weights.sum())
        for k in ("mae", "s12", "iou")
    }
    return {**out, "materials": len(rows)}


def dft_groups(rows: list[dict]) -> dict:
    """The issue's ten materials (test) and the examples whose composition none of them shares
    (validation), each pooled."""
    ten = [r for r in rows if r["material"] in DFT_TEN]
    taken = {r["reduced_formula"] for r in ten}
    other = [
        r for r in rows
        if r["material"] not in DFT_BROKEN and r["reduced_formula"] not in taken
    ]  # fmt: skip
    return {"ten": pooled(ten), "other_compositions": pooled(other)}


def fmt(m: dict) -> str:
    return f"MAE {m['mae']:.2e} Å²  S12 {m['s12']:6.2f} %  IoU {m['iou']:6.2f} %"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint (default: embedded weights)")
    parser.add_argument("--ablation", default=None, help="no-direction checkpoint (baseline)")
    parser.add_argument("--train-db", required=True)
    parser.add_argument("--test-db", required=True)
    parser.add_argument("--skip-dft", action="store_true")
    parser.add_argument("--batch-size", type=int, default=32, help="samples per model call")
    parser.add_argument("--json", default=None, help="write all figures to this JSON file")
    parser.add_argument(
        "--rotations", type=int, default=8, help="also report test-time rotation averaging (K)"
    )
    parser.add_argument(
        "--speed-structures", type=int, default=5, help="teacher re-run in this process (0: none)"
    )
    parser.add_argument(
        "--teacher", default=None, help="teacher of the speed test (default: the test set's)"
    )
    args = parser.parse_args()
    # One thread for the model, as for the teacher: the speed ratio compares like with like (and
    # two threads on a two-core machine that is also running a generator oversubscribe it).
    torch.set_num_threads(1)
    # Test structures may hold elements the training set lacks; the calculator warns per call.
    warnings.filterwarnings("ignore", message="structure contains elements outside")

    train = structures_from_db(args.train_db)
    test = structures_from_db(args.test_db)
    calc = CartNetADP(checkpoint=args.model, max_neighbours=None, symmetrize=False)
    pred, target, temps, seconds = cartnet_predictions(calc, test, args.batch_size)
    n_samples = sum(len(s.temperatures) for s in test)
    results: dict = {
        "test_set": {"structures": len(test), "samples": n_samples, "atoms": int(len(pred))},
        "cartnet": adp_metrics(pred, target),
        "cartnet_per_temperature": per_temperature(pred, target, temps),
        "cartnet_per_source": per_source(pred, target, test),
        "cartnet_size_and_shape": size_and_shape_errors(pred, target, test),
    }
    if args.rotations > 1:
        averaged = CartNetADP(
            checkpoint=args.model,
            max_neighbours=None,
            rotations=args.rotations,
            symmetrize=False,
        )
        r_pred, r_target, _, r_seconds = cartnet_predictions(averaged, test, args.batch_size)
        results[f"cartnet_rotations_{args.rotations}"] = {
            **adp_metrics(r_pred, r_target),
            "s_per_structure": float(r_seconds),
        }
    symmetrized = CartNetADP(checkpoint=args.model, max_neighbours=None, symmetrize=True)
    s_pred, s_target, _, s_seconds = cartnet_predictions(symmetrized, test, args.batch_size)
    results["cartnet_symmetrized"] = {
        **adp_metrics(s_pred, s_target),
        "s_per_structure": float(s_seconds),
    }
    base_pred, base_target = isotropic_mean_baseline(train, test)
    results["baseline_isotropic_mean"] = adp_metrics(base_pred, base_target)
    results["baseline_isotropic_mean_per_source"] = per_source(base_pred, base_target, test)
    if args.ablation:
        ablation = CartNetADP(checkpoint=args.ablation, max_neighbours=None, symmetrize=False)
        a_pred, a_target, _, _ = cartnet_predictions(ablation, test)
        results["baseline_no_direction"] = adp_metrics(a_pred, a_target)
        results["baseline_no_direction_per_source"] = per_source(a_pred, a_target, test)

    from ase.db import connect

    teacher_seconds = {}
    with connect(args.test_db) as db:
        for row in db.select(status="ok"):
            teacher_seconds[str(row.source_id)] = float(row.data["timings"]["total"])
    teacher = np.array([teacher_seconds[s.key] for s in test])
    results["speed"] = {
        "cartnet_s_per_structure": float(seconds),
        "teacher_s_per_structure": float(np.mean(teacher)),
        "ratio": float(np.mean(teacher) / seconds),
        "note": f"CartNet: all temperatures of a structure, {args.batch_size} samples per call, "
        "1 thread; teacher: relax + force constants + ADPs with CHGNet (phonon_ref), 1 thread, "
        "the times stored by the generation run (see the module docstring)",
    }
    if args.speed_structures > 0:
        results["speed_same_process"] = same_process_speed(
            calc,
            test,
            args.speed_structures,
            teacher_name=args.teacher or test_teacher(args.test_db),
        )
    if not args.skip_dft:
        results["dft_phonopy_examples"] = dft_examples(calc)
        rows = results["dft_phonopy_examples"]
        results["dft_mean"] = {
            k: float(np.mean([r[k] for r in rows])) for k in ("mae", "s12", "iou")
        }
        results["dft_pooled"] = dft_groups(rows)

    print(
        f"held-out teacher test set: {len(test)} structures, {n_samples} (structure, T) "
        f"samples, {len(pred)} atom-temperatures"
    )
    print(f"  CartNet                      {fmt(results['cartnet'])}")
    key = f"cartnet_rotations_{args.rotations}"
    if key in results:
        print(f"  CartNet, {args.rotations} rotations averaged {fmt(results[key])}")
    print(f"  CartNet, space-group average {fmt(results['cartnet_symmetrized'])}")
    print(f"  isotropic (element, T) mean  {fmt(results['baseline_isotropic_mean'])}")
    if "baseline_no_direction" in results:
        print(f"  CartNet w/o direction        {fmt(results['baseline_no_direction'])}")
    for src, row in results["cartnet_per_source"].items():
        print(f"    {src:<10} ({row['structures']:3d} structures) {fmt(row)}")
    for row in results["cartnet_per_temperature"]:
        print(f"    T = {row['temperature']:5.0f} K  {fmt(row)}")
    split = results["cartnet_size_and_shape"]
    print(
        f"  size vs shape: ln(tr U_pred / tr U_true) std {split['log_size_ratio_std']:.3f} "
        f"({100 * split['between_structure_variance_share']:.0f} % of its variance between "
        "structures)"
    )
    print(f"    predicted shape, true size   {fmt(split['true_size_predicted_shape'])}")
    print(f"    true shape, predicted size   {fmt(split['true_shape_predicted_size'])}")
    print(f"    each structure's size fixed  {fmt(split['per_structure_size_corrected'])}")
    if "dft_phonopy_examples" in results:
        print(f"DFT phonopy examples (stable), {DFT_TEMPERATURES} K:")
        for row in results["dft_phonopy_examples"]:
            print(
                f"  {row['material']:<16} {row['formula']:<12} {fmt(row)}  size ratio "
                f"{row['size_ratio']:.2f} (DFT U_eq at 300 K {row['dft_u_eq_300']:.4f} Å²)"
            )
        print(f"  mean                          {fmt(results['dft_mean'])}")
        for group, row in results["dft_pooled"].items():
            print(f"  pooled, {group:<21} {fmt(row)} ({row['materials']} materials)")
    sp = results["speed"]
    print(
        f"speed: CartNet {sp['cartnet_s_per_structure'] * 1e3:.1f} ms/structure, teacher "
        f"{sp['teacher_s_per_structure']:.1f} s/structure, ratio {sp['ratio']:.0f}x"
    )
    if "speed_same_process" in results:
        same = results["speed_same_process"]
        for row in same["structures"]:
            print(
                f"  {row['structure']:<28} {row['atoms']:3d} atoms  teacher "
                f"{row['teacher_s']:7.2f} s  CartNet {row['cartnet_s'] * 1e3:6.1f} ms"
            )
        print(
            f"  same-process ratio (teacher / CartNet): {same['ratio']:.0f}x one structure per "
            f"call, {same['ratio_batched']:.0f}x all {len(same['structures'])} in one call "
            f"({same['cartnet_batched_s'] * 1e3:.1f} ms)"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
