"""The numerical Euclidean distance-geometry (EDG) solver of DeepRelax (section 4.6, eqns 16–20).

Given predicted distances d̂ with local uncertainties and a predicted lattice L̂, find positions
R̂ (N, 3) that satisfy them: minimise the bounded Euclidean distance (BED) loss

    L_g = Σ_e max(0, ‖R̂_u − R̂_v‖ − d̂ᵘ) + max(0, d̂ˡ − ‖R̂_u − R̂_v‖),   d̂ᵘˡ = d̂ ± exp(û)

(eqns 18–20) with Adam. On a periodic edge e_ij,k the neighbour image sits at R̂_j + k L̂ (the
*predicted* lattice, fixed during the solve); on a displacement edge e_ij,(0,0,0) the partner of
R̂_j is atom i's *initial* position, which anchors the solution in the frame of the input (no
rigid-motion ambiguity is left). The solve starts from the initial positions.

Adam is not rotation-equivariant (it scales each Cartesian component separately), so each
structure is solved in the frame of its predicted lattice (L̂ᵀ = QR with R's diagonal > 0; the
lattice there is Rᵀ, lower-triangular) and rotated back: rotating or reflecting the input then
rotates or reflects the result exactly, and a translation translates it.

Many structures are solved at once: the loss is a sum of per-structure terms that share no
variable and Adam acts element-wise, so a batch gives the same result as solving each alone.
Everything is deterministic on CPU. Pure torch; lengths in Å.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ase_cartnet.graph.neighbours import edge_vectors

DEFAULT_STEPS = 100
"""Adam steps (official DeepRelax code)."""

DEFAULT_LR = 0.1
"""Adam learning rate, Å per step at most (official DeepRelax code)."""


@dataclass
class SolverResult:
    """Positions (N, 3) Å and the final BED loss per structure (B,) Å."""

    positions: torch.Tensor
    loss: torch.Tensor


def _norm(vectors: torch.Tensor) -> torch.Tensor:
    # differentiable at 0 (a displacement edge i = i starts at zero length)
    return torch.sqrt((vectors * vectors).sum(dim=-1) + 1e-12)


def bed_terms(distances: torch.Tensor, centre: torch.Tensor, half_width: torch.Tensor):
    """max(0, d − (d̂ + w)) + max(0, (d̂ − w) − d) per edge (eqn 20's summand), w = exp(û)."""
    return torch.relu(distances - (centre + half_width)) + torch.relu(
        (centre - half_width) - distances
    )


def solve_positions(
    initial_positions: torch.Tensor,
    lattice: torch.Tensor,
    edge_index: torch.Tensor,
    cell_shift: torch.Tensor,
    distance: torch.Tensor,
    half_width: torch.Tensor,
    disp_index: torch.Tensor,
    disp_distance: torch.Tensor,
    disp_half_width: torch.Tensor,
    batch: torch.Tensor | None = None,
    *,
    start: torch.Tensor | None = None,
    steps: int = DEFAULT_STEPS,
    lr: float = DEFAULT_LR,
    decay: bool = False,
) -> SolverResult:
    """Minimise the BED loss (eqn 20) over the positions with Adam; returns a :class:`SolverResult`.

    Parameters
    ----------
    initial_positions
        (N, 3) Å, the starting point and the anchors of displacement edges.
    lattice
        (B, 3, 3) predicted lattice (rows), or (3, 3) for one structure.
    edge_index, cell_shift
        (2, E), (E, 3) periodic edges (source j, target i, shift k).
    distance, half_width
        (E,) d̂ and exp(û) of the periodic edges, Å.
    disp_index
        (2, D) displacement edges (source j: the moving atom; target i: the anchor).
    disp_distance, disp_half_width
        (D,) d̂ and exp(û) of the displacement edges, Å.
    batch
        (N,) structure of each atom (may be omitted for one structure).
    start
        (N, 3) starting positions (default: the initial positions); see
        :func:`affine_start`.
    steps, lr
        Adam settings (official: 100 steps at 0.1).
    decay
        if True the learning rate decays linearly to 0 over the steps (not in the paper;
        useful when the bounds are tight and an exact realisation exists).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    dtype = initial_positions.dtype
    cells = lattice.detach().to(dtype).reshape(-1, 3, 3)
    n_atoms = initial_positions.shape[0]
    if batch is None:
        batch = torch.zeros(n_atoms, dtype=torch.int64, device=initial_positions.device)
    frames = _lattice_frames(cells).index_select(0, batch)  # (N, 3, 3)
    init = torch.bmm(initial_positions.detach().unsqueeze(1), frames).squeeze(1)
    cells = cells @ _lattice_frames(cells)  # = Rᵀ
    d_hat, w = distance.detach().to(dtype), half_width.detach().to(dtype)
    dd_hat, dw = disp_distance.detach().to(dtype), disp_half_width.detach().to(dtype)
    d_src, d_tgt = disp_index[0], disp_index[1]
    anchors = init.index_select(0, d_tgt)
    edge_graph = batch.index_select(0, edge_index[1])
    disp_graph = batch.index_select(0, d_tgt)
    n_graphs = cells.shape[0]

    def per_structure(positions: torch.Tensor) -> torch.Tensor:
        vectors = edge_vectors(positions, cells, edge_index, cell_shift, batch)
        periodic = bed_terms(_norm(vectors), d_hat, w)
        moved = bed_terms(_norm(positions.index_select(0, d_src) - anchors), dd_hat, dw)
        out = positions.new_zeros(n_graphs)
        out = out.index_add(0, edge_graph, periodic)
        return out.index_add(0, disp_graph, moved)

    if start is None:
        positions = init.clone()
    else:
        positions = torch.bmm(start.detach().to(dtype).unsqueeze(1), frames).squeeze(1)
    positions.requires_grad_(True)
    with torch.enable_grad():
        optimizer = torch.optim.Adam([positions], lr=float(lr))
        scheduler = (
            torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 1.0 - k / max(steps, 1))
            if decay
            else None
        )
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            per_structure(positions).sum().backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
    with torch.no_grad():
        final = per_structure(positions)
    back = torch.bmm(positions.detach().unsqueeze(1), frames.transpose(1, 2)).squeeze(1)
    return SolverResult(positions=back, loss=final)


def _lattice_frames(cells: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) orthogonal Q with L̂ᵀ = Q R, R upper-triangular with a positive diagonal (unique
    for a non-degenerate lattice; rotating L̂ by G turns Q into G Q)."""
    q, r = torch.linalg.qr(cells.transpose(1, 2))
    signs = torch.sign(torch.diagonal(r, dim1=1, dim2=2))
    signs = torch.where(signs == 0, torch.ones_like(signs), signs)
    return q * signs.unsqueeze(1)


def affine_start(
    positions: torch.Tensor,
    cell: torch.Tensor,
    lattice: torch.Tensor,
    batch: torch.Tensor,
    about: str = "origin",
) -> torch.Tensor:
    """Initial positions carried into the predicted lattice by the affine map L⁻¹L̂ about a
    fixed point c: r₀ = c + (r − c) L⁻¹ L̂.

    ``about="origin"`` (c = 0) keeps the fractional coordinates exactly: the convention of ASE's
    cell filters (the cell deforms about the Cartesian origin) and of the synthetic training
    pairs. It commutes with rotations and reflections, but a translated input starts from a
    point translated by t L⁻¹L̂ instead of t. ``about="centroid"`` (c = each structure's mean
    position) commutes with translations too.

    Parameters
    ----------
    positions : torch.Tensor
        (N, 3) Å.
    cell, lattice : torch.Tensor
        (B, 3, 3) the input and the predicted lattice, Å (rows).
    batch : torch.Tensor
        (N,) the structure of each atom.
    """
    if about not in ("origin", "centroid"):
        raise ValueError(f"about must be 'origin' or 'centroid', got {about!r}")
    n_graphs = cell.shape[0]
    counts = torch.bincount(batch, minlength=n_graphs).clamp(min=1).to(positions.dtype)
    centroid = positions.new_zeros((n_graphs, 3))
    if about == "centroid":
        centroid = centroid.index_add_(0, batch, positions) / counts.unsqueeze(-1)
    maps = torch.linalg.solve(cell.to(positions.dtype), lattice.to(positions.dtype))  # L⁻¹ L̂
    relative = (positions - centroid.index_select(0, batch)).unsqueeze(1)
    moved = torch.bmm(relative, maps.index_select(0, batch)).squeeze(1)
    return centroid.index_select(0, batch) + moved
