"""Training CartNet on ADPs: batching, SO(3) augmentation (paper eqns 19–20), the L1 loss on U,
and validation with MAE / S12 / IoU (``ase_cartnet.adp``)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch_geometric.data import Batch

from ase_cartnet.adp import adp_metrics
from ase_cartnet.graph.neighbours import atoms_to_graph, batch_graphs
from ase_cartnet.models.so3 import random_rotations, rotate_adps, rotate_vectors
from ase_cartnet.train.adp_data import ADPStructure


@dataclass(frozen=True)
class _Sample:
    """One structure at one temperature (its index), or at all its temperatures (None)."""

    structure: int
    temperature: int | None


LOSSES = ("l1", "relative_l1")


class CartNetADPTask:
    """Data and loss of CartNet-on-ADPs for :func:`ase_cartnet.train.loop.fit`.

    A sample is one structure at one temperature. ``temperatures_per_epoch``: "all" uses every
    (structure, temperature) pair each epoch; an int k draws k temperatures per structure per
    epoch (cheaper epochs, every temperature seen over several epochs).

    ``joint_temperatures``: a sample is one structure at all its temperatures instead, for models
    whose trunk does not see T (the harmonic head: one forward pass gives U at every T). The batch
    then carries ``temperature`` (B, T_max) (short lists padded with their last value),
    ``target`` (N, T_max, 3, 3) and ``temperature_mask`` (N, T_max); every temperature is used
    every epoch.

    ``loss``: "l1" is the paper's L1 on the elements of U (ESI S4), in Å²; "relative_l1" divides
    each sample's L1 by the mean U_eq of its labelled atoms (dimensionless), so that a 20 K
    sample weighs as much as an 800 K one — the scale-free metrics S12 and IoU weigh them
    equally too, while plain L1 is dominated by the largest (hottest, softest) ellipsoids.
    """

    def __init__(
        self,
        train: Sequence[ADPStructure],
        val: Sequence[ADPStructure],
        *,
        cutoff: float,
        batch_size: int = 16,
        temperatures_per_epoch: int | str = "all",
        augment: bool = True,
        dtype: torch.dtype = torch.float32,
        max_neighbours: int | None = None,
        loss: str = "l1",
        joint_temperatures: bool = False,
    ) -> None:
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES}")
        self.loss_kind = loss
        self.joint_temperatures = bool(joint_temperatures)
        self.train, self.val = list(train), list(val)
        self.batch_size = int(batch_size)
        self.temperatures_per_epoch = temperatures_per_epoch
        self.augment = augment
        self.dtype = dtype
        self.train_graphs = [
            atoms_to_graph(s.atoms, cutoff, max_neighbours=max_neighbours, dtype=dtype)
            for s in self.train
        ]
        self.val_graphs = [
            atoms_to_graph(s.atoms, cutoff, max_neighbours=max_neighbours, dtype=dtype)
            for s in self.val
        ]

    # -- batching ----------------------------------------------------------------------------

    def _epoch_samples(self, generator: torch.Generator) -> list[_Sample]:
        if self.joint_temperatures:
            return [_Sample(i, None) for i in range(len(self.train))]
        samples = []
        for i, s in enumerate(self.train):
            n_t = len(s.temperatures)
            if self.temperatures_per_epoch == "all" or int(self.temperatures_per_epoch) >= n_t:
                chosen = range(n_t)
            else:
                chosen = torch.randperm(n_t, generator=generator)[
                    : int(self.temperatures_per_epoch)
                ].tolist()
            samples.extend(_Sample(i, k) for k in chosen)
        return samples

    def _samples_per_epoch(self) -> int:
        if self.joint_temperatures:
            return len(self.train)
        if self.temperatures_per_epoch == "all":
            return sum(len(s.temperatures) for s in self.train)
        return sum(min(len(s.temperatures), int(self.temperatures_per_epoch)) for s in self.train)

    def num_train_batches(self) -> int:
        return math.ceil(self._samples_per_epoch() / self.batch_size)

    def collate(
        self,
        structures: Sequence[ADPStructure],
        graphs: Sequence,
        samples: Sequence[_Sample],
        generator: torch.Generator | None = None,
    ) -> Batch:
        """A PyG batch with ``temperature`` (B,), ``target`` (N, 3, 3), ``label_mask`` (N,) and
        ``scale`` (N,), the mean U_eq (Å²) of the sample's labelled atoms (joint samples: (B, T),
        (N, T, 3, 3), (N,), (N, T), and ``temperature_mask`` (N, T); class docstring);
        with a generator, each structure is rotated by its own random R: positions and cell
        (so every edge vector, eqn 19) and the target U' = R U Rᵀ (eqn 20)."""
        width = max(
            len(structures[x.structure].temperatures) if x.temperature is None else 1
            for x in samples
        )
        items = []
        for sample in samples:
            s = structures[sample.structure]
            g = graphs[sample.structure].clone()
            joint = sample.temperature is None
            # temperature indices: all (padded with the last) or the one drawn
            chosen = (
                np.minimum(np.arange(width), len(s.temperatures) - 1)
                if joint
                else np.array([sample.temperature])
            )
            temps = torch.as_tensor(s.temperatures[chosen], dtype=self.dtype)  # (t,)
            target = torch.as_tensor(s.adps[chosen], dtype=self.dtype).transpose(0, 1)  # (N, t)
            labelled_u = s.adps[chosen][:, s.labelled]  # (t, n, 3, 3)
            mean_u_eq = np.trace(labelled_u, axis1=2, axis2=3).mean(axis=1) / 3.0  # (t,)
            scale = torch.as_tensor(mean_u_eq, dtype=self.dtype).expand(len(s.atoms), -1)
            if joint:
                g.temperature, g.target, g.scale = temps[None], target, scale.clone()
                valid = torch.arange(width) < len(s.temperatures)
                g.temperature_mask = valid.expand(len(s.atoms), width).clone()
            else:
                g.temperature, g.target, g.scale = temps, target[:, 0], scale[:, 0].clone()
            g.label_mask = torch.as_tensor(s.labelled)
            items.append(g)
        batch = batch_graphs(items)
        if generator is not None:
            rotations = random_rotations(len(items), generator=generator, dtype=self.dtype)
            batch.pos = rotate_vectors(batch.pos, rotations, batch.batch)
            batch.cell = batch.cell @ rotations.transpose(1, 2)
            batch.target = rotate_adps(batch.target, rotations, batch.batch)
        return batch

    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator[Batch]:
        samples = self._epoch_samples(generator)
        order = torch.randperm(len(samples), generator=generator).tolist()
        for start in range(0, len(order), self.batch_size):
            chunk = [samples[i] for i in order[start : start + self.batch_size]]
            yield self.collate(
                self.train, self.train_graphs, chunk, generator if self.augment else None
            )

    # -- loss and validation -----------------------------------------------------------------

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """L1 loss on the 9 elements of U of the labelled atoms (ESI S4), optionally relative to
        each sample's mean U_eq (``loss="relative_l1"``)."""
        mask = batch.label_mask
        error = (model(batch, output_mask=mask) - batch.target[mask]).abs()
        if self.loss_kind == "relative_l1":
            error = error / batch.scale[mask][..., None, None]
        if error.dim() == 4:  # joint temperatures: padded temperatures do not count
            valid = batch.temperature_mask[mask]
            return error[valid].mean()
        return error.mean()

    def predict(
        self, model: nn.Module, structures: Sequence[ADPStructure], graphs: Sequence
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predicted and target U (M, 3, 3) over all labelled atoms of all (structure, T) samples,
        plus each row's temperature (M,) K; no augmentation."""
        if self.joint_temperatures:
            samples = [_Sample(i, None) for i in range(len(structures))]
        else:
            samples = [
                _Sample(i, k) for i, s in enumerate(structures) for k in range(len(s.temperatures))
            ]
        preds, targets, temps = [], [], []
        device = next(model.parameters()).device
        for start in range(0, len(samples), self.batch_size):
            batch = self.collate(structures, graphs, samples[start : start + self.batch_size])
            batch = batch.to(device)
            mask = batch.label_mask
            pred = model(batch, output_mask=mask).double()
            target = batch.target[mask].double()
            temp = batch.temperature[batch.batch[mask]].double()
            if pred.dim() == 4:  # joint temperatures: keep the real (atom, T) rows
                valid = batch.temperature_mask[mask]
                pred, target, temp = pred[valid], target[valid], temp[valid]
            preds.append(pred.cpu().numpy())
            targets.append(target.cpu().numpy())
            temps.append(temp.cpu().numpy())
        return np.concatenate(preds), np.concatenate(targets), np.concatenate(temps)

    def validate(self, model: nn.Module) -> dict[str, float]:
        predicted, target, _ = self.predict(model, self.val, self.val_graphs)
        metrics = adp_metrics(predicted, target)
        return {"mae": metrics["mae"], "s12": metrics["s12"], "iou": metrics["iou"]}
