"""Direct (unoptimised) CartNet forward pass, written from the fixture README's facts.

It concatenates z = [h_i ‖ h_j ‖ e_ij] per edge and runs MLP_gate and MLP_msg on it, applies
BatchNorm with running statistics, and builds U = LᵀL — the form the split/fused model in
``ase_cartnet.models.cartnet`` must reproduce. Used only by tests and benchmarks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _linear(state, prefix, x):
    return x @ state[f"{prefix}.weight"].T + state[f"{prefix}.bias"]


def _batch_norm(state, prefix, x, eps=1e-5, training=False):
    if training:  # batch statistics (biased variance), as BatchNorm1d in train mode
        mean, var = x.mean(dim=0), x.var(dim=0, unbiased=False)
    else:
        mean, var = state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"]
    return (x - mean) / torch.sqrt(var + eps) * state[f"{prefix}.weight"] + state[f"{prefix}.bias"]


def reference_cartnet(
    state: dict[str, torch.Tensor],
    numbers: torch.Tensor,
    edge_index: torch.Tensor,
    vectors: torch.Tensor,
    t_std: float,
    num_layers: int,
    cutoff: float = 5.0,
    training: bool = False,
) -> torch.Tensor:
    """U (N, 3, 3) for every atom; ``vectors`` = r_i − (r_j + n·C) (target minus source image)."""
    src, tgt = edge_index
    dist = vectors.norm(dim=-1)
    direction = vectors / dist[:, None]
    env = 0.5 * (torch.cos(math.pi * dist / cutoff) + 1.0) * (dist < cutoff)
    alpha = 5.0 / cutoff
    rbf = env[:, None] * torch.exp(
        -state["encoder.rbf.betas"]
        * (torch.exp(-alpha * dist[:, None]) - state["encoder.rbf.means"]) ** 2
    )
    x = state["encoder.embedding.weight"][numbers]
    x = (
        x
        + t_std * state["encoder.temperature_proj_atom.weight"][:, 0]
        + state["encoder.temperature_proj_atom.bias"]
    )
    h = F.silu(_linear(state, "encoder.encoder_atom.1", F.silu(x)))
    e = F.silu(_linear(state, "encoder.encoder_edge.0", torch.cat([rbf, direction], dim=-1)))
    e = F.silu(_linear(state, "encoder.encoder_edge.2", e))
    for layer in range(num_layers):
        p = f"layers.{layer}"
        z = torch.cat([h[tgt], h[src], e], dim=-1)
        g = _linear(state, f"{p}.MLP_gate.2", F.silu(_linear(state, f"{p}.MLP_gate.0", z)))
        sigma = torch.sigmoid(_batch_norm(state, f"{p}.norm", g, training=training)) * env[:, None]
        m = _linear(state, f"{p}.MLP_aggr.2", F.silu(_linear(state, f"{p}.MLP_aggr.0", z)))
        agg = torch.zeros_like(h).index_add_(0, tgt, sigma * m)
        h = h + F.silu(_batch_norm(state, f"{p}.norm2", agg, training=training))
        e = e + sigma
    out = _linear(state, "head.MLP.2", F.silu(_linear(state, "head.MLP.0", h)))
    s = F.softplus(out[:, :3])
    upper = torch.zeros(h.shape[0], 3, 3, dtype=h.dtype)
    upper[:, 0, 0], upper[:, 1, 1], upper[:, 2, 2] = s[:, 0], s[:, 1], s[:, 2]
    upper[:, 0, 1], upper[:, 0, 2], upper[:, 1, 2] = out[:, 3], out[:, 4], out[:, 5]
    return upper.transpose(1, 2) @ upper
