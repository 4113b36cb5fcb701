"""On-disk cache of force constants as phonopy yaml, keyed by what determines them.

The key hashes the structure (numbers, masses, cell and fractional positions to 1e-8), the
calculator label, the supercell matrix, the displacement distance and the FC settings. A hit
means no force call at all; new temperatures or q-meshes reuse the same file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from numpy.typing import ArrayLike

from ase_cartnet.io.atomic import atomic_path

CACHE_FORMAT = 1
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
    """``cache_dir/<formula>-<key[:24]>.yaml``."""
    return Path(cache_dir) / f"{atoms.get_chemical_formula()}-{key[:24]}.yaml"


def save_force_constants(phonon, path: str | os.PathLike) -> Path:
    """Write a Phonopy object's structure, displacements, forces and force constants to a
    phonopy yaml file, atomically (a reader never sees a half-written cache entry)."""
    target = Path(path)
    with atomic_path(target) as tmp:
        phonon.save(filename=tmp, settings={"force_constants": True, "force_sets": True})
    return target


def load_force_constants(path: str | os.PathLike, symprec: float = 1e-5):
    """A Phonopy object with force constants from a cached yaml (no forces are recomputed);
    the primitive cell is the stored unit cell (``primitive_matrix="P"``)."""
    import phonopy

    return phonopy.load(
        path,
        primitive_matrix="P",
        produce_fc=False,
        symmetrize_fc=False,
        is_compact_fc=False,
        is_nac=False,
        symprec=symprec,
        log_level=0,
    )
