"""``ase-cartnet property in.cif [more.cif …]``: a crystal property from CrysToGraph."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ase_cartnet.io.structure import read_structure
from ase_cartnet.property_models import DEFAULT_TARGET, DEFAULT_WEIGHTS


def _run(args: argparse.Namespace) -> int:
    import torch

    from ase_cartnet.calculators.crystograph_property import CrysToGraphProperty

    torch.set_num_threads(args.threads)
    calc = CrysToGraphProperty(checkpoint=args.checkpoint, target=args.target)
    structures = [read_structure(Path(p)) for p in args.input]
    values = calc.predict_many(structures)
    print(f"{calc.target} ({calc.units}) from {calc.checkpoint_path.name}")
    width = max(len(p) for p in args.input)
    for path, atoms, value in zip(args.input, structures, values, strict=True):
        print(f"{path:<{width}}  {atoms.get_chemical_formula():<14} {value: .4f}")
    return 0


def register(subparsers) -> None:
    """Add ``property`` to the ``ase-cartnet`` CLI."""
    p = subparsers.add_parser(
        "property", help="predict a crystal property (formation energy, …) with CrysToGraph"
    )
    p.add_argument("input", nargs="+", help="periodic structure files (CIF or any ASE format)")
    p.add_argument(
        "--target",
        default=None,
        help=f"shipped model to use: {', '.join(sorted(DEFAULT_WEIGHTS))} "
        f"(default {DEFAULT_TARGET}; with --checkpoint, checked against it)",
    )
    p.add_argument("--checkpoint", help="an ase-cartnet property checkpoint instead")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.set_defaults(func=_run)
