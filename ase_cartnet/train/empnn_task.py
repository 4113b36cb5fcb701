"""EMPNN lattice denoising (paper section 6) for the shared training loop.

A training sample is a stable crystal whose lattice is deformed, ρ̃ = exp(A) ρ with
A ~ N(0, σ²) (symmetrised by default, see :func:`ase_cartnet.models.empnn.random_strain`), with
the fractional coordinates kept; the model sees only the deformed crystal (its kNN graph is built
on the deformed structure) and must return the original lattice. A fresh A is drawn for every
structure in every epoch (from the epoch's generator, so resumed runs repeat it); validation uses
one fixed draw.

Metrics (eqns 11–12): the mean absolute errors of the lattice lengths (Å) and angles (°) of the
noisy and of the denoised cells against the original, and the improvement noisy − denoised
(higher is better).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch_geometric.data import Batch, Data

from ase_cartnet.errors import InputError
from ase_cartnet.graph.empnn import crystal_graph
from ase_cartnet.graph.neighbours import batch_graphs
from ase_cartnet.models.empnn import EMPNNConfig, cell_to_lattice_params, run_model, symmetric_part
from ase_cartnet.train.empnn_data import Crystal

LOSSES = ("param_mae", "param_mse", "metric_mae", "metric_mse", "riemann")


def random_strain(
    n: int,
    sigma: float,
    *,
    symmetric: bool = True,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Noise actions exp(A) (n, 3, 3), A_ij ~ N(0, σ²), symmetrised A = (B + Bᵀ)/2 by default
    (then the diagonal has std σ and the off-diagonal σ/√2; a pure stretch, section 6)."""
    a = torch.randn((n, 3, 3), generator=generator, dtype=torch.float64) * sigma
    if symmetric:
        a = symmetric_part(a)
    return torch.linalg.matrix_exp(a).to(dtype)


def lattice_loss(
    predicted: torch.Tensor,
    target: torch.Tensor,
    n_atoms: torch.Tensor,
    kind: str,
    config: EMPNNConfig,
) -> torch.Tensor:
    """Loss between cells (B, 3, 3) (section 5.3; Table 1's options), mean over the batch.

    "param_mae"/"param_mse": on lengths / N^{1/3} / length_std and angles / angle_std;
    "metric_mae"/"metric_mse": on the metric tensors G = cell cellᵀ / N^{2/3} (Å²);
    "riemann": the affine-invariant distance on SPD matrices, Σ log² eig(G_t⁻¹ G_p).
    All are O(3)-invariant and follow a change of cell basis (SL₃(ℤ)) consistently.
    """
    scale = n_atoms.to(predicted.dtype) ** (1.0 / 3.0)
    if kind in ("param_mae", "param_mse"):
        lp, ap = cell_to_lattice_params(predicted)
        lt, at = cell_to_lattice_params(target)
        diff = torch.cat(
            [(lp - lt) / scale[:, None] / config.length_std, (ap - at) / config.angle_std], -1
        )
        return diff.abs().mean() if kind == "param_mae" else (diff * diff).mean()
    if kind in ("metric_mae", "metric_mse"):
        gp = predicted @ predicted.transpose(1, 2) / (scale**2)[:, None, None]
        gt = target @ target.transpose(1, 2) / (scale**2)[:, None, None]
        diff = gp - gt
        return diff.abs().mean() if kind == "metric_mae" else (diff * diff).mean()
    if kind == "riemann":
        gp = predicted @ predicted.transpose(1, 2)
        gt = target @ target.transpose(1, 2)
        chol = torch.linalg.cholesky(gt)
        inv = torch.linalg.solve_triangular(chol, torch.eye(3, dtype=gt.dtype), upper=False)
        m = symmetric_part(inv @ gp @ inv.transpose(1, 2))
        eig = torch.linalg.eigvalsh(m).clamp(min=1e-12)
        return (torch.log(eig) ** 2).sum(-1).mean()
    raise ValueError(f"unknown loss {kind!r}; choose from {LOSSES}")


def lattice_errors(
    predicted: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-structure mean absolute errors of lengths (B,) Å and angles (B,) degrees (the l1
    terms of eqns 11–12, divided by 3)."""
    lp, ap = cell_to_lattice_params(predicted)
    lt, at = cell_to_lattice_params(target)
    return (lp - lt).abs().mean(-1), (ap - at).abs().mean(-1)


def lattice_statistics(crystals: Sequence[Crystal]) -> dict[str, float]:
    """Mean and std of (a, b, c) / N^{1/3} (Å) and of the angles (°) over ``crystals``; the stds
    are floored at 0.05 Å and 10° (all-cubic sets such as Perov-5 have no angle spread, and
    a tiny std would let the angles swamp the lengths in the parameter losses)."""
    cells = torch.as_tensor(np.stack([c.cell for c in crystals]))
    lengths, angles = cell_to_lattice_params(cells)
    n = torch.as_tensor([len(c) for c in crystals], dtype=torch.float64)
    scaled = lengths / n[:, None] ** (1.0 / 3.0)
    return {
        "length_mean": float(scaled.mean()),
        "length_std": max(float(scaled.std()), 0.05),
        "angle_mean": float(angles.mean()),
        "angle_std": max(float(angles.std()), 10.0),
    }


def noisy_graph(
    crystal: Crystal, strain: np.ndarray, k: int, dtype: torch.dtype = torch.float32
) -> Data:
    """The deformed crystal ρ̃ = h ρ (``cell @ hᵀ``, fractional coordinates kept) as a graph,
    with the original cell as ``target_cell`` (1, 3, 3)."""
    cell = crystal.cell @ strain.T
    graph = crystal_graph(crystal.numbers, crystal.frac @ cell, cell, k, dtype=dtype)
    graph.target_cell = torch.as_tensor(crystal.cell, dtype=dtype).reshape(1, 3, 3)
    return graph


class EMPNNDenoiseTask:
    """Data and loss of lattice denoising for :func:`ase_cartnet.train.loop.fit`.

    Parameters
    ----------
    train, val
        crystals. sigma: noise scale of A. symmetric_noise: symmetrise A.
    config
        the model config (k of the graph, normalisation statistics of the loss).
    loss
        one of ``LOSSES`` (Table 1). batch_size: structures per batch.
    val_seed
        seed of the fixed validation noise.
    """

    def __init__(
        self,
        train: Sequence[Crystal],
        val: Sequence[Crystal],
        config: EMPNNConfig,
        *,
        sigma: float = 0.1,
        symmetric_noise: bool = True,
        loss: str = "param_mae",
        batch_size: int = 32,
        val_seed: int = 12345,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if loss not in LOSSES:
            raise InputError(f"unknown loss {loss!r}; choose from {LOSSES}")
        if not (sigma > 0 and math.isfinite(sigma)):
            raise InputError(f"sigma must be a positive number, got {sigma!r}")
        if not train or not val:
            raise InputError("the training and validation sets must not be empty")
        self.train, self.val = list(train), list(val)
        self.config = config
        self.sigma = float(sigma)
        self.symmetric_noise = symmetric_noise
        self.loss_kind = loss
        self.batch_size = int(batch_size)
        self.dtype = dtype
        self.val_batches = noisy_batches(
            self.val, self.sigma, config.k, symmetric_noise, val_seed, batch_size, dtype
        )

    def num_train_batches(self) -> int:
        return math.ceil(len(self.train) / self.batch_size)

    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator[Batch]:
        order = torch.randperm(len(self.train), generator=generator).tolist()
        strains = random_strain(
            len(order), self.sigma, symmetric=self.symmetric_noise, generator=generator
        ).numpy()
        for start in range(0, len(order), self.batch_size):
            chunk = range(start, min(start + self.batch_size, len(order)))
            yield batch_graphs(
                [
                    noisy_graph(self.train[order[i]], strains[i], self.config.k, self.dtype)
                    for i in chunk
                ]
            )

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        out = run_model(model, batch)
        return lattice_loss(out.cell, batch.target_cell, batch.n_atoms, self.loss_kind, self.config)

    def validate(self, model: nn.Module) -> dict[str, float]:
        return evaluate_batches(model, self.val_batches, self.loss_kind, self.config)


def noisy_batches(
    crystals: Sequence[Crystal],
    sigma: float,
    k: int,
    symmetric_noise: bool,
    seed: int,
    batch_size: int,
    dtype: torch.dtype = torch.float32,
) -> list[Batch]:
    """Fixed deformed copies of ``crystals`` (noise from ``seed``), batched."""
    generator = torch.Generator().manual_seed(seed)
    strains = random_strain(len(crystals), sigma, symmetric=symmetric_noise, generator=generator)
    graphs = [noisy_graph(c, s, k, dtype) for c, s in zip(crystals, strains.numpy(), strict=True)]
    return [batch_graphs(graphs[i : i + batch_size]) for i in range(0, len(graphs), batch_size)]


@torch.no_grad()
def evaluate_batches(
    model: nn.Module,
    batches: Sequence[Batch],
    loss_kind: str | None = None,
    config: EMPNNConfig | None = None,
    *,
    details: bool = False,
) -> dict[str, float]:
    """Eqns 11–12 over deformed batches: mean errors of lengths (Å) and angles (°) of the noisy
    and denoised cells, their differences (improvements), and with ``loss_kind`` the mean loss;
    ``details`` adds the count ``n`` and the fraction of structures whose lengths improved."""
    noisy_l, noisy_a, out_l, out_a, losses, weights = [], [], [], [], [], []
    for batch in batches:
        out = run_model(model, batch)
        target = batch.target_cell.double()
        for errors, cell in (((noisy_l, noisy_a), batch.cell), ((out_l, out_a), out.cell)):
            lengths, angles = lattice_errors(cell.double(), target)
            errors[0].append(lengths)
            errors[1].append(angles)
        if loss_kind is not None:
            loss = lattice_loss(out.cell.double(), target, batch.n_atoms, loss_kind, config)
            losses.append(float(loss))
        weights.append(int(batch.num_graphs))
    nl, na, dl, da = (torch.cat(x) for x in (noisy_l, noisy_a, out_l, out_a))
    result = {"loss": float(np.average(losses, weights=weights))} if loss_kind else {}
    result |= {
        "length_noisy": float(nl.mean()),
        "length_denoised": float(dl.mean()),
        "length_improvement": float((nl - dl).mean()),
        "angle_noisy": float(na.mean()),
        "angle_denoised": float(da.mean()),
        "angle_improvement": float((na - da).mean()),
    }
    if details:
        result |= {"n": sum(weights), "improved_fraction": float((dl < nl).double().mean())}
    return result
