"""DeepRelax (Yang et al., 2024): a periodicity-aware equivariant GNN (PaEGNN) that predicts the
interatomic distances, atomic displacements and lattice of the relaxed structure, each distance
with a Laplace scale (local uncertainty), plus the deep-ensemble uncertainty of section 4.7.

Pure torch: tensors in, tensors out. Graphs come from :mod:`ase_cartnet.graph` (the DeepRelax
multi-graph: :func:`ase_cartnet.train.deeprelax_data.deeprelax_graph`). Units: Å throughout.

Inputs (PyTorch Geometric conventions; ``edge_index[0]`` = source j, ``[1]`` = target i):

* ``numbers`` (N,) int64, ``pos`` (N, 3) initial positions, ``cell`` (B, 3, 3) initial lattice
  (rows are lattice vectors), ``batch`` (N,) structure of each atom;
* ``edge_index`` (2, E), ``cell_shift`` (E, 3): the periodic edges e_ij,(k1,k2,k3), the image of j
  at ``r_j + k @ cell`` (k ∈ {−2..2}³);
* ``disp_index`` (2, D): the displacement edges e_ij,(0,0,0) (all ordered in-cell pairs, i = j
  included), whose target is the distance from atom i's *initial* position to atom j's *relaxed*
  position.

Where this implementation departs from the paper's text, and why:

* The lattice head (eqn 10) mixes the input lattice vectors with invariant coefficients,
  L̂ = (I + M) L with M from f_L(W_l g ⊕ mean_i W_x x_i) and g the cell's invariants (log lengths,
  cosines, log volume per atom). Eqn 10 applies W_l to the Cartesian components of the lattice,
  which is not rotation-equivariant; this form is, and keeps the paper's inputs and widths.
* û is a log-scale: the Laplace scale is b = exp(û). Eqns 18–21 use exp(û); eqn 11's log(2û) and
  /û are then log(2b) and /b, the Laplace negative log-likelihood (eqn 15).
* Distances are predicted as a residual on the input distance, d̂ = |d⁰ + f_d(…)| (eqn 8 plus a
  skip), and the heads f_d, f_u are two-layer MLPs instead of single linear maps; with the last
  layers initialised to zero an untrained model returns the input (the "Dummy" baseline).
* Messages (eqns 4–5) are multiplied by a smooth polynomial envelope, so that edges entering or
  leaving the 6 Å sphere change the output continuously, and scalar features are layer-normed
  before each message step (both as in the official code's PaiNN heritage). Losses are means
  over edges rather than sums, so that the weight of a structure does not grow with its size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ase_cartnet.graph.deeprelax import CELL_RANGE
from ase_cartnet.graph.neighbours import edge_vectors
from ase_cartnet.models.blocks import (
    GaussianBasis,
    polynomial_envelope,
    segment_lengths,
    sum_over_incoming,
)
from ase_cartnet.models.config import ConfigDict

ORIGIN_INDEX = 62
"""K of the offset (0, 0, 0)."""

_EPS = 1e-12

PAIR_CHUNK = 32768
"""Displacement edges per block in inference (their features take ~6·hidden numbers each)."""


@dataclass
class DeepRelaxConfig(ConfigDict):
    """Architecture. Defaults are the official code's (hidden 512, 3 layers, 128 RBF, 6 Å,
    ≤ 30 neighbours per atom, cell offsets in {−2..2}³, a 128-wide offset encoding).

    Attributes
    ----------
    hidden
        F, the width of scalar and vector node features.
    num_layers
        T, message-passing + updating blocks.
    num_rbf
        Gaussian radial basis functions on [0, cutoff].
    cutoff
        Å, radius of the periodic edges.
    max_neighbours
        periodic edges kept per atom (nearest first, ties kept).
    pcoe_dim
        width of the periodic cell-offset encoding (eqns 2–3).
    num_elements
        embedding rows (atomic numbers 0..num_elements-1).
    envelope_exponent
        p of the polynomial envelope on message filters.
    disp_cutoff
        Å. 0 (the paper's): displacement edges between all N² in-cell pairs; otherwise only
        between atoms whose in-cell (zero-offset) distance is at most this, and each atom with
        itself, so that the graph, the heads and the solver grow linearly with the cell.
    """

    hidden: int = 512
    num_layers: int = 3
    num_rbf: int = 128
    cutoff: float = 6.0
    max_neighbours: int = 30
    pcoe_dim: int = 128
    num_elements: int = 119
    envelope_exponent: int = 5
    disp_cutoff: float = 0.0

    def __post_init__(self) -> None:
        self.check_fields(
            positive_ints=("hidden", "num_layers", "num_rbf", "max_neighbours", "pcoe_dim"),
            positive=("cutoff",),
            non_negative=("disp_cutoff",),
        )
        if self.pcoe_dim % 2:
            raise ValueError(f"DeepRelaxConfig.pcoe_dim must be even, got {self.pcoe_dim}")


@dataclass
class DeepRelaxOutput:
    """Predictions of one model for a batch.

    Attributes
    ----------
    distance
        (E,) Å, d̂ on the periodic edges (relaxed interatomic distances, eqn 8).
    log_scale
        (E,) û on the periodic edges (Laplace scale b = exp(û) Å, eqn 9).
    disp_distance
        (D,) Å, d̂ on the displacement edges (|r_j(relaxed) − r_i(initial)|).
    disp_log_scale
        (D,) û on the displacement edges.
    lattice
        (B, 3, 3) Å, the predicted relaxed lattice (rows, eqn 10).
    """

    distance: torch.Tensor
    log_scale: torch.Tensor
    disp_distance: torch.Tensor
    disp_log_scale: torch.Tensor
    lattice: torch.Tensor


def cell_offset_index(cell_shift: torch.Tensor) -> torch.Tensor:
    """K = (k1+2) + 5(k2+2) + 25(k3+2) (section 4.3.1) of integer offsets (E, 3) in {−2..2}³."""
    k = torch.round(cell_shift).to(torch.int64) + CELL_RANGE
    if k.numel() and (bool((k < 0).any()) or bool((k > 2 * CELL_RANGE).any())):
        raise ValueError("cell offsets must lie in {-2, ..., 2}^3 for the DeepRelax encoding")
    return k[:, 0] + 5 * k[:, 1] + 25 * k[:, 2]


def periodic_offset_encoding(index: torch.Tensor, dim: int, dtype: torch.dtype) -> torch.Tensor:
    """Sinusoidal encoding p(K) (eqns 2–3): p(K, f) = sin(K / 10000^(f/F)) for even f and
    cos(K / 10000^((f−1)/F)) for odd f, F = ``dim``. Input (E,) int; output (E, F)."""
    even = torch.arange(0, dim, 2, dtype=dtype, device=index.device)
    angles = index.to(dtype).unsqueeze(-1) / torch.pow(
        torch.tensor(10000.0, dtype=dtype), even / dim
    )
    out = torch.empty(index.shape[0], dim, dtype=dtype, device=index.device)
    out[:, 0::2] = torch.sin(angles)
    out[:, 1::2] = torch.cos(angles)
    return out


def _safe_norm(vectors: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.sqrt((vectors * vectors).sum(dim=dim) + _EPS)


class PaEGNNLayer(nn.Module):
    """One PaEGNN block: message passing (eqns 4–5) then updating (eqns 6–7), with skips."""

    def __init__(self, hidden: int, edge_dim: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.norm = nn.LayerNorm(hidden)
        # W_h, W_u, W_v (F → F each, fused) and γ_h, γ_u, γ_v (edge features → F each, fused)
        self.node_proj = nn.Linear(hidden, 3 * hidden)
        self.edge_proj = nn.Linear(edge_dim, 3 * hidden)
        # U, V (F → F, no bias: they act on vectors)
        self.vec_u = nn.Linear(hidden, hidden, bias=False)
        self.vec_v = nn.Linear(hidden, hidden, bias=False)
        # W_s1, W_s2, W_v of eqns 6–7 (2F → F each, fused, with a hidden SiLU layer)
        self.update = nn.Sequential(
            nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, 3 * hidden)
        )

    def forward(
        self,
        x: torch.Tensor,
        vec: torch.Tensor,
        edge_features: torch.Tensor,
        envelope: torch.Tensor,
        unit: torch.Tensor,
        src: torch.Tensor,
        tgt: torch.Tensor,
        lengths: torch.Tensor | None,
        first: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, F), vec (N, 3, F), edge_features (E, K+P), envelope (E,), unit (E, 3) unit
        vectors from the centre i to the neighbour image j. Returns updated (x, vec)."""
        n, f = x.shape[0], self.hidden
        node = self.node_proj(self.norm(x)).index_select(0, src)  # W x_j, (E, 3F)
        gamma = self.edge_proj(edge_features) * envelope.unsqueeze(-1)  # γ(λ ⊕ p), (E, 3F)
        h, u, v = torch.split(node * gamma, f, dim=-1)
        m = sum_over_incoming(h, tgt, n, lengths)  # eqn 4
        vec_msg = v.unsqueeze(1) * unit.unsqueeze(-1)
        if not first:  # x⃗⁽⁰⁾ = 0: the first term of eqn 5 vanishes exactly
            vec_msg = vec_msg + u.unsqueeze(1) * vec.index_select(0, src)
        m_vec = sum_over_incoming(vec_msg.reshape(-1, 3 * f), tgt, n, lengths).reshape(n, 3, f)
        um, vm = self.vec_u(m_vec), self.vec_v(m_vec)  # U m⃗, V m⃗ (N, 3, F)
        s = torch.cat([m, _safe_norm(um, dim=1)], dim=-1)  # m ⊕ ‖U m⃗‖
        a1, a2, a3 = torch.split(self.update(s), f, dim=-1)
        x = x + a1 + a2 * (vm * um).sum(dim=1)  # eqn 6 (+ skip)
        vec = vec + a3.unsqueeze(1) * vm  # eqn 7 (+ skip)
        return x, vec


class _EdgeHead(nn.Module):
    """d̂ and û of an edge from W_n x_i ⊕ W_n x_j ⊕ h_ij (eqns 8–9); residual on d⁰."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(3 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)
        with torch.no_grad():
            self.mlp[2].bias[1] = math.log(0.1)  # b = 0.1 Å before training

    def forward(
        self, node_i: torch.Tensor, node_j: torch.Tensor, h: torch.Tensor, d0: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.mlp(torch.cat([node_i, node_j, h], dim=-1))
        return (d0 + out[:, 0]).abs(), out[:, 1]


class DeepRelaxModel(nn.Module):
    """PaEGNN with the DeepRelax heads (one ensemble member). ``forward(data)`` takes a PyG
    ``Batch`` (or any object with the fields in the module docstring) and returns a
    :class:`DeepRelaxOutput`. Invariant outputs (distances, scales) and the equivariant lattice."""

    def __init__(self, config: DeepRelaxConfig | None = None) -> None:
        super().__init__()
        self.config = config or DeepRelaxConfig()
        c = self.config
        edge_dim = c.num_rbf + c.pcoe_dim
        self.embedding = nn.Embedding(c.num_elements, c.hidden)  # E(z_i)
        self.rbf = GaussianBasis(0.0, c.cutoff, c.num_rbf)  # λ
        self.layers = nn.ModuleList(PaEGNNLayer(c.hidden, edge_dim) for _ in range(c.num_layers))
        self.out_norm = nn.LayerNorm(c.hidden)
        self.node_out = nn.Linear(c.hidden, c.hidden)  # W_n
        self.edge_out = nn.Linear(edge_dim, c.hidden)  # γ of h_ij
        self.distance_head = _EdgeHead(c.hidden)  # periodic edges
        self.displacement_head = _EdgeHead(c.hidden)  # (0,0,0) displacement edges
        self.lattice_in = nn.Linear(7, c.hidden)  # W_l on the cell invariants
        self.lattice_nodes = nn.Linear(c.hidden, c.hidden)  # W_x
        self.lattice_out = nn.Sequential(  # f_L → 9 → r_L (3 × 3)
            nn.Linear(2 * c.hidden, c.hidden), nn.SiLU(), nn.Linear(c.hidden, 9)
        )
        nn.init.zeros_(self.lattice_out[2].weight)
        nn.init.zeros_(self.lattice_out[2].bias)

    def _edge_features(self, distances: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        pcoe = periodic_offset_encoding(offsets, self.config.pcoe_dim, distances.dtype)
        return torch.cat([self.rbf(distances), pcoe], dim=-1)  # λ(‖r‖) ⊕ p(K)

    def _displacement_block(
        self, pos: torch.Tensor, node: torch.Tensor, disp: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """d̂ and û (B,) of a block of displacement edges ``disp`` (2, B) (eqns 8–9)."""
        d_src, d_tgt = disp[0], disp[1]
        disp_d0 = _safe_norm(pos.index_select(0, d_src) - pos.index_select(0, d_tgt), dim=-1)
        origin = torch.full_like(d_src, ORIGIN_INDEX)
        h_disp = self.edge_out(self._edge_features(disp_d0, origin))
        return self.displacement_head(
            node.index_select(0, d_tgt), node.index_select(0, d_src), h_disp, disp_d0
        )

    @staticmethod
    def cell_invariants(cell: torch.Tensor, atoms_per_cell: torch.Tensor) -> torch.Tensor:
        """(B, 7): log lengths (Å), cosines of the three angles, log (V/N)^(1/3) (Å)."""
        lengths = torch.linalg.norm(cell, dim=-1)  # (B, 3)
        unit = cell / lengths.unsqueeze(-1)
        cosines = torch.stack(
            [
                (unit[:, 1] * unit[:, 2]).sum(-1),
                (unit[:, 0] * unit[:, 2]).sum(-1),
                (unit[:, 0] * unit[:, 1]).sum(-1),
            ],
            dim=-1,
        )
        volume = torch.linalg.det(cell).abs()
        per_atom = torch.log(volume / atoms_per_cell.to(cell.dtype)) / 3.0
        return torch.cat([torch.log(lengths), cosines, per_atom.unsqueeze(-1)], dim=-1)

    def forward(self, data) -> DeepRelaxOutput:
        c = self.config
        pos, cell, numbers = data.pos, data.cell, data.numbers
        n_atoms = pos.shape[0]
        batch = getattr(data, "batch", None)
        if batch is None:
            batch = torch.zeros(n_atoms, dtype=torch.int64, device=pos.device)
        cell = cell.to(pos.dtype).reshape(-1, 3, 3)
        n_graphs = cell.shape[0]
        edge_index, shifts = data.edge_index, data.cell_shift
        src, tgt = edge_index[0], edge_index[1]

        vectors = edge_vectors(pos, cell, edge_index, shifts, batch)  # r_j + k L − r_i, (E, 3)
        d0 = _safe_norm(vectors, dim=-1)
        unit = vectors / d0.unsqueeze(-1)
        offsets = cell_offset_index(shifts)
        edge_features = self._edge_features(d0, offsets)
        envelope = polynomial_envelope(d0, c.cutoff, c.envelope_exponent)

        x = self.embedding(numbers)
        vec = x.new_zeros((n_atoms, 3, c.hidden))
        lengths = segment_lengths(tgt, n_atoms)
        for t, layer in enumerate(self.layers):
            x, vec = layer(x, vec, edge_features, envelope, unit, src, tgt, lengths, t == 0)

        node = self.node_out(self.out_norm(x))  # W_n x^(T)
        # eqns 8–9 on the periodic edges
        h = self.edge_out(edge_features)
        distance, log_scale = self.distance_head(
            node.index_select(0, tgt), node.index_select(0, src), h, d0
        )
        # eqns 8–9 on the (0,0,0) displacement edges (initial in-cell distances as d⁰): N² of
        # them, so in inference they go in blocks (the per-pair features never exist in full)
        disp = data.disp_index
        chunk = disp.shape[1] if self.training or torch.is_grad_enabled() else PAIR_CHUNK
        blocks = [
            self._displacement_block(pos, node, disp[:, start : start + chunk])
            for start in range(0, disp.shape[1], max(chunk, 1))
        ]
        if blocks:
            disp_distance = torch.cat([b[0] for b in blocks])
            disp_log_scale = torch.cat([b[1] for b in blocks])
        else:
            disp_distance = disp_log_scale = pos.new_zeros(0)
        # eqn 10, equivariant form: L̂ = (I + M) L
        counts = torch.bincount(batch, minlength=n_graphs)
        pooled = x.new_zeros((n_graphs, c.hidden)).index_add_(0, batch, self.lattice_nodes(x))
        pooled = pooled / counts.clamp(min=1).unsqueeze(-1).to(x.dtype)
        invariants = self.lattice_in(self.cell_invariants(cell, counts))
        mixing = self.lattice_out(torch.cat([invariants, pooled], dim=-1)).reshape(-1, 3, 3)
        lattice = cell + mixing @ cell
        return DeepRelaxOutput(distance, log_scale, disp_distance, disp_log_scale, lattice)


@dataclass
class EnsembleOutput:
    """Ensemble predictions (eqns 21–24). Per-edge tensors average the T members.

    Attributes
    ----------
    distance, disp_distance
        d̄ (eqn 22) on periodic / displacement edges, Å.
    scale, disp_scale
        mean_t exp(û_t), the aleatoric local uncertainty, Å.
    variance, disp_variance
        (1/T) Σ_t (d̂_t − d̄)², the epistemic local uncertainty, Å².
    lattice
        (B, 3, 3) mean of the members' lattices, Å.
    lattice_std
        (B, 3, 3) their standard deviation (0 for T = 1), Å.
    aleatoric, epistemic, global_
        (B,) Û_a (eqn 21), Û_e (eqn 23), Û = Û_a + Û_e (eqn 24),
        Å², with N the number of distance pairs (periodic + displacement) of each structure.
    """

    distance: torch.Tensor
    scale: torch.Tensor
    variance: torch.Tensor
    disp_distance: torch.Tensor
    disp_scale: torch.Tensor
    disp_variance: torch.Tensor
    lattice: torch.Tensor
    lattice_std: torch.Tensor
    aleatoric: torch.Tensor
    epistemic: torch.Tensor
    global_: torch.Tensor


class DeepRelaxEnsemble(nn.Module):
    """T independently initialised :class:`DeepRelaxModel` replicates of one architecture
    (section 4.7; T = 5 in the paper). ``members`` are trained separately; ``forward`` runs all
    of them and combines the outputs with eqns 21–24."""

    def __init__(self, config: DeepRelaxConfig | None = None, size: int = 5) -> None:
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"ensemble size must be a positive integer, got {size}")
        self.config = config or DeepRelaxConfig()
        self.members = nn.ModuleList(DeepRelaxModel(self.config) for _ in range(size))

    @classmethod
    def from_members(cls, members: list[DeepRelaxModel]) -> DeepRelaxEnsemble:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        ensemble = cls(members[0].config, len(members))
        for slot, member in zip(ensemble.members, members, strict=True):
            if member.config != members[0].config:
                raise ValueError("ensemble members must share one architecture")
            slot.load_state_dict(member.state_dict())
        return ensemble

    def forward(self, data) -> EnsembleOutput:
        outputs = [member(data) for member in self.members]
        return combine_members(outputs, data)


def _per_graph_sum(values: torch.Tensor, graph: torch.Tensor, n_graphs: int) -> torch.Tensor:
    return values.new_zeros(n_graphs).index_add_(0, graph, values)


def combine_members(outputs: list[DeepRelaxOutput], data) -> EnsembleOutput:
    """Eqns 21–24 over the members' outputs for one batch (``data`` gives the edge → structure
    map through ``batch`` and the edge targets)."""
    dist = torch.stack([o.distance for o in outputs])  # (T, E)
    scale = torch.stack([torch.exp(o.log_scale) for o in outputs])
    ddist = torch.stack([o.disp_distance for o in outputs])  # (T, D)
    dscale = torch.stack([torch.exp(o.disp_log_scale) for o in outputs])
    lattices = torch.stack([o.lattice for o in outputs])  # (T, B, 3, 3)
    n_graphs = lattices.shape[1]
    batch = getattr(data, "batch", None)
    if batch is None:
        batch = torch.zeros(data.pos.shape[0], dtype=torch.int64, device=dist.device)
    edge_graph = batch.index_select(0, data.edge_index[1])
    disp_graph = batch.index_select(0, data.disp_index[1])

    mean_d, mean_dd = dist.mean(0), ddist.mean(0)  # eqn 22
    var_d = ((dist - mean_d) ** 2).mean(0)
    var_dd = ((ddist - mean_dd) ** 2).mean(0)
    mean_s, mean_ds = scale.mean(0), dscale.mean(0)
    pairs = _per_graph_sum(torch.ones_like(mean_d), edge_graph, n_graphs) + _per_graph_sum(
        torch.ones_like(mean_dd), disp_graph, n_graphs
    )
    aleatoric = (  # eqn 21
        (
            _per_graph_sum(mean_s, edge_graph, n_graphs)
            + _per_graph_sum(mean_ds, disp_graph, n_graphs)
        )
        / pairs
    ) ** 2
    epistemic = (  # eqn 23
        _per_graph_sum(var_d, edge_graph, n_graphs) + _per_graph_sum(var_dd, disp_graph, n_graphs)
    ) / pairs
    return EnsembleOutput(
        distance=mean_d,
        scale=mean_s,
        variance=var_d,
        disp_distance=mean_dd,
        disp_scale=mean_ds,
        disp_variance=var_dd,
        lattice=lattices.mean(0),
        lattice_std=lattices.std(0, unbiased=False),
        aleatoric=aleatoric,
        epistemic=epistemic,
        global_=aleatoric + epistemic,  # eqn 24
    )
