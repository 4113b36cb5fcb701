"""``ase-cartnet train cartnet|deeprelax|empnn|crystograph``: the training commands."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ase_cartnet.cli import add_command
from ase_cartnet.cli.options import add_threads, non_negative_int, set_threads

if TYPE_CHECKING:
    from ase_cartnet.train.loop import TrainConfig


def _command_line() -> str:
    """The command as typed, stored in the run's metadata."""
    return "ase-cartnet " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def add_training_arguments(
    parser: argparse.ArgumentParser,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    pct_start: float,
    grad_clip: float | None,
    val_fraction: float,
) -> None:
    """The options of :class:`TrainConfig` plus batch size and validation fraction, for one
    ``ase-cartnet train <model>`` parser (each model passes its own defaults)."""
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--batch-size", type=int, default=batch_size, help="structures per batch")
    parser.add_argument("--lr", type=float, default=lr, help="peak OneCycle learning rate")
    parser.add_argument("--pct-start", type=float, default=pct_start, help="warm-up fraction")
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--grad-clip", type=float, default=grad_clip, help="max gradient norm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-fraction", type=float, default=val_fraction)
    parser.add_argument("--device", default="cpu", help="where to train (cpu, cuda)")


def train_config_from_args(args: argparse.Namespace, select_metric: str = "mae") -> TrainConfig:
    """:class:`TrainConfig` from options added by :func:`add_training_arguments`."""
    from ase_cartnet.train.loop import TrainConfig

    names = ("epochs", "lr", "pct_start", "weight_decay", "grad_clip", "seed", "device")
    return TrainConfig(**{n: getattr(args, n) for n in names}, select_metric=select_metric)


def _fit_options(args: argparse.Namespace, select_metric: str) -> dict:
    """The keyword arguments every ``train_<model>`` function takes from the shared options."""
    return {
        "train_config": train_config_from_args(args, select_metric),
        "val_fraction": args.val_fraction,
        "batch_size": args.batch_size,
    }


def _report(summary: dict, prefix: str = "best epoch {epoch}: ", skip=("epoch", "metric")) -> None:
    """One line with the best epoch's validation figures of a :func:`fit` summary."""
    best = summary["best"]
    figures = ", ".join(f"{k} {v:.4g}" for k, v in best.items() if k not in skip)
    print(prefix.format(epoch=best["epoch"]) + figures)


def _run_cartnet(args: argparse.Namespace) -> int:
    from ase_cartnet.train.cartnet import load_structures, train_cartnet

    set_threads(args)
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
        "structure_context": args.structure_context,
    }
    tpe: int | str = (
        "all" if args.temperatures_per_epoch == "all" else int(args.temperatures_per_epoch)
    )
    summary = train_cartnet(
        structures,
        args.out,
        architecture=architecture,
        **_fit_options(args, args.select),
        temperatures_per_epoch=tpe,
        augment=not args.no_augment,
        loss=args.loss,
        data_source=source,
        command=_command_line(),
        split_seed=args.split_seed,
        init_checkpoint=args.init,
    )
    _report(summary)
    print(f"checkpoints in {summary['run_dir']} (best.pt, last.pt, history.json)")
    return 0


def register(subparsers) -> None:
    """Add ``train`` and its model subcommands to the ``ase-cartnet`` CLI."""
    train = add_command(subparsers, "train")
    models = train.add_subparsers(dest="model", required=True)
    for register_model in (
        register_cartnet,
        register_deeprelax,
        register_empnn,
        register_crystograph,
        register_average,
    ):
        register_model(models)


def register_cartnet(models) -> None:
    """Add the ``cartnet`` model to ``ase-cartnet train``."""
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
    p.add_argument(
        "--structure-context",
        action="store_true",
        help="the head also sees each structure's mean atom feature (a whole-crystal pathway)",
    )
    p.add_argument("--no-direction", action="store_true", help="ablation 4: no direction vector")
    p.add_argument("--no-temperature", action="store_true", help="ablation 5: no temperature")
    p.add_argument("--no-envelope", action="store_true", help="ablation 3: no envelope")
    p.add_argument("--no-augment", action="store_true", help="no SO(3) augmentation")
    add_threads(p)
    p.set_defaults(func=_run_cartnet)


def _run_deeprelax(args: argparse.Namespace) -> int:
    from ase_cartnet.errors import InputError
    from ase_cartnet.train.deeprelax import train_deeprelax
    from ase_cartnet.train.deeprelax_data import build_synthetic_db, pairs_from_dbs

    set_threads(args)
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
    pairs = pairs_from_dbs(args.db, limit=args.limit, frames=args.frames_per_pair > 0)
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
        "disp_cutoff": args.disp_cutoff,
    }
    summaries = train_deeprelax(
        pairs,
        args.out,
        architecture=architecture,
        **_fit_options(args, "mae"),
        replicates=args.replicates,
        first_replicate=args.first_replicate,
        data_source=source,
        command=_command_line(),
        progress=not args.no_progress,
        init=init,
        init_source=Path(args.init).name if args.init else None,
        frames_per_pair=args.frames_per_pair,
        canonical=not args.no_canonical,
    )
    for t, summary in enumerate(summaries):
        _report(summary, f"replicate {t}: best epoch {{epoch}}, ")
    return 0


def register_deeprelax(models) -> None:
    """Add the ``deeprelax`` model to ``ase-cartnet train``."""
    from ase_cartnet.models.deeprelax import DeepRelaxConfig
    from ase_cartnet.train.deeprelax_data import DEFAULT_RATTLE_STD, DEFAULT_STRAIN_STD

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
    p.add_argument(
        "--first-replicate",
        type=non_negative_int,
        default=0,
        help="train replicates FIRST … FIRST+T-1 only (several processes, one ensemble)",
    )
    p.add_argument(
        "--frames-per-pair",
        type=int,
        default=0,
        help="extra (trajectory frame → relaxed) training pairs per teacher relaxation",
    )
    p.add_argument(
        "--no-canonical",
        action="store_true",
        help="train on the inputs as written (default: their canonical listing, as predicted)",
    )
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
    p.add_argument(
        "--disp-cutoff",
        type=float,
        default=defaults.disp_cutoff,
        help="Å: displacement edges only within this in-cell distance (0: all pairs, the paper)",
    )
    add_threads(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_deeprelax)


def _run_empnn(args: argparse.Namespace) -> int:
    from ase_cartnet.train.empnn import load_training_data, train_empnn

    set_threads(args)
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
    summary = train_empnn(
        crystals,
        args.out,
        architecture=architecture,
        **_fit_options(args, "loss"),
        sigma=args.sigma,
        symmetric_noise=not args.no_sym_noise,
        loss=args.loss,
        metadata={
            "data_source": {spec: counts[spec] for spec in args.train},
            "data_dir": Path(args.data_dir).name,
            "command": _command_line(),
        },
    )
    _report(summary, skip=("epoch", "metric", "value"))
    print(f"checkpoints in {summary['run_dir']} (best.pt, last.pt, history.json)")
    return 0


def register_empnn(models) -> None:
    """Add the ``empnn`` model to ``ase-cartnet train``."""
    from ase_cartnet.models.empnn import EDGE_FIELDS, TRIPLET_FIELDS
    from ase_cartnet.train.empnn import DEFAULT_TRAIN
    from ase_cartnet.train.empnn_task import LOSSES

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
    add_threads(p)
    p.set_defaults(func=_run_empnn)


def _run_crystograph(args: argparse.Namespace) -> int:
    from ase_cartnet.io.checkpoint import load_model
    from ase_cartnet.train.crystograph import (
        DATASETS,
        REDUCED,
        evaluate,
        load_splits,
        train_crystograph,
    )

    set_threads(args)
    spec = DATASETS[args.dataset]
    cache = str(Path(args.out) / "cache")
    train_set, test_set = load_splits(args.dataset, args.data_dir, cache)
    architecture = dict(REDUCED) if args.reduced else {}
    for name in ("dim", "num_heads", "head_dim", "num_etgc", "num_gwt", "line_dim"):
        value = getattr(args, name)
        if value is not None:
            architecture[name] = value
    architecture["lap_mode"] = args.lap_mode
    if args.no_edge_angles:
        architecture["use_edge_angles"] = False
    summary = train_crystograph(
        train_set,
        args.out,
        architecture=architecture,
        **_fit_options(args, "mae"),
        units=spec["units"],
        command=_command_line(),
    )
    best = summary["best"]
    print(f"best epoch {best['epoch']}: val MAE {best['mae']:.4g} {spec['units']}")
    model = load_model(Path(args.out) / "best.pt", "crystograph").model
    held_out = evaluate(model, test_set)
    print(
        f"test ({spec['test']}, n={held_out['n']}): MAE {held_out['mae']:.4g} {spec['units']}, "
        f"RMSE {held_out['rmse']:.4g}"
    )
    print(f"checkpoints in {summary['run_dir']} (best.pt, last.pt, history.json)")
    return 0


def register_crystograph(models) -> None:
    """Add ``crystograph`` to the ``ase-cartnet train`` model subcommands."""
    from ase_cartnet.train.crystograph import DATASETS, REDUCED

    p = models.add_parser("crystograph", help="CrysToGraph property model (Perov-5, MP-20)")
    p.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    p.add_argument("--data-dir", default=None, help="folder holding perov_5/ and mp_20/")
    p.add_argument("--out", required=True, help="run folder (resumes if it holds last.pt)")
    add_training_arguments(
        p, epochs=10, batch_size=32, lr=1e-3, pct_start=0.1, grad_clip=5.0, val_fraction=0.05
    )
    p.add_argument("--reduced", action="store_true", help=f"the CPU-budget architecture {REDUCED}")
    p.add_argument("--dim", type=int, default=None)
    p.add_argument("--num-heads", type=int, default=None)
    p.add_argument("--head-dim", type=int, default=None)
    p.add_argument("--num-etgc", type=int, default=None)
    p.add_argument("--num-gwt", type=int, default=None)
    p.add_argument("--line-dim", type=int, default=None)
    p.add_argument("--lap-mode", choices=("signed", "projector"), default="signed")
    p.add_argument(
        "--no-edge-angles",
        action="store_true",
        help="edge features from r only (no cell-frame θ, φ): exact SL3(Z) cell invariance",
    )
    add_threads(p, default=1)
    p.set_defaults(func=_run_crystograph)


def _run_average(args: argparse.Namespace) -> int:
    from ase_cartnet.train.average import average_checkpoints

    out = average_checkpoints(args.checkpoints, args.out, command=_command_line())
    print(f"wrote {out}: the weight mean of {len(args.checkpoints)} runs (evaluate it before use)")
    return 0


def register_average(models) -> None:
    """Add ``average`` (the weight mean of several runs) to ``ase-cartnet train``."""
    p = models.add_parser(
        "average", help="one checkpoint with the mean weights of runs of one architecture"
    )
    p.add_argument("checkpoints", nargs="+", help="best.pt of each run (two or more)")
    p.add_argument("--out", required=True, help="the averaged checkpoint to write")
    p.set_defaults(func=_run_average)
