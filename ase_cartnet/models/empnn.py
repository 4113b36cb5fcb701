"""EMPNN (Klipfel et al., AAAI 2023): an equivariant message-passing network that deforms a lattice.

The model reads a periodic crystal (positions, cell, a kNN graph with integer cell shifts) and
returns a new cell ρ' = h ρ, with the fractional coordinates kept. It is equivariant under
Euc(3) (rotations, reflections, translations: h → g h gᵀ), SL₃(ℤ) (any other choice of cell of
the same lattice gives the same point cloud) and permutations of the atoms (paper Prop. 4).

Conventions. ASE/``ase_cartnet.graph``: the lattice vectors are the **rows** of ``cell``; the
paper's ρ has them as columns (ρ = cellᵀ). An action h acts on column vectors, so ρ' = h ρ is
``cell' = cell @ hᵀ``, and Cartesian positions move with the lattice as ``pos' = pos @ hᵀ``
(fractional coordinates fixed). Edge vectors v come from
:func:`ase_cartnet.graph.neighbours.edge_vectors`
(centre → neighbour image), recomputed in torch after every deformation step, so gradients flow
through the cell. In the paper's notation the edge γ = (i, j, τ) has i = our target (centre) and
j = our source (neighbour); the 2-graph Γ₂ pairs γ: i → j with γ': j → k
(:func:`ase_cartnet.graph.neighbours.triplets`).

Vector fields (Def. 8, eqns 5–7). Each field is a 3×3 matrix per edge or triplet that transforms
as λ → g λ gᵀ under O(3) and is invariant under SL₃(ℤ):

* edges Γ₁: ``"ketbra"`` |u⟩⟨u|; ``"grad_r"`` ∇r = |u⟩⟨v| (eqn 6).
* triplets Γ₂: ``"ketbra"`` |u_γ⟩⟨u_γ| of the first edge (Table 2's {|γ⟩⟨γ| ⊆ Γ₂});
  ``"ketbra_cross"`` |u_γ⟩⟨u_γ'| + |u_γ'⟩⟨u_γ|; ``"grad_r"``/``"grad_r2"`` ∇r_γ, ∇r_γ';
  ``"grad_theta"`` ∇θ (eqn 7); ``"grad_area"`` ∇A.

The gradients are taken with respect to the left action on the lattice,
∇f = ∂/∂X f(exp(X) ρ) at X = 0 (a tangent vector at ρ, eqn 5: ∂v/∂ρ = ρ·e), which is the form
that makes them Euc(3)-equivariant and SL₃(ℤ)-invariant. ``sym=True`` replaces every field by
its symmetric part (λ + λᵀ)/2 (the paper's ∇_sym), so h is a pure stretch.

Deformation (eqns 10a–10b): X = (1/|Γ₁|) Σ w_γ λ_γ + (1/|Γ₂|) Σ w_γγ' λ_γγ' per structure, then
h = exp(X) (:func:`equivariant_expm`; det h = exp(tr X) > 0: the cell stays right-handed and
non-degenerate) or, with ``exponential="first_order"``, h = I + X as in the paper's
appendix B.2. Several steps compose: h = h_S ⋯ h_1.

The FF baseline (section 6, CDVAE's invariant readout): the same invariant encoder, a mean pool
and an MLP predicting the six lattice parameters (lengths / N^{1/3} and angles, standardised),
from which a cell is built in a standard orientation (not rotation-equivariant, only invariant
lattice parameters, as in the paper).

Pure torch: no ASE, no files. Shapes use N atoms, E edges, T triplets, B structures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ase_cartnet.graph.neighbours import edge_vectors, triplets
from ase_cartnet.models.blocks import GaussianBasis, mlp
from ase_cartnet.models.config import ConfigDict

EDGE_FIELDS = ("ketbra", "grad_r")
TRIPLET_FIELDS = ("ketbra", "ketbra_cross", "grad_r", "grad_r2", "grad_theta", "grad_area")
HEADS = ("deform", "ff")
EXPONENTIALS = ("exp", "first_order")


@dataclass
class EMPNNConfig(ConfigDict):
    """Architecture of :class:`EMPNN` / :class:`LatticeFF` (defaults: the authors' code).

    Attributes
    ----------
    dim
        feature width (128).
    num_rbf
        Gaussian radial basis functions on [0, rbf_max] Å.
    num_relative
        Gaussian basis functions (plus the raw value) of the relative edge length
        r_γ / r̄_i on [0.4, 1.6], r̄_i the mean length of the edges of the centre atom i;
        0 (default) gives the paper's eqn 8a exactly. An invariant of the point cloud, so
        equivariance is untouched; it exposes anisotropic strain directly (our addition).
    rbf_max
        Å, the largest distance the radial basis resolves.
    num_angle
        basis functions of cos θ for triplet messages.
    num_layers
        invariant MPNN layers before the deformation steps (8).
    num_steps
        deformation (EMPNN) layers (4); each is one more MPNN layer plus an action.
    k
        neighbours per atom of the kNN graph (16; ties at the k-th distance are all kept).
    edge_fields
        vector fields on Γ₁ (names in ``EDGE_FIELDS``).
    triplet_fields
        vector fields on Γ₂ (names in ``TRIPLET_FIELDS``).
    sym
        use the symmetric part of every field (the paper's "sym").
    triplet_messages
        use triplet messages (eqn 8b) in the node update (eqn 9) of the
        invariant encoder layers too (the deformation steps use them whenever
        ``triplet_fields`` is non-empty; off by default to save CPU).
    exponential
        "exp" (matrix exponential) or "first_order" (h = I + X, appendix B.2).
    head
        "deform" (EMPNN) or "ff" (the invariant feed-forward baseline).
    max_z
        largest atomic number embedded.
    length_mean, length_std, angle_mean, angle_std
        statistics of the normalised lattice
        parameters (a, b, c) / N^{1/3} (Å) and (α, β, γ) (degrees) of the training set, used
        by the FF head and the lattice-parameter losses.
    """

    dim: int = 128
    num_rbf: int = 32
    num_relative: int = 0
    rbf_max: float = 8.0
    num_angle: int = 16
    num_layers: int = 8
    num_steps: int = 4
    k: int = 16
    edge_fields: tuple[str, ...] = ("ketbra",)
    triplet_fields: tuple[str, ...] = ()
    sym: bool = False
    triplet_messages: bool = False
    exponential: str = "exp"
    head: str = "deform"
    max_z: int = 100
    length_mean: float = 2.0
    length_std: float = 0.5
    angle_mean: float = 90.0
    angle_std: float = 15.0

    def __post_init__(self) -> None:
        self.check_fields(
            positive_ints=("dim", "num_rbf", "num_angle", "num_layers", "k", "max_z"),
            positive=("rbf_max", "length_std", "angle_std"),
        )
        self.edge_fields = tuple(self.edge_fields)
        self.triplet_fields = tuple(self.triplet_fields)
        bad = [f for f in self.edge_fields if f not in EDGE_FIELDS]
        bad += [f for f in self.triplet_fields if f not in TRIPLET_FIELDS]
        if bad:
            raise ValueError(
                f"unknown vector field(s) {bad}: edge fields are {EDGE_FIELDS}, "
                f"triplet fields {TRIPLET_FIELDS}"
            )
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.exponential not in EXPONENTIALS:
            raise ValueError(f"exponential must be one of {EXPONENTIALS}, got {self.exponential!r}")
        if self.head == "deform" and not (self.edge_fields or self.triplet_fields):
            raise ValueError("an EMPNN needs at least one vector field (edge or triplet)")
        for name in ("dim", "num_rbf", "num_angle", "k", "max_z"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_relative < 0:
            raise ValueError(f"num_relative must be >= 0, got {self.num_relative}")
        if self.num_layers < 0 or self.num_steps < 0:
            raise ValueError("num_layers and num_steps must be >= 0")
        if self.head == "deform" and self.num_steps < 1:
            raise ValueError("an EMPNN needs at least one deformation step")

    @property
    def uses_triplets(self) -> bool:
        return bool(self.triplet_messages or self.triplet_fields)


# --------------------------------------------------------------------------------------------
# geometry: invariants (Def. 7) and vector fields (Def. 8, eqns 5–7)
# --------------------------------------------------------------------------------------------


def _outer(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a⟩⟨b| for rows of a, b (..., 3) → (..., 3, 3)."""
    return a.unsqueeze(-1) * b.unsqueeze(-2)


@dataclass
class Geometry:
    """Invariants and unit vectors of one graph state.

    v (E, 3) edge vectors in Å; r (E,) lengths; u (E, 3) unit vectors; for triplets (a, b):
    cos_theta (T,) of the unoriented angle between v_a and v_b, area (T,) Å² of the triangle
    with sides v_a, v_b, omega (T, 3) the unit normal v_a × v_b / |v_a × v_b| (0 if colinear).
    """

    v: torch.Tensor
    r: torch.Tensor
    u: torch.Tensor
    cos_theta: torch.Tensor | None = None
    area: torch.Tensor | None = None
    omega: torch.Tensor | None = None


def geometry(v: torch.Tensor, triplet_index: torch.Tensor | None) -> Geometry:
    """Definition 7's invariants r, θ (as cos θ) and A from edge vectors v (E, 3)."""
    r = torch.linalg.vector_norm(v, dim=-1)
    u = v / r.unsqueeze(-1)
    if triplet_index is None:
        return Geometry(v, r, u)
    a, b = triplet_index[0], triplet_index[1]
    va, vb = v.index_select(0, a), v.index_select(0, b)
    cos_theta = (u.index_select(0, a) * u.index_select(0, b)).sum(-1).clamp(-1.0, 1.0)
    cross = torch.linalg.cross(va, vb, dim=-1)
    cross_sq = (cross * cross).sum(-1)
    norm = torch.sqrt(cross_sq.clamp(min=1e-24))
    colinear = cross_sq <= 1e-24
    omega = torch.where(colinear.unsqueeze(-1), torch.zeros_like(cross), cross / norm.unsqueeze(-1))
    area = 0.5 * torch.where(colinear, torch.zeros_like(norm), norm)
    return Geometry(v, r, u, cos_theta, area, omega)


def edge_field(name: str, geo: Geometry) -> torch.Tensor:
    """Vector field λ_γ (E, 3, 3) on the edges (Def. 8)."""
    if name == "ketbra":
        return _outer(geo.u, geo.u)
    if name == "grad_r":  # eqn 6: dr = ⟨u, X v⟩  ⇒  ∇r = |u⟩⟨v|
        return _outer(geo.u, geo.v)
    raise ValueError(f"unknown edge field {name!r}")


def triplet_field(name: str, geo: Geometry, triplet_index: torch.Tensor) -> torch.Tensor:
    """Vector field λ_γγ' (T, 3, 3) on the triplets (Def. 8, eqns 6–7)."""
    a, b = triplet_index[0], triplet_index[1]
    ua, ub = geo.u.index_select(0, a), geo.u.index_select(0, b)
    if name == "ketbra":
        return _outer(ua, ua)
    if name == "ketbra_cross":
        return _outer(ua, ub) + _outer(ub, ua)
    if name == "grad_r":
        return _outer(ua, geo.v.index_select(0, a))
    if name == "grad_r2":
        return _outer(ub, geo.v.index_select(0, b))
    omega = geo.omega
    if name == "grad_theta":
        # eqn 7: ∂θ/∂v_b = (ω × u_b)/r_b, ∂θ/∂v_a = −(ω × u_a)/r_a; with dv = X v the radii cancel
        wa = torch.linalg.cross(omega, ua, dim=-1)
        wb = torch.linalg.cross(omega, ub, dim=-1)
        return _outer(wb, ub) - _outer(wa, ua)
    if name == "grad_area":
        # A = |v_a × v_b| / 2, dA = ⟨ω, X v_a × v_b + v_a × X v_b⟩ / 2
        va, vb = geo.v.index_select(0, a), geo.v.index_select(0, b)
        first = torch.linalg.cross(vb, omega, dim=-1)
        second = torch.linalg.cross(omega, va, dim=-1)
        return 0.5 * (_outer(first, va) + _outer(second, vb))
    raise ValueError(f"unknown triplet field {name!r}")


# --------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------


def _scatter_sum(values: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    out = values.new_zeros((size,) + tuple(values.shape[1:]))
    return out.index_add_(0, index, values)


class MessageLayer(nn.Module):
    """One MPNN layer: messages (eqns 8a–8b), sums and node update (eqn 9), residual.

    m_γ = φ¹(z_i, z_j, rbf(r_γ)) (an MLP); m_γγ' = SiLU(W_a m_γ ⊙ W_b m_γ' ⊙ W_θ basis(cos θ)),
    a function of z_i, z_j, z_k, r_γ, r_γ', θ as in eqn 8b, in a factorised (bilinear) form so
    that the 2-graph, ~k² triplets per atom, costs O(T·dim) instead of an MLP per triplet;
    z_i ← z_i + φᵘ(z_i, Σ_{γ∈Γ₁(i)} φᶻ¹(m_γ) / k, Σ_{γγ'∈Γ₂(i)} m_γγ' / k²) (eqn 9), where Γ₁(i),
    Γ₂(i) are the edges and triplets starting at i (φᶻ² is folded into φᵘ). The constants 1/k
    and 1/k² keep the sums of order one.
    """

    def __init__(self, config: EMPNNConfig, triplet_messages: bool) -> None:
        super().__init__()
        d = config.dim
        self.k = float(config.k)
        radial = config.num_rbf + (config.num_relative + 1 if config.num_relative else 0)
        self.edge_message = mlp(2 * d + radial, d, d)
        self.edge_aggregate = mlp(d, d, d)
        self.triplet_messages = triplet_messages
        if triplet_messages:
            self.triplet_first = nn.Linear(d, d)
            self.triplet_second = nn.Linear(d, d, bias=False)
            self.triplet_angle = nn.Linear(config.num_angle, d)
        width = (3 if triplet_messages else 2) * d
        self.norm = nn.LayerNorm(width)
        self.update = mlp(width, d, d)

    def forward(
        self,
        h: torch.Tensor,
        edge_index: torch.Tensor,
        rbf: torch.Tensor,
        triplet_index: torch.Tensor | None,
        abf: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Returns updated node features (N, d), edge messages (E, d), triplet messages (T, d)."""
        src, tgt = edge_index[0], edge_index[1]
        n = h.shape[0]
        m_edge = self.edge_message(torch.cat([h[tgt], h[src], rbf], dim=-1))  # eqn 8a
        parts = [h, _scatter_sum(self.edge_aggregate(m_edge), tgt, n) / self.k]
        m_triplet = None
        if self.triplet_messages:
            a, b = triplet_index[0], triplet_index[1]
            first = self.triplet_first(m_edge).index_select(0, a)
            second = self.triplet_second(m_edge).index_select(0, b)
            m_triplet = nn.functional.silu(first * second * self.triplet_angle(abf))  # eqn 8b
            centre = tgt.index_select(0, a)  # the triplet i → j → k starts at i
            parts.append(_scatter_sum(m_triplet, centre, n) / (self.k * self.k))
        h = h + self.update(self.norm(torch.cat(parts, dim=-1)))  # eqn 9
        return h, m_edge, m_triplet


class _Encoder(nn.Module):
    """Embedding and the invariant MPNN layers shared by EMPNN and the FF baseline."""

    def __init__(self, config: EMPNNConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.max_z + 1, config.dim)
        self.rbf = GaussianBasis(0.0, config.rbf_max, config.num_rbf)
        self.relative = (
            GaussianBasis(0.4, 1.6, config.num_relative) if config.num_relative else None
        )
        self.abf = GaussianBasis(-1.0, 1.0, config.num_angle)
        self.layers = nn.ModuleList(
            MessageLayer(config, config.triplet_messages) for _ in range(config.num_layers)
        )

    def embed(self, numbers: torch.Tensor) -> torch.Tensor:
        if numbers.numel() and (int(numbers.min()) < 1 or int(numbers.max()) > self.config.max_z):
            raise ValueError(f"atomic numbers must be in 1..{self.config.max_z}")
        return self.embedding(numbers)

    def features(
        self, geo: Geometry, edge_index: torch.Tensor, num_nodes: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Edge features (E, num_rbf [+ num_relative + 1]) and triplet features (T, num_angle)."""
        abf = self.abf(geo.cos_theta) if geo.cos_theta is not None else None
        rbf = self.rbf(geo.r)
        if self.relative is not None:
            tgt = edge_index[1]
            count = torch.bincount(tgt, minlength=num_nodes).clamp(min=1).to(geo.r.dtype)
            mean = _scatter_sum(geo.r, tgt, num_nodes) / count
            rel = geo.r / mean.index_select(0, tgt)
            rbf = torch.cat([rbf, self.relative(rel), (rel - 1.0).unsqueeze(-1)], dim=-1)
        return rbf, abf


@dataclass
class LatticeOutput:
    """Result of a forward pass.

    cell: (B, 3, 3) predicted cell (rows are lattice vectors), Å.
    action: (B, 3, 3) h with ρ' = h ρ (``cell' = cell @ hᵀ``); for the FF head, the linear map
        taking the input cell to the predicted one (``cell⁻¹ cell'`` transposed).
    cells: per-step cells [(B, 3, 3), …] (the input first), for trajectories.
    positions: (N, 3) Cartesian positions in the final cell, fractional coordinates kept.
    """

    cell: torch.Tensor
    action: torch.Tensor
    cells: list[torch.Tensor]
    positions: torch.Tensor


def _check_inputs(numbers, positions, cell, edge_index, cell_shifts, batch) -> int:
    if numbers.dim() != 1:
        raise ValueError(f"numbers must have shape (N,), got {tuple(numbers.shape)}")
    n = numbers.shape[0]
    if n == 0:
        raise ValueError("the structure is empty (no atoms)")
    if positions.shape != (n, 3):
        raise ValueError(f"positions must have shape ({n}, 3), got {tuple(positions.shape)}")
    if cell.dim() != 3 or cell.shape[1:] != (3, 3):
        raise ValueError(f"cell must have shape (B, 3, 3), got {tuple(cell.shape)}")
    if batch.shape != (n,):
        raise ValueError(f"batch must have shape ({n},), got {tuple(batch.shape)}")
    if edge_index.dim() != 2 or edge_index.shape[0] != 2 or edge_index.shape[1] == 0:
        raise ValueError(
            f"edge_index must have shape (2, E) with E > 0, got {tuple(edge_index.shape)}"
        )
    if cell_shifts.shape != (edge_index.shape[1], 3):
        raise ValueError(f"cell_shifts must have shape (E, 3), got {tuple(cell_shifts.shape)}")
    if not (torch.isfinite(positions).all() and torch.isfinite(cell).all()):
        raise ValueError("positions and cell must be finite")
    det = torch.linalg.det(cell.double())
    if bool((det.abs() < 1e-6).any()):
        raise ValueError("a cell has (near) zero volume")
    return int(cell.shape[0])


def _triplets_for(
    config: EMPNNConfig,
    edge_index: torch.Tensor,
    cell_shifts: torch.Tensor,
    triplet_index: torch.Tensor | None,
) -> torch.Tensor | None:
    """The triplets a model with ``config`` reads: the given ones, built if needed, or None."""
    if not config.uses_triplets:
        return None
    return triplets(edge_index, cell_shifts) if triplet_index is None else triplet_index


def symmetric_part(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (x + x.transpose(-1, -2))


def equivariant_expm(x: torch.Tensor) -> torch.Tensor:
    """exp(X) for (B, 3, 3) by scaling and squaring a degree-12 Taylor polynomial.

    The scaling 2^s is chosen from the Frobenius norm, which is O(3)-invariant, so
    exp(Q X Qᵀ) = Q exp(X) Qᵀ holds to round-off (``torch.linalg.matrix_exp`` picks its degree
    from the 1-norm, which is not rotation-invariant, and differs by ~1e-10 between a crystal and
    its rotated copy). With ‖X / 2^s‖_F ≤ 1/4 the truncation error is below 1e-17.
    """
    norm = float(torch.linalg.matrix_norm(x.detach(), "fro").max()) if x.numel() else 0.0
    steps = max(0, math.ceil(math.log2(norm / 0.25))) if norm > 0.25 else 0
    a = x / (2.0**steps)
    eye = torch.eye(3, dtype=x.dtype, device=x.device).expand_as(x)
    result = eye + a / 12.0
    for k in range(11, 0, -1):  # Horner: I + a (I + a/2 (… (I + a/12)))
        result = eye + (a @ result) / k
    for _ in range(steps):
        result = result @ result
    return result


class _LatticeModel(nn.Module):
    """What EMPNN and the FF baseline share: the forward pass checks the inputs, finds the
    triplets the config needs and hands over to the model's ``act``."""

    config: EMPNNConfig

    def forward(
        self,
        numbers: torch.Tensor,
        positions: torch.Tensor,
        cell: torch.Tensor,
        edge_index: torch.Tensor,
        cell_shifts: torch.Tensor,
        batch: torch.Tensor,
        triplet_index: torch.Tensor | None = None,
        num_steps: int | None = None,
    ) -> LatticeOutput:
        n_graphs = _check_inputs(numbers, positions, cell, edge_index, cell_shifts, batch)
        triplet_index = _triplets_for(self.config, edge_index, cell_shifts, triplet_index)
        inputs = (numbers, positions, cell, edge_index, cell_shifts, batch, triplet_index)
        return self.act(*inputs, n_graphs, num_steps=num_steps)


class EMPNN(_LatticeModel):
    """The equivariant lattice-deformation network (paper Fig. 3): encoder, then ``num_steps``
    EMPNN layers, each an MPNN layer on the current geometry and a lattice action (eqn 10).

    Forward inputs (one batch of B structures):
        numbers (N,) int64 atomic numbers; positions (N, 3) Å; cell (B, 3, 3) Å, rows are
        lattice vectors; edge_index (2, E) int64 (row 0 source/neighbour, row 1 target/centre);
        cell_shifts (E, 3) integer shifts; batch (N,) structure of each atom;
        triplet_index (2, T) optional, :func:`~ase_cartnet.graph.neighbours.triplets` of the edges
            (built here when the config uses triplets and none is given).
    """

    def __init__(self, config: EMPNNConfig | None = None) -> None:
        super().__init__()
        self.config = config or EMPNNConfig()
        if self.config.head != "deform":
            raise ValueError("EMPNN needs head='deform'; use LatticeFF for the FF baseline")
        c = self.config
        self.encoder = _Encoder(c)
        self.steps = nn.ModuleList(MessageLayer(c, c.uses_triplets) for _ in range(c.num_steps))
        d = c.dim
        n_edge, n_triplet = len(c.edge_fields), len(c.triplet_fields)
        self.edge_weights = nn.ModuleList(
            mlp(d, d, n_edge) for _ in range(c.num_steps if n_edge else 0)
        )
        # eqn 10b's φ^ρ(2)(m_γ, m_γ', θ) reads the triplet message, itself a function of those
        self.triplet_weights = nn.ModuleList(
            nn.Linear(d, n_triplet) for _ in range(c.num_steps if n_triplet else 0)
        )
        for head in list(self.edge_weights) + list(self.triplet_weights):
            last = head[-1] if isinstance(head, nn.Sequential) else head
            nn.init.normal_(last.weight, std=1e-3)  # start near the identity action
            nn.init.zeros_(last.bias)

    def act(self, *inputs, num_steps: int | None) -> LatticeOutput:
        """The model on checked inputs (see :class:`_LatticeModel`)."""
        numbers, positions, cell, edge_index, cell_shifts, batch, triplet_index, n_graphs = inputs
        c = self.config
        steps = c.num_steps if num_steps is None else int(num_steps)
        if not 0 <= steps <= c.num_steps:
            raise ValueError(f"num_steps must be in 0..{c.num_steps}, got {num_steps}")
        edge_graph = batch.index_select(0, edge_index[1])
        n_edges = torch.bincount(edge_graph, minlength=n_graphs).to(positions.dtype)
        if triplet_index is not None and c.triplet_fields:
            triplet_graph = edge_graph.index_select(0, triplet_index[0])
            n_triplets = torch.bincount(triplet_graph, minlength=n_graphs).to(positions.dtype)

        h = self.encoder.embed(numbers)
        geo = geometry(edge_vectors(positions, cell, edge_index, cell_shifts, batch), triplet_index)
        rbf, abf = self.encoder.features(geo, edge_index, numbers.shape[0])
        for layer in self.encoder.layers:
            h, _, _ = layer(h, edge_index, rbf, triplet_index, abf)

        eye = torch.eye(3, dtype=positions.dtype, device=positions.device)
        action = eye.expand(n_graphs, 3, 3).clone()
        cells = [cell]
        for step in range(steps):
            h, m_edge, m_triplet = self.steps[step](h, edge_index, rbf, triplet_index, abf)
            x = positions.new_zeros((n_graphs, 3, 3))
            if c.edge_fields:  # eqn 10a: mean over Γ₁ of each structure
                w = self.edge_weights[step](m_edge)
                lam = sum(
                    w[:, f, None, None] * edge_field(name, geo)
                    for f, name in enumerate(c.edge_fields)
                )
                if c.sym:
                    lam = symmetric_part(lam)
                x = (
                    x
                    + _scatter_sum(lam, edge_graph, n_graphs) / n_edges.clamp(min=1)[:, None, None]
                )
            if c.triplet_fields:  # eqn 10b: mean over Γ₂
                w = self.triplet_weights[step](m_triplet)
                lam = sum(
                    w[:, f, None, None] * triplet_field(name, geo, triplet_index)
                    for f, name in enumerate(c.triplet_fields)
                )
                if c.sym:
                    lam = symmetric_part(lam)
                x = (
                    x
                    + _scatter_sum(lam, triplet_graph, n_graphs)
                    / n_triplets.clamp(min=1)[:, None, None]
                )
            step_action = equivariant_expm(x) if c.exponential == "exp" else eye + x
            action = step_action @ action
            # ρ' = h ρ: rows transform as cell @ hᵀ; positions follow (fractional coords kept)
            cell = cell @ step_action.transpose(1, 2)
            positions = torch.bmm(
                positions.unsqueeze(1), step_action.transpose(1, 2).index_select(0, batch)
            ).squeeze(1)
            cells.append(cell)
            if step + 1 < steps:
                geo = geometry(
                    edge_vectors(positions, cell, edge_index, cell_shifts, batch), triplet_index
                )
                rbf, abf = self.encoder.features(geo, edge_index, numbers.shape[0])
        return LatticeOutput(cell=cell, action=action, cells=cells, positions=positions)


class LatticeFF(_LatticeModel):
    """The invariant FF baseline: encoder, mean pool, MLP → six normalised lattice parameters,
    then a cell in the standard orientation (a along x, b in the xy plane). Same inputs as
    :class:`EMPNN` (``num_steps`` ignored)."""

    def __init__(self, config: EMPNNConfig | None = None) -> None:
        super().__init__()
        self.config = config or EMPNNConfig(head="ff")
        if self.config.head != "ff":
            raise ValueError("LatticeFF needs head='ff'")
        self.encoder = _Encoder(self.config)
        d = self.config.dim
        self.readout = nn.Sequential(
            nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d), nn.SiLU(), nn.Linear(d, 6)
        )

    def act(self, *inputs, num_steps: int | None) -> LatticeOutput:
        """The model on checked inputs (see :class:`_LatticeModel`)."""
        numbers, positions, cell, edge_index, cell_shifts, batch, triplet_index, n_graphs = inputs
        c = self.config
        h = self.encoder.embed(numbers)
        geo = geometry(edge_vectors(positions, cell, edge_index, cell_shifts, batch), triplet_index)
        rbf, abf = self.encoder.features(geo, edge_index, numbers.shape[0])
        for layer in self.encoder.layers:
            h, _, _ = layer(h, edge_index, rbf, triplet_index, abf)
        counts = torch.bincount(batch, minlength=n_graphs).to(h.dtype)
        pooled = _scatter_sum(h, batch, n_graphs) / counts[:, None]
        out = self.readout(pooled)
        lengths = (out[:, :3] * c.length_std + c.length_mean) * counts[:, None] ** (1.0 / 3.0)
        angles = out[:, 3:] * c.angle_std + c.angle_mean
        new_cell = lattice_params_to_cell(lengths.clamp(min=0.5), angles.clamp(10.0, 170.0))
        # the linear map taking the old cell to the new one (h with ρ' = h ρ)
        action = torch.linalg.solve(cell, new_cell).transpose(1, 2)
        positions = torch.bmm(
            positions.unsqueeze(1), action.transpose(1, 2).index_select(0, batch)
        ).squeeze(1)
        return LatticeOutput(
            cell=new_cell, action=action, cells=[cell, new_cell], positions=positions
        )


def build_model(config: EMPNNConfig) -> nn.Module:
    """EMPNN for head "deform", LatticeFF for head "ff"."""
    return EMPNN(config) if config.head == "deform" else LatticeFF(config)


# --------------------------------------------------------------------------------------------
# lattice parameters, noise and losses (section 5.3, eqns 11–12)
# --------------------------------------------------------------------------------------------


def cell_to_lattice_params(cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lengths (B, 3) Å and angles (B, 3) degrees (α = ∠(b, c), β = ∠(a, c), γ = ∠(a, b))."""
    lengths = torch.linalg.vector_norm(cell, dim=-1)
    a, b, cc = cell[:, 0], cell[:, 1], cell[:, 2]

    def angle(x, y, lx, ly):
        cos = ((x * y).sum(-1) / (lx * ly)).clamp(-1.0 + 1e-7, 1.0 - 1e-7)
        return torch.rad2deg(torch.arccos(cos))

    angles = torch.stack(
        [
            angle(b, cc, lengths[:, 1], lengths[:, 2]),
            angle(a, cc, lengths[:, 0], lengths[:, 2]),
            angle(a, b, lengths[:, 0], lengths[:, 1]),
        ],
        dim=-1,
    )
    return lengths, angles


def lattice_params_to_cell(lengths: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Cell (B, 3, 3) with a along x and b in the xy plane from lengths (Å) and angles (°)."""
    al, be, ga = torch.deg2rad(angles).unbind(-1)
    ca, cb, cg, sg = torch.cos(al), torch.cos(be), torch.cos(ga), torch.sin(ga)
    zero = torch.zeros_like(ca)
    cx = cb
    cy = (ca - cb * cg) / sg
    cz = torch.sqrt((1.0 - cx * cx - cy * cy).clamp(min=1e-8))
    a = torch.stack([lengths[:, 0], zero, zero], -1)
    b = torch.stack([lengths[:, 1] * cg, lengths[:, 1] * sg, zero], -1)
    c = lengths[:, 2:3] * torch.stack([cx, cy, cz], -1)
    return torch.stack([a, b, c], dim=1)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "EDGE_FIELDS",
    "EMPNN",
    "EMPNNConfig",
    "LatticeFF",
    "LatticeOutput",
    "TRIPLET_FIELDS",
    "build_model",
    "cell_to_lattice_params",
    "edge_field",
    "geometry",
    "lattice_params_to_cell",
    "triplet_field",
]


def run_model(model: nn.Module, batch, num_steps: int | None = None):
    """Call an EMPNN/LatticeFF on a batch of :func:`crystal_graph` graphs."""
    return model(
        batch.numbers,
        batch.pos,
        batch.cell,
        batch.edge_index,
        batch.cell_shift,
        batch.batch,
        num_steps=num_steps,
    )
