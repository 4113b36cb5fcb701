"""Structure–property datasets (CDVAE-style CSVs with a ``cif`` column: Perov-5, MP-20, …).

The CIFs are parsed with pymatgen through :func:`ase_cartnet.io.datasets.read_cif_csv`, which
keeps the parsed structures in a cache (``.npz`` of plain arrays, no pickles).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from ase_cartnet.errors import InputError
from ase_cartnet.io.datasets import read_cif_csv


@dataclass
class PropertySet:
    """Structures with one scalar target each.

    Attributes
    ----------
    atoms
        the structures (periodic, positions in Å).
    targets
        (M,) float64 target values.
    ids
        (M,) material ids as strings.
    source
        where they came from (file names), for model cards.
    target
        the column name.
    """

    atoms: list[Atoms]
    targets: np.ndarray
    ids: list[str]
    source: str
    target: str

    def __len__(self) -> int:
        return len(self.atoms)

    def __add__(self, other: PropertySet) -> PropertySet:
        if other.target != self.target:
            raise InputError(f"cannot join targets {self.target!r} and {other.target!r}")
        return PropertySet(
            self.atoms + other.atoms,
            np.concatenate([self.targets, other.targets]),
            self.ids + other.ids,
            f"{self.source} + {other.source}",
            self.target,
        )

    def subset(self, indices) -> PropertySet:
        idx = [int(i) for i in indices]
        return PropertySet(
            [self.atoms[i] for i in idx],
            self.targets[idx],
            [self.ids[i] for i in idx],
            self.source,
            self.target,
        )


def load_property_csv(
    path: str | os.PathLike,
    target: str,
    *,
    cache_dir: str | os.PathLike | None = None,
    id_column: str = "material_id",
    progress: bool = False,
) -> PropertySet:
    """Read a CSV (optionally gzipped) with columns ``cif``, ``target`` and ``id_column``.

    Rows with a missing target are dropped. ``cache_dir``: where parsed structures are cached.
    """
    table = read_cif_csv(
        path,
        target=target,
        id_column=id_column,
        parser="pymatgen",
        cache_dir=cache_dir,
        progress=progress,
    )
    return PropertySet(table.atoms, table.targets, table.ids, Path(path).name, target)
