"""Evaluate DeepRelax on held-out unrelaxed → relaxed pairs, beside the Dummy baseline (which
returns the unrelaxed input), with the metrics of the DeepRelax paper (section 4.10):

* coordinates: mean |r̂ − r| over atoms and Cartesian components (Å; eqn 25, as a mean);
* bond length: mean |d̂ − d| over the periodic edges of the input multi-graph, measured in the
  solved structure (Å; eqn 26);
* lattice: mean |L̂ − L| over the 9 entries (Å; eqn 27); cell volume: mean ||det L̂| − |det L||
  (Å³; eqn 28);
* match rate: pymatgen ``StructureMatcher`` with its defaults (ltol 0.2, stol 0.3, angle_tol 5)
  and with the CDVAE settings (0.3, 0.5, 10), % of pairs;
* Spearman correlation between the global uncertainty Û and the per-structure MAE of the
  predicted distances (the paper's Fig. 5);
* time per structure, model + solver, batched (this machine, shared CPU).

    .venv/bin/python benchmarks/eval_deeprelax.py --pairs runs/deeprelax/test_synthetic.db

Prints a markdown table; ``--json`` also writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ase_cartnet.calculators.deeprelax import _resolve_model, predict  # noqa: E402
from ase_cartnet.train.deeprelax_data import pairs_from_db  # noqa: E402

MATCHERS = {"pymatgen": (0.2, 0.3, 5.0), "cdvae": (0.3, 0.5, 10.0)}
LATTICE_ONLY = "DeepRelax lattice only"
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


def evaluate(
    model,
    pairs,
    batch_size: int = 16,
    steps: int = 100,
    lr: float = 0.1,
    decay: bool = False,
    affine: bool = True,
    canonical: bool = True,
) -> dict:
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from scipy.stats import spearmanr

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
    globals_, dist_err = [], []
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
        dist_err.append(float(np.abs(u.bond_length - true_d).mean()))
    table = {}
    for name, metrics in rows.items():
        table[name] = {k: float(np.mean([m[k] for m in metrics])) for k in metrics[0]}
        for k in MATCHERS:
            table[name][f"match_{k}"] *= 100.0
    rho = float(spearmanr(globals_, dist_err).statistic) if len(pairs) > 2 else float("nan")
    trusted = [r.uncertainty.trusted for r in results]
    err_coord = np.array([m["coordinates"] for m in rows["DeepRelax"]])
    return {
        "n_pairs": len(pairs),
        "n_atoms_max": max(len(p.initial) for p in pairs),
        "table": table,
        "spearman_uncertainty_vs_distance_error": rho,
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
    for name in ("Dummy", LATTICE_ONLY, "DeepRelax"):
        m = report["table"][name]
        lines.append(
            f"| {name} | {m['coordinates']:.3f} | {m['bond_length']:.3f} | {m['lattice']:.3f} | "
            f"{m['volume']:.2f} | {m['match_pymatgen']:.1f} | {m['match_cdvae']:.1f} |"
        )
    lines.append("")
    lines.append(
        f"Spearman(Û, distance MAE) = {report['spearman_uncertainty_vs_distance_error']:.2f}; "
        f"{1000 * report['seconds_per_structure']:.0f} ms per structure (model + solver, "
        f"batches of {report['batch_size']}); trusted {100 * report['trusted_fraction']:.0f} % "
        f"(threshold {report['threshold']})"
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="checkpoint (default: shipped ensemble)")
    parser.add_argument(
        "--pairs", nargs="+", default=["runs/deeprelax/test_synthetic.db"], help="pair databases"
    )
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write the reports here")
    parser.add_argument("--steps", type=int, default=100, help="solver Adam steps")
    parser.add_argument("--lr", type=float, default=0.1, help="solver Adam learning rate")
    parser.add_argument("--decay", action="store_true", help="solver lr decays linearly to 0")
    parser.add_argument(
        "--no-affine", action="store_true", help="start the solver at the input positions"
    )
    parser.add_argument(
        "--no-canonical",
        action="store_true",
        help="feed the model the input's own listing (origin, images, basis, order)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    reports = {}
    for path in args.pairs:
        pairs = pairs_from_db(path, limit=args.limit)
        report = evaluate(
            args.model,
            pairs,
            args.batch_size,
            steps=args.steps,
            lr=args.lr,
            decay=args.decay,
            affine=not args.no_affine,
            canonical=not args.no_canonical,
        )
        reports[Path(path).name] = report
        print(format_table(Path(path).name, report))
        print()
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
