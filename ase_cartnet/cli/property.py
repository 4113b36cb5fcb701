"""``ase-cartnet property in.cif [more.cif …]``: a crystal property from CrysToGraph."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ase_cartnet.cli import add_command
from ase_cartnet.cli.options import add_threads, set_threads

SHIPPED_TARGETS = ("formation_energy_per_atom", "heat_ref")
"""Targets with shipped weights (``ase_cartnet.io.checkpoint.SHIPPED``), the first the default."""


def _run(args: argparse.Namespace) -> int:
    import warnings

    import numpy as np

    from ase_cartnet.calculators.crystograph_property import CrysToGraphProperty
    from ase_cartnet.cli.options import read_all
    from ase_cartnet.errors import BatchItemWarning
    from ase_cartnet.io.structure import read_structure

    set_threads(args)
    calc = CrysToGraphProperty(checkpoint=args.checkpoint, target=args.target)
    # a file that cannot be read or used is named and left out; the others are predicted
    ready, failed = read_all([(Path(p),) for p in args.input], read_structure)
    names = [str(row[0]) for row, _ in ready]
    structures = [atoms for _, atoms in ready]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BatchItemWarning)
        values = calc.predict_many(structures, errors="skip") if structures else np.zeros(0)
    for w in caught:
        if issubclass(w.category, BatchItemWarning):
            print(f"ase-cartnet: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    print(f"{calc.target} ({calc.units}) from {calc.checkpoint_path.name}")
    width = max(len(p) for p in args.input)
    for path, atoms, value in zip(names, structures, values, strict=True):
        shown = f"{value: .4f}" if np.isfinite(value) else " failed (named above)"
        print(f"{path:<{width}}  {atoms.get_chemical_formula():<14} {shown}")
    failed += int(np.count_nonzero(~np.isfinite(values)))
    if failed:
        print(f"{failed} of {len(args.input)} inputs failed (named above)")
        return 2  # as relax and denoise with several inputs
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
