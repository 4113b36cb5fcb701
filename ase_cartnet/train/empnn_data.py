"""Crystal datasets for EMPNN denoising: the CDVAE CSV splits (MP-20, Carbon-24, Perov-5).

Each CSV row holds a pymatgen P1 CIF string (column ``cif``), read with ASE's CIF reader through
:func:`ase_cartnet.io.datasets.read_cif_csv` (which caches the parsed split). Lattice vectors are
the rows of ``cell``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from ase_cartnet.errors import InputError
from ase_cartnet.io.datasets import read_cif_csv

DATASETS = {
    "mp_20": ("val", "test", "train_subset_847"),
    "carbon_24": ("val", "test"),
    "perov_5": ("val", "test"),
}
"""Dataset folders under ``shared/data`` and the splits available there (see SOURCES.md)."""


@dataclass(frozen=True)
class Crystal:
    """One structure: ``numbers`` (N,) int, ``cell`` (3, 3) Å rows, ``frac`` (N, 3) in [0, 1)."""

    key: str
    numbers: np.ndarray
    cell: np.ndarray
    frac: np.ndarray

    @property
    def positions(self) -> np.ndarray:
        return self.frac @ self.cell

    def __len__(self) -> int:
        return int(self.numbers.shape[0])


def crystal(atoms: Atoms) -> Crystal:
    """``atoms`` as a Crystal (fractional coordinates wrapped into [0, 1)), keyed by its
    ``info["source_id"]``."""
    frac = np.mod(atoms.get_scaled_positions(wrap=False), 1.0)
    cell = np.asarray(atoms.cell[:], dtype=np.float64)
    return Crystal(str(atoms.info["source_id"]), atoms.numbers.astype(np.int64), cell, frac)


def load_split(
    data_dir: str | os.PathLike,
    dataset: str,
    split: str,
    *,
    limit: int | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
) -> list[Crystal]:
    """The structures of ``data_dir/dataset/split.csv.gz`` (all, or ``limit`` chosen at random
    with ``seed``), cached in ``cache_dir`` when given."""
    if dataset not in DATASETS:
        raise InputError(f"unknown dataset {dataset!r}; choose from {sorted(DATASETS)}")
    if split not in DATASETS[dataset]:
        raise InputError(f"{dataset} has no split {split!r}; available: {DATASETS[dataset]}")
    path = Path(data_dir) / dataset / f"{split}.csv.gz"
    table = read_cif_csv(path, limit=limit, seed=seed, cache_dir=cache_dir)
    return [crystal(atoms) for atoms in table.atoms]


def parse_split_spec(spec: str) -> tuple[str, str, int | None]:
    """ "dataset/split[:limit]" → (dataset, split, limit)."""
    name, _, limit = spec.partition(":")
    dataset, _, split = name.partition("/")
    if not dataset or not split:
        raise InputError(f"expected dataset/split[:limit] (e.g. mp_20/val:2000), got {spec!r}")
    try:
        n = int(limit) if limit else None
    except ValueError as exc:
        raise InputError(f"limit in {spec!r} is not an integer") from exc
    if n is not None and n < 1:
        raise InputError(f"limit in {spec!r} must be positive")
    return dataset, split, n
