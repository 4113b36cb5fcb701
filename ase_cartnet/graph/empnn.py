"""EMPNN's crystal graph: the periodic kNN graph with ties kept (cell-choice invariant)."""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Data

from ase_cartnet.graph.neighbours import knn_graph


def crystal_graph(
    numbers: np.ndarray,
    positions: np.ndarray,
    cell: np.ndarray,
    k: int,
    *,
    dtype: torch.dtype = torch.float32,
) -> Data:
    """A PyG graph of one periodic crystal for EMPNN: the kNN graph of ``ase_cartnet.graph``
    with every tie at the k-th distance kept (so the graph does not depend on the choice of
    cell, Def. 6). Fields: numbers (N,), pos (N, 3) Å, cell (1, 3, 3), edge_index, cell_shift,
    n_atoms (1,)."""
    nl = knn_graph(positions, cell, True, k, keep_ties=True)
    return Data(
        numbers=torch.as_tensor(numbers, dtype=torch.int64),
        pos=torch.as_tensor(positions, dtype=dtype),
        cell=torch.as_tensor(cell, dtype=dtype).reshape(1, 3, 3),
        edge_index=torch.as_tensor(nl.edge_index, dtype=torch.int64),
        cell_shift=torch.as_tensor(nl.cell_shifts, dtype=dtype),
        n_atoms=torch.tensor([len(numbers)], dtype=torch.int64),
        num_nodes=len(numbers),
    )
