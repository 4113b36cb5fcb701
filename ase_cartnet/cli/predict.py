"""``ase-cartnet predict structure.cif``: CartNet ADPs of one structure, table and files."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ase_cartnet.cli import add_command
from ase_cartnet.cli.options import add_checkpoint, add_float64, add_threads, dtype, set_threads


def _format_adp_table(atoms, adps: np.ndarray, reference: np.ndarray | None) -> str:
    from ase_cartnet.adp import principal_axes, u_equiv

    labels = atoms.arrays.get("site_label", atoms.get_chemical_symbols())
    header = f"{'#':>4} {'atom':<8} {'U_eq (Å²)':>11} {'λ_min':>9} {'λ_max':>9}"
    if reference is not None:
        header += f" {'U_eq ref':>10}"
    lines = [header]
    u_eq = u_equiv(adps)
    ref_eq = u_equiv(reference) if reference is not None else None
    for i in range(len(atoms)):
        if not np.isfinite(adps[i]).all():
            continue
        values, _ = principal_axes(adps[i])
        line = f"{i:>4} {str(labels[i]):<8} {u_eq[i]:>11.5f} {values[0]:>9.5f} {values[2]:>9.5f}"
        if ref_eq is not None:
            line += f" {ref_eq[i]:>10.5f}" if np.isfinite(ref_eq[i]) else f" {'-':>10}"
        lines.append(line)
    return "\n".join(lines)


def _run_predict(args: argparse.Namespace) -> int:
    from ase_cartnet.adp import adp_metrics
    from ase_cartnet.calculators.cartnet_adp import CartNetADP
    from ase_cartnet.io.structure import read_structure

    set_threads(args)
    atoms = read_structure(Path(args.input))
    reference = atoms.arrays.get("adps")
    calc = CartNetADP(
        checkpoint=args.checkpoint,
        temperature=args.temperature,
        hydrogen=args.hydrogen,
        rotations=args.rotations,
        symmetrize=args.symmetrize,
        dtype=dtype(args),
    )
    atoms.calc = calc
    adps = calc.get_property("adps", atoms)
    temperature = calc.parameters.get("temperature") or atoms.info.get("temperature")
    print(
        f"CartNet ADPs for {args.input} ({atoms.get_chemical_formula()}, {len(atoms)} atoms) "
        f"at {temperature} K"
    )
    print(f"checkpoint: {calc.checkpoint_path}")
    has_reference = reference is not None and np.isfinite(reference[atoms.numbers != 1]).all()
    print(_format_adp_table(atoms, adps, reference if has_reference else None))
    if has_reference:
        heavy = atoms.numbers != 1
        m = adp_metrics(adps[heavy], reference[heavy])
        print(
            f"vs the file's ADPs (non-H atoms, n={m['n_atoms']}): MAE {m['mae']:.2e} Å², "
            f"S12 {m['s12']:.2f} %, IoU {m['iou']:.1f} %"
        )
    if args.output:
        path = calc.write_cif(args.output, atoms)
        print(f"wrote {path}")
    if args.plot:
        path = calc.plot_ellipsoids(
            args.plot, reference=reference if has_reference else None, atoms=atoms
        )
        print(f"wrote {path}")
    return 0


def register(subparsers) -> None:
    """Add ``predict`` to the ``ase-cartnet`` CLI."""
    p = add_command(subparsers, "predict")
    p.add_argument("input", help="structure file (CIF keeps ADPs and temperature; any ASE format)")
    p.add_argument(
        "-T", "--temperature", type=float, default=None, help="K (default: from the file)"
    )
    p.add_argument("-o", "--output", help="write a CIF with the predicted ADPs (aniso loop)")
    p.add_argument("--plot", help="write an ORTEP-style PNG (overlaid on the file's ADPs if any)")
    add_checkpoint(p, "official or ase-cartnet CartNet checkpoint")
    p.add_argument("--hydrogen", choices=("nan", "riding"), default="riding")
    p.add_argument("--rotations", type=int, default=1, help="test-time rotation averaging (K)")
    add_float64(p)
    p.add_argument(
        "--symmetrize",
        action="store_true",
        help="average the predicted U over the space group (site symmetry, equivalent atoms)",
    )
    add_threads(p)
    p.set_defaults(func=_run_predict)
