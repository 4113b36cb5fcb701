"""``ase-cartnet train deeprelax``: T DeepRelax replicates (different seeds) with the shared loop,
then (``--export``) the ensemble as one weights file with a JSON model card."""

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
from ase_cartnet.io.checkpoint import read_checkpoint, save_checkpoint
from ase_cartnet.models.deeprelax import DeepRelaxConfig, DeepRelaxEnsemble, DeepRelaxModel
from ase_cartnet.train.deeprelax_data import (
    DEFAULT_RATTLE_STD,
    DEFAULT_STRAIN_STD,
    RelaxPair,
    build_synthetic_db,
    pairs_from_dbs,
)
from ase_cartnet.train.deeprelax_task import DeepRelaxTask
from ase_cartnet.train.loop import TrainConfig, add_training_arguments, fit, train_config_from_args

MODEL_NAME = "deeprelax"
ENSEMBLE_NAME = "deeprelax_ensemble"


def split_pairs(
    pairs: list[RelaxPair], val_fraction: float, seed: int
) -> tuple[list[RelaxPair], list[RelaxPair]]:
    """Random split by pair (fixed by ``seed``); every replicate sees the same split."""
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    order = np.random.default_rng(seed).permutation(len(pairs))
    n_val = max(1, int(round(val_fraction * len(pairs))))
    val = [pairs[i] for i in sorted(order[:n_val])]
    train = [pairs[i] for i in sorted(order[n_val:])]
    if not train:
        raise InputError("no training pairs left after the validation split")
    return train, val


def train_deeprelax(
    pairs: list[RelaxPair],
    out: str | os.PathLike,
    *,
    architecture: dict[str, Any] | None = None,
    train_config: TrainConfig | None = None,
    replicates: int = 5,
    val_fraction: float = 0.05,
    batch_size: int = 32,
    data_source: str = "",
    command: str = "",
    progress: bool = True,
    init: DeepRelaxEnsemble | None = None,
    init_source: str | None = None,
) -> list[dict[str, Any]]:
    """Train ``replicates`` members in ``out/replicate_<t>`` with seeds ``seed + t`` (eqns
    21–24 need independently initialised replicates); each run resumes where it stopped.
    The validation split is the same for all (seeded by ``train_config.seed``).

    ``init``: fine-tune — replicate t starts from member t (mod T) of this ensemble, whose
    architecture then replaces ``architecture``; the replicates stay distinct because their
    starting points were trained independently."""
    train_config = train_config or TrainConfig(select_metric="mae")
    if isinstance(replicates, bool) or not isinstance(replicates, int) or replicates < 1:
        raise InputError(f"replicates must be a positive integer, got {replicates!r}")
    config = init.config if init is not None else DeepRelaxConfig(**(architecture or {}))
    train, val = split_pairs(pairs, val_fraction, train_config.seed)
    task = DeepRelaxTask(train, val, config, batch_size=batch_size)
    elements = sorted({int(z) for p in train for z in p.relaxed.numbers})
    summaries = []
    for t in range(replicates):
        seed = train_config.seed + t
        member_config = TrainConfig(**{**train_config.__dict__, "seed": seed})
        torch.manual_seed(seed)
        model = DeepRelaxModel(config)
        if init is not None:
            model.load_state_dict(init.members[t % len(init.members)].state_dict())
        metadata = {
            "data_source": data_source,
            "n_train_pairs": len(train),
            "n_val_pairs": len(val),
            "val_ids": [p.key for p in val],
            "elements": elements,
            "command": command,
            "batch_size": batch_size,
            "replicate": t,
            "fine_tuned_from": init_source,
        }
        summaries.append(
            fit(
                model,
                task,
                member_config,
                Path(out) / f"replicate_{t}",
                model_name=MODEL_NAME,
                model_config=config.to_dict(),
                metadata=metadata,
                progress=progress,
            )
        )
    return summaries


def load_member(path: str | os.PathLike) -> tuple[DeepRelaxModel, dict[str, Any]]:
    """One replicate from an ase-cartnet checkpoint written by :func:`train_deeprelax`."""
    from ase_cartnet.errors import CheckpointError
    from ase_cartnet.io.checkpoint import load_state_strict

    payload = read_checkpoint(path)
    if payload.get("model") != MODEL_NAME:
        raise CheckpointError(f"{path} holds a {payload.get('model')!r} model, not {MODEL_NAME}")
    model = DeepRelaxModel(DeepRelaxConfig.from_dict(dict(payload["config"])))
    load_state_strict(model, payload["model_state"], str(path))
    return model.eval(), dict(payload.get("metadata", {}))


def export_deeprelax(
    run_dir: str | os.PathLike,
    weights_out: str | os.PathLike,
    card: dict[str, Any],
    *,
    uncertainty_threshold: float | None = None,
) -> tuple[Path, Path]:
    """Gather ``run_dir/replicate_*/best.pt`` into one float32 ensemble checkpoint and write
    the model card (same stem, ``.json``) with architecture, training metadata and sha256."""
    from ase_cartnet.train.model_card import write_model_card

    paths = sorted(Path(run_dir).glob("replicate_*/best.pt"))
    if not paths:
        raise InputError(f"no replicate_*/best.pt under {run_dir}")
    members, metas = zip(*(load_member(p) for p in paths), strict=True)
    ensemble = DeepRelaxEnsemble.from_members([m.float() for m in members])
    keep = ("data_source", "n_train_pairs", "n_val_pairs", "elements", "command", "batch_size")
    training = {k: metas[0][k] for k in keep if k in metas[0]}
    training["train_config"] = metas[0].get("train_config")
    training["replicates"] = [
        {
            "epoch": m.get("epoch"),
            "seed": (m.get("train_config") or {}).get("seed"),
            **m["validation"],
        }
        for m in metas
    ]
    metadata = {**training, "uncertainty_threshold": uncertainty_threshold}
    weights = save_checkpoint(
        weights_out,
        ensemble,
        model_name=ENSEMBLE_NAME,
        config={**ensemble.config.to_dict(), "ensemble_size": len(members)},
        metadata=metadata,
    )
    full_card = {
        **card,
        "architecture": ensemble.config.to_dict(),
        "ensemble_size": len(members),
        "n_parameters_per_member": sum(p.numel() for p in members[0].parameters()),
        "uncertainty_threshold": uncertainty_threshold,
        "training": training,
    }
    card_path = write_model_card(weights, full_card)
    return weights, card_path


def _run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    if args.synthetic_from:
        if len(args.db) != 1:
            raise InputError("--synthetic-from writes one database: give exactly one --db")
        build_synthetic_db(
            args.synthetic_from,
            args.db[0],
            strain_std=args.strain_std,
            rattle_std=args.rattle_std,
            seed=args.noise_seed,
            limit=args.limit,
        )
    pairs = pairs_from_dbs(args.db, limit=args.limit)
    init = None
    if args.init:
        from ase_cartnet.calculators.deeprelax import load_deeprelax

        init, _ = load_deeprelax(args.init)
    source = (
        "ase.db "
        + " + ".join(Path(db).name for db in args.db)
        + (
            f" (synthetic from {Path(args.synthetic_from).name}: strain σ_A {args.strain_std}, "
            f"rattle σ_r {args.rattle_std} Å)"
            if args.synthetic_from
            else ""
        )
    )
    architecture = {
        "hidden": args.hidden,
        "num_layers": args.layers,
        "num_rbf": args.rbf,
        "cutoff": args.cutoff,
        "max_neighbours": args.max_neighbours,
        "pcoe_dim": args.pcoe_dim,
    }
    config = train_config_from_args(args, select_metric="mae")
    summaries = train_deeprelax(
        pairs,
        args.out,
        architecture=architecture,
        train_config=config,
        replicates=args.replicates,
        val_fraction=args.val_fraction,
        batch_size=args.batch_size,
        data_source=source,
        command="ase-cartnet " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        progress=not args.no_progress,
        init=init,
        init_source=Path(args.init).name if args.init else None,
    )
    for t, summary in enumerate(summaries):
        best = summary["best"]
        print(
            f"replicate {t}: best epoch {best['epoch']}, "
            + ", ".join(f"{k} {v:.4g}" for k, v in best.items() if k not in ("epoch", "metric"))
        )
    return 0


def register(models) -> None:
    """Add the ``deeprelax`` model to ``ase-cartnet train``."""
    p = models.add_parser("deeprelax", help="DeepRelax ensemble on unrelaxed → relaxed pairs")
    p.add_argument(
        "--db",
        required=True,
        nargs="+",
        help="pair database(s) (pairs_from_db layout: synthetic, teacher or phonon_ref rows)",
    )
    p.add_argument(
        "--init", help="fine-tune: start replicate t from member t of this DeepRelax checkpoint"
    )
    p.add_argument(
        "--synthetic-from",
        help="MP-20 style CSV: first write synthetic pairs (exp(A) strain + rattle) into --db",
    )
    p.add_argument("--strain-std", type=float, default=DEFAULT_STRAIN_STD, help="σ_A")
    p.add_argument("--rattle-std", type=float, default=DEFAULT_RATTLE_STD, help="σ_r, Å")
    p.add_argument("--noise-seed", type=int, default=0)
    p.add_argument(
        "--limit", type=int, default=None, help="first N structures/pairs of each database only"
    )
    p.add_argument("--out", required=True, help="run folder (replicate_<t>/ each resumable)")
    p.add_argument("--replicates", type=int, default=5, help="ensemble size T")
    add_training_arguments(
        p, epochs=50, batch_size=32, lr=1e-3, pct_start=0.05, grad_clip=10.0, val_fraction=0.05
    )
    defaults = DeepRelaxConfig()
    p.add_argument("--hidden", type=int, default=defaults.hidden)
    p.add_argument("--layers", type=int, default=defaults.num_layers)
    p.add_argument("--rbf", type=int, default=defaults.num_rbf)
    p.add_argument("--cutoff", type=float, default=defaults.cutoff)
    p.add_argument("--max-neighbours", type=int, default=defaults.max_neighbours)
    p.add_argument("--pcoe-dim", type=int, default=defaults.pcoe_dim)
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run)
