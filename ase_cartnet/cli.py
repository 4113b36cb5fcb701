"""The ``ase-cartnet`` command line: one subcommand per user flow (see DESIGN.md)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ase_cartnet.errors import InputError
from ase_cartnet.io.structure import read_structure


def _run_predict(args: argparse.Namespace) -> int:
    import torch

    from ase_cartnet.calculators.cartnet_adp import CartNetADP
    from ase_cartnet.report import compare_with_reference, format_adp_table

    torch.set_num_threads(args.threads)
    # Every site is read; the calculator applies the disorder policy and returns all of them.
    atoms = read_structure(Path(args.input), disorder="all")
    if args.temperature is None and "temperature" not in atoms.info:
        raise InputError(
            f"{args.input}: the file states no temperature; give one with -T/--temperature (K)"
        )
    reference = atoms.arrays.get("adps")
    calc = CartNetADP(
        checkpoint=args.checkpoint,
        temperature=args.temperature,
        hydrogen=args.hydrogen,
        rotations=args.rotations,
        symmetrize=args.symmetrize,
        disorder=args.disorder,
        dtype=torch.float64 if args.float64 else torch.float32,
    )
    atoms.calc = calc
    adps = calc.get_property("adps", atoms)
    temperature = calc.parameters.get("temperature") or atoms.info.get("temperature")
    print(
        f"CartNet ADPs for {args.input} ({atoms.get_chemical_formula()}, {len(atoms)} atoms) "
        f"at {temperature} K"
    )
    print(f"checkpoint: {calc.checkpoint_path}")
    has_reference = reference is not None and np.isfinite(reference[atoms.numbers != 1]).any()
    print(format_adp_table(atoms, adps, reference if has_reference else None))
    m = compare_with_reference(atoms, adps, reference if has_reference else None)
    if m is not None:
        print(
            f"vs the file's ADPs ({m['n_atoms']} non-H sites of the asymmetric unit): "
            f"MAE {m['mae']:.2e} Å², S12 {m['s12']:.2f} %, IoU {m['iou']:.1f} %"
        )
    if args.output:
        path = calc.write_cif(args.output, atoms, p1=args.p1)
        print(f"wrote {path}")
    if args.plot:
        path = calc.plot_ellipsoids(
            args.plot, reference=reference if has_reference else None, atoms=atoms
        )
        print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ase-cartnet",
        description="CartNet ADPs and other crystal models behind ASE; harmonic reference ADPs.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    predict = sub.add_parser(
        "predict", help="predict ADPs (thermal ellipsoids) of a structure with CartNet"
    )
    predict.add_argument(
        "input", help="structure file (CIF keeps ADPs and temperature; any ASE format)"
    )
    predict.add_argument(
        "-T", "--temperature", type=float, default=None, help="K (default: from the file)"
    )
    predict.add_argument(
        "-o",
        "--output",
        help="write a CIF with the predicted ADPs: the input's own data block (space group, site "
        "labels, asymmetric unit) with the ADP items replaced",
    )
    predict.add_argument(
        "--p1", action="store_true", help="write the expanded cell in P1 instead (with -o)"
    )
    predict.add_argument(
        "--plot", help="write an ORTEP-style PNG (overlaid on the file's ADPs if any)"
    )
    predict.add_argument(
        "--checkpoint", help="official or ase-cartnet checkpoint (default: embedded weights)"
    )
    predict.add_argument("--hydrogen", choices=("nan", "riding"), default="riding")
    predict.add_argument(
        "--rotations", type=int, default=1, help="test-time rotation averaging (K)"
    )
    predict.add_argument("--float64", action="store_true", help="run the model in float64")
    predict.add_argument(
        "--symmetrize",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="average the predicted U over the space group (site symmetry, equivalent atoms; "
        "default on)",
    )
    predict.add_argument(
        "--disorder",
        choices=("major", "each", "error"),
        default="major",
        help="disordered files: predict the major configuration, minor sites take their "
        "counterpart's ADP (default); every configuration; or refuse",
    )
    predict.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    predict.set_defaults(func=_run_predict)

    from ase_cartnet.train.cli import register as register_train

    register_train(sub)
    from ase_cartnet.relax_cli import register as register_relax

    register_relax(sub)
    from ase_cartnet.property_cli import register as register_property

    register_property(sub)
    from ase_cartnet.denoise_cli import register as register_denoise

    register_denoise(sub)
    try:
        from phonon_ref.cli import register as register_phonon_ref
    except ImportError:  # phonon_ref not installed alongside
        register_phonon_ref = None
    if register_phonon_ref is not None:
        register_phonon_ref(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ase-cartnet`` console script. Input errors print one line, exit 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:  # InputError, CheckpointError, CIFError are ValueErrors
        print(f"ase-cartnet {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
