"""``ase-cartnet property in.cif [more.cif …]``: a crystal property from CrysToGraph."""

from __future__ import annotations

import argparse
from pathlib import Path

from ase_cartnet.cli import add_command
from ase_cartnet.cli.options import add_threads, set_threads

SHIPPED_TARGETS = ("formation_energy_per_atom", "heat_ref")
"""Targets with shipped weights (``ase_cartnet.io.checkpoint.SHIPPED``), the first the default."""


def _run(args: argparse.Namespace) -> int:
    from ase_cartnet.calculators.crystograph_property import CrysToGraphProperty
    from ase_cartnet.io.structure import read_structure

    set_threads(args)
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
    p = add_command(subparsers, "property")
    p.add_argument("input", nargs="+", help="periodic structure files (CIF or any ASE format)")
    p.add_argument(
        "--target",
        default=None,
        help=f"shipped model to use: {', '.join(SHIPPED_TARGETS)} "
        f"(default {SHIPPED_TARGETS[0]}; with --checkpoint, checked against it)",
    )
    p.add_argument("--checkpoint", help="an ase-cartnet property checkpoint instead")
    add_threads(p)
    p.set_defaults(func=_run)
