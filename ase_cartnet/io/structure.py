"""Reading a structure file for the command line: CIFs keep their ADPs and temperature."""

from __future__ import annotations

import os
from pathlib import Path

from ase import Atoms

from ase_cartnet.errors import InputError


def read_structure(path: str | os.PathLike, *, disorder: str = "major") -> Atoms:
    """A CIF through :func:`ase_cartnet.io.cif.read_cif` (symmetry-expanded ADPs in
    ``atoms.arrays["adps"]``, temperature in ``atoms.info``; ``disorder`` as there, "each"
    excepted); any other format through ``ase.io.read``. Raises ``InputError``/``CIFError``
    (ValueErrors) naming the problem."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"input file not found: {p}")
    if p.suffix.lower() == ".cif":
        from ase_cartnet.io.cif import read_cif

        return read_cif(p, disorder=disorder)
    from ase.io import read

    try:
        atoms = read(p)
    except Exception as exc:  # ASE raises many types for unreadable files
        raise InputError(f"cannot read a structure from {p}: {exc}") from exc
    if not isinstance(atoms, Atoms):
        raise InputError(f"{p} does not hold a single structure")
    atoms.info.setdefault("source_file", str(p.resolve()))
    return atoms
