"""Periodic neighbour lists and graphs: the only place in the package that builds them.

Conventions (PyTorch Geometric, and the official CartNet code):

* ``edge_index[0]`` is the **source** j, the neighbour whose periodic image is taken;
  ``edge_index[1]`` is the **target** i, the centre atom that receives the message.
* ``cell_shifts[e] = n`` (integers) is applied to the source: the image sits at
  ``r_j + n @ cell``, with the lattice vectors as the rows of ``cell`` (ASE convention).
* :func:`edge_vectors` returns ``r_j + n @ cell - r_i``, the vector from the centre to the
  neighbour image. (The official CartNet model uses the negative of this.)
* An edge exists for every ``(i, j, n)`` with ``1e-4 Å² < d² <= cutoff²``: only the
  zero-distance self pair is left out, so an atom's own periodic images are neighbours.
* Positions are never wrapped into the cell; shifts are relative to the positions as given.
* Edges are sorted by target, then source, then shift (lexicographic), so graphs are
  deterministic.

Neighbour search is done by `vesin <https://github.com/Luthaf/vesin>`_; integer shifts are
then turned into vectors (in torch, differentiably) by :func:`edge_vectors`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import vesin
from torch_geometric.data import Batch, Data

from ase_cartnet.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import ase

__all__ = [
    "NeighbourList",
    "atoms_to_graph",
    "batch_graphs",
    "cap_neighbours",
    "closest_pairs",
    "edge_vectors",
    "knn_graph",
    "radius_graph",
    "triplets",
]

MIN_DISTANCE_SQ = 1e-4
"""Pairs with d² at or below this (Å²) are not edges (the zero-distance self pair, upstream)."""

MAX_EDGES = 200_000_000
"""Refuse graphs estimated to exceed this many edges (tens of GB) with a clear error."""

KNN_TIE_DECIMALS = 8
"""kNN ranks distances rounded to 1e-8 Å, so float noise does not decide between equal shells."""

# Slack given to vesin, whose cutoff is strict (d < cutoff); the exact d² <= cutoff² test is ours.
_VESIN_SLACK = 1e-6


@dataclass(frozen=True)
class NeighbourList:
    """A neighbour list in the package's conventions (see the module docstring).

    Attributes
    ----------
    edge_index
        (2, E) int64; row 0 = source j (the neighbour), row 1 = target i (the centre).
    cell_shifts
        (E, 3) int64; n such that the source image is at ``r_j + n @ cell``.
    distances
        (E,) float64, ``|r_j + n @ cell - r_i|`` in Å.
    """

    edge_index: np.ndarray
    cell_shifts: np.ndarray
    distances: np.ndarray

    @property
    def num_edges(self) -> int:
        return int(self.distances.shape[0])

    def _take(self, selection: np.ndarray) -> NeighbourList:
        return NeighbourList(
            edge_index=np.ascontiguousarray(self.edge_index[:, selection]),
            cell_shifts=np.ascontiguousarray(self.cell_shifts[selection]),
            distances=np.ascontiguousarray(self.distances[selection]),
        )


# --------------------------------------------------------------------------------------------
# input validation
# --------------------------------------------------------------------------------------------


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _check_positions(positions) -> np.ndarray:
    try:
        pos = _to_numpy(positions).astype(np.float64, copy=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"positions must be an (N, 3) array of numbers: {exc}") from exc
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise InputError(f"positions must have shape (N, 3), got {pos.shape}")
    if pos.shape[0] == 0:
        raise InputError("the structure is empty (no atoms)")
    if not np.all(np.isfinite(pos)):
        bad = np.flatnonzero(~np.all(np.isfinite(pos), axis=1))
        raise InputError(f"positions contain non-finite values (atoms {bad[:10].tolist()})")
    return np.ascontiguousarray(pos)


def _check_pbc(pbc) -> np.ndarray:
    arr = _to_numpy(pbc)
    if arr.ndim == 0:
        arr = np.repeat(arr, 3)
    if arr.shape != (3,) or arr.dtype.kind not in "bi":
        raise InputError(f"pbc must be a bool or 3 bools, got {pbc!r}")
    if arr.dtype.kind == "i" and not np.all((arr == 0) | (arr == 1)):
        raise InputError(f"pbc must be a bool or 3 bools, got {pbc!r}")
    return arr.astype(bool)


def _check_cell(cell, pbc: np.ndarray) -> np.ndarray:
    if cell is None:
        if pbc.any():
            raise InputError("a cell is required when any axis is periodic")
        return np.zeros((3, 3))
    try:
        arr = _to_numpy(cell).astype(np.float64, copy=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"cell must be a (3, 3) array of numbers: {exc}") from exc
    if arr.shape != (3, 3):
        raise InputError(f"cell must have shape (3, 3) (lattice vectors as rows), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InputError("cell contains non-finite values")
    periodic = arr[pbc]
    if periodic.shape[0]:
        lengths = np.linalg.norm(periodic, axis=1)
        if np.any(lengths < 1e-8):
            axes = np.flatnonzero(pbc)[lengths < 1e-8].tolist()
            raise InputError(f"zero-length cell vector on periodic axis {axes}")
        # k-dimensional volume of the periodic vectors, relative to the product of their lengths,
        # on the reduced basis: a valid but very skewed basis of a lattice is not degenerate
        periodic = _reduced(arr, pbc)[0][pbc]
        lengths = np.linalg.norm(periodic, axis=1)
        gram = periodic @ periodic.T
        rel = math.sqrt(max(float(np.linalg.det(gram)), 0.0)) / float(np.prod(lengths))
        if rel < 1e-8:
            raise InputError(
                "the cell has zero volume on its periodic axes (linearly dependent lattice vectors)"
            )
    return np.ascontiguousarray(arr)


SKEWED_DEFECT = 100.0
"""Orthogonality defect ∏|a_i| / V of the periodic vectors above which :func:`atoms_to_graph`
stores the Minkowski-reduced basis (edge vectors r_j + n @ cell lose digits to cancellation);
ordinary cells (defect of a few) keep their own basis and edge order."""


def _orthogonality_defect(box: np.ndarray, pbc: np.ndarray) -> float:
    """∏|a_i| / V_k of the k periodic vectors of ``box`` (1 for an orthogonal cell; 1 without
    periodic axes); inf when they span no volume."""
    periodic = box[pbc]
    if not len(periodic):
        return 1.0
    volume = math.sqrt(max(float(np.linalg.det(periodic @ periodic.T)), 0.0))
    lengths = float(np.prod(np.linalg.norm(periodic, axis=1)))
    return lengths / volume if volume > 0 else math.inf


def _reduced(box: np.ndarray, pbc: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(reduced box, op) with ``reduced = op @ box`` the Minkowski-reduced basis of the
    periodic axes (ase), or (box, None) when ``box`` is reduced already or cannot be reduced.
    A skewed basis (vectors of 1,000 Å for a 12 Å³ cell) has tiny heights between its faces:
    searched as given, it would need millions of cell images."""
    from ase.geometry import minkowski_reduce

    if not pbc.any():
        return box, None
    try:
        with np.errstate(all="ignore"):
            reduced, op = minkowski_reduce(box, pbc)
    except (ValueError, ArithmeticError, RuntimeError):
        return box, None
    op = np.rint(op).astype(np.int64)
    if np.array_equal(op, np.eye(3, dtype=np.int64)):
        return box, None
    return np.ascontiguousarray(op @ box, dtype=np.float64), op


def _pairs(pos: np.ndarray, box: np.ndarray, pbc: np.ndarray, cutoff: float, full: bool):
    """vesin's (i, j, S, d) on the reduced basis, shifts S expressed in ``box``'s basis:
    ``r_j + S @ box - r_i`` is the pair vector."""
    reduced, op = _reduced(box, pbc)
    calculator = vesin.NeighborList(cutoff=cutoff, full_list=full)
    first, second, shifts, distances = calculator.compute(pos, reduced, pbc, "ijSd")
    if op is not None:  # S_r @ (op @ box) = (S_r @ op) @ box
        shifts = shifts.astype(np.int64) @ op
    return first, second, shifts, distances


def _check_positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"{name} must be a positive number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0.0:
        raise InputError(f"{name} must be a positive finite number, got {value!r}")
    return value


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    if value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _estimated_edges(n_atoms: int, cell: np.ndarray, pbc: np.ndarray, cutoff: float) -> float:
    """Rough edge count, to refuse absurd requests (a cutoff of many thousand cell lengths).

    Fully periodic: N² × ball volume / cell volume (density × ball). Mixed boundaries: the
    count of each atom's own images within the cutoff, N × ball_k / V_k, a lower bound (the
    atoms may spread along the open axes, so a density estimate would overshoot). Molecules: 0.
    """
    k = int(pbc.sum())
    if k == 0:
        return 0.0
    periodic = cell[pbc]
    volume = math.sqrt(max(float(np.linalg.det(periodic @ periodic.T)), 0.0))
    ball = {1: 2.0 * cutoff, 2: math.pi * cutoff**2, 3: 4.0 / 3.0 * math.pi * cutoff**3}[k]
    per_atom = ball / volume
    return float(n_atoms) * per_atom * (n_atoms if k == 3 else 1)


# --------------------------------------------------------------------------------------------
# neighbour lists (numpy + vesin)
# --------------------------------------------------------------------------------------------


def _canonical_order(src: np.ndarray, tgt: np.ndarray, shifts: np.ndarray, n_atoms: int):
    """Permutation sorting edges by (target, source, shift), via one int64 key when it fits."""
    if src.size == 0:
        return np.arange(0, dtype=np.int64)
    lo = shifts.min(axis=0)
    span = shifts.max(axis=0) - lo + 1
    if float(n_atoms) ** 2 * float(np.prod(span.astype(np.float64))) < 2.0**62:
        key = tgt * n_atoms + src
        for axis in range(3):
            key = key * int(span[axis]) + (shifts[:, axis] - lo[axis])
        return np.argsort(key, kind="stable")
    return np.lexsort((shifts[:, 2], shifts[:, 1], shifts[:, 0], src, tgt))


def radius_graph(
    positions,
    cell,
    pbc,
    cutoff: float,
    *,
    max_neighbours: int | None = None,
    cap_tolerance: float = 0.01,
) -> NeighbourList:
    """All edges ``(i, j, n)`` with ``1e-4 Å² < |r_j + n @ cell - r_i|² <= cutoff²``.

    Parameters
    ----------
    positions
        (N, 3) Cartesian positions in Å (not wrapped; shifts are relative to them).
    cell
        (3, 3) lattice vectors as rows. Vectors on non-periodic axes may be zero
        (a molecule may pass an all-zero cell, or ``None``).
    pbc
        a bool or 3 bools (mixed boundary conditions, e.g. slabs, are supported).
    cutoff
        radius in Å (inclusive); it may be many times longer than the cell.
    max_neighbours
        if given, apply :func:`cap_neighbours` with ``cap_tolerance`` (Å²).

    Returns
    -------
    NeighbourList
        Sorted by target, source, shift.

    Raises
    ------
    ~ase_cartnet.errors.InputError
        (a ValueError) wrong shapes, non-finite values, ``cutoff <= 0``, or a degenerate cell
        on a periodic axis.
    """
    pos = _check_positions(positions)
    pbc_arr = _check_pbc(pbc)
    box = _check_cell(cell, pbc_arr)
    cutoff = _check_positive(cutoff, "cutoff")
    n_atoms = pos.shape[0]

    estimate = _estimated_edges(n_atoms, box, pbc_arr, cutoff)
    if estimate > MAX_EDGES:
        raise InputError(
            f"a {cutoff:g} Å cutoff on this cell would give about {estimate:.2g} edges "
            f"(more than {MAX_EDGES:.0e}); the cell is too small for this cutoff"
        )

    centre, neighbour, shifts, distances = _pairs(pos, box, pbc_arr, cutoff + _VESIN_SLACK, True)
    # vesin's pair (i, j, S) has vector r_j + S @ box - r_i: target = i, source = j, n = S.
    tgt = centre.astype(np.int64)
    src = neighbour.astype(np.int64)
    shifts = shifts.astype(np.int64)
    d2 = distances * distances
    keep = (d2 > MIN_DISTANCE_SQ) & (d2 <= cutoff * cutoff)
    if not keep.all():
        src, tgt, shifts, distances = src[keep], tgt[keep], shifts[keep], distances[keep]

    order = _canonical_order(src, tgt, shifts, n_atoms)
    nl = NeighbourList(
        edge_index=np.ascontiguousarray(np.stack([src[order], tgt[order]])),
        cell_shifts=np.ascontiguousarray(shifts[order]),
        distances=np.ascontiguousarray(distances[order], dtype=np.float64),
    )
    if max_neighbours is not None:
        nl = cap_neighbours(nl, max_neighbours, cap_tolerance)
    return nl


def closest_pairs(positions, cell, pbc, threshold: float) -> np.ndarray:
    """Pairs of atoms (or an atom and a periodic image of itself or another atom) closer than
    ``threshold`` Å, including coincident atoms at distance 0 (which :func:`radius_graph`
    leaves out by contract). Used to reject overlapping structures.

    Returns a (P, 3) float array of rows (i, j, d) with i <= j, each pair once, sorted by d.
    """
    pos = _check_positions(positions)
    pbc_arr = _check_pbc(pbc)
    box = _check_cell(cell, pbc_arr)
    threshold = _check_positive(threshold, "threshold")
    first, second, shifts, distances = _pairs(pos, box, pbc_arr, threshold, False)
    is_self = (first == second) & ~shifts.any(axis=1)
    rows = np.stack([np.minimum(first, second), np.maximum(first, second), distances], axis=1)
    rows = rows[~is_self]
    return rows[np.argsort(rows[:, 2], kind="stable")]


def cap_neighbours(
    nl: NeighbourList, max_neighbours: int, tolerance: float = 0.01
) -> NeighbourList:
    """Limit the in-degree with the official CartNet app's rule (OCP's non-strict max-neighbours).

    If no target has more than ``max_neighbours`` incoming edges, nothing is removed. Otherwise
    every such target keeps exactly its edges with ``d² <= D + tolerance``, where D is the
    ``(max_neighbours + 1)``-th smallest squared distance of its incoming edges and the tolerance
    is in Å² (added to the *squared* distance). A truncated atom therefore keeps at least
    ``max_neighbours + 1`` edges, and near-ties are all kept. Edge order is preserved.
    """
    max_neighbours = _check_count(max_neighbours, "max_neighbours")
    if isinstance(tolerance, bool) or not isinstance(
        tolerance, (int, float, np.integer, np.floating)
    ):
        raise InputError(f"tolerance must be a non-negative number, got {tolerance!r}")
    tolerance = float(tolerance)
    if not math.isfinite(tolerance) or tolerance < 0.0:
        raise InputError(f"tolerance must be a non-negative finite number, got {tolerance!r}")
    if nl.num_edges == 0:
        return nl

    tgt = nl.edge_index[1]
    degree = np.bincount(tgt)
    if degree.max() <= max_neighbours:
        return nl
    d2 = nl.distances * nl.distances
    threshold = _kth_smallest_per_group(d2, tgt, degree, max_neighbours) + tolerance
    return nl._take(d2 <= threshold[tgt])


def _kth_smallest_per_group(
    values: np.ndarray, group: np.ndarray, counts: np.ndarray, kth: int
) -> np.ndarray:
    """For each group g with ``counts[g] > kth``, the ``kth``-smallest (0-based) of its values;
    ``inf`` for the other groups. Vectorised: a padded (groups × widest) partition, or a
    lexsort when group sizes are too uneven for padding."""
    result = np.full(counts.shape[0], np.inf)
    over = counts > kth
    if not over.any():
        return result
    selected = over[group]
    v, g = values[selected], group[selected]
    if np.any(g[1:] < g[:-1]):  # not grouped: group it (stable, so order within is kept)
        order = np.argsort(g, kind="stable")
        v, g = v[order], g[order]
    sizes = counts[over]
    starts = np.cumsum(sizes) - sizes
    n_rows, width = sizes.shape[0], int(sizes.max())
    if n_rows * width <= 4 * v.shape[0] + 4096:
        row = (np.cumsum(over) - 1)[g]
        padded = np.full((n_rows, width), np.inf)
        padded[row, np.arange(v.shape[0]) - starts[row]] = v
        result[over] = np.partition(padded, kth, axis=1)[:, kth]
    else:
        order = np.lexsort((v, g))
        result[over] = v[order[starts + kth]]
    return result


def knn_graph(
    positions, cell, pbc, k: int, *, initial_cutoff: float = 6.0, keep_ties: bool = False
) -> NeighbourList:
    """The ``k`` nearest neighbours (periodic images included) of every target atom.

    The cutoff starts at ``initial_cutoff`` and grows until every atom has at least ``k``
    neighbours; then each target keeps its ``k`` nearest edges, ties broken by (distance
    rounded to 1e-8 Å, source, shift). The result is sorted by target, source, shift.

    ``keep_ties=True`` keeps every edge tied with the k-th distance instead (so an atom may get
    more than k): the graph is then a radius graph with a per-atom cutoff c_i = d_k(i), which
    does not depend on the choice of cell (shifts, which depend on it, never decide), as
    lattice-equivariant models need (EMPNN Def. 6).

    Raises
    ------
    ValueError
        bad input, or fewer than ``k`` neighbours exist (a molecule with fewer than
        ``k + 1`` atoms, or with overlapping atoms).
    """
    pos = _check_positions(positions)
    pbc_arr = _check_pbc(pbc)
    box = _check_cell(cell, pbc_arr)
    k = _check_count(k, "k")
    cutoff = _check_positive(initial_cutoff, "initial_cutoff")
    n_atoms = pos.shape[0]

    max_cutoff = math.inf
    if not pbc_arr.any():
        if n_atoms - 1 < k:
            raise InputError(
                f"a non-periodic structure of {n_atoms} atoms has at most {n_atoms - 1} "
                f"neighbours per atom, fewer than k={k}"
            )
        # every pair lies within the bounding-box diagonal
        max_cutoff = float(np.linalg.norm(pos.max(axis=0) - pos.min(axis=0))) + 1e-6

    for _ in range(200):
        cutoff = min(cutoff, max_cutoff)
        nl = radius_graph(pos, box, pbc_arr, cutoff)
        degree = np.bincount(nl.edge_index[1], minlength=n_atoms)
        fewest = int(degree.min())
        if fewest >= k:
            break
        if cutoff >= max_cutoff:
            raise InputError(
                f"atom {int(np.argmin(degree))} has only {fewest} neighbours in this "
                f"non-periodic structure, fewer than k={k} (overlapping atoms?)"
            )
        # neighbour counts grow like cutoff³ (or slower): aim for k, between ×1.25 and ×2
        factor = 2.0 if fewest == 0 else min(max(1.1 * (k / fewest) ** (1 / 3), 1.25), 2.0)
        cutoff *= factor
    else:  # pragma: no cover - 200 doublings cannot fail to reach k on a periodic axis
        raise InputError(f"could not find {k} neighbours per atom")

    # nl is grouped by target and ordered by (source, shift) within a target, so among edges
    # tied at the k-th distance the first ones in list order are the ones to keep
    tgt = nl.edge_index[1]
    rounded = np.round(nl.distances, KNN_TIE_DECIMALS)
    kth = _kth_smallest_per_group(rounded, tgt, degree, k - 1)[tgt]
    closer = rounded < kth
    tied = rounded == kth
    if keep_ties:
        return nl._take(closer | tied)
    n_closer = np.bincount(tgt[closer], minlength=n_atoms)
    tied_before = np.cumsum(tied) - tied  # tied edges earlier in the list
    starts = np.cumsum(degree) - degree
    tie_rank = tied_before - tied_before[starts[tgt]]
    keep = closer | (tied & (tie_rank < (k - n_closer)[tgt]))
    return nl._take(keep)


# --------------------------------------------------------------------------------------------
# torch side
# --------------------------------------------------------------------------------------------


def _check_edges(edge_index: torch.Tensor, cell_shifts: torch.Tensor) -> None:
    """``InputError`` unless edge_index is (2, E) and cell_shifts (E, 3)."""
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise InputError(f"edge_index must have shape (2, E), got {tuple(edge_index.shape)}")
    n_edges = edge_index.shape[1]
    if cell_shifts.shape != (n_edges, 3):
        raise InputError(
            f"cell_shifts must have shape ({n_edges}, 3), got {tuple(cell_shifts.shape)}"
        )


def edge_vectors(
    positions: torch.Tensor,
    cell: torch.Tensor,
    edge_index: torch.Tensor,
    cell_shifts: torch.Tensor,
    batch: torch.Tensor | None = None,
) -> torch.Tensor:
    """Edge vectors ``r_src + n @ cell - r_tgt`` (from the centre to the neighbour image), (E, 3).

    Differentiable with respect to ``positions`` and ``cell``.

    Parameters
    ----------
    positions
        (N, 3).
    cell
        (3, 3), or (B, 3, 3) for B structures with ``batch`` (N,) mapping atoms to
        structures (``batch`` may be omitted when B == 1).
    edge_index
        (2, E) int64, row 0 source, row 1 target.
    cell_shifts
        (E, 3) integer or float; cast to ``positions.dtype``.
    """
    if positions.dim() != 2 or positions.shape[1] != 3:
        raise InputError(f"positions must have shape (N, 3), got {tuple(positions.shape)}")
    _check_edges(edge_index, cell_shifts)
    src, tgt = edge_index[0], edge_index[1]
    shifts = cell_shifts.to(positions.dtype)
    cell = cell.to(positions.dtype)

    if cell.shape == (3, 3):
        offsets = shifts @ cell
    elif cell.dim() == 3 and cell.shape[1:] == (3, 3):
        if batch is None:
            if cell.shape[0] != 1:
                raise InputError(
                    f"{cell.shape[0]} cells given but no batch vector mapping atoms to them"
                )
            offsets = shifts @ cell[0]
        elif cell.shape[0] == 1:
            offsets = shifts @ cell[0]
        else:
            if batch.shape != (positions.shape[0],):
                raise InputError(
                    f"batch must have shape ({positions.shape[0]},), got {tuple(batch.shape)}"
                )
            edge_cells = cell.index_select(0, batch.index_select(0, tgt))  # (E, 3, 3)
            offsets = torch.bmm(shifts.unsqueeze(1), edge_cells).squeeze(1)
    else:
        raise InputError(f"cell must have shape (3, 3) or (B, 3, 3), got {tuple(cell.shape)}")

    return positions.index_select(0, src) + offsets - positions.index_select(0, tgt)


def triplets(
    edge_index: torch.Tensor,
    cell_shifts: torch.Tensor,
    *,
    exclude_reversed: bool = True,
) -> torch.Tensor:
    """Pairs of edges that chain, the 2-graph Γ₂ of EMPNN Def. 6: (2, T) int64 edge indices.

    For each pair ``(a, b)`` the neighbour (source) of edge ``a`` is the centre (target) of edge
    ``b``: with :func:`edge_vectors`, ``v_a`` goes from atom ``tgt(a)`` to the image of
    ``src(a)`` and ``v_b`` continues from there, so ``v_a + v_b`` is the vector from ``tgt(a)``
    to the end of the path. ``exclude_reversed`` drops the backtracking pairs (``b`` is ``a``
    reversed: ``src(b) == tgt(a)`` and the shifts cancel), whose zero-area triangle has no
    angle. Pairs are sorted by ``a``, then ``b``. Edges need not be sorted.

    Parameters
    ----------
    edge_index
        (2, E) int64, row 0 source, row 1 target.
    cell_shifts
        (E, 3) integer (or integer-valued float) shifts.
    """
    _check_edges(edge_index, cell_shifts)
    n_edges = edge_index.shape[1]
    device = edge_index.device
    if n_edges == 0:
        return torch.zeros((2, 0), dtype=torch.int64, device=device)
    src, tgt = edge_index[0], edge_index[1]
    n_nodes = int(torch.maximum(src.max(), tgt.max())) + 1
    by_target = torch.argsort(tgt, stable=True)
    degree = torch.bincount(tgt, minlength=n_nodes)
    starts = torch.cumsum(degree, 0) - degree
    counts = degree[src]  # edges b centred on the neighbour of each edge a
    first = torch.repeat_interleave(torch.arange(n_edges, device=device), counts)
    offset = torch.arange(first.shape[0], device=device) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts
    )
    second = by_target[starts[src[first]] + offset]
    if exclude_reversed:
        shifts = torch.round(cell_shifts.to(torch.float64)).to(torch.int64)
        reversed_ = (src[second] == tgt[first]) & (shifts[first] + shifts[second] == 0).all(dim=1)
        first, second = first[~reversed_], second[~reversed_]
    order = torch.argsort(first * n_edges + second)
    return torch.stack([first[order], second[order]])


def atoms_to_graph(
    atoms: ase.Atoms,
    cutoff: float | None = None,
    *,
    k: int | None = None,
    max_neighbours: int | None = None,
    dtype: torch.dtype = torch.float32,
    keep_ties: bool = False,
) -> Data:
    """A PyG ``Data`` graph of an ``ase.Atoms``, by radius (``cutoff``) or by ``k`` nearest.

    Fields: ``numbers`` (N,) int64, ``masses`` (N,) amu (``atoms.get_masses()``, so isotopes set
    on the atoms count), ``pos`` (N, 3), ``cell`` (1, 3, 3), ``pbc`` (1, 3) bool,
    ``edge_index`` (2, E) int64, ``cell_shift`` (E, 3) (``dtype``), ``num_nodes`` = N.
    Callers may add per-structure fields (e.g. ``temperature`` of shape (1,)).
    ``keep_ties`` is passed to :func:`knn_graph` (kNN graphs only).
    """
    import ase  # local: keep the module importable from pure-torch code paths cheaply

    if not isinstance(atoms, ase.Atoms):
        raise InputError(f"expected an ase.Atoms, got {type(atoms).__name__}")
    if len(atoms) == 0:
        raise InputError("the structure is empty (no atoms)")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise InputError(f"dtype must be a torch floating-point dtype, got {dtype!r}")
    if (cutoff is None) == (k is None):
        raise InputError("give exactly one of cutoff (radius graph) or k (kNN graph)")

    positions = atoms.get_positions()
    cell = np.asarray(atoms.cell[:], dtype=np.float64)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if _orthogonality_defect(cell, pbc) > SKEWED_DEFECT:
        # the graph holds the reduced basis of the lattice: the same edge vectors, but
        # r_j + n @ cell computed without cancelling the 1,000 Å vectors of a skewed basis
        cell = _reduced(cell, pbc)[0]
    if cutoff is not None:
        nl = radius_graph(positions, cell, pbc, cutoff, max_neighbours=max_neighbours)
    else:
        if max_neighbours is not None:
            raise InputError("max_neighbours applies to radius graphs only, not to k-NN graphs")
        nl = knn_graph(positions, cell, pbc, k, keep_ties=keep_ties)

    n_atoms = len(atoms)
    return Data(
        numbers=torch.as_tensor(atoms.numbers, dtype=torch.int64),
        masses=torch.as_tensor(atoms.get_masses(), dtype=dtype),
        pos=torch.as_tensor(positions, dtype=dtype),
        cell=torch.as_tensor(cell, dtype=dtype).reshape(1, 3, 3),
        pbc=torch.as_tensor(pbc, dtype=torch.bool).reshape(1, 3),
        edge_index=torch.as_tensor(nl.edge_index, dtype=torch.int64),
        cell_shift=torch.as_tensor(nl.cell_shifts, dtype=dtype),
        num_nodes=n_atoms,
    )


def batch_graphs(graphs: Sequence[Data]) -> Batch:
    """Batch graphs with ``Batch.from_data_list``: cells stack to (B, 3, 3) and each structure's
    edge indices are offset by its first atom (``tests/test_graph.py`` pins both)."""
    graphs = list(graphs)
    if not graphs:
        raise InputError("no graphs to batch")
    for number, graph in enumerate(graphs):
        cell = getattr(graph, "cell", None)
        if cell is None or tuple(cell.shape) != (1, 3, 3):
            shape = None if cell is None else tuple(cell.shape)
            raise InputError(f"graph {number} must have a cell of shape (1, 3, 3), got {shape}")
        if graph.edge_index is None or graph.edge_index.dim() != 2:
            raise InputError(f"graph {number} has no (2, E) edge_index")
    return Batch.from_data_list(graphs)
