"""Structure–property datasets (CDVAE-style CSVs with a ``cif`` column: Perov-5, MP-20, …).

Parsing thousands of CIFs with pymatgen takes minutes, so :func:`load_property_csv` keeps a
cache (``.npz`` of plain arrays, no pickles) keyed by the CSV's path, size and mtime.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from ase_cartnet.errors import InputError
from ase_cartnet.io.atomic import atomic_path


@dataclass
class PropertySet:
    """Structures with one scalar target each.

    Attributes:
        atoms: the structures (periodic, positions in Å).
        targets: (M,) float64 target values.
        ids: (M,) material ids as strings.
        source: where they came from (file names), for model cards.
        target: the column name.
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


def _cache_key(path: Path, target: str) -> str:
    stat = path.stat()
    text = f"{path.resolve()}|{stat.st_size}|{int(stat.st_mtime)}|{target}|v1"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _parse_cif(text: str) -> Atoms:
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    structure = Structure.from_str(text, fmt="cif")
    return AseAtomsAdaptor.get_atoms(structure)


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
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise InputError(f"dataset file not found: {p}")
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"{p.name.split('.')[0]}_{target}_{_cache_key(p, target)}.npz"
        if cache.is_file():
            with np.load(cache, allow_pickle=False) as data:
                counts = data["counts"]
                splits = np.cumsum(counts)[:-1]
                numbers = np.split(data["numbers"], splits)
                positions = np.split(data["positions"], splits)
                atoms = [
                    Atoms(numbers=z, positions=r, cell=c, pbc=True)
                    for z, r, c in zip(numbers, positions, data["cells"], strict=True)
                ]
                return PropertySet(
                    atoms, data["targets"], [str(i) for i in data["ids"]], p.name, target
                )
    frame = pd.read_csv(p)
    for column in ("cif", target, id_column):
        if column not in frame.columns:
            raise InputError(f"{p.name} has no column {column!r} (columns: {list(frame.columns)})")
    frame = frame[frame[target].notna()]
    rows = frame.itertuples(index=False)
    if progress:
        from tqdm.auto import tqdm

        rows = tqdm(rows, total=len(frame), desc=f"parsing {p.name}")
    atoms, targets, ids = [], [], []
    cif_at = list(frame.columns).index("cif")
    target_at = list(frame.columns).index(target)
    id_at = list(frame.columns).index(id_column)
    for row in rows:
        try:
            atoms.append(_parse_cif(row[cif_at]))
        except Exception as exc:  # pymatgen raises many types for bad CIFs
            raise InputError(f"{p.name}: cannot parse the CIF of {row[id_at]}: {exc}") from exc
        targets.append(float(row[target_at]))
        ids.append(str(row[id_at]))
    result = PropertySet(atoms, np.asarray(targets, dtype=np.float64), ids, p.name, target)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(
                    handle,
                    counts=np.array([len(a) for a in atoms], dtype=np.int64),
                    numbers=np.concatenate([a.numbers for a in atoms]).astype(np.int64),
                    positions=np.concatenate([a.positions for a in atoms]),
                    cells=np.stack([np.asarray(a.cell[:]) for a in atoms]),
                    targets=result.targets,
                    ids=np.array(ids, dtype=str),
                )
    return result
