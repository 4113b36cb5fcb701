"""``ase-cartnet train deeprelax``: T DeepRelax replicates (different seeds) with the shared loop,
then (``--export``) the ensemble as one weights file with a JSON model card."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ase_cartnet.errors import InputError
from ase_cartnet.io.checkpoint import export_weights, load_model
from ase_cartnet.models.deeprelax import DeepRelaxConfig, DeepRelaxEnsemble, DeepRelaxModel
from ase_cartnet.train.deeprelax_data import RelaxPair, canonical_pair, frame_pairs
from ase_cartnet.train.deeprelax_task import DeepRelaxTask
from ase_cartnet.train.loop import TrainConfig, fit, random_split

MODEL_NAME = "deeprelax"
ENSEMBLE_NAME = "deeprelax_ensemble"


def train_deeprelax(
    pairs: list[RelaxPair],
    out: str | os.PathLike,
    *,
    architecture: dict[str, Any] | None = None,
    train_config: TrainConfig | None = None,
    replicates: int = 5,
    first_replicate: int = 0,
    val_fraction: float = 0.05,
    batch_size: int = 32,
    data_source: str = "",
    command: str = "",
    progress: bool = True,
    init: DeepRelaxEnsemble | None = None,
    init_source: str | None = None,
    frames_per_pair: int = 0,
    canonical: bool = True,
) -> list[dict[str, Any]]:
    """Train ``replicates`` members in ``out/replicate_<t>`` with seeds ``seed + t`` (eqns
    21–24 need independently initialised replicates); each run resumes where it stopped.
    The validation split is the same for all (seeded by ``train_config.seed``).
    ``first_replicate``: train members ``first_replicate … first_replicate + replicates − 1``
    only, so that several processes can share one ensemble (e.g. ``replicates=1`` each).

    ``init``: fine-tune — replicate t starts from member t (mod T) of this ensemble, whose
    architecture then replaces ``architecture``; the replicates stay distinct because their
    starting points were trained independently.

    ``frames_per_pair``: after the split, up to that many stored trajectory frames of each
    *training* pair become extra (frame → relaxed) pairs; validation keeps only the true
    unrelaxed inputs, so frames of one relaxation never sit on both sides. ``canonical``: train
    on the canonical listing of every input (what the calculator predicts on)."""
    train_config = train_config or TrainConfig(select_metric="mae")
    if isinstance(replicates, bool) or not isinstance(replicates, int) or replicates < 1:
        raise InputError(f"replicates must be a positive integer, got {replicates!r}")
    if type(first_replicate) is not int or first_replicate < 0:  # bool is no index either
        raise InputError(f"first_replicate must be an integer >= 0, got {first_replicate!r}")
    config = init.config if init is not None else DeepRelaxConfig(**(architecture or {}))
    train, val = random_split(pairs, val_fraction, train_config.seed, "pairs")
    n_relaxations = len(train)
    train = train + frame_pairs(train, frames_per_pair)
    if canonical:
        train, val = [canonical_pair(p) for p in train], [canonical_pair(p) for p in val]
    task = DeepRelaxTask(train, val, config, batch_size=batch_size)
    elements = sorted({int(z) for p in train for z in p.relaxed.numbers})
    summaries = []
    for t in range(first_replicate, first_replicate + replicates):
        seed = train_config.seed + t
        member_config = TrainConfig(**{**train_config.__dict__, "seed": seed})
        torch.manual_seed(seed)
        model = DeepRelaxModel(config)
        if init is not None:
            model.load_state_dict(init.members[t % len(init.members)].state_dict())
        metadata = {
            "data_source": data_source,
            "n_train_pairs": len(train),
            "n_train_relaxations": n_relaxations,
            "frames_per_pair": frames_per_pair,
            "canonical_listing": canonical,
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
                metadata=metadata,
                progress=progress,
            )
        )
    return summaries


def export_deeprelax(
    run_dir: str | os.PathLike,
    weights_out: str | os.PathLike,
    card: dict[str, Any],
    *,
    uncertainty_threshold: float | None = None,
) -> tuple[Path, Path]:
    """Gather ``run_dir/replicate_*/best.pt`` into one float32 ensemble checkpoint and write
    the model card (same stem, ``.json``) with architecture, training metadata and sha256."""
    paths = sorted(Path(run_dir).glob("replicate_*/best.pt"))
    if not paths:
        raise InputError(f"no replicate_*/best.pt under {run_dir}")
    loaded = [load_model(p, "deeprelax") for p in paths]
    members = [m.model for m in loaded]
    metas = [m.metadata for m in loaded]
    ensemble = DeepRelaxEnsemble.from_members([m.float() for m in members])
    keep = (
        "data_source",
        "n_train_pairs",
        "n_train_relaxations",
        "frames_per_pair",
        "canonical_listing",
        "n_val_pairs",
        "elements",
        "command",
        "batch_size",
    )
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
    full_card = {
        **card,
        "architecture": ensemble.config.to_dict(),
        "ensemble_size": len(members),
        "n_parameters_per_member": sum(p.numel() for p in members[0].parameters()),
        "uncertainty_threshold": uncertainty_threshold,
        "training": training,
    }
    return export_weights(
        weights_out,
        ensemble,
        kind=ENSEMBLE_NAME,
        config={**ensemble.config.to_dict(), "ensemble_size": len(members)},
        metadata=metadata,
        card=full_card,
    )
