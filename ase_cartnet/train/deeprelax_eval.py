"""DeepRelax on held-out unrelaxed → relaxed pairs, beside the Dummy baseline (the unrelaxed
input), with the metrics of the DeepRelax paper (section 4.10): coordinate, bond-length, lattice
and volume MAEs (Å, Å³; eqns 25–28), StructureMatcher match rates (pymatgen defaults and the
CDVAE settings), the Spearman correlation of the global uncertainty with the per-structure
distance MAE (Fig. 5), and the time per structure (``benchmarks/eval_deeprelax.py`` runs it).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch

from ase_cartnet.calculators.deeprelax import _resolve_model, predict

MATCHERS = {"pymatgen": (0.2, 0.3, 5.0), "cdvae": (0.3, 0.5, 10.0)}
LATTICE_ONLY = "DeepRelax lattice only"
EMPNN_LATTICE = "EMPNN lattice only"


def _empnn_lattices(structures):
    """Copies of ``structures`` whose cell the shipped EMPNN denoised (fractional coordinates
    kept)."""
    from ase_cartnet.calculators.empnn_lattice import EMPNNLattice

    out = []
    for atoms in structures:
        copy = atoms.copy()
        EMPNNLattice(copy, logfile=None).run()
        out.append(copy)
    return out


"""The predicted lattice with the input's fractional coordinates (the solver's start, 0 steps)."""


def _edge_distances(atoms, index: np.ndarray, shift: np.ndarray) -> np.ndarray:
    vec = atoms.positions[index[:, 1]] + shift @ atoms.cell[:] - atoms.positions[index[:, 0]]
    return np.linalg.norm(vec, axis=1)


def structure_metrics(pred, true, index, shift, matchers) -> dict[str, float]:
    from pymatgen.io.ase import AseAtomsAdaptor

    out = {
        "coordinates": float(np.abs(pred.positions - true.positions).mean()),
        "bond_length": float(
            np.abs(_edge_distances(pred, index, shift) - _edge_distances(true, index, shift)).mean()
        ),
        "lattice": float(np.abs(pred.cell[:] - true.cell[:]).mean()),
        "volume": float(abs(abs(pred.get_volume()) - abs(true.get_volume()))),
    }
    sp, st = AseAtomsAdaptor.get_structure(pred), AseAtomsAdaptor.get_structure(true)
    for name, matcher in matchers.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[f"match_{name}"] = float(bool(matcher.fit(sp, st)))
    return out


def _rank_correlation(scores, errors) -> float:
    """Spearman correlation of two equally long sequences (NaN for fewer than 3 items)."""
    from scipy.stats import spearmanr

    return float(spearmanr(scores, errors).statistic) if len(scores) > 2 else float("nan")


def evaluate(
    model,
    pairs,
    batch_size: int = 16,
    steps: int = 100,
    lr: float = 0.1,
    decay: bool = False,
    affine: bool = True,
    canonical: bool = True,
    empnn: bool = False,
) -> dict:
    """Metrics of ``model`` on ``pairs`` beside the Dummy and lattice-only rows; with ``empnn``
    also the shipped EMPNN lattice denoiser as the lattice stage (input fractional coordinates
    in EMPNN's cell)."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    ensemble, metadata = _resolve_model(model, torch.float32)
    matchers = {
        k: StructureMatcher(ltol=a, stol=b, angle_tol=c) for k, (a, b, c) in MATCHERS.items()
    }
    inputs = [p.initial for p in pairs]
    predict(ensemble, inputs[:batch_size], batch_size=batch_size, steps=steps, lr=lr)  # warm-up
    started = time.perf_counter()
    results = predict(
        ensemble,
        inputs,
        batch_size=batch_size,
        steps=steps,
        lr=lr,
        threshold=metadata.get("uncertainty_threshold"),
        decay=decay,
        affine=affine,
        canonical=canonical,
    )
    seconds = time.perf_counter() - started
    lattice_only = predict(
        ensemble, inputs, batch_size=batch_size, steps=0, affine=True, canonical=canonical
    )
    rows = {"DeepRelax": [], "Dummy": [], LATTICE_ONLY: []}
    if empnn:
        rows[EMPNN_LATTICE] = [
            structure_metrics(denoised, pair.relaxed, r.uncertainty.bond_index,
                              r.uncertainty.bond_shift, matchers)
            for pair, r, denoised in zip(pairs, results, _empnn_lattices(inputs), strict=True)
        ]  # fmt: skip
    globals_, dist_err, components = [], [], []
    for k, (pair, result) in enumerate(zip(pairs, results, strict=True)):
        u = result.uncertainty
        index, shift = u.bond_index, u.bond_shift
        rows["DeepRelax"].append(
            structure_metrics(result.atoms, pair.relaxed, index, shift, matchers)
        )
        rows["Dummy"].append(structure_metrics(pair.initial, pair.relaxed, index, shift, matchers))
        rows[LATTICE_ONLY].append(
            structure_metrics(lattice_only[k].atoms, pair.relaxed, index, shift, matchers)
        )
        true_d = _edge_distances(pair.relaxed, index, shift)
        globals_.append(u.global_uncertainty)
        components.append((u.aleatoric, u.epistemic))
        dist_err.append(float(np.abs(u.bond_length - true_d).mean()))
    table = {}
    for name, metrics in rows.items():
        table[name] = {k: float(np.mean([m[k] for m in metrics])) for k in metrics[0]}
        for k in MATCHERS:
            table[name][f"match_{k}"] *= 100.0
    rho = _rank_correlation(globals_, dist_err)
    trusted = [r.uncertainty.trusted for r in results]
    err_coord = np.array([m["coordinates"] for m in rows["DeepRelax"]])
    return {
        "n_pairs": len(pairs),
        "n_atoms_max": max(len(p.initial) for p in pairs),
        "table": table,
        "spearman_uncertainty_vs_distance_error": rho,
        # which part of Û carries the ranking, and Û against the coordinate error as well
        "spearman_components": {
            "aleatoric_vs_distance_error": _rank_correlation([a for a, _ in components], dist_err),
            "epistemic_vs_distance_error": _rank_correlation([e for _, e in components], dist_err),
            "global_vs_coordinate_error": _rank_correlation(globals_, err_coord),
        },
        "seconds_per_structure": seconds / len(pairs),
        "batch_size": batch_size,
        "threshold": metadata.get("uncertainty_threshold"),
        "trusted_fraction": float(np.mean(trusted)),
        "coordinates_trusted": float(err_coord[np.array(trusted)].mean()) if any(trusted) else None,
        "coordinates_untrusted": float(err_coord[~np.array(trusted)].mean())
        if not all(trusted)
        else None,
        "global_uncertainty_percentiles": {
            str(q): float(np.percentile(globals_, q)) for q in (10, 50, 80, 90)
        },
    }


def format_table(label: str, report: dict) -> str:
    lines = [
        f"**{label}** ({report['n_pairs']} pairs, ≤ {report['n_atoms_max']} atoms)",
        "",
        "| model | coordinates (Å) | bond length (Å) | lattice (Å) | volume (Å³) | "
        "match, pymatgen (%) | match, CDVAE (%) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("Dummy", EMPNN_LATTICE, LATTICE_ONLY, "DeepRelax"):
        if name not in report["table"]:
            continue
        m = report["table"][name]
        lines.append(
            f"| {name} | {m['coordinates']:.3f} | {m['bond_length']:.3f} | {m['lattice']:.3f} | "
            f"{m['volume']:.2f} | {m['match_pymatgen']:.1f} | {m['match_cdvae']:.1f} |"
        )
    parts = report["spearman_components"]
    lines.append("")
    lines.append(
        f"Spearman(Û, distance MAE) = {report['spearman_uncertainty_vs_distance_error']:.2f} "
        f"(Û_a {parts['aleatoric_vs_distance_error']:.2f}, Û_e "
        f"{parts['epistemic_vs_distance_error']:.2f}; Û against the coordinate MAE "
        f"{parts['global_vs_coordinate_error']:.2f}); "
        f"{1000 * report['seconds_per_structure']:.0f} ms per structure (model + solver, "
        f"batches of {report['batch_size']}); trusted {100 * report['trusted_fraction']:.0f} % "
        f"(threshold {report['threshold']})"
    )
    return "\n".join(lines)
