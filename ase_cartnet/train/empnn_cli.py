"""``ase-cartnet train empnn``: lattice denoising (EMPNN paper section 6) with the shared loop.

Example (the shipped weights' command is in their model card)::

    ase-cartnet train empnn --data-dir ../shared/data --out runs/empnn/ketbra \\
        --train mp_20/val mp_20/train_subset_847 carbon_24/val perov_5/val
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ase_cartnet.errors import InputError
from ase_cartnet.models.empnn import (
    EDGE_FIELDS,
    LOSSES,
    TRIPLET_FIELDS,
    EMPNNConfig,
    build_model,
    count_parameters,
)
from ase_cartnet.train.empnn_data import Crystal, load_split, parse_split_spec
from ase_cartnet.train.empnn_task import EMPNNDenoiseTask, lattice_statistics
from ase_cartnet.train.loop import TrainConfig, add_training_arguments, fit, train_config_from_args

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
    return fit(
        model,
        task,
        train_config,
        out,
        model_name="empnn",
        model_config=config.to_dict(),
        metadata=meta,
        progress=progress,
    )


def _run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    crystals, counts = load_training_data(
        args.data_dir, args.train, cache_dir=args.cache, seed=args.seed
    )
    architecture = {
        "dim": args.dim,
        "num_rbf": args.rbf,
        "num_relative": args.relative,
        "num_layers": args.layers,
        "num_steps": args.steps,
        "k": args.k,
        "edge_fields": tuple(args.edge_fields),
        "triplet_fields": tuple(args.triplet_fields),
        "sym": args.sym,
        "triplet_messages": args.triplet_messages,
        "exponential": args.exponential,
        "head": args.head,
    }
    if args.head == "ff":
        architecture.update(edge_fields=(), triplet_fields=(), num_steps=0)
    config = train_config_from_args(args, select_metric="loss")
    summary = train_empnn(
        crystals,
        args.out,
        architecture=architecture,
        train_config=config,
        sigma=args.sigma,
        symmetric_noise=not args.no_sym_noise,
        loss=args.loss,
        val_fraction=args.val_fraction,
        batch_size=args.batch_size,
        metadata={
            "data_source": {spec: counts[spec] for spec in args.train},
            "data_dir": Path(args.data_dir).name,
            "command": "ase-cartnet " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        },
    )
    best = summary["best"]
    print(
        f"best epoch {best['epoch']}: "
        + ", ".join(
            f"{k} {v:.4g}" for k, v in best.items() if k not in ("epoch", "metric", "value")
        )
    )
    print(f"checkpoints in {summary['run_dir']} (best.pt, last.pt, history.json)")
    return 0


def register(models) -> None:
    """Add the ``empnn`` model to ``ase-cartnet train``."""
    p = models.add_parser(
        "empnn", help="EMPNN lattice denoising on MP-20 / Carbon-24 / Perov-5 (CDVAE splits)"
    )
    p.add_argument("--data-dir", required=True, help="folder holding mp_20/, carbon_24/, perov_5/")
    p.add_argument(
        "--train",
        nargs="+",
        default=list(DEFAULT_TRAIN),
        help="dataset/split[:limit] specs (default: %(default)s)",
    )
    p.add_argument("--out", required=True, help="run folder (resumes if it holds last.pt)")
    p.add_argument("--cache", default=None, help="folder for parsed-structure caches (.npz)")
    add_training_arguments(
        p, epochs=50, batch_size=256, lr=1e-4, pct_start=0.05, grad_clip=1.0, val_fraction=0.05
    )
    p.add_argument("--sigma", type=float, default=0.1, help="noise A ~ N(0, sigma^2)")
    p.add_argument("--no-sym-noise", action="store_true", help="do not symmetrise A")
    p.add_argument("--loss", default="param_mae", choices=LOSSES)
    p.add_argument("--head", default="deform", choices=("deform", "ff"), help="ff: baseline")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--rbf", type=int, default=32)
    p.add_argument(
        "--relative",
        type=int,
        default=0,
        help="basis size of the relative edge length r/r̄_i (0: the paper's eqn 8a)",
    )
    p.add_argument("--layers", type=int, default=8, help="invariant MPNN layers")
    p.add_argument("--steps", type=int, default=4, help="deformation steps")
    p.add_argument("--k", type=int, default=16, help="kNN graph neighbours")
    p.add_argument("--edge-fields", nargs="*", default=["ketbra"], choices=EDGE_FIELDS)
    p.add_argument("--triplet-fields", nargs="*", default=[], choices=TRIPLET_FIELDS)
    p.add_argument("--sym", action="store_true", help="symmetric fields (the paper's 'sym')")
    p.add_argument("--triplet-messages", action="store_true", help="eqn 8b in every layer")
    p.add_argument("--exponential", default="exp", choices=("exp", "first_order"))
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.set_defaults(func=_run)
