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


def output_format(path: str | os.PathLike, given: str | None = None) -> str:
    """The ASE format a structure is written in to ``path``: ``given``, else what the name
    says (``.cif`` a CIF; POSCAR/CONTCAR names and ``.vasp`` VASP; ``.xyz``, ``.traj``, …
    as ASE infers them). An ``InputError`` when the format is unknown or cannot be written,
    raised before anything is computed."""
    from ase.io.formats import filetype, ioformats

    name = Path(path).name
    try:
        fmt = given or filetype(name, read=False)
    except Exception as exc:  # ASE raises several types for names it cannot place
        raise InputError(f"cannot tell the output format of {name}: {exc}") from exc
    if fmt not in ioformats or not ioformats[fmt].can_write:
        raise InputError(
            f"{name}: {fmt!r} is not a structure format ASE can write; name the file .cif, "
            "POSCAR or .vasp, or pass --format"
        )
    return fmt


def default_output(path: str | os.PathLike, tag: str) -> Path:
    """``X_<tag>.cif`` beside the input ``X.*`` (``POSCAR_<tag>.vasp`` for a VASP input)."""
    p = Path(path)
    vasp = p.suffix.lower() == ".vasp" or p.name.upper().startswith(("POSCAR", "CONTCAR"))
    if vasp:
        return p.with_name(f"{p.stem if p.suffix.lower() == '.vasp' else p.name}_{tag}.vasp")
    return p.with_name(f"{p.stem}_{tag}.cif")


def write_structure(path: str | os.PathLike, atoms: Atoms, fmt: str) -> Path:
    """Write ``atoms`` atomically in ASE format ``fmt``: a CIF through
    :func:`ase_cartnet.io.cif.write_cif` in P1 without ADPs (the structure was moved: the input
    CIF's cell and symmetry block no longer describe it, and old ADPs would be meaningless), VASP
    in direct coordinates with the atom order kept."""
    import numpy as np

    from ase_cartnet.io.atomic import atomic_path

    if fmt == "cif":
        from ase_cartnet.io.cif import write_cif

        return write_cif(path, atoms, adps=np.full((len(atoms), 3, 3), np.nan), p1=True)
    from ase.io import write

    kwargs = {"direct": True, "sort": False} if fmt == "vasp" else {}
    with atomic_path(path) as tmp:
        try:
            write(tmp, atoms, format=fmt, **kwargs)
        except (ValueError, KeyError) as exc:
            raise InputError(f"cannot write {Path(path).name} as {fmt!r}: {exc}") from exc
    return Path(path)
