"""Readers of the dataset files: MP-20 style CSVs (``material_id``, ``cif``; CDVAE splits), and
the content hash of an ADP database (``phonon_ref.build_dataset`` rows)."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms


def read_mp20(
    path: str | os.PathLike,
    limit: int | None = None,
    ids: Sequence[str] | None = None,
    *,
    keep_unreadable: bool = False,
) -> list[Atoms]:
    """Structures of an MP-20 style CSV (columns ``material_id``, ``cif``; gzip allowed),
    each with ``info["source_id"]`` = material_id. ``ids`` selects rows, ``limit`` caps.

    A missing file, a missing column or an unknown id is an ``InputError`` naming it. A row
    whose CIF cannot be read raises an ``InputError`` naming its id, or with
    ``keep_unreadable`` becomes an empty ``Atoms`` with ``info["read_error"]``, which the
    dataset builders store as a "failed" row (one bad row never stops a run).
    """
    import pandas as pd
    from ase.io import read

    from ase_cartnet.errors import InputError

    if not Path(path).is_file():
        raise InputError(f"no such CSV file: {path}")
    try:
        frame = pd.read_csv(path)
    except (ValueError, OSError, UnicodeDecodeError) as exc:  # pandas' parser errors
        raise InputError(f"{path}: not a readable CSV file ({exc})") from exc
    missing = [c for c in ("material_id", "cif") if c not in frame.columns]
    if missing:
        raise InputError(
            f"{path}: no column {' or '.join(map(repr, missing))} (an MP-20 style CSV has "
            f"material_id and cif; this one has {list(frame.columns)[:8]})"
        )
    if ids is not None:
        unknown = sorted(set(ids) - set(frame["material_id"].astype(str)))
        if unknown:
            raise InputError(f"{path}: no rows with material_id {unknown[:10]}")
        frame = frame.set_index(frame["material_id"].astype(str)).loc[list(ids)]
    if limit is not None:
        frame = frame.head(int(limit))
    out = []
    for mid, cif in zip(frame["material_id"], frame["cif"], strict=True):
        try:
            atoms = read(io.StringIO(str(cif)), format="cif")
            atoms.info = {"source_id": str(mid)}
        except Exception as exc:  # ASE's CIF parser raises many types (StopIteration, …)
            detail = str(exc) or "no structure in it"
            message = f"{path}: material_id {mid}: unreadable CIF ({type(exc).__name__}: {detail})"
            if not keep_unreadable:
                raise InputError(message) from exc
            atoms = Atoms(info={"source_id": str(mid), "read_error": message})
        out.append(atoms)
    return out


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
