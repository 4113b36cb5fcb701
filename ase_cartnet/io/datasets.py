"""Readers of the dataset files: MP-20 style CSVs (``material_id``, ``cif``; CDVAE splits)."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

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
