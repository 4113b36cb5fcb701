"""Readers of the dataset files: the CIF-column CSVs (MP-20, Perov-5, Carbon-24; CDVAE splits)
behind one reader and one cache format, and the content hash of an ADP database
(``phonon_ref.build_dataset`` rows)."""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from ase import Atoms

from ase_cartnet.errors import InputError
from ase_cartnet.io.atomic import atomic_path

CACHE_VERSION = "cifcsv-v1"
"""Part of every cache key: a change of the cache layout makes old files unused, not misread."""


@dataclass
class CifTable:
    """Structures of a CIF-column CSV.

    Attributes
    ----------
    atoms : list of Atoms
        Periodic structures (positions in Å, cell rows in Å), each with
        ``info["source_id"]`` = its id.
    ids : list of str
        (M,) the id column, as strings.
    targets : numpy.ndarray or None
        (M,) float64 values of the target column, when one was asked for.
    """

    atoms: list[Atoms]
    ids: list[str]
    targets: np.ndarray | None = None


def sample_rows(total: int, limit: int | None, seed: int | None) -> np.ndarray:
    """Row indices a ``limit`` picks out of ``total``: the first ``limit`` rows when ``seed`` is
    None, else ``limit`` rows drawn without replacement with ``seed`` (sorted); all when
    ``limit`` is None or not below ``total``."""
    if limit is None or limit >= total:
        return np.arange(total)
    if seed is None:
        return np.arange(int(limit))
    return np.sort(np.random.default_rng(seed).choice(total, size=limit, replace=False))


def _select(
    ids: Sequence[str],
    wanted: Sequence[str] | None,
    limit: int | None,
    seed: int | None,
    file_name: str = "the file",
    id_column: str = "id",
) -> np.ndarray:
    """Positions in ``ids`` of the ``wanted`` ids (in their order), then :func:`sample_rows`;
    ``file_name`` and ``id_column`` name them in the error for unknown ids."""
    rows = np.arange(len(ids))
    if wanted is not None:
        where = {key: i for i, key in enumerate(ids)}
        missing = [key for key in wanted if key not in where]
        if missing:
            raise InputError(f"{file_name}: no rows with {id_column} {missing[:5]}")
        rows = np.array([where[key] for key in wanted], dtype=np.int64)
    return rows[sample_rows(len(rows), limit, seed)]


def _parse(text: str, parser: str) -> Atoms:
    """One CIF string as Atoms (``parser``: "ase" or "pymatgen")."""
    if parser == "pymatgen":
        from pymatgen.core import Structure
        from pymatgen.io.ase import AseAtomsAdaptor

        return AseAtomsAdaptor.get_atoms(Structure.from_str(text, fmt="cif"))
    from ase.io import read

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read(io.StringIO(text), format="cif")


def _structure(numbers, positions, cell, key: str) -> Atoms:
    """The one form a table's structure takes, parsed or cached."""
    return Atoms(numbers=numbers, positions=positions, cell=cell, pbc=True, info={"source_id": key})


def _cache_path(path: Path, cache_dir: str | os.PathLike, key: tuple) -> Path:
    stat = path.stat()
    text = f"{path.resolve()}|{stat.st_size}|{int(stat.st_mtime)}|{key}|{CACHE_VERSION}"
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{path.name.split('.')[0]}_{digest}.npz"


def _save(table: CifTable, path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        extra = {} if table.targets is None else {"targets": table.targets}
        np.savez(
            handle,
            ids=np.array(table.ids, dtype=str),
            counts=np.array([len(a) for a in table.atoms], dtype=np.int64),
            numbers=np.concatenate([a.numbers for a in table.atoms]).astype(np.int64),
            positions=np.concatenate([a.positions for a in table.atoms]),
            cells=np.stack([np.asarray(a.cell[:]) for a in table.atoms]),
            **extra,
        )


def _load(path: Path) -> CifTable:
    with np.load(path, allow_pickle=False) as data:
        splits = np.cumsum(data["counts"])[:-1]
        ids = [str(i) for i in data["ids"]]
        atoms = [
            _structure(z, r, c, key)
            for z, r, c, key in zip(
                np.split(data["numbers"], splits),
                np.split(data["positions"], splits),
                data["cells"],
                ids,
                strict=True,
            )
        ]
        return CifTable(atoms, ids, data["targets"].copy() if "targets" in data else None)


def _subset(table: CifTable, rows: np.ndarray) -> CifTable:
    return CifTable(
        [table.atoms[i] for i in rows],
        [table.ids[i] for i in rows],
        None if table.targets is None else table.targets[rows],
    )


def read_cif_csv(
    path: str | os.PathLike,
    *,
    target: str | None = None,
    id_column: str = "material_id",
    ids: Sequence[str] | None = None,
    limit: int | None = None,
    seed: int | None = None,
    parser: Literal["ase", "pymatgen"] = "ase",
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
    keep_unreadable: bool = False,
) -> CifTable:
    """Structures of a CSV (gzip allowed) with a ``cif`` column and an id column.

    Parameters
    ----------
    path : path-like
        The CSV file.
    target : str, optional
        A numeric column to return as ``targets``; rows where it is missing are dropped.
    id_column : str
        The column of the structure ids.
    ids : sequence of str, optional
        Only these rows, in this order.
    limit, seed : int, optional
        At most ``limit`` rows: the first ones, or when ``seed`` is given a seeded random
        choice (sorted; see :func:`sample_rows`).
    parser : {"ase", "pymatgen"}
        The CIF reader.
    cache_dir : path-like, optional
        Where the parsed structures are kept (``.npz`` of plain arrays, keyed by the file's path,
        size and mtime and the arguments); a selection is also cut from the whole file's cache
        when that exists.
    progress : bool
        Show a progress bar while parsing.
    keep_unreadable : bool
        Keep a row whose CIF cannot be parsed as an empty ``Atoms`` with ``info["read_error"]``
        (the message) instead of raising; such a selection is not cached.

    Returns
    -------
    CifTable
        The selected structures, their ids and (with ``target``) their target values.

    Raises
    ------
    InputError
        When the file is missing or not a CSV, a column is missing, an id is not in the file,
        or a CIF cannot be parsed (the message names the file and the row's id).
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"dataset file not found: {p}")
    if parser not in ("ase", "pymatgen"):
        raise InputError(f"parser must be 'ase' or 'pymatgen', got {parser!r}")
    wanted = None if ids is None else [str(i) for i in ids]
    selection = (None if wanted is None else tuple(wanted), limit, seed)
    cache = whole = None
    if cache_dir is not None:
        cache = _cache_path(p, cache_dir, (target, id_column, parser, selection))
        whole = _cache_path(p, cache_dir, (target, id_column, parser, (None, None, None)))
        if cache.is_file():
            return _load(cache)
        if whole.is_file():  # a selection of an already parsed file
            everything = _load(whole)
            rows = _select(everything.ids, wanted, limit, seed, p.name, id_column)
            return _subset(everything, rows)
    import pandas as pd

    head_only = wanted is None and seed is None and target is None
    try:
        frame = pd.read_csv(p, nrows=limit if head_only else None)
    except (ValueError, OSError, UnicodeDecodeError) as exc:  # pandas' parser errors
        raise InputError(f"{p}: not a readable CSV file ({exc})") from exc
    for column in ("cif", id_column) + (() if target is None else (target,)):
        if column not in frame.columns:
            raise InputError(f"{p.name} has no column {column!r} (columns: {list(frame.columns)})")
    if target is not None:
        frame = frame[frame[target].notna()]
    all_ids = [str(i) for i in frame[id_column]]
    rows = _select(all_ids, wanted, limit, seed, p.name, id_column)
    texts = frame["cif"].to_numpy()
    todo = rows
    if progress:
        from tqdm.auto import tqdm

        todo = tqdm(rows, desc=f"parsing {p.name}")
    atoms = []
    unreadable = False
    for row in todo:
        try:
            parsed = _parse(str(texts[row]), parser)
        except Exception as exc:  # the CIF readers raise many types (StopIteration, ...)
            detail = f"{type(exc).__name__}: {exc or 'no structure in it'}"
            message = f"{p.name}: {id_column} {all_ids[row]}: unreadable CIF ({detail})"
            if not keep_unreadable:
                raise InputError(message) from exc
            unreadable = True
            atoms.append(Atoms(info={"source_id": all_ids[row], "read_error": message}))
            continue
        atoms.append(_structure(parsed.numbers, parsed.positions, parsed.cell[:], all_ids[row]))
    picked = [all_ids[i] for i in rows]
    values = None
    if target is not None:
        values = frame[target].to_numpy(dtype=np.float64)[rows]
    table = CifTable(atoms, picked, values)
    if cache is not None and not unreadable:
        _save(table, cache)
    return table


def read_mp20(
    path: str | os.PathLike,
    limit: int | None = None,
    ids: Sequence[str] | None = None,
    *,
    keep_unreadable: bool = False,
) -> list[Atoms]:
    """Structures of an MP-20 style CSV (:func:`read_cif_csv` with ASE's CIF reader), each with
    ``info["source_id"]`` = material_id. ``ids`` selects rows, ``limit`` keeps the first;
    ``keep_unreadable`` as in :func:`read_cif_csv` (the dataset builders store such rows as
    "failed": one bad row never stops a run)."""
    return read_cif_csv(path, ids=ids, limit=limit, keep_unreadable=keep_unreadable).atoms


def content_hash(path: Path) -> tuple[str, dict[str, int]]:
    """sha256 over the stable rows sorted by source id: id, temperatures, U rounded to 1e-9 Å²."""
    from ase.db import connect

    digest = hashlib.sha256()
    counts: dict[str, int] = {}
    with connect(path) as db:
        rows = sorted(db.select(), key=lambda r: str(r.source_id))
        for row in rows:
            counts[row.status] = counts.get(row.status, 0) + 1
            if row.status != "ok":
                continue
            digest.update(str(row.source_id).encode())
            digest.update(np.round(np.asarray(row.data["temperatures"], float), 6).tobytes())
            digest.update(np.round(np.asarray(row.data["adps"], float), 9).tobytes())
    return digest.hexdigest(), counts
