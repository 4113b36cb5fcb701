"""``ase-cartnet train crystograph``: CrysToGraph on Perov-5 ``heat_ref`` or MP-20
``formation_energy_per_atom`` (or any CDVAE-style CSV), with the shared training loop.

The training set is the dataset's training files (Perov-5: ``val``; MP-20: ``val`` +
``train_subset_847``, the full train splits are not available); a random ``val_fraction`` of it
selects ``best.pt``; the ``test`` file is only used for the final held-out numbers.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ase_cartnet.errors import InputError
from ase_cartnet.graph.crystograph import crystograph_graph, random_laplacian_sign_flip
from ase_cartnet.models.crystograph import CrysToGraph, CrysToGraphConfig
from ase_cartnet.train.loop import TrainConfig, fit
from ase_cartnet.train.property_data import PropertySet, load_property_csv
from ase_cartnet.train.property_task import PropertyTask, predict_graphs

DATASETS: dict[str, dict[str, Any]] = {
    "perov_5": {
        "target": "heat_ref",
        "units": "eV",
        "train": ["val.csv.gz"],
        "test": "test.csv.gz",
        "note": "Castelli perovskite heat of formation (CDVAE heat_ref; the same data as "
        "matbench_perovskites e_form, eV per 5-atom cell)",
    },
    "mp_20": {
        "target": "formation_energy_per_atom",
        "units": "eV/atom",
        "train": ["val.csv.gz", "train_subset_847.csv.gz"],
        "test": "test.csv.gz",
        "note": "Materials Project formation energy per atom (CDVAE MP-20 split)",
    },
}

DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

# The CPU-budget architecture used for the shipped weights (Table A1 defaults are the
# CrysToGraphConfig defaults: dim 256, 8 heads of 32).
REDUCED = {
    "dim": 64,
    "num_heads": 4,
    "head_dim": 16,
    "ffn_factor": 2,
    "line_dim": 16,
    "line_head_dim": 4,
}


def load_splits(
    dataset: str, data_dir: str | os.PathLike | None = None, cache_dir: str | None = None
) -> tuple[PropertySet, PropertySet]:
    """(train, test) PropertySets of a named dataset (``DATASETS``) under ``data_dir``."""
    if dataset not in DATASETS:
        raise InputError(f"unknown dataset {dataset!r}; known: {sorted(DATASETS)}")
    spec = DATASETS[dataset]
    root = Path(data_dir) if data_dir is not None else DEFAULT_DATA
    folder = root / dataset
    if not folder.is_dir():
        raise InputError(f"dataset folder not found: {folder} (pass --data-dir)")
    parts = [
        load_property_csv(folder / name, spec["target"], cache_dir=cache_dir, progress=True)
        for name in spec["train"]
    ]
    train = parts[0]
    for part in parts[1:]:
        train = train + part
    test = load_property_csv(folder / spec["test"], spec["target"], cache_dir=cache_dir)
    return train, test


def split_train_val(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random (train, val) indices of ``n`` items, at least one in each when n >= 2."""
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"val_fraction must be in [0, 1), got {val_fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(val_fraction * n))
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def featurise(structures: PropertySet, config: CrysToGraphConfig, progress: bool = False) -> list:
    """CrysToGraph input graphs (float32) of every structure of a PropertySet."""
    items = structures.atoms
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(items, desc="graphs", leave=False)
    return [
        crystograph_graph(
            a, k=config.k, lap_dim=config.lap_dim, rw_dim=config.rw_dim, lap_mode=config.lap_mode
        )
        for a in items
    ]


def train_crystograph(
    train_set: PropertySet,
    out: str | os.PathLike,
    *,
    architecture: dict[str, Any] | None = None,
    train_config: TrainConfig | None = None,
    val_fraction: float = 0.05,
    batch_size: int = 32,
    units: str = "",
    data_source: str = "",
    command: str = "",
    sign_flip: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Train CrysToGraph on ``train_set`` with the shared loop; returns fit's summary plus the
    model, config, training seconds and the train/val split."""
    train_config = train_config or TrainConfig(epochs=10, lr=1e-3, pct_start=0.1, grad_clip=5.0)
    train_idx, val_idx = split_train_val(len(train_set), val_fraction, train_config.seed)
    y_train = train_set.targets[train_idx]
    config = CrysToGraphConfig(
        **{
            **(architecture or {}),
            "target_mean": float(np.mean(y_train)),
            "target_std": float(np.std(y_train)) or 1.0,
            "target": train_set.target,
            "units": units,
        }
    )
    started = time.perf_counter()
    graphs = featurise(train_set, config, progress=progress)
    featurise_seconds = time.perf_counter() - started
    augment = None
    if sign_flip and config.lap_mode == "signed" and config.lap_dim > 0:

        def augment(batch, generator, lap_dim=config.lap_dim):
            random_laplacian_sign_flip(batch, lap_dim, generator)

    task = PropertyTask(
        [graphs[i] for i in train_idx],
        y_train,
        [graphs[i] for i in val_idx],
        train_set.targets[val_idx],
        target_std=config.target_std,
        batch_size=batch_size,
        augment=augment,
    )
    torch.manual_seed(train_config.seed)
    model = CrysToGraph(config)
    elements = sorted({int(z) for a in train_set.atoms for z in a.numbers})
    metadata = {
        "data_source": data_source or train_set.source,
        "target": train_set.target,
        "units": units,
        "n_train_structures": int(len(train_idx)),
        "n_val_structures": int(len(val_idx)),
        "elements": elements,
        "atoms_per_structure": [
            int(min(len(a) for a in train_set.atoms)),
            int(max(len(a) for a in train_set.atoms)),
        ],
        "command": command,
        "batch_size": batch_size,
        "laplacian_sign_flip": augment is not None,
    }
    started = time.perf_counter()
    summary = fit(
        model,
        task,
        train_config,
        out,
        metadata=metadata,
        progress=progress,
    )
    summary.update(
        model=model,
        config=config,
        featurise_seconds=featurise_seconds,
        fit_seconds_this_call=time.perf_counter() - started,
        train_seconds=float(sum(r["seconds"] for r in summary["history"])),
        val_idx=val_idx,
    )
    return summary


def evaluate(model: CrysToGraph, test_set: PropertySet) -> dict[str, float]:
    """Held-out MAE / RMSE of ``model`` on ``test_set``, in the target's units."""
    graphs = featurise(test_set, model.config)
    predicted = predict_graphs(model, graphs)
    error = predicted - test_set.targets
    return {
        "mae": float(np.abs(error).mean()),
        "rmse": float(np.sqrt((error**2).mean())),
        "n": len(test_set),
    }
