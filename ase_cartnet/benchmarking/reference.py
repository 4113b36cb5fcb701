"""Reference computations the optimised code is checked and timed against (tests, benchmarks).

:func:`reference_cartnet` is the direct (unoptimised) CartNet forward pass, written from the
fixture README's facts: it concatenates z = [h_i ‖ h_j ‖ e_ij] per edge and runs MLP_gate and
MLP_msg on it, applies BatchNorm with running statistics, and builds U = LᵀL — the form the
split/fused model in ``ase_cartnet.models.cartnet`` must reproduce. :func:`layer_by_layer` is the
split/fused form before blocking, :func:`dense_random_walk` the dense form of CrysToGraph's
random-walk encoding.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ase_cartnet.graph.neighbours import edge_vectors
from ase_cartnet.models.blocks import segment_lengths
from ase_cartnet.models.cartnet import CartNet


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


def layer_by_layer(model: CartNet, g, output_mask: torch.Tensor | None) -> torch.Tensor:
    """The split/fused form without blocks (the inference path before blocking): full-size
    (E, 2d) temporaries per layer, last layer restricted to edges into ``output_mask``."""
    vectors = -edge_vectors(g.pos, g.cell.reshape(-1, 3, 3), g.edge_index, g.cell_shift)
    distances = torch.linalg.vector_norm(vectors, dim=-1)
    t_std = model.standardise_temperature(g.temperature.reshape(-1).to(vectors.dtype))
    h = model.encoder.encode_atoms(g.numbers, t_std.expand(len(g.numbers)))
    e = model.encoder.encode_edges(distances, vectors / distances.unsqueeze(-1))
    envelope = 0.5 * (torch.cos(distances * (torch.pi / model.config.cutoff)) + 1.0)
    envelope = envelope * (distances < model.config.cutoff)
    edge_index, n = g.edge_index, len(g.numbers)
    lengths = segment_lengths(edge_index[1], n)
    for k, layer in enumerate(model.layers):
        last = k == len(model.layers) - 1
        if last and output_mask is not None:
            keep = output_mask.index_select(0, edge_index[1])
            edge_index, e, envelope = edge_index[:, keep], e[keep], envelope[keep]
            lengths = segment_lengths(edge_index[1], n)
        h, e = layer(h, e, edge_index, envelope, lengths, update_edges=not last)
    return model.head(h if output_mask is None else h[output_mask])


def forward_variants(
    model: CartNet, g, output_mask: torch.Tensor
) -> dict[str, Callable[[], torch.Tensor]]:
    """The three forms of one CartNet forward pass on graph ``g`` (with ``g.temperature`` set,
    one structure), each returning U (n_selected, 3, 3) Å² of the atoms in ``output_mask``:
    ``direct`` (:func:`reference_cartnet`), ``layer_by_layer`` and ``blocked`` (the model)."""
    state = model.state_dict()
    t_std = float(model.standardise_temperature(g.temperature.reshape(-1)[0]))
    vec = -edge_vectors(g.pos, g.cell, g.edge_index, g.cell_shift)
    layers = model.config.num_layers
    return {
        "direct": lambda: reference_cartnet(state, g.numbers, g.edge_index, vec, t_std, layers)[
            output_mask
        ],
        "layer_by_layer": lambda: layer_by_layer(model, g, output_mask),
        "blocked": lambda: model(g, output_mask=output_mask),
    }


def dense_random_walk(edge_index: np.ndarray, n_atoms: int, steps: int) -> np.ndarray:
    """Return probabilities (n_atoms, steps) of the random walk on ``edge_index`` (2, E), the
    former O(k·N³) computation: dense powers of the walk matrix."""
    src, tgt = edge_index
    walk = np.zeros((n_atoms, n_atoms))
    np.add.at(walk, (tgt, src), 1.0)
    walk /= np.maximum(walk.sum(axis=1, keepdims=True), 1.0)
    out, power = np.zeros((n_atoms, steps)), np.eye(n_atoms)
    for k in range(steps):
        power = power @ walk
        out[:, k] = np.diagonal(power)
    return out
