"""Small reusable building blocks shared by the models (radial bases, cutoffs)."""

from __future__ import annotations

import math

import torch
from torch import nn


def cosine_cutoff(distances: torch.Tensor, cutoff: float) -> torch.Tensor:
    """0.5·(cos(π d / r_c) + 1) for d < r_c, else 0 (CartNet eqn 11; strict <). Shape as input."""
    values = 0.5 * (torch.cos(distances * (math.pi / cutoff)) + 1.0)
    return values * (distances < cutoff).to(distances.dtype)


class ExpNormalSmearing(nn.Module):
    """Exponential-normal radial basis (PhysNet/TensorNet), CartNet eqns 7–8.

    r_k(d) = f_cut(d) · exp(−β (exp(−α d) − μ_k)²), with μ equally spaced on [exp(−r_c), 1],
    β = [2 K⁻¹ (1 − exp(−r_c))]⁻² and α = 5 / r_c (α = 1 Å⁻¹ for the paper's r_c = 5 Å, which is
    eqn 7's exp(−d)). The official implementation multiplies by the cosine cutoff f_cut; so do we.
    ``means`` and ``betas`` are buffers (stored in checkpoints, not trained).

    Input: distances (E,) in Å. Output: (E, K).
    """

    def __init__(self, num_rbf: int, cutoff: float) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        self.alpha = 5.0 / self.cutoff
        start = math.exp(-self.cutoff)
        self.register_buffer("means", torch.linspace(start, 1.0, num_rbf))
        beta = (2.0 / num_rbf * (1.0 - start)) ** -2
        self.register_buffer("betas", torch.full((num_rbf,), beta))

    def forward(self, distances: torch.Tensor) -> torch.Tensor:
        d = distances.unsqueeze(-1)
        rbf = torch.exp(-self.betas * (torch.exp(-self.alpha * d) - self.means) ** 2)
        return cosine_cutoff(d, self.cutoff) * rbf


def segment_lengths(target: torch.Tensor, num_nodes: int) -> torch.Tensor | None:
    """Incoming-edge counts per node (N,) when ``target`` is sorted ascending, else None.

    Graphs from :mod:`ase_cartnet.graph` list edges sorted by target, and batching keeps that
    order, so sums over incoming edges can be contiguous segment sums.
    """
    if target.numel() > 1 and bool((target[1:] < target[:-1]).any()):
        return None
    return torch.bincount(target, minlength=num_nodes)


def sum_over_incoming(
    values: torch.Tensor, target: torch.Tensor, num_nodes: int, lengths: torch.Tensor | None
) -> torch.Tensor:
    """Σ over the incoming edges of each node: (E, F) → (N, F); zero for nodes without edges.

    Uses a segment sum over the target-sorted edges when ``lengths`` is given (much faster than a
    scatter on CPU), otherwise ``index_add_``. Both are exact sums, differentiable.
    """
    if lengths is not None:
        return torch.segment_reduce(values, "sum", lengths=lengths, axis=0, unsafe=True)
    out = values.new_zeros((num_nodes,) + tuple(values.shape[1:]))
    return out.index_add_(0, target, values)
