"""Training a model that predicts one scalar per structure (CrysToGraph, CartNet's scalar head)
with the shared loop: pre-built graphs, L1 loss on the standardised target, MAE validation.

A model here maps a batch to (B,) values in the target's units. CartNet's scalar head works on a
standardised scale, so it is wrapped in :class:`Standardised`; CrysToGraph de-standardises
itself (``CrysToGraphConfig.target_mean/std``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch_geometric.data import Batch, Data

from ase_cartnet.errors import InputError
from ase_cartnet.graph.neighbours import batch_graphs

Augment = Callable[[Batch, torch.Generator], None]


class PropertyTask:
    """Data and loss of a structure → scalar model for :func:`ase_cartnet.train.loop.fit`.

    Parameters
    ----------
    train_graphs, val_graphs
        pre-built graphs (one per structure) the model reads.
    train_targets, val_targets
        (M,) target values, in the model's output units.
    target_std
        the loss is mean |ŷ − y| / target_std (an L1 loss on the standardised
        target, independent of the unit).
    batch_size
        structures per batch.
    augment
        optional in-place change of a training batch (e.g. random Laplacian sign
        flips), given the epoch's generator.
    """

    def __init__(
        self,
        train_graphs: Sequence[Data],
        train_targets: np.ndarray,
        val_graphs: Sequence[Data],
        val_targets: np.ndarray,
        *,
        target_std: float = 1.0,
        batch_size: int = 32,
        augment: Augment | None = None,
        eval_batch_size: int = 128,
    ) -> None:
        if len(train_graphs) != len(train_targets) or len(val_graphs) != len(val_targets):
            raise InputError("each graph needs exactly one target")
        if len(train_graphs) == 0:
            raise InputError("the training set is empty")
        if not (target_std > 0 and math.isfinite(target_std)):
            raise InputError(f"target_std must be positive, got {target_std}")
        self.train_graphs, self.val_graphs = list(train_graphs), list(val_graphs)
        self.train_targets = torch.as_tensor(np.asarray(train_targets, dtype=np.float64))
        self.val_targets = np.asarray(val_targets, dtype=np.float64)
        self.target_std = float(target_std)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size)
        self.augment = augment

    def num_train_batches(self) -> int:
        return math.ceil(len(self.train_graphs) / self.batch_size)

    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator[Batch]:
        order = torch.randperm(len(self.train_graphs), generator=generator).tolist()
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            batch = batch_graphs([self.train_graphs[i] for i in chunk])
            batch.y = self.train_targets[chunk]
            if self.augment is not None:
                self.augment(batch, generator)
            yield batch

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        predicted = model(batch)
        return ((predicted - batch.y.to(predicted.dtype)).abs() / self.target_std).mean()

    def validate(self, model: nn.Module) -> dict[str, float]:
        if not self.val_graphs:
            return {"mae": float("nan")}
        predicted = predict_graphs(model, self.val_graphs, self.eval_batch_size)
        error = predicted - self.val_targets
        return {"mae": float(np.abs(error).mean()), "rmse": float(np.sqrt((error**2).mean()))}


def predict_graphs(model: nn.Module, graphs: Sequence[Data], batch_size: int = 128) -> np.ndarray:
    """(M,) float64 predictions for ``graphs``, in eval mode without gradients."""
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(graphs), batch_size):
            batch = batch_graphs(graphs[start : start + batch_size])
            out.append(model(batch).double().cpu().numpy().reshape(-1))
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0)
