"""On-disk cache of force constants, keyed by what determines them.

The key hashes the structure (numbers, masses, cell and fractional positions to 1e-8), the
calculator label, the supercell matrix, the displacement distance and the FC settings. A hit
means no force call at all; new temperatures or q-meshes reuse the same file.

An entry is a compressed ``.npz`` of the *compact* force constants (the rows of the primitive
atoms, (n_prim, n_super, 3, 3) eV/Å²) with the cell, atoms and supercell matrix: small, and
read without parsing text (phonopy yaml with the force sets was larger and slower to load than
recomputing EMT forces). Displacements and forces are not kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from numpy.typing import ArrayLike

from ase_cartnet.errors import InputError
from ase_cartnet.io.atomic import atomic_path

CACHE_FORMAT = 2
"""Bumped whenever the meaning of a cached file changes (invalidates old entries)."""


def cache_key(
    atoms: Atoms,
    calculator_label: str,
    supercell_matrix: ArrayLike,
    displacement: float,
    settings: dict[str, Any] | None = None,
) -> str:
    """SHA-256 hex digest naming one force-constant calculation."""
    payload = {
        "format": CACHE_FORMAT,
        "numbers": atoms.numbers.tolist(),
        "masses": np.round(atoms.get_masses(), 8).tolist(),
        "cell": np.round(np.asarray(atoms.cell[:], dtype=float), 8).tolist(),
        "scaled_positions": np.round(atoms.get_scaled_positions(wrap=False), 8).tolist(),
        "calculator": calculator_label,
        "supercell_matrix": np.asarray(supercell_matrix, dtype=int).tolist(),
        "displacement": round(float(displacement), 10),
        "settings": settings or {},
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def cache_file(cache_dir: str | os.PathLike, atoms: Atoms, key: str) -> Path:
    """``cache_dir/<formula>-<key[:24]>.npz``."""
    return Path(cache_dir) / f"{atoms.get_chemical_formula()}-{key[:24]}.npz"


def save_force_constants(phonon, path: str | os.PathLike) -> Path:
    """Write a Phonopy object's unit cell, supercell matrix and compact force constants to a
    compressed npz, atomically (a reader never sees a half-written cache entry)."""
    from phonopy.harmonic.force_constants import full_fc_to_compact_fc

    fc = np.asarray(phonon.force_constants, dtype=np.float64)
    if fc.shape[0] != len(phonon.primitive):
        fc = full_fc_to_compact_fc(phonon.primitive, fc)
    cell = phonon.unitcell
    target = Path(path)
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(
            handle,
            format=CACHE_FORMAT,
            force_constants=fc,
            cell=np.asarray(cell.cell, dtype=np.float64),
            scaled_positions=np.asarray(cell.scaled_positions, dtype=np.float64),
            numbers=np.asarray(cell.numbers, dtype=np.int64),
            masses=np.asarray(cell.masses, dtype=np.float64),
            supercell_matrix=np.asarray(phonon.supercell_matrix, dtype=np.int64),
        )
    return target


def load_force_constants(path: str | os.PathLike, symprec: float = 1e-5):
    """A Phonopy object with (full) force constants from a cache entry; no force is computed.
    The primitive cell is the stored unit cell (``primitive_matrix="P"``). An ``InputError``
    naming the file when it is not a readable entry of this format."""
    from phonopy import Phonopy
    from phonopy.harmonic.force_constants import compact_fc_to_full_fc
    from phonopy.structure.atoms import PhonopyAtoms

    try:
        with np.load(path, allow_pickle=False) as data:
            if int(data["format"]) != CACHE_FORMAT:
                raise InputError(f"{path}: cache format {int(data['format'])}, not {CACHE_FORMAT}")
            entry = {key: data[key] for key in data.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: not a readable force-constant cache entry ({exc})") from exc
    unitcell = PhonopyAtoms(
        cell=entry["cell"],
        scaled_positions=entry["scaled_positions"],
        numbers=entry["numbers"],
        masses=entry["masses"],
    )
    phonon = Phonopy(
        unitcell,
        supercell_matrix=entry["supercell_matrix"],
        primitive_matrix="P",
        symprec=symprec,
        log_level=0,
    )
    fc = entry["force_constants"]
    expected = (len(phonon.primitive), len(phonon.supercell), 3, 3)
    if fc.shape != expected or not np.all(np.isfinite(fc)):
        raise InputError(f"{path}: force constants of shape {fc.shape}, expected {expected}")
    phonon.force_constants = compact_fc_to_full_fc(phonon.primitive, fc)
    return phonon
