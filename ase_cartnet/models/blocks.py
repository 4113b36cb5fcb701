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


def polynomial_envelope(distances: torch.Tensor, cutoff: float, exponent: int = 5) -> torch.Tensor:
    """DimeNet's smooth polynomial envelope u(x), x = d / r_c: 1 at 0, 0 with vanishing first and
    second derivatives at r_c, exactly 0 beyond (DeepRelax's official default, exponent 5).

    u(x) = 1 − (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) − p(p+1)/2 x^(p+2). Shape as input.
    """
    p = float(exponent)
    x = distances / cutoff
    a, b, c = -(p + 1) * (p + 2) / 2, p * (p + 2), -p * (p + 1) / 2
    xp = x**p
    values = 1.0 + a * xp + b * xp * x + c * xp * x * x
    return values * (x < 1.0).to(distances.dtype)


class GaussianBasis(nn.Module):
    """Gaussian basis exp(−(x − μ_k)² / (2 w²)) with ``num`` centres μ_k equally spaced on
    [low, high] and w their spacing (SchNet; DeepRelax eqns 4–5, EMPNN, CrysToGraph); with
    ``periodic`` x − μ is wrapped to (−π, π] (azimuths). No cutoff applied.

    Input (...,), e.g. distances in Å; output (..., num). The centres are a buffer named
    ``buffer`` ("means"; CrysToGraph checkpoints call it "centres").
    """

    def __init__(
        self, low: float, high: float, num: int, periodic: bool = False, buffer: str = "means"
    ) -> None:
        super().__init__()
        if num < 1:
            raise ValueError(f"a Gaussian basis needs at least one function, got {num}")
        self.periodic = periodic
        self.buffer = buffer
        self.register_buffer(buffer, torch.linspace(float(low), float(high), num))
        self.width = (float(high) - float(low)) / max(num - 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        diff = x.unsqueeze(-1) - getattr(self, self.buffer).to(x.dtype)
        if self.periodic:
            diff = torch.remainder(diff + math.pi, 2 * math.pi) - math.pi
        return torch.exp(-0.5 * (diff / self.width) ** 2)


def mlp(dim_in: int, dim_hidden: int, dim_out: int) -> nn.Sequential:
    """Linear → SiLU → Linear (state-dict keys .0 and .2, as in the official CartNet)."""
    return nn.Sequential(nn.Linear(dim_in, dim_hidden), nn.SiLU(), nn.Linear(dim_hidden, dim_out))


def spd_from_six(p: torch.Tensor) -> torch.Tensor:
    """CartNet's Cholesky construction (eqns 15–18, official convention): six numbers (..., 6) →
    an upper-triangular L with softplus(p₀..p₂) on the diagonal and L01 = p3, L02 = p4,
    L12 = p5 → LᵀL (..., 3, 3), symmetric positive semidefinite (definite unless a diagonal
    softplus underflows)."""
    diag = torch.nn.functional.softplus(p[..., :3])
    upper = p.new_zeros(*p.shape[:-1], 3, 3)
    upper[..., 0, 0], upper[..., 1, 1], upper[..., 2, 2] = diag[..., 0], diag[..., 1], diag[..., 2]
    upper[..., 0, 1], upper[..., 0, 2], upper[..., 1, 2] = p[..., 3], p[..., 4], p[..., 5]
    return upper.transpose(-1, -2) @ upper
