"""CrysToGraph inputs (paper section 2.1–2.2): the k-NN crystal graph, its line graph and the
positional encodings, as a PyG ``Data`` that :func:`~ase_cartnet.graph.neighbours.batch_graphs`
batches.

* Crystal graph: the k = 12 nearest neighbours of every atom, periodic images included, from
  :func:`ase_cartnet.graph.neighbours.knn_graph` (edges may be long: no cutoff). Edge vectors, their
  spherical coordinates and the "longer than 8 Å" flag are computed in the model, in torch.
* Line graph L(G): one node per edge of G; an edge a → b of L(G) for every pair of edges
  a = (u → v), b = (v → w) of G (backtracking pairs included), stored as ``lg_edge_index``
  (2, T) of edge indices, sorted by b. Its features (cosine of the bond angle at v) are
  computed in the model.
* Positional encodings ``pe`` (N, lap_dim + rw_dim): Laplacian eigenvectors (Dwivedi et al.
  2020) of the symmetrised k-NN multigraph without self-image edges, and random-walk return
  probabilities (Dwivedi et al. 2021) of the k-NN walk (self images count as returns).

Laplacian eigenvectors are defined up to sign, and up to a rotation inside degenerate
eigenspaces (common in symmetric crystals). ``lap_mode="signed"`` (the paper) gives √N·v with a
canonical sign (largest-magnitude entry positive) and relies on random sign flips in training
(:func:`random_laplacian_sign_flip`); ``lap_mode="projector"`` gives N·diag(P_λ) for the
eigenspace projector P_λ = Σ v vᵀ of each eigenvector's eigenvalue, which is invariant to the
sign and the basis choice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch_geometric.data import Data

from ase_cartnet.errors import InputError
from ase_cartnet.graph.atom_features import atom_features
from ase_cartnet.graph.neighbours import knn_graph

if TYPE_CHECKING:  # pragma: no cover
    import ase

LapMode = Literal["signed", "projector"]
EIGEN_TOL = 1e-6
"""Eigenvalues closer than this are one degenerate eigenspace (``lap_mode="projector"``)."""

DENSE_EIGEN_MAX = 2000
"""Atoms up to which the Laplacian encoding uses a dense eigendecomposition (O(N³), exact as
trained); larger cells use a sparse shift-invert Lanczos solve (scipy ``eigsh``) for the few
eigenvectors needed, the same eigenvalues and eigenspaces (a degenerate eigenspace may come out
in another basis, as for any solver)."""

WALK_ROW_BLOCK = 512
"""Rows of the random-walk powers propagated at once (memory: this many × N numbers)."""


class CrysToGraphData(Data):
    """A ``Data`` whose ``lg_edge_index`` (edge indices) is offset by the edge count on batching."""

    def __inc__(self, key, value, *args, **kwargs):
        if key == "lg_edge_index":
            return self.edge_index.size(1)
        return super().__inc__(key, value, *args, **kwargs)


def line_graph(edge_index: np.ndarray) -> np.ndarray:
    """Line-graph edges (2, T) int64: row 0 edge a = (u → v), row 1 edge b = (v → w), for every
    pair with target(a) == source(b); sorted by b (then a)."""
    src, tgt = np.asarray(edge_index[0]), np.asarray(edge_index[1])
    n_nodes = int(max(src.max(initial=-1), tgt.max(initial=-1))) + 1
    by_source = np.argsort(src, kind="stable")
    out_degree = np.bincount(src, minlength=n_nodes)
    starts = np.cumsum(out_degree) - out_degree
    pairs = out_degree[tgt]  # edges leaving the target of each edge a
    a = np.repeat(np.arange(src.shape[0], dtype=np.int64), pairs)
    offset = np.arange(a.shape[0]) - np.repeat(np.cumsum(pairs) - pairs, pairs)
    b = by_source[starts[tgt[a]] + offset]
    order = np.lexsort((a, b))
    return np.ascontiguousarray(np.stack([a[order], b[order]]).astype(np.int64))


def _dense_laplacian(edge_index: np.ndarray, n_atoms: int) -> np.ndarray:
    """I − D^(−1/2) A D^(−1/2) (N, N) of the symmetrised multigraph without self-image edges."""
    src, tgt = edge_index
    keep = src != tgt  # an atom's own images carry no connectivity between atoms
    adjacency = np.zeros((n_atoms, n_atoms))
    np.add.at(adjacency, (tgt[keep], src[keep]), 1.0)
    adjacency = adjacency + adjacency.T
    degree = adjacency.sum(axis=1)
    inv_sqrt = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1e-300)), 0.0)
    return np.eye(n_atoms) - inv_sqrt[:, None] * adjacency * inv_sqrt[None, :]


def _smallest_eigenpairs(
    edge_index: np.ndarray, n_atoms: int, m: int, mode: LapMode
) -> tuple[np.ndarray, np.ndarray]:
    """The m + 1 smallest eigenpairs of the (sparse) normalised Laplacian, sorted, by shift-invert
    Lanczos; for ``mode="projector"`` more until the last eigenspace is complete."""
    from scipy.sparse import coo_matrix, diags, identity
    from scipy.sparse.linalg import eigsh

    src, tgt = edge_index
    keep = src != tgt
    ones = np.ones(int(keep.sum()))
    adjacency = coo_matrix((ones, (tgt[keep], src[keep])), shape=(n_atoms, n_atoms)).tocsr()
    adjacency = adjacency + adjacency.T
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    inv_sqrt = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1e-300)), 0.0)
    scale = diags(inv_sqrt)
    laplacian = (identity(n_atoms, format="csc") - scale @ adjacency @ scale).tocsc()
    count = m + 1 + (8 if mode == "projector" else 0)
    while True:
        count = min(count, n_atoms - 1)
        values, vectors = eigsh(laplacian, k=count, sigma=-1e-2, which="LM", tol=1e-12)
        order = np.argsort(values)
        values, vectors = values[order], vectors[:, order]
        complete = values[-1] - values[m] >= EIGEN_TOL
        if mode != "projector" or complete or count == n_atoms - 1:
            return values, vectors
        count *= 2


def laplacian_pe(edge_index: np.ndarray, n_atoms: int, dim: int, mode: LapMode) -> np.ndarray:
    """(N, dim) Laplacian positional encoding of the graph (module docstring); columns beyond the
    N − 1 non-trivial eigenvectors are zero."""
    if mode not in ("signed", "projector"):
        raise InputError(f"lap_mode must be 'signed' or 'projector', got {mode!r}")
    if n_atoms > DENSE_EIGEN_MAX and min(dim, n_atoms - 1) > 0:
        values, vectors = _smallest_eigenpairs(edge_index, n_atoms, min(dim, n_atoms - 1), mode)
    else:
        values, vectors = np.linalg.eigh(_dense_laplacian(edge_index, n_atoms))
    out = np.zeros((n_atoms, dim))
    m = min(dim, n_atoms - 1)
    if m <= 0:
        return out
    if mode == "signed":
        chosen = vectors[:, 1 : m + 1].copy()
        peak = np.argmax(np.round(np.abs(chosen), 9), axis=0)  # first largest |entry|
        signs = np.sign(chosen[peak, np.arange(m)])
        chosen *= np.where(signs == 0, 1.0, signs)
        out[:, :m] = np.sqrt(n_atoms) * chosen
    else:
        squares = vectors**2
        for column, j in enumerate(range(1, m + 1)):
            same = np.abs(values - values[j]) < EIGEN_TOL
            out[:, column] = n_atoms * squares[:, same].sum(axis=1)
    return out


def random_walk_pe(edge_index: np.ndarray, n_atoms: int, steps: int) -> np.ndarray:
    """(N, steps) return probabilities (Mᵏ)_ii, k = 1 … steps, of the walk that moves from an
    atom to one of its k-NN neighbours (edges into it) uniformly; self images count as returns."""
    from scipy.sparse import coo_matrix

    src, tgt = edge_index
    counts = np.bincount(tgt, minlength=n_atoms).astype(float)
    weights = 1.0 / np.maximum(counts, 1.0)[tgt]
    walk = coo_matrix((weights, (tgt, src)), shape=(n_atoms, n_atoms)).tocsr()  # sums repeats
    out = np.zeros((n_atoms, steps))
    # Row i of M^k is e_iᵀ M^k: propagate blocks of rows through the sparse walk (k·N·nnz
    # instead of k·N³ for dense powers; memory one block of rows).
    walk_t = walk.T.tocsr()
    for start in range(0, n_atoms, WALK_ROW_BLOCK):
        rows = np.arange(start, min(start + WALK_ROW_BLOCK, n_atoms))
        block = np.zeros((n_atoms, len(rows)))  # columns: (M^k)ᵀ e_i
        block[rows, np.arange(len(rows))] = 1.0
        for k in range(steps):
            block = walk_t @ block
            out[rows, k] = block[rows, np.arange(len(rows))]
    return out


def crystograph_graph(
    atoms: ase.Atoms,
    *,
    k: int = 12,
    lap_dim: int = 8,
    rw_dim: int = 16,
    lap_mode: LapMode = "signed",
    dtype: torch.dtype = torch.float32,
) -> CrysToGraphData:
    """Everything CrysToGraph reads from one periodic structure.

    Fields: ``x`` (N, 92) CGCNN one-hot atom features, ``numbers`` (N,), ``pos`` (N, 3) Å,
    ``cell`` (1, 3, 3) Å (rows are lattice vectors), ``edge_index`` (2, E = kN) (row 0 source
    j, row 1 target i), ``cell_shift`` (E, 3), ``lg_edge_index`` (2, T) edge indices, ``pe``
    (N, lap_dim + rw_dim), ``num_nodes`` = N.

    Raises ``InputError`` for structures that are not periodic along all three axes (k-NN
    edges of a molecule are not what the model was built for), and for bad input.
    """
    import ase  # local import: keep the module cheap for the model code path

    if not isinstance(atoms, ase.Atoms):
        raise InputError(f"expected an ase.Atoms, got {type(atoms).__name__}")
    if len(atoms) == 0:
        raise InputError("the structure is empty (no atoms)")
    if not np.asarray(atoms.pbc, dtype=bool).all():
        raise InputError(
            f"CrysToGraph needs a crystal periodic along a, b and c; got pbc={atoms.pbc.tolist()}"
        )
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise InputError(f"dtype must be a torch floating-point dtype, got {dtype!r}")
    x = atom_features(atoms.numbers)
    positions = atoms.get_positions()
    cell = np.asarray(atoms.cell[:], dtype=np.float64)
    nl = knn_graph(positions, cell, atoms.pbc, k)
    n = len(atoms)
    pe = np.concatenate(
        [
            laplacian_pe(nl.edge_index, n, lap_dim, lap_mode),
            random_walk_pe(nl.edge_index, n, rw_dim),
        ],
        axis=1,
    )
    return CrysToGraphData(
        x=torch.as_tensor(x, dtype=dtype),
        numbers=torch.as_tensor(atoms.numbers, dtype=torch.int64),
        pos=torch.as_tensor(positions, dtype=dtype),
        cell=torch.as_tensor(cell, dtype=dtype).reshape(1, 3, 3),
        edge_index=torch.as_tensor(nl.edge_index, dtype=torch.int64),
        cell_shift=torch.as_tensor(nl.cell_shifts, dtype=dtype),
        lg_edge_index=torch.as_tensor(line_graph(nl.edge_index)),
        pe=torch.as_tensor(pe, dtype=dtype),
        num_nodes=n,
    )


def random_laplacian_sign_flip(batch, lap_dim: int, generator: torch.Generator) -> None:
    """Training augmentation for ``lap_mode="signed"``: flip the sign of each Laplacian
    eigenvector of each structure at random (in place on ``batch.pe``)."""
    if lap_dim == 0:
        return
    n_graphs = int(batch.cell.shape[0])
    signs = torch.randint(0, 2, (n_graphs, lap_dim), generator=generator) * 2 - 1
    graph_of_atom = getattr(batch, "batch", None)
    if graph_of_atom is None:
        graph_of_atom = torch.zeros(batch.pe.shape[0], dtype=torch.long)
    pe = batch.pe.clone()
    pe[:, :lap_dim] = pe[:, :lap_dim] * signs.to(pe.dtype)[graph_of_atom]
    batch.pe = pe
