"""The DeepRelax multi-graph of a structure: capped periodic edges and displacement edges (all
in-cell pairs, or those within a distance)."""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from torch_geometric.data import Data

from ase_cartnet.graph.neighbours import cap_neighbours, radius_graph

CELL_RANGE = 2
"""Cell offsets k ∈ {−2, …, 2}³ (section 4.3.1); K = (k1+2) + 5(k2+2) + 25(k3+2) ∈ [0, 124]."""


def deeprelax_graph(
    atoms: Atoms,
    config,
    dtype: torch.dtype = torch.float32,
    relaxed: Atoms | None = None,
) -> Data:
    """The DeepRelax multi-graph of ``atoms`` (section 4.2) as a PyG ``Data``; ``config`` is a
    ``DeepRelaxConfig`` (its ``cutoff``, Å, and ``max_neighbours`` are read).

    Periodic edges: every (i, j, k) within ``config.cutoff`` (from :func:`ase_cartnet.graph.
    radius_graph`), each atom keeping its ``config.max_neighbours`` nearest (ties at the last
    distance kept), only offsets k ∈ {−2..2}³ (those the offset encoding can name). Displacement
    edges ``disp_index``: all N² ordered pairs (i, j) of the cell, i = j included, or with
    ``config.disp_cutoff`` > 0 the ordered pairs whose in-cell distance |r_j − r_i| is at most
    that (i = j included).

    Fields: ``numbers``, ``pos`` (N, 3), ``cell`` (1, 3, 3), ``edge_index`` (2, E),
    ``cell_shift`` (E, 3), ``disp_index`` (2, N²), and with ``relaxed`` also ``target_pos``
    (N, 3) and ``target_cell`` (1, 3, 3).
    """
    positions = np.asarray(atoms.positions, dtype=np.float64)
    cell = np.asarray(atoms.cell[:], dtype=np.float64)
    nl = radius_graph(positions, cell, True, config.cutoff)
    # cap_neighbours keeps d² <= the (m+1)-th smallest: m = max_neighbours − 1 keeps the nearest
    # max_neighbours (and exact ties), none added by tolerance
    if config.max_neighbours > 1:
        nl = cap_neighbours(nl, config.max_neighbours - 1, tolerance=0.0)
    inside = np.all(np.abs(nl.cell_shifts) <= CELL_RANGE, axis=1)
    if not inside.all():
        nl = nl._take(inside)
    disp = displacement_pairs(positions, getattr(config, "disp_cutoff", 0.0))
    data = Data(
        numbers=torch.as_tensor(atoms.numbers, dtype=torch.int64),
        pos=torch.as_tensor(positions, dtype=dtype),
        cell=torch.as_tensor(cell, dtype=dtype).reshape(1, 3, 3),
        edge_index=torch.as_tensor(nl.edge_index, dtype=torch.int64),
        cell_shift=torch.as_tensor(nl.cell_shifts, dtype=dtype),
        disp_index=torch.as_tensor(disp),
        num_nodes=len(atoms),
    )
    if relaxed is not None:
        data.target_pos = torch.as_tensor(np.asarray(relaxed.positions), dtype=dtype)
        data.target_cell = torch.as_tensor(np.asarray(relaxed.cell[:]), dtype=dtype).reshape(
            1, 3, 3
        )
    return data


def displacement_pairs(positions: np.ndarray, cutoff: float = 0.0) -> np.ndarray:
    """(2, D) int64 displacement edges (source j, target i), sorted by target then source: all
    N² ordered pairs for ``cutoff`` 0, else those with |r_j − r_i| ≤ ``cutoff`` Å (no periodic
    images: displacement edges compare positions within the listed cell), i = j included."""
    n = len(positions)
    if cutoff <= 0:
        grid = np.arange(n, dtype=np.int64)
        return np.stack([np.tile(grid, n), np.repeat(grid, n)])
    from scipy.spatial import cKDTree

    pairs = cKDTree(positions).query_pairs(cutoff, output_type="ndarray").astype(np.int64)
    src = np.concatenate([pairs[:, 0], pairs[:, 1], np.arange(n)])
    tgt = np.concatenate([pairs[:, 1], pairs[:, 0], np.arange(n)])
    order = np.lexsort((src, tgt))
    return np.stack([src[order], tgt[order]])
