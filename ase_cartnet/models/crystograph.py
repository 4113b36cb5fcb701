"""CrysToGraph (Wang et al., "CrysToGraph: A Comprehensive Predictive Model for Crystal Materials
Properties and the Benchmark"): eTGC blocks on the crystal graph and its line graph, a graph-wise
transformer with positional encodings, and a Softplus FFNN on the mean-pooled node features.

Pure torch. The inputs (k-NN graph, line graph, positional encodings, atom descriptors) come from
:mod:`ase_cartnet.graph.crystograph`; edge geometry is computed here from positions, cell and
integer cell shifts with :func:`ase_cartnet.graph.neighbours.edge_vectors`.

Choices the paper leaves open, made here:

* Spherical coordinates (r, θ, φ) of an edge vector are taken in the frame of the cell (x along
  a, z along a × b), so predictions are exactly invariant to rotating the whole crystal; in a
  fixed Cartesian frame they would not be. θ and φ then depend on which cell is chosen (an
  SL3(Z)-equivalent basis changes them); ``use_edge_angles=False`` keeps r only.
* r is expanded in Gaussians on [0, distance_max]; θ ∈ [0, π] in Gaussians; φ in Gaussians of
  the wrapped angle difference (φ is periodic); bond-angle cosines in Gaussians on [−1, 1].
* The linear map of a concatenation in eqn 3, W(k_i, k_j, e'), is evaluated as W₁k_i + W₂k_j +
  W₃e' (the same function): the node parts are computed once per node, not per edge.
* Eqn 11 is applied once, before the first GwT layer. The masked-atom pre-trained embeddings of
  appendix A.1 are not used (CGCNN descriptors only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Literal

import torch
from torch import nn

from ase_cartnet.graph.neighbours import edge_vectors
from ase_cartnet.models.blocks import GaussianBasis, segment_lengths, sum_over_incoming
from ase_cartnet.models.config import ConfigDict


@dataclass
class CrysToGraphConfig(ConfigDict):
    """Hyper-parameters. Defaults follow Table A1 (3 eTGC blocks, 1 GwT layer, 1 FFNN layer,
    8 heads of 32, hidden 256).

    Attributes
    ----------
    num_atom_features
        width of the atom descriptors (92, CGCNN one-hot).
    dim
        hidden width of node, edge and line-graph-edge features.
    num_heads, head_dim
        attention heads and the projected width of each.
    num_etgc
        eTGC blocks (each: a line-graph layer, then a crystal-graph layer).
    num_gwt
        graph-wise transformer layers.
    num_ffnn
        Softplus hidden layers of the output FFNN (eqn 16).
    ffn_factor
        hidden width of the eTGC/GwT feed-forward sublayers, as a multiple of dim.
    line_dim
        width of the line-graph edge (bond-angle) features; None = dim (the paper).
        There are ~k² of them per atom (144 for k = 12), so on a CPU budget a narrower
        width makes the line-graph layers several times cheaper.
    line_head_dim
        projected width per head in the line-graph layers (their attention runs
        over the ~k² angle triplets per atom); None = head_dim.
    k
        neighbours per atom in the crystal graph (for building inputs; not used in forward).
    long_edge
        Å; edges longer than this get the boolean feature (the "ion bond" cutoff).
    num_rbf_distance, distance_max
        Gaussians for r on [0, distance_max] Å.
    num_rbf_angle
        Gaussians for each of θ and φ.
    num_rbf_cosine
        Gaussians for the bond-angle cosine of line-graph edges.
    use_edge_angles
        include θ and φ (cell frame) in the edge features.
    lap_dim, rw_dim, lap_mode
        positional encodings (see ``ase_cartnet.graph.crystograph``).
    target_mean, target_std
        the output is ``target_mean + target_std * FFNN(...)``, so the
        network works on a standardised target; set from the training data.
    target
        name of the predicted property (for model cards and calculators).
    units
        its unit.
    """

    num_atom_features: int = 92
    dim: int = 256
    num_heads: int = 8
    head_dim: int = 32
    num_etgc: int = 3
    num_gwt: int = 1
    num_ffnn: int = 1
    ffn_factor: int = 2
    line_dim: int | None = None
    line_head_dim: int | None = None
    k: int = 12
    long_edge: float = 8.0
    num_rbf_distance: int = 32
    distance_max: float = 10.0
    num_rbf_angle: int = 16
    num_rbf_cosine: int = 32
    use_edge_angles: bool = True
    lap_dim: int = 8
    rw_dim: int = 16
    lap_mode: Literal["signed", "projector"] = "signed"
    target_mean: float = 0.0
    target_std: float = 1.0
    target: str = "property"
    units: str = ""

    def __post_init__(self) -> None:
        self.check_fields(
            positive_ints=(
                "num_atom_features",
                "dim",
                "num_heads",
                "head_dim",
                "num_etgc",
                "ffn_factor",
                "k",
                "line_dim",
                "line_head_dim",
                "num_rbf_distance",
                "num_rbf_angle",
                "num_rbf_cosine",
            ),
            positive=("long_edge", "distance_max"),
        )
        if self.lap_mode not in ("signed", "projector"):
            raise ValueError(f"lap_mode must be 'signed' or 'projector', got {self.lap_mode!r}")
        if not (self.target_std > 0 and math.isfinite(self.target_std)):
            raise ValueError(f"target_std must be positive, got {self.target_std}")


def cell_frames(cell: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) orthonormal frames with rows x̂ ∥ a, ẑ ∥ a × b, ŷ = ẑ × x̂, from cells (B, 3, 3)
    (rows a, b, c). Rotating a crystal rotates its frame with it."""
    a, b = cell[:, 0], cell[:, 1]
    x = a / torch.linalg.vector_norm(a, dim=-1, keepdim=True)
    z = torch.linalg.cross(a, b)
    z = z / torch.linalg.vector_norm(z, dim=-1, keepdim=True)
    y = torch.linalg.cross(z, x)
    return torch.stack([x, y, z], dim=1)


def segment_softmax(scores: torch.Tensor, index: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Softmax of ``scores`` (E, H) over the entries sharing ``index`` (E,) (eqn 4)."""
    shape = (num_segments, scores.shape[1])
    peak = scores.new_full(shape, -torch.inf).scatter_reduce(
        0, index.unsqueeze(-1).expand_as(scores), scores, reduce="amax", include_self=True
    )
    weights = torch.exp(scores - peak.index_select(0, index))
    total = scores.new_zeros(shape).index_add_(0, index, weights)
    return weights / total.index_select(0, index)


class FeedForward(nn.Module):
    """W₂ GELU(W₁ x + b₁) + b₂ (eqns 8–10, 15) followed by BatchNorm (eTGC) or LayerNorm (GwT)."""

    def __init__(self, dim: int, hidden: int, norm: Literal["batch", "layer"]) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.norm = nn.BatchNorm1d(dim) if norm == "batch" else nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.norm(self.net(x))


class ETGCLayer(nn.Module):
    """One eTGC layer (eqns 2–9) on a set of nodes with directed edges; multi-head neighbour
    attention whose scores are shared by the node update and the edge update.

    forward(x (n, dim), e (m, edge_dim), edge_index (2, m), lengths) → (x', e'), same shapes.
    """

    def __init__(self, dim: int, edge_dim: int, heads: int, head_dim: int, ffn_factor: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        width = heads * head_dim
        self.q, self.k, self.v = (nn.Linear(dim, width) for _ in range(3))  # eqn 2
        # eqn 3: W_ke(k_i, k_j, e'_ji) = W_ke,i k_i + W_ke,j k_j + W_ke,e W_e e_ji (and likewise
        # for v). The edge parts are linear in e, so E' = W_e e and both W_ke,e W_e e and
        # W_ve,e W_e e come from one fused (edge_dim → 3·width) map: per-edge cost ∝ edge_dim.
        self.edge_proj = nn.Linear(edge_dim, 3 * width)
        self.ke_centre = nn.Linear(width, width)
        self.ke_neighbour = nn.Linear(width, width, bias=False)
        self.ve_centre = nn.Linear(width, width)
        self.ve_neighbour = nn.Linear(width, width, bias=False)
        self.out_node = nn.Linear(width, dim)  # W_on (head concatenation + output projection)
        self.out_edge = nn.Linear(width, edge_dim)  # W_oe
        self.norm_node = nn.LayerNorm(dim)
        self.norm_edge = nn.LayerNorm(edge_dim)
        self.ffn_node = FeedForward(dim, ffn_factor * dim, "batch")
        self.ffn_edge = FeedForward(edge_dim, ffn_factor * edge_dim, "batch")

    def forward(
        self,
        x: torch.Tensor,
        e: torch.Tensor,
        edge_index: torch.Tensor,
        lengths: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        src, tgt = edge_index[0], edge_index[1]
        n, m, h, dh = x.shape[0], e.shape[0], self.heads, self.head_dim
        q, k, v = self.q(x), self.k(x), self.v(x)  # eqn 2
        e_proj, k_edge, v_edge = self.edge_proj(e).chunk(3, dim=-1)
        k_ji = (  # eqn 3, i = target (centre), j = source (neighbour)
            self.ke_centre(k).index_select(0, tgt) + self.ke_neighbour(k).index_select(0, src)
        ) + k_edge
        v_ji = (
            self.ve_centre(v).index_select(0, tgt) + self.ve_neighbour(v).index_select(0, src)
        ) + v_edge
        scores = (q.index_select(0, tgt).view(m, h, dh) * k_ji.view(m, h, dh)).sum(-1)
        attn = segment_softmax(scores / math.sqrt(dh), tgt, n)  # eqn 4, (m, h)
        messages = (attn.unsqueeze(-1) * v_ji.view(m, h, dh)).reshape(m, h * dh)
        h_x = sum_over_incoming(messages, tgt, n, lengths)  # eqn 5
        h_e = (attn.unsqueeze(-1) * e_proj.view(m, h, dh)).reshape(m, h * dh)
        x = x + self.norm_node(self.out_node(h_x))  # eqn 6
        e = e + self.norm_edge(self.out_edge(h_e))  # eqn 7
        return self.ffn_node(x), self.ffn_edge(e)  # eqns 8–9


class GwTLayer(nn.Module):
    """Graph-wise transformer layer (eqns 12–15): self-attention among all atoms of each
    structure (none across structures), LayerNorm residuals. Input/output (B, N_max, d) with a
    padding mask (B, N_max) (True = real atom)."""

    def __init__(self, dim: int, heads: int, head_dim: int, ffn_factor: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        width = heads * head_dim
        self.q, self.k, self.v = (nn.Linear(dim, width) for _ in range(3))  # eqn 12
        self.out = nn.Linear(width, dim)
        self.norm = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_factor * dim, "layer")

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        h, dh = self.heads, self.head_dim

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, h, dh).transpose(1, 2)  # (B, H, N, dh)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(dh)  # eqn 13
        scores = scores.masked_fill(~mask[:, None, None, :], -torch.inf)
        attn = torch.softmax(scores, dim=-1)
        mixed = (attn @ v).transpose(1, 2).reshape(b, n, h * dh)
        x = x + self.norm(self.out(mixed))  # eqn 14
        return self.ffn(x)  # eqn 15


def pack(values: torch.Tensor, batch: torch.Tensor, num_graphs: int):
    """(N, d) rows grouped by ``batch`` → (B, N_max, d) zero-padded, mask (B, N_max), and the
    (N,) slot of each row, so that ``padded[batch, slot]`` gives the rows back."""
    counts = torch.bincount(batch, minlength=num_graphs)
    starts = torch.cumsum(counts, 0) - counts
    order = torch.argsort(batch, stable=True)
    slot = torch.empty_like(batch)
    slot[order] = torch.arange(batch.shape[0], device=batch.device) - starts[batch[order]]
    width = int(counts.max()) if counts.numel() else 0
    padded = values.new_zeros((num_graphs, width, values.shape[1]))
    padded[batch, slot] = values
    mask = torch.zeros((num_graphs, width), dtype=torch.bool, device=values.device)
    mask[batch, slot] = True
    return padded, mask, slot


class CrysToGraph(nn.Module):
    """CrysToGraph(G, L(G)) = FFNN(GwT(eTGC(G, L(G)))) (eqn 1): one scalar per structure.

    ``forward(graph)`` takes a ``Data``/``Batch`` from :mod:`ase_cartnet.graph.crystograph`
    (fields ``x`` (N, 92), ``pos`` (N, 3) Å, ``cell`` (B, 3, 3) Å, ``edge_index`` (2, E),
    ``cell_shift`` (E, 3), ``lg_edge_index`` (2, T), ``pe`` (N, P), ``batch`` (N,) — absent for
    one structure) and returns (B,) predictions in ``config.units``.
    """

    def __init__(self, config: CrysToGraphConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or CrysToGraphConfig()
        d, ffn = c.dim, c.ffn_factor
        d_line = c.line_dim or c.dim
        basis = partial(GaussianBasis, buffer="centres")  # the buffer name of its checkpoints
        self.rbf_distance = basis(0.0, c.distance_max, c.num_rbf_distance)
        self.rbf_polar = basis(0.0, math.pi, c.num_rbf_angle)
        self.rbf_azimuth = basis(-math.pi, math.pi, c.num_rbf_angle, periodic=True)
        self.rbf_cosine = basis(-1.0, 1.0, c.num_rbf_cosine)
        edge_in = c.num_rbf_distance + 1 + (2 * c.num_rbf_angle if c.use_edge_angles else 0)
        self.embed_atom = nn.Linear(c.num_atom_features, d)
        self.embed_edge = nn.Linear(edge_in, d)
        self.embed_triplet = nn.Linear(c.num_rbf_cosine, d_line)
        self.line_layers = nn.ModuleList(
            ETGCLayer(d, d_line, c.num_heads, c.line_head_dim or c.head_dim, ffn)
            for _ in range(c.num_etgc)
        )
        self.graph_layers = nn.ModuleList(
            ETGCLayer(d, d, c.num_heads, c.head_dim, ffn) for _ in range(c.num_etgc)
        )
        pe_dim = c.lap_dim + c.rw_dim
        self.pe_proj = nn.Linear(pe_dim, d) if pe_dim > 0 else None  # W_pe, eqn 11
        self.gwt_edge = nn.Linear(d, d, bias=False)  # W_e, eqn 11
        self.gwt_layers = nn.ModuleList(
            GwTLayer(d, c.num_heads, c.head_dim, ffn) for _ in range(c.num_gwt)
        )
        self.readout_norm = nn.LayerNorm(d)
        hidden: list[nn.Module] = []
        for _ in range(c.num_ffnn):
            hidden += [nn.Linear(d, d), nn.Softplus()]  # eqn 16
        self.ffnn = nn.Sequential(*hidden, nn.Linear(d, 1))  # eqn 17

    # -- input features ----------------------------------------------------------------------

    def edge_features(self, vectors: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """RBF(r) ‖ [r > long_edge] ‖ RBF(θ) ‖ RBF(φ) of edge vectors (E, 3) in their cells'
        frames (E, 3, 3). Returns (E, edge_in)."""
        r = torch.linalg.vector_norm(vectors, dim=-1)
        parts = [self.rbf_distance(r), (r > self.config.long_edge).to(r.dtype).unsqueeze(-1)]
        if self.config.use_edge_angles:
            local = torch.bmm(frames, vectors.unsqueeze(-1)).squeeze(-1)
            polar = torch.atan2(torch.linalg.vector_norm(local[:, :2], dim=-1), local[:, 2])
            azimuth = torch.atan2(local[:, 1], local[:, 0])
            parts += [self.rbf_polar(polar), self.rbf_azimuth(azimuth)]
        return torch.cat(parts, dim=-1)

    @staticmethod
    def bond_cosines(vectors: torch.Tensor, lg_edge_index: torch.Tensor) -> torch.Tensor:
        """cos of the angle at v between bonds v→u and v→w for line-graph edges (u→v, v→w).

        Edge vectors point from target to source image (``edge_vectors``), so bond v→u is
        vec(a) and bond v→w is −vec(b). Returns (T,)."""
        a = vectors.index_select(0, lg_edge_index[0])
        b = -vectors.index_select(0, lg_edge_index[1])
        cos = (a * b).sum(-1) / (
            torch.linalg.vector_norm(a, dim=-1) * torch.linalg.vector_norm(b, dim=-1)
        )
        return cos.clamp(-1.0, 1.0)

    # -- network -----------------------------------------------------------------------------

    def forward(self, graph) -> torch.Tensor:
        x_in, pos = graph.x, graph.pos
        batch = getattr(graph, "batch", None)
        if batch is None:
            batch = torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device)
        cell = graph.cell.reshape(-1, 3, 3).to(pos.dtype)
        num_graphs = cell.shape[0]
        edge_index, lg_edge_index = graph.edge_index, graph.lg_edge_index
        vectors = edge_vectors(pos, cell, edge_index, graph.cell_shift, batch)
        frames = cell_frames(cell).index_select(0, batch.index_select(0, edge_index[1]))

        x = self.embed_atom(x_in.to(pos.dtype))
        e = self.embed_edge(self.edge_features(vectors, frames))
        t = self.embed_triplet(self.rbf_cosine(self.bond_cosines(vectors, lg_edge_index)))
        n_atoms, n_edges = x.shape[0], e.shape[0]
        lengths_g = segment_lengths(edge_index[1], n_atoms)
        lengths_l = segment_lengths(lg_edge_index[1], n_edges)
        for line_layer, graph_layer in zip(self.line_layers, self.graph_layers, strict=True):
            e, t = line_layer(e, t, lg_edge_index, lengths_l)  # L(G): nodes = bonds
            x, e = graph_layer(x, e, edge_index, lengths_g)  # G

        if self.gwt_layers:
            # eqn 11: x_i + W_pe p_i + Σ_j W_e e_ji
            x = x + sum_over_incoming(self.gwt_edge(e), edge_index[1], n_atoms, lengths_g)
            if self.pe_proj is not None:
                x = x + self.pe_proj(graph.pe.to(pos.dtype))
            padded, mask, slot = pack(x, batch, num_graphs)
            for layer in self.gwt_layers:
                padded = layer(padded, mask)
            x = padded[batch, slot]

        counts = torch.bincount(batch, minlength=num_graphs).to(x.dtype)
        pooled = x.new_zeros((num_graphs, x.shape[1])).index_add_(0, batch, x)
        pooled = pooled / counts.unsqueeze(-1)  # mean readout
        out = self.ffnn(self.readout_norm(pooled)).squeeze(-1)  # eqns 16–17
        return self.config.target_mean + self.config.target_std * out
