"""``ase-cartnet train empnn``: lattice denoising (EMPNN paper section 6) with the shared loop.

Example (the shipped weights' command is in their model card)::

    ase-cartnet train empnn --data-dir ../shared/data --out runs/empnn/ketbra \\
        --train mp_20/val mp_20/train_subset_847 carbon_24/val perov_5/val
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from ase_cartnet.errors import InputError
from ase_cartnet.models.empnn import (
    EMPNNConfig,
    build_model,
    count_parameters,
)
from ase_cartnet.train.empnn_data import Crystal, load_split, parse_split_spec
from ase_cartnet.train.empnn_task import EMPNNDenoiseTask, lattice_statistics
from ase_cartnet.train.loop import TrainConfig, fit

DEFAULT_TRAIN = ("mp_20/val", "mp_20/train_subset_847", "carbon_24/val", "perov_5/val")


def load_training_data(
    data_dir: str | os.PathLike,
    specs: list[str],
    *,
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
) -> tuple[list[Crystal], dict[str, int]]:
    """Structures of every "dataset/split[:limit]" spec, concatenated, and their counts."""
    crystals: list[Crystal] = []
    counts: dict[str, int] = {}
    for spec in specs:
        dataset, split, limit = parse_split_spec(spec)
        part = load_split(data_dir, dataset, split, limit=limit, seed=seed, cache_dir=cache_dir)
        crystals.extend(
            Crystal(f"{dataset}/{split}/{c.key}", c.numbers, c.cell, c.frac) for c in part
        )
        counts[spec] = len(part)
    return crystals, counts


def train_empnn(
    crystals: list[Crystal],
    out: str | os.PathLike,
    *,
    architecture: dict[str, Any] | None = None,
    train_config: TrainConfig | None = None,
    sigma: float = 0.1,
    symmetric_noise: bool = True,
    loss: str = "param_mae",
    val_fraction: float = 0.05,
    batch_size: int = 32,
    metadata: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Hold out ``val_fraction`` of ``crystals`` (random, seeded) for model selection, compute the
    lattice statistics on the rest, and train with :func:`ase_cartnet.train.loop.fit`."""
    train_config = train_config or TrainConfig(lr=1e-4, grad_clip=1.0, select_metric="loss")
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if len(crystals) < 2:
        raise InputError("need at least two structures (one for validation)")
    order = np.random.default_rng(train_config.seed).permutation(len(crystals))
    n_val = max(1, int(round(val_fraction * len(crystals))))
    val = [crystals[i] for i in order[:n_val]]
    train = [crystals[i] for i in order[n_val:]]
    config = EMPNNConfig(**{**(architecture or {}), **lattice_statistics(train)})
    torch.manual_seed(train_config.seed)
    model = build_model(config)
    task = EMPNNDenoiseTask(
        train,
        val,
        config,
        sigma=sigma,
        symmetric_noise=symmetric_noise,
        loss=loss,
        batch_size=batch_size,
    )
    meta = {
        **(metadata or {}),
        "n_train_structures": len(train),
        "n_val_structures": len(val),
        "elements": sorted({int(z) for c in train for z in c.numbers}),
        "max_atoms": max(len(c) for c in train),
        "sigma": sigma,
        "symmetric_noise": symmetric_noise,
        "loss": loss,
        "batch_size": batch_size,
        "val_ids_first": [c.key for c in val[:5]],
        "n_parameters": count_parameters(model),
    }
    return fit(model, task, train_config, out, metadata=meta, progress=progress)
