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
    path: str | os.PathLike, limit: int | None = None, ids: Sequence[str] | None = None
) -> list[Atoms]:
    """Structures of an MP-20 style CSV (columns ``material_id``, ``cif``; gzip allowed),
    each with ``info["source_id"]`` = material_id. ``ids`` selects rows, ``limit`` caps."""
    import pandas as pd
    from ase.io import read

    frame = pd.read_csv(path)
    if ids is not None:
        frame = frame.set_index("material_id").loc[list(ids)].reset_index()
    if limit is not None:
        frame = frame.head(int(limit))
    out = []
    for mid, cif in zip(frame["material_id"], frame["cif"], strict=True):
        atoms = read(io.StringIO(cif), format="cif")
        atoms.info = {"source_id": str(mid)}
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
