"""ADP training data: (structure, temperature, U per atom) samples from an ASE database built by
``phonon_ref.build_dataset`` or from a folder of CIFs with experimental ADPs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from ase_cartnet.errors import InputError


@dataclass
class ADPStructure:
    """One structure with ADP labels at one or more temperatures.

    ``adps`` is (T, N, 3, 3) Cartesian U in Å² (NaN where an atom has no label: hydrogen, which
    CartNet does not predict, or atoms without ADPs in a CIF); ``temperatures`` is (T,) K.
    """

    key: str
    atoms: Atoms
    temperatures: np.ndarray
    adps: np.ndarray

    def __post_init__(self) -> None:
        t, n = len(self.temperatures), len(self.atoms)
        if self.adps.shape != (t, n, 3, 3):
            raise InputError(f"{self.key}: adps shape {self.adps.shape} != {(t, n, 3, 3)}")
        self.adps = self.adps.copy()
        self.adps[:, self.atoms.numbers == 1] = np.nan  # CartNet predicts non-H atoms only

    @property
    def labelled(self) -> np.ndarray:
        """(N,) bool: atoms with finite labels at every temperature."""
        return np.isfinite(self.adps).all(axis=(0, 2, 3))


def structures_from_db(
    path: str | os.PathLike,
    *,
    temperatures: Sequence[float] | None = None,
    limit: int | None = None,
) -> list[ADPStructure]:
    """Rows with ``status="ok"`` of a ``phonon_ref.build_dataset`` database (relaxed structure,
    ``data["temperatures"]``, ``data["adps"]``); optionally only the listed temperatures (K)."""
    from ase.db import connect

    p = Path(path)
    if not p.is_file():
        raise InputError(f"dataset not found: {p}")
    out: list[ADPStructure] = []
    with connect(p) as db:
        for row in db.select(status="ok"):
            temps = np.asarray(row.data["temperatures"], dtype=float)
            adps = np.asarray(row.data["adps"], dtype=float)
            if temperatures is not None:
                keep = np.isin(np.round(temps, 6), np.round(np.asarray(temperatures, float), 6))
                temps, adps = temps[keep], adps[keep]
            if len(temps) == 0:
                continue
            out.append(ADPStructure(str(row.source_id), row.toatoms(), temps, adps))
            if limit is not None and len(out) >= limit:
                break
    if not out:
        raise InputError(f"{p} holds no usable rows (status='ok' with ADPs)")
    return out


def structures_from_cif_dir(path: str | os.PathLike) -> list[ADPStructure]:
    """Every ``*.cif`` under ``path`` (recursively) with ADPs and a measurement temperature, read
    through :func:`ase_cartnet.io.cif.read_cif` (full cell, symmetry images rotated). Files
    without ADPs or temperature are skipped with a warning."""
    import warnings

    from ase_cartnet.io.cif import read_cif

    root = Path(path)
    if not root.is_dir():
        raise InputError(f"CIF folder not found: {root}")
    out: list[ADPStructure] = []
    for cif in sorted(root.rglob("*.cif")):
        try:
            atoms = read_cif(cif, require_adps=True)
        except ValueError as exc:
            warnings.warn(f"skipping {cif}: {exc}", stacklevel=2)
            continue
        if "temperature" not in atoms.info:
            warnings.warn(f"skipping {cif}: no measurement temperature", stacklevel=2)
            continue
        adps = atoms.arrays["adps"][None]
        out.append(
            ADPStructure(
                str(cif.relative_to(root)), atoms, np.array([atoms.info["temperature"]]), adps
            )
        )
    if not out:
        raise InputError(f"no CIF with ADPs and a temperature under {root}")
    return out


def temperature_statistics(structures: Sequence[ADPStructure]) -> tuple[float, float]:
    """Mean and standard deviation (K) of the training temperatures, one entry per labelled
    (structure, temperature) sample — the standardisation CartNet stores (paper 4.1.1)."""
    temps = np.concatenate([s.temperatures for s in structures])
    std = float(temps.std())
    return float(temps.mean()), std if std > 0 else 1.0
