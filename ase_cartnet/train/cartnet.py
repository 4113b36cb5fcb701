"""``ase-cartnet train cartnet``: train CartNet on ADPs from a phonon_ref database or CIF folder."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ase_cartnet.calculators.cartnet_adp import CartNetADP
from ase_cartnet.errors import InputError
from ase_cartnet.io.checkpoint import read_checkpoint
from ase_cartnet.models.cartnet import CartNet, CartNetConfig
from ase_cartnet.train.adp_data import (
    ADPStructure,
    structures_from_cif_dir,
    structures_from_db,
    temperature_statistics,
)
from ase_cartnet.train.cartnet_task import CartNetADPTask
from ase_cartnet.train.loop import (
    TrainConfig,
    fit,
    random_split,
)

DEFAULT_ADP_FLOOR = 1e-6
"""Å²: U = LᵀL + εI for models trained here, so every predicted U is positive definite in
floating point (official checkpoints keep ε = 0)."""


def load_structures(db: str | None, cif_dir: str | None) -> tuple[list[ADPStructure], str]:
    if (db is None) == (cif_dir is None):
        raise InputError("give exactly one of --db and --cif-dir")
    if db is not None:
        return structures_from_db(db), f"ase.db {Path(db).name}"
    return structures_from_cif_dir(cif_dir), f"CIF folder {Path(cif_dir).name}"


def train_cartnet(
    structures: list[ADPStructure],
    out: str | os.PathLike,
    *,
    architecture: dict[str, Any] | None = None,
    train_config: TrainConfig | None = None,
    val_fraction: float = 0.1,
    batch_size: int = 16,
    temperatures_per_epoch: int | str = "all",
    augment: bool = True,
    loss: str = "l1",
    data_source: str = "",
    command: str = "",
    progress: bool = True,
    split_seed: int | None = None,
    init_checkpoint: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Split by structure, standardise temperature with the training statistics, train with the
    shared loop, and return its summary. ``architecture``: CartNetConfig fields (dim, dim_rbf,
    num_layers, cutoff, use_direction, use_temperature, use_envelope, head, harmonic_bins,
    adp_floor — default ``DEFAULT_ADP_FLOOR``). A harmonic head trains on joint samples (a
    structure at all its temperatures, one forward pass each). ``split_seed`` draws the
    validation split (default: the training seed); members of an ensemble share it, so that
    their validation figures and the ensemble's are measured on the same held-out structures.
    ``init_checkpoint``: start from the weights of an earlier run of the same architecture (e.g.
    pretrained on another teacher's labels) instead of a random initialisation; a model with
    ``structure_context`` may start from one without it (the context layer starts at zero)."""
    train_config = train_config or TrainConfig()
    split = train_config.seed if split_seed is None else split_seed
    train, val = random_split(structures, val_fraction, split)
    mean, std = temperature_statistics(train)
    config = CartNetConfig(
        **{
            "adp_floor": DEFAULT_ADP_FLOOR,
            **(architecture or {}),
            "temperature_mean": mean,
            "temperature_std": std,
        }
    )
    torch.manual_seed(train_config.seed)
    model = CartNet(config)
    if init_checkpoint is not None:
        state = read_checkpoint(init_checkpoint)["model_state"]
        missing, unexpected = model.load_state_dict(state, strict=False)
        # only a structure-context layer that the starting model lacks may start fresh (at 0)
        if unexpected or any(not key.startswith("context.") for key in missing):
            raise InputError(
                f"{init_checkpoint} has another architecture: missing {missing}, "
                f"unexpected {unexpected}"
            )
    task = CartNetADPTask(
        train,
        val,
        cutoff=config.cutoff,
        batch_size=batch_size,
        temperatures_per_epoch=temperatures_per_epoch,
        augment=augment,
        loss=loss,
        joint_temperatures=config.head == "harmonic",
    )
    elements = sorted({int(z) for s in train for z in s.atoms.numbers})
    temps = [float(t) for s in train for t in s.temperatures]
    metadata = {
        "data_source": data_source,
        "n_train_structures": len(train),
        "n_val_structures": len(val),
        "n_train_samples": len(temps),
        "elements": elements,
        "temperature_range": [min(temps), max(temps)],
        "train_ids_first": [s.key for s in train[:5]],
        "val_ids": [s.key for s in val],
        "command": command,
        "augment": augment,
        "loss": loss,
        "temperatures_per_epoch": temperatures_per_epoch,
        "batch_size": batch_size,
    }
    return fit(model, task, train_config, out, metadata=metadata, progress=progress)


def cartnet_predictions(calc: CartNetADP, structures: list[ADPStructure], batch_size: int = 32):
    """Predicted and target U of every labelled atom for every (structure, T), the temperature
    of each row, and the model's wall time per structure (all its temperatures, batched
    ``batch_size`` samples at a time, graph building and validation included, s)."""
    samples = [(s, k) for s in structures for k in range(len(s.temperatures))]
    calc.predict_many([structures[0].atoms], temperatures=[300.0])  # warm-up (first call)
    start = time.perf_counter()
    out = calc.predict_many(
        [s.atoms for s, _ in samples],
        temperatures=[float(s.temperatures[k]) for s, k in samples],
        batch_size=batch_size,
    )
    per_structure = (time.perf_counter() - start) / len(structures)
    preds, targets, temps = [], [], []
    for (s, k), u in zip(samples, out, strict=True):
        mask = s.labelled
        preds.append(u[mask])
        targets.append(s.adps[k][mask])
        temps.append(np.full(mask.sum(), s.temperatures[k]))
    return np.concatenate(preds), np.concatenate(targets), np.concatenate(temps), per_structure
