"""``ase-cartnet train cartnet``: train CartNet on ADPs from a phonon_ref database or CIF folder."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

from ase_cartnet.errors import InputError
from ase_cartnet.io.checkpoint import read_checkpoint
from ase_cartnet.models.cartnet import CartNet, CartNetConfig
from ase_cartnet.train.adp_data import (
    ADPStructure,
    split_structures,
    structures_from_cif_dir,
    structures_from_db,
    temperature_statistics,
)
from ase_cartnet.train.cartnet_task import CartNetADPTask
from ase_cartnet.train.loop import (
    TrainConfig,
    add_training_arguments,
    fit,
    train_config_from_args,
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
    pretrained on another teacher's labels) instead of a random initialisation."""
    train_config = train_config or TrainConfig()
    split = train_config.seed if split_seed is None else split_seed
    train, val = split_structures(structures, val_fraction, split)
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
        model.load_state_dict(read_checkpoint(init_checkpoint)["model_state"])
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
    return fit(
        model,
        task,
        train_config,
        out,
        model_name="cartnet",
        model_config=config.to_dict(),
        metadata=metadata,
        progress=progress,
    )


def _run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    structures, source = load_structures(args.db, args.cif_dir)
    architecture = {
        "dim": args.dim,
        "dim_rbf": args.rbf,
        "num_layers": args.layers,
        "cutoff": args.cutoff,
        "use_direction": not args.no_direction,
        "use_temperature": not (args.no_temperature or args.head == "harmonic"),
        "use_envelope": not args.no_envelope,
        "head": args.head,
        "harmonic_bins": args.harmonic_bins,
    }
    config = train_config_from_args(args, select_metric=args.select)
    tpe: int | str = (
        "all" if args.temperatures_per_epoch == "all" else int(args.temperatures_per_epoch)
    )
    summary = train_cartnet(
        structures,
        args.out,
        architecture=architecture,
        train_config=config,
        val_fraction=args.val_fraction,
        batch_size=args.batch_size,
        temperatures_per_epoch=tpe,
        augment=not args.no_augment,
        loss=args.loss,
        data_source=source,
        command="ase-cartnet " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        split_seed=args.split_seed,
        init_checkpoint=args.init,
    )
    best = summary["best"]
    print(
        f"best epoch {best['epoch']}: "
        + ", ".join(f"{k} {v:.4g}" for k, v in best.items() if k not in ("epoch", "metric"))
    )
    print(f"checkpoints in {summary['run_dir']} (best.pt, last.pt, history.json)")
    return 0


def register(subparsers) -> None:
    """Add ``train`` (with the ``cartnet`` model) to the ``ase-cartnet`` CLI."""
    train = subparsers.add_parser("train", help="train a model with the shared training loop")
    models = train.add_subparsers(dest="model", required=True)
    p = models.add_parser("cartnet", help="CartNet on ADPs (phonon_ref database or CIF folder)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--db", help="ase.db written by phonon_ref.build_dataset (status='ok' rows)"
    )
    source.add_argument("--cif-dir", help="folder of CIFs with experimental ADPs and temperatures")
    p.add_argument("--out", required=True, help="run folder (resumes if it holds last.pt)")
    add_training_arguments(
        p, epochs=50, batch_size=16, lr=1e-3, pct_start=0.01, grad_clip=None, val_fraction=0.1
    )
    p.add_argument("--temperatures-per-epoch", default="all", help="'all' or k per structure")
    p.add_argument(
        "--split-seed",
        type=int,
        default=None,
        help="seed of the validation split (default: --seed); ensemble members share one",
    )
    p.add_argument(
        "--loss",
        default="l1",
        choices=("l1", "relative_l1"),
        help="l1: paper's L1 on U (Å²); relative_l1: per-sample L1 / mean U_eq",
    )
    p.add_argument("--select", default="mae", choices=("mae", "s12", "iou"), help="best.pt metric")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--rbf", type=int, default=64)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--cutoff", type=float, default=5.0)
    p.add_argument(
        "--head",
        default="cholesky",
        choices=("cholesky", "harmonic"),
        help="cholesky: the paper's head, T in the atom embedding (eqns 4, 15-18); harmonic: "
        "spectral weights through eqns 2-3, T in the head only (one pass for all temperatures)",
    )
    p.add_argument(
        "--harmonic-bins", type=int, default=24, help="frequency bins of the harmonic head"
    )
    p.add_argument(
        "--init", help="start from this run's weights (same architecture), e.g. to fine-tune"
    )
    p.add_argument("--no-direction", action="store_true", help="ablation 4: no direction vector")
    p.add_argument("--no-temperature", action="store_true", help="ablation 5: no temperature")
    p.add_argument("--no-envelope", action="store_true", help="ablation 3: no envelope")
    p.add_argument("--no-augment", action="store_true", help="no SO(3) augmentation")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.set_defaults(func=_run)

    from ase_cartnet.train.deeprelax_cli import register as register_deeprelax

    register_deeprelax(models)

    from ase_cartnet.train.empnn_cli import register as register_empnn

    register_empnn(models)

    from ase_cartnet.train.crystograph_cli import register as register_crystograph

    register_crystograph(models)
