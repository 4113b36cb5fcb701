"""CartNet (Solé et al., Digital Discovery 2025, 4, 694): a Cartesian-encoding message-passing
network for crystal properties, with the Cholesky head for anisotropic displacement parameters.

Pure PyTorch: the model takes tensors (or a PyG ``Data``/``Batch`` holding them) and returns
tensors. Equation numbers refer to the main paper; "ESI S4" to its supplementary information.

Where the official implementation (the checkpoint format this module loads) differs from the
paper text, this module follows the code, and says so at the spot:

* concatenation order is [h_i ‖ h_j ‖ e_ij] (target, source, edge), not eqn 10's [h_i ‖ e_ij ‖ h_j];
* the Cholesky head fills an upper-triangular L and returns U = LᵀL (eqns 15–18 say lower L, LLᵀ);
* the edge vector points from the neighbour image to the centre atom, r_i − (r_j + n·C)
  (eqns 5–6 write p_j − p_i);
* the envelope uses the model's cutoff (the official app hard-codes 5 Å, equal to the released
  model's cutoff);
* temperature is standardised with the training statistics (192.1785 K, 81.2135 K for the
  released model), carried in :class:`CartNetConfig`.

The forward pass is the *split* form of the CartLayer: the first linear layer of MLP_gate and
MLP_msg acts on [h_i ‖ h_j ‖ e_ij], so W·z = W_i h_i + W_j h_j + W_e e_ij. The node terms are
projected once per node and gathered per edge, and the two MLPs' first layers are fused into one
matrix product. In eval mode BatchNorm of the gate is folded into MLP_gate's last layer. These are
exact algebraic rewrites; the direct form is kept in the tests as the reference.

Inference (eval mode, no autograd) takes a leaner path, :meth:`CartLayer.forward_blocks`: the
edges are processed in blocks of whole target atoms (at most about ``chunk_size`` edges each),
element-wise work is done in place, and the edge features e are updated in place, so the peak
memory holds e (E × d) once plus one block's temporaries instead of several E × 2d tensors. The
outputs equal the training-mode form up to the order of floating-point additions (tests: 1e-12
in float64).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ase_cartnet.graph.neighbours import edge_vectors
from ase_cartnet.models.blocks import (
    ExpNormalSmearing,
    cosine_cutoff,
    mlp,
    segment_lengths,
    spd_from_six,
    sum_over_incoming,
)
from ase_cartnet.models.config import ConfigDict
from ase_cartnet.models.harmonic_head import HarmonicHead

DEFAULT_CHUNK_SIZE = 4096
"""Edges per block in inference: each block's temporaries take about 4·d numbers per edge
(64 MB per block at d = 256 in float32); chosen where the measured speed was flat (README)."""

NUM_ELEMENTS = 119
"""Embedding rows: the atomic number indexes the table directly (row 0 unused, H is row 1)."""


@dataclass
class CartNetConfig(ConfigDict):
    """Hyper-parameters of CartNet. Defaults are the released ADP model (paper: dim 256, 4 layers).

    Attributes
    ----------
    dim
        latent width d.
    dim_rbf
        number K of radial basis functions.
    num_layers
        number of CartLayers.
    cutoff
        radius-graph cutoff r_c in Å (also the RBF and envelope cutoff).
    use_direction
        concatenate the unit edge vector to the RBF (False = paper ablation 4,
        the official ``invariant=True``).
    use_temperature
        add the projected standardised temperature to the atom embedding
        (False = ablation 5).
    use_envelope
        multiply the gate by the cosine envelope, eqn 11 (False = ablation 3).
    head
        "cholesky" (per-atom ADPs, eqns 15–18), "scalar" (ESI S4, one value per structure)
        or "harmonic" (per-atom ADPs from spectral weights through eqns 2–3,
        :mod:`ase_cartnet.models.harmonic_head`; the temperature enters there only, so it
        needs ``use_temperature=False``, and one forward pass serves every temperature).
    harmonic_bins, harmonic_freq_min, harmonic_freq_max
        the harmonic head's K frequency bins,
        log-spaced between the two frequencies (THz).
    temperature_mean, temperature_std
        standardisation of the input temperature, K.
    max_neighbours
        neighbour cap used when building graphs for this model (None = no cap, as
        in training; the official app uses 64). Not part of the weights.
    adp_floor
        ε in Å² added as U = LᵀL + εI by the Cholesky head, so that U stays positive
        definite in floating point even for needle-like predictions. 0 in the official model
        (and for official checkpoints); ase-cartnet training uses 1e-6 Å², negligible next
        to real ADPs (1e-3–1e-1 Å²).
    structure_context
        before a per-atom head, add a linear map of the structure's mean final atom feature
        (over the atoms the head predicts) to every atom's feature, so the head sees the whole
        crystal (e.g. its overall stiffness) and not only a 5 Å neighbourhood. Starts at zero,
        so a model without it fine-tunes from the same output.
    """

    dim: int = 256
    dim_rbf: int = 64
    num_layers: int = 4
    cutoff: float = 5.0
    use_direction: bool = True
    use_temperature: bool = True
    use_envelope: bool = True
    head: Literal["cholesky", "scalar", "harmonic"] = "cholesky"
    temperature_mean: float = 192.1785
    temperature_std: float = 81.2135
    max_neighbours: int | None = None
    adp_floor: float = 0.0
    harmonic_bins: int = 24
    harmonic_freq_min: float = 0.2
    harmonic_freq_max: float = 50.0
    structure_context: bool = False

    def __post_init__(self) -> None:
        self.check_fields(
            positive_ints=("dim", "dim_rbf", "num_layers", "max_neighbours", "harmonic_bins"),
            positive=("cutoff", "temperature_std", "harmonic_freq_min"),
            non_negative=("adp_floor",),
        )
        if not self.harmonic_freq_max > self.harmonic_freq_min:
            raise ValueError(
                f"harmonic_freq_max ({self.harmonic_freq_max}) must exceed harmonic_freq_min "
                f"({self.harmonic_freq_min})"
            )
        if self.head not in ("cholesky", "scalar", "harmonic"):
            raise ValueError(f"head must be 'cholesky', 'scalar' or 'harmonic', got {self.head!r}")
        if self.head == "harmonic" and self.use_temperature:
            raise ValueError(
                "the harmonic head takes the temperature through eqns 2-3; "
                "set use_temperature=False"
            )

    @property
    def per_atom(self) -> bool:
        """True for the heads that return U per atom (cholesky, harmonic)."""
        return self.head != "scalar"


class CartNetEncoder(nn.Module):
    """Atom encoder (eqn 4) and edge encoder (eqns 7–9)."""

    def __init__(self, config: CartNetConfig) -> None:
        super().__init__()
        d, r = config.dim, config.dim_rbf
        self.use_direction = config.use_direction
        self.embedding = nn.Embedding(NUM_ELEMENTS, 2 * d)
        if config.use_temperature:
            self.temperature_proj_atom = nn.Linear(1, 2 * d)
        else:
            self.temperature_proj_atom = None
        # Official code: SiLU before the linear layer too (Sequential SiLU, Linear, SiLU).
        self.encoder_atom = nn.Sequential(nn.SiLU(), nn.Linear(2 * d, d), nn.SiLU())
        edge_in = r + 3 if config.use_direction else r
        self.encoder_edge = nn.Sequential(
            nn.Linear(edge_in, 2 * d), nn.SiLU(), nn.Linear(2 * d, d), nn.SiLU()
        )
        self.rbf = ExpNormalSmearing(r, config.cutoff)

    def encode_atoms(
        self, numbers: torch.Tensor, t_std_per_atom: torch.Tensor | None
    ) -> torch.Tensor:
        """Eqn 4: h_i = SiLU(W₂ SiLU(Emb(Z_i) + W₁ T + b₁) + b₂). Returns (N, d)."""
        x = self.embedding(numbers)
        if self.temperature_proj_atom is not None:
            x = x + self.temperature_proj_atom(t_std_per_atom.unsqueeze(-1))
        return self.encoder_atom(x)

    def encode_edges(self, distances: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        """Eqn 9: e_ij = MLP_edge(r_ij(d_ij) ‖ v̂_ij) (RBF block first). Returns (E, d)."""
        features = self.rbf(distances)  # eqns 7–8
        if self.use_direction:
            features = torch.cat([features, directions], dim=-1)
        return self.encoder_edge(features)

    def encode_edges_blocks(
        self, distances: torch.Tensor, directions: torch.Tensor, chunk_size: int
    ) -> torch.Tensor:
        """:meth:`encode_edges` block by block into one (E, d) tensor (inference: the (E, 2d)
        hidden layer never exists in full)."""
        out_dim = self.encoder_edge[2].out_features
        out = distances.new_empty((distances.shape[0], out_dim))
        for start in range(0, distances.shape[0], chunk_size):
            block = slice(start, start + chunk_size)
            out[block] = self.encode_edges(distances[block], directions[block])
        return out


class CartLayer(nn.Module):
    """One CartLayer, eqns 10–14, evaluated in split-and-fused form.

    For each edge j→i (i = target): z = [h_i ‖ h_j ‖ e_ij];
    σ_ij = Sigmoid(BN(MLP_gate(z))) ⊙ Env(d_ij)           (eqns 10–11)
    m_ij = MLP_msg(z) ⊙ σ_ij                               (eqn 12)
    h_i ← h_i + SiLU(BN(Σ_j m_ij))                         (eqn 13)
    e_ij ← e_ij + σ_ij                                     (eqn 14)
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.MLP_aggr = mlp(3 * dim, dim, dim)  # MLP_msg of the paper (official name)
        self.MLP_gate = mlp(3 * dim, dim, dim)
        self.norm = nn.BatchNorm1d(dim)  # on per-edge gate pre-activations
        self.norm2 = nn.BatchNorm1d(dim)  # on per-node aggregated messages
        self._inference_cache: tuple[tuple, tuple] | None = None
        self.block_messages = gated_messages  # compile_blocks swaps in a compiled version

    def _derived_weights(self) -> tuple:
        """(W_target, W_source, W_edge, bias, W_gate, b_gate, bn_folded). In inference (eval mode,
        no autograd) they are cached and rebuilt whenever a parameter or buffer changes (tensor
        identity, in-place version counter, dtype or device)."""
        if self.training or torch.is_grad_enabled():
            return (*self._fused_first_layer(), *self._gate_output_layer())
        tensors = (*self.parameters(), *self.buffers())
        key = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)
        if self._inference_cache is None or self._inference_cache[0] != key:
            derived = (*self._fused_first_layer(), *self._gate_output_layer())
            self._inference_cache = (key, derived)
        return self._inference_cache[1]

    def _fused_first_layer(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Split the (gate, msg) first layers' [d, 3d] weights by input block and stack the two
        MLPs along the output: returns W_target, W_source, W_edge (each [2d, d]) and bias [2d]."""
        d = self.dim
        wg, wm = self.MLP_gate[0].weight, self.MLP_aggr[0].weight
        w_target = torch.cat([wg[:, :d], wm[:, :d]], dim=0)
        w_source = torch.cat([wg[:, d : 2 * d], wm[:, d : 2 * d]], dim=0)
        w_edge = torch.cat([wg[:, 2 * d :], wm[:, 2 * d :]], dim=0)
        bias = torch.cat([self.MLP_gate[0].bias, self.MLP_aggr[0].bias], dim=0)
        return w_target, w_source, w_edge, bias

    def _gate_output_layer(self) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """MLP_gate's last layer; in eval mode with BatchNorm folded in (BN is affine then)."""
        lin = self.MLP_gate[2]
        if self.training:
            return lin.weight, lin.bias, False
        bn = self.norm
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        weight = lin.weight * scale.unsqueeze(-1)
        bias = (lin.bias - bn.running_mean) * scale + bn.bias
        return weight, bias, True

    def forward(
        self,
        h: torch.Tensor,
        e: torch.Tensor,
        edge_index: torch.Tensor,
        envelope: torch.Tensor | None,
        lengths: torch.Tensor | None = None,
        update_edges: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One layer. ``lengths``: incoming-edge counts when edges are sorted by target (enables
        the segment sum); ``update_edges=False`` skips eqn 14 (after the last layer e is unused).
        """
        source, target = edge_index[0], edge_index[1]
        w_target, w_source, w_edge, bias, w_gate, b_gate, bn_folded = self._derived_weights()
        # Node blocks projected once per node (N×2d), gathered per edge; edge block per edge.
        node_target = h @ w_target.T
        node_source = h @ w_source.T
        hidden = torch.addmm(bias, e, w_edge.T)
        hidden = hidden + node_target.index_select(0, target) + node_source.index_select(0, source)
        hidden = F.silu(hidden)
        gate_hidden, msg_hidden = hidden.split(self.dim, dim=-1)

        gate = torch.addmm(b_gate, gate_hidden, w_gate.T)
        if not bn_folded:
            gate = self.norm(gate)
        gate = torch.sigmoid(gate)  # eqn 10
        if envelope is not None:
            gate = gate * envelope.unsqueeze(-1)  # eqn 10, ⊙ Env(d_ij) of eqn 11

        lin_msg = self.MLP_aggr[2]
        message = torch.addmm(lin_msg.bias, msg_hidden, lin_msg.weight.T) * gate  # eqn 12
        aggregated = sum_over_incoming(message, target, h.shape[0], lengths)  # Σ_j of eqn 13
        h = h + F.silu(self.norm2(aggregated))  # eqn 13
        if update_edges:
            e = e + gate  # eqn 14
        return h, e

    def forward_blocks(
        self,
        h: torch.Tensor,
        e: torch.Tensor,
        edge_index: torch.Tensor,
        envelope: torch.Tensor | None,
        blocks: list[tuple[torch.Tensor | slice, int, int]],
        lengths: torch.Tensor | None,
        update_edges: bool = True,
    ) -> torch.Tensor:
        """The layer in eval mode without autograd, block by block and in place: returns the new
        h (N, d) and adds the gate to ``e`` in place (eqn 14) when ``update_edges``.

        ``blocks``: (edges, first node, end node) from :func:`edge_blocks`; ``edges`` selects
        rows of ``e``/``edge_index`` (a slice, or an index tensor for a subset of edges). With
        ``lengths`` (edges sorted by target) each block's messages are one segment sum over its
        whole target atoms; without, an index_add.
        """
        source, target = edge_index[0], edge_index[1]
        w_target, w_source, w_edge, bias, w_gate, b_gate, bn_folded = self._derived_weights()
        if not bn_folded:
            raise RuntimeError("forward_blocks needs eval mode (BatchNorm folded)")
        lin_msg = self.MLP_aggr[2]
        # Node blocks once per node (bias folded into the target term), gathered per edge.
        node_target = torch.addmm(bias, h, w_target.T)
        node_source = h @ w_source.T
        aggregated = h.new_zeros(h.shape)
        for edges, first, end in blocks:
            message, gate = self.block_messages(
                e[edges], target[edges], source[edges], node_target, node_source,
                w_edge, w_gate, b_gate, lin_msg.weight, lin_msg.bias,
                envelope[edges] if envelope is not None else None,
            )  # fmt: skip
            if lengths is not None:
                aggregated[first:end] = torch.segment_reduce(
                    message, "sum", lengths=lengths[first:end], axis=0, unsafe=True
                )
            else:
                aggregated.index_add_(0, target[edges], message)
            if update_edges:
                if isinstance(edges, slice):
                    e[edges].add_(gate)  # a view: e updated in place (eqn 14)
                else:
                    e.index_add_(0, edges, gate)
        out = self.norm2(aggregated)
        return F.silu(out, inplace=True).add_(h)  # eqn 13


def gated_messages(
    e: torch.Tensor,
    target: torch.Tensor,
    source: torch.Tensor,
    node_target: torch.Tensor,
    node_source: torch.Tensor,
    w_edge: torch.Tensor,
    w_gate: torch.Tensor,
    b_gate: torch.Tensor,
    w_msg: torch.Tensor,
    b_msg: torch.Tensor,
    envelope: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Messages m_ij and gates σ_ij (eqns 10–12) of one block of edges, in place where possible.

    ``e`` (B, d) edge features, ``target``/``source`` (B,) atom indices, ``node_target`` (N, 2d)
    the target projection with the first layers' bias, ``node_source`` (N, 2d), the weights of
    :meth:`CartLayer._derived_weights` (BatchNorm folded), ``envelope`` (B,) or None. Returns
    (message, gate), each (B, d).
    """
    d = w_gate.shape[0]
    hidden = node_target.index_select(0, target)
    hidden.addmm_(e, w_edge.T)
    hidden += node_source.index_select(0, source)
    F.silu(hidden, inplace=True)
    gate = torch.addmm(b_gate, hidden[:, :d], w_gate.T).sigmoid_()  # eqn 10
    if envelope is not None:
        gate *= envelope.unsqueeze(-1)  # ⊙ Env(d_ij), eqn 11
    message = torch.addmm(b_msg, hidden[:, d:], w_msg.T)
    message *= gate  # eqn 12
    return message, gate


class _CompiledOrEager:
    """``torch.compile(function)`` that falls back to ``function`` itself, with one warning,
    when compiling or running the compiled version fails (no compiler, unsupported platform)."""

    def __init__(self, function) -> None:
        self.eager = function
        self.compiled = None
        try:
            self.compiled = torch.compile(function, dynamic=True)
        except Exception as exc:  # noqa: BLE001 - any failure means: run eagerly
            self._give_up(exc)

    def _give_up(self, exc: Exception) -> None:
        import warnings

        warnings.warn(
            f"torch.compile is unavailable here ({type(exc).__name__}: {str(exc)[:200]}); "
            "CartNet runs uncompiled (same results, slower)",
            RuntimeWarning,
            stacklevel=3,
        )
        self.compiled = None

    def __call__(self, *args):
        if self.compiled is not None:
            try:
                return self.compiled(*args)
            except Exception as exc:  # noqa: BLE001
                self._give_up(exc)
        return self.eager(*args)


def compile_blocks(model: nn.Module) -> nn.Module:
    """Compile the per-block edge work (:func:`gated_messages`) of every CartLayer in ``model``
    (a CartNet or an ensemble) with ``torch.compile``: it fuses the gathers and element-wise
    steps into the matrix products' neighbourhood. Inference only; the first call of each new
    shape pattern compiles (tens of seconds on CPU). Falls back to eager with a warning where
    ``torch.compile`` is unavailable or fails. Returns ``model``."""
    shared = _CompiledOrEager(gated_messages)
    for module in model.modules():
        if isinstance(module, CartLayer):
            module.block_messages = shared
    return model


def edge_blocks(
    lengths: torch.Tensor | None, num_edges: int, chunk_size: int, rows: torch.Tensor | None = None
) -> list[tuple[torch.Tensor | slice, int, int]]:
    """Split the edges into blocks of about ``chunk_size`` for :meth:`CartLayer.forward_blocks`.

    With ``lengths`` (N,) (incoming edges per node, edges sorted by target) a block holds whole
    target atoms: (edges, first node, end node), a node block's edges contiguous; one node with
    more edges than ``chunk_size`` makes a block alone. Without ``lengths`` the blocks are plain
    edge tiles (nodes unused). ``rows`` (sorted edge indices) restricts the blocks to a subset
    of the edges (the last layer's edges into the output atoms); the blocks then index ``rows``.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    count = num_edges if rows is None else int(rows.shape[0])

    def select(start: int, stop: int) -> torch.Tensor | slice:
        return slice(start, stop) if rows is None else rows[start:stop]

    if lengths is None:
        return [(select(s, min(s + chunk_size, count)), 0, 0) for s in range(0, count, chunk_size)]
    ptr = torch.zeros(lengths.shape[0] + 1, dtype=torch.long)
    torch.cumsum(lengths.cpu(), 0, out=ptr[1:])
    cuts = torch.arange(0, count, chunk_size, dtype=torch.long)
    nodes = torch.searchsorted(ptr, cuts, right=True) - 1  # node holding each cut edge
    nodes = torch.unique(torch.cat([nodes, torch.tensor([lengths.shape[0]])]))
    nodes = [int(n) for n in nodes]
    ptr_list = ptr.tolist()
    return [
        (select(ptr_list[a], ptr_list[b]), a, b)
        for a, b in zip(nodes[:-1], nodes[1:], strict=True)
        if ptr_list[b] > ptr_list[a]
    ]


class CholeskyHead(nn.Module):
    """ADP head, eqns 15–18: MLP_head(h_i) → 6 numbers → triangular factor → SPD U (N, 3, 3), Å².

    Official convention (followed here): s_k = softplus(p_k) for k = 0..2 on the diagonal of an
    *upper*-triangular L with L01 = p3, L02 = p4, L12 = p5, and U = LᵀL. (Eqn 17 places the
    off-diagonals in a lower L and eqn 18 forms LLᵀ; both give SPD matrices, but only this
    convention reproduces the released weights.)
    """

    def __init__(self, dim: int, floor: float = 0.0) -> None:
        super().__init__()
        self.MLP = mlp(dim, dim // 2, 6)
        self.floor = float(floor)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """U (N, 3, 3) in float64 whatever the model's dtype: in float32, LᵀL with a tiny
        softplus diagonal (a needle-like ellipsoid) rounds to a matrix with an eigenvalue ≤ 0.
        With ``floor`` > 0, U = LᵀL + floor·I is positive definite in floating point too."""
        u = spd_from_six(self.MLP(h).double())  # U = Lᵀ L
        if self.floor > 0.0:
            u = u + self.floor * torch.eye(3, dtype=u.dtype, device=u.device)
        return u


class ScalarHead(nn.Module):
    """ESI S4 eqn 4: s = AVG_i(MLP_head(h_i)), one scalar per structure. Returns (B,)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.MLP = mlp(dim, dim // 2, 1)

    def forward(self, h: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
        per_atom = self.MLP(h).squeeze(-1)
        totals = per_atom.new_zeros(num_graphs).index_add_(0, batch, per_atom)
        counts = per_atom.new_zeros(num_graphs).index_add_(0, batch, torch.ones_like(per_atom))
        return totals / counts


class CartNet(nn.Module):
    """CartNet for a batch of periodic structures.

    ``forward(graph)`` takes a PyG ``Data``/``Batch`` with fields ``numbers`` (N,) int64,
    ``pos`` (N, 3) Å, ``cell`` (B, 3, 3) Å (rows are lattice vectors), ``cell_shift`` (E, 3),
    ``edge_index`` (2, E) (row 0 source j, row 1 target i), ``temperature`` (B,) K and ``batch``
    (N,) (absent for a single structure); the harmonic head also reads ``masses`` (N,) amu and
    accepts ``temperature`` (B, T), several temperatures per structure. It returns Cartesian U
    (N, 3, 3) in Å² for every atom with the Cholesky or harmonic head ((N, T, 3, 3) for (B, T)
    temperatures; callers keep the non-H rows; float64, see :class:`CholeskyHead`), or (B,) with
    the scalar head.
    """

    def __init__(self, config: CartNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or CartNetConfig()
        c = self.config
        self.encoder = CartNetEncoder(c)
        self.layers = nn.ModuleList(CartLayer(c.dim) for _ in range(c.num_layers))
        self.chunk_size = DEFAULT_CHUNK_SIZE  # edges per block in inference (not in weights)
        if c.head == "cholesky":
            self.head = CholeskyHead(c.dim, c.adp_floor)
        elif c.head == "harmonic":
            self.head = HarmonicHead(
                c.dim, c.harmonic_bins, c.harmonic_freq_min, c.harmonic_freq_max, c.adp_floor
            )
        else:
            self.head = ScalarHead(c.dim)
        if c.structure_context:
            self.context = nn.Linear(c.dim, c.dim)
            nn.init.zeros_(self.context.weight)
            nn.init.zeros_(self.context.bias)

    def add_structure_context(
        self,
        h: torch.Tensor,
        batch: torch.Tensor,
        num_graphs: int,
        output_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """h (N, d) plus context(mean of h over each structure's selected atoms), (N, d).
        The mean runs over ``output_mask`` atoms only, because in inference the last layer
        updates only those (unselected atoms keep their penultimate features)."""
        weight = h.new_ones(h.shape[0]) if output_mask is None else output_mask.to(h.dtype)
        total = h.new_zeros(num_graphs, h.shape[1]).index_add_(0, batch, h * weight[:, None])
        count = h.new_zeros(num_graphs).index_add_(0, batch, weight).clamp_min(1.0)
        return h + self.context(total / count[:, None]).index_select(0, batch)

    def standardise_temperature(self, temperature: torch.Tensor) -> torch.Tensor:
        """t = (T − mean) / std with the training statistics (paper section 4.1.1)."""
        return (temperature - self.config.temperature_mean) / self.config.temperature_std

    def forward(self, graph, output_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Cholesky head: U (N, 3, 3), or (n_selected, 3, 3) for the atoms where ``output_mask``
        (N,) bool is True (e.g. the non-H atoms). Scalar head: (B,); ``output_mask`` unused."""
        pos = graph.pos
        batch = getattr(graph, "batch", None)
        if batch is None:
            batch = torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device)
        cell = graph.cell.reshape(-1, 3, 3)
        # graph.edge_vectors gives r_j + n·C − r_i (centre → neighbour); the official model uses
        # the opposite sign, r_i − (r_j + n·C) (fixture README), hence the minus.
        vectors = -edge_vectors(pos, cell, graph.edge_index, graph.cell_shift, batch)
        return self.forward_from_vectors(
            graph.numbers,
            vectors,
            graph.edge_index,
            graph.temperature,
            batch,
            cell.shape[0],
            output_mask=output_mask,
            masses=getattr(graph, "masses", None),
        )

    def forward_from_vectors(
        self,
        numbers: torch.Tensor,
        vectors: torch.Tensor,
        edge_index: torch.Tensor,
        temperature: torch.Tensor | None,
        batch: torch.Tensor,
        num_graphs: int,
        output_mask: torch.Tensor | None = None,
        masses: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The network on precomputed edge vectors (E, 3) = r_i − (r_j + n·C), Å (eqns 5–6).

        Augmentation rotates these vectors (eqn 19) without touching the graph. With a Cholesky
        head and an ``output_mask``, the last layer in eval mode only processes edges whose target
        is selected — exact, since no other atom's final features are read. The harmonic head
        needs ``masses`` (N,) amu and takes ``temperature`` (B,) or (B, T) K.
        """
        distances = torch.linalg.vector_norm(vectors, dim=-1)  # eqn 5
        directions = vectors / distances.unsqueeze(-1)  # eqn 6
        t_atom = None
        if self.config.use_temperature:
            if temperature is None:
                raise ValueError("this CartNet model needs a temperature per structure")
            t_std = self.standardise_temperature(temperature.reshape(-1).to(vectors.dtype))
            t_atom = t_std.index_select(0, batch)
        h = self.encoder.encode_atoms(numbers, t_atom)
        envelope = (
            cosine_cutoff(distances, self.config.cutoff) if self.config.use_envelope else None
        )
        num_nodes = h.shape[0]
        lengths = segment_lengths(edge_index[1], num_nodes)
        per_atom = self.config.per_atom
        mask_last = per_atom and output_mask is not None and not self.training
        if not self.training and not torch.is_grad_enabled():
            h = self._trunk_blocks(
                h, distances, directions, edge_index, envelope, lengths,
                output_mask if mask_last else None,
            )  # fmt: skip
        else:
            e = self.encoder.encode_edges(distances, directions)
            for k, layer in enumerate(self.layers):
                last = k == len(self.layers) - 1
                if last and mask_last:
                    keep = output_mask.index_select(0, edge_index[1])
                    edge_index, e = edge_index[:, keep], e[keep]
                    envelope = envelope[keep] if envelope is not None else None
                    lengths = segment_lengths(edge_index[1], num_nodes)
                h, e = layer(h, e, edge_index, envelope, lengths, update_edges=not last)
        if self.config.structure_context and per_atom:
            h = self.add_structure_context(h, batch, num_graphs, output_mask)
        if self.config.head == "harmonic":
            if masses is None or temperature is None:
                raise ValueError("the harmonic head needs masses and a temperature per structure")
            t = temperature.reshape(num_graphs, -1).index_select(0, batch)  # (N, T)
            t = t.squeeze(-1) if temperature.dim() == 1 else t
            if output_mask is not None:
                h, masses, t = h[output_mask], masses[output_mask], t[output_mask]
            return self.head(h, masses, t)
        if per_atom:
            return self.head(h if output_mask is None else h[output_mask])
        return self.head(h, batch, num_graphs)

    def _trunk_blocks(
        self,
        h: torch.Tensor,
        distances: torch.Tensor,
        directions: torch.Tensor,
        edge_index: torch.Tensor,
        envelope: torch.Tensor | None,
        lengths: torch.Tensor | None,
        output_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """Edge encoding and the CartLayers in inference, block by block (module docstring).
        With ``output_mask`` the last layer only visits edges into the selected atoms."""
        chunk = int(self.chunk_size)
        e = self.encoder.encode_edges_blocks(distances, directions, chunk)
        blocks = edge_blocks(lengths, e.shape[0], chunk)
        for k, layer in enumerate(self.layers):
            last = k == len(self.layers) - 1
            if last and output_mask is not None:
                rows = output_mask.index_select(0, edge_index[1]).nonzero().squeeze(-1)
                if lengths is not None:
                    lengths = segment_lengths(edge_index[1, rows], h.shape[0])
                blocks = edge_blocks(lengths, e.shape[0], chunk, rows)
            h = layer.forward_blocks(h, e, edge_index, envelope, blocks, lengths, not last)
        return h


class CartNetEnsemble(nn.Module):
    """K CartNets of one architecture (independently trained) whose outputs are averaged:
    U = (1/K) Σ_k U_k. A mean of positive-definite matrices is positive definite, and averaging
    independent members removes part of each one's error. Same ``forward`` signature and
    ``config`` (the members') as :class:`CartNet`, so adapters use either."""

    def __init__(self, config: CartNetConfig, size: int) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"an ensemble needs at least one member, got {size}")
        self.config = config
        self.members = nn.ModuleList(CartNet(config) for _ in range(size))

    def forward(self, graph, output_mask: torch.Tensor | None = None) -> torch.Tensor:
        total = None
        for member in self.members:
            out = member(graph, output_mask=output_mask)
            total = out if total is None else total + out
        return total / len(self.members)
