"""Training DeepRelax with the shared loop: batches of pair graphs, the loss of eqns 11–14, and
validation on the heads (distance, displacement and lattice MAE, Å)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from torch_geometric.data import Batch

from ase_cartnet.graph import batch_graphs
from ase_cartnet.models.deeprelax import DeepRelaxConfig, deeprelax_loss, relaxed_targets
from ase_cartnet.train.deeprelax_data import RelaxPair, deeprelax_graph


class DeepRelaxTask:
    """Data and loss of one DeepRelax replicate for :func:`ase_cartnet.train.loop.fit`.

    The model is exactly E(3)-equivariant, so no rotation augmentation is applied. Graphs are
    built once (on the unrelaxed structures) and reused every epoch.
    """

    def __init__(
        self,
        train: Sequence[RelaxPair],
        val: Sequence[RelaxPair],
        config: DeepRelaxConfig,
        *,
        batch_size: int = 32,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.batch_size = int(batch_size)
        self.train_graphs = [deeprelax_graph(p.initial, config, dtype, p.relaxed) for p in train]
        self.val_graphs = [deeprelax_graph(p.initial, config, dtype, p.relaxed) for p in val]

    def num_train_batches(self) -> int:
        return math.ceil(len(self.train_graphs) / self.batch_size)

    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator[Batch]:
        order = torch.randperm(len(self.train_graphs), generator=generator).tolist()
        for start in range(0, len(order), self.batch_size):
            yield batch_graphs(
                [self.train_graphs[i] for i in order[start : start + self.batch_size]]
            )

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return deeprelax_loss(model(batch), batch)["loss"]

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Head-level errors on the validation pairs: "mae" (periodic-edge distances, eqn 26),
        "disp_mae" (displacement edges), "lattice_mae" (eqn 27) in Å and the mean "loss"."""
        sums = {"mae": 0.0, "disp_mae": 0.0, "lattice_mae": 0.0, "loss": 0.0}
        counts = {"mae": 0, "disp_mae": 0, "lattice_mae": 0, "loss": 0}
        for start in range(0, len(self.val_graphs), self.batch_size):
            batch = batch_graphs(self.val_graphs[start : start + self.batch_size])
            out = model(batch)
            d_true, disp_true = relaxed_targets(batch)
            sums["mae"] += float((out.distance - d_true).abs().sum())
            counts["mae"] += d_true.numel()
            sums["disp_mae"] += float((out.disp_distance - disp_true).abs().sum())
            counts["disp_mae"] += disp_true.numel()
            cell = batch.target_cell.reshape(-1, 3, 3)
            sums["lattice_mae"] += float((out.lattice - cell).abs().sum())
            counts["lattice_mae"] += cell.numel()
            sums["loss"] += float(deeprelax_loss(out, batch)["loss"]) * cell.shape[0]
            counts["loss"] += cell.shape[0]
        return {k: sums[k] / max(counts[k], 1) for k in sums}
