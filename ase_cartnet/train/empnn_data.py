"""Crystal datasets for EMPNN denoising: the CDVAE CSV splits (MP-20, Carbon-24, Perov-5).

Each CSV row holds a pymatgen P1 CIF string (column ``cif``). Structures are read once with
ASE's CIF reader and cached as one ``.npz`` per split (atomic numbers, cells, fractional
coordinates, ids), so later runs start in a second. Lattice vectors are the rows of ``cell``.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ase_cartnet.errors import InputError
from ase_cartnet.io.atomic import atomic_path

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


def _rows(total: int, limit: int | None, seed: int) -> np.ndarray:
    """The rows a ``limit`` picks (sorted, seeded), the same whether parsed or cached."""
    if limit is None or limit >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size=limit, replace=False))


def _parse_csv(path: Path, limit: int | None, seed: int) -> list[Crystal]:
    import pandas as pd
    from ase.io import read

    frame = pd.read_csv(path)
    if "cif" not in frame.columns:
        raise InputError(f"{path} has no 'cif' column (not a CDVAE split)")
    ids = frame["material_id"].astype(str) if "material_id" in frame else frame.index.astype(str)
    rows = _rows(len(frame), limit, seed)
    crystals = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for row in rows:
            atoms = read(io.StringIO(frame["cif"].iloc[row]), format="cif")
            cell = np.asarray(atoms.cell[:], dtype=np.float64)
            frac = np.mod(atoms.get_scaled_positions(wrap=False), 1.0)
            crystals.append(Crystal(str(ids.iloc[row]), atoms.numbers.astype(np.int64), cell, frac))
    return crystals


def _save(crystals: Sequence[Crystal], path: Path) -> None:
    counts = np.array([len(c) for c in crystals], dtype=np.int64)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(
                handle,
                keys=np.array([c.key for c in crystals]),
                counts=counts,
                numbers=np.concatenate([c.numbers for c in crystals]),
                cells=np.stack([c.cell for c in crystals]),
                frac=np.concatenate([c.frac for c in crystals]),
            )


def _load(path: Path) -> list[Crystal]:
    with np.load(path, allow_pickle=False) as data:
        counts = data["counts"]
        ends = np.cumsum(counts)
        starts = ends - counts
        return [
            Crystal(
                str(k),
                data["numbers"][s:e].copy(),
                data["cells"][i].copy(),
                data["frac"][s:e].copy(),
            )
            for i, (k, s, e) in enumerate(zip(data["keys"], starts, ends, strict=True))
        ]


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
    if not path.is_file():
        raise InputError(f"dataset file not found: {path}")
    cache = None
    if cache_dir is not None:
        tag = "all" if limit is None else f"{limit}-seed{seed}"
        cache = Path(cache_dir) / f"{dataset}_{split}_{tag}.npz"
        if cache.is_file():
            return _load(cache)
        full = Path(cache_dir) / f"{dataset}_{split}_all.npz"
        if full.is_file():  # a subset of an already parsed split
            everything = _load(full)
            return [everything[i] for i in _rows(len(everything), limit, seed)]
    crystals = _parse_csv(path, limit, seed)
    if cache is not None:
        _save(crystals, cache)
    return crystals


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
