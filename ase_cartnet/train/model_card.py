"""Ship a trained checkpoint: a weights-only ase-cartnet checkpoint plus a JSON model card.

The card states what the model is and is not: training data (sources, counts, teacher and its
version, temperature range, elements), the exact training command, held-out metrics, licence, and
the sha256 of the weights file it describes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ase_cartnet.io.atomic import atomic_write
from ase_cartnet.io.checkpoint import ENSEMBLE_KIND, read_checkpoint, save_checkpoint
from ase_cartnet.models.cartnet import CartNet, CartNetConfig, CartNetEnsemble

KEEP_METADATA = (
    "data_source",
    "n_train_structures",
    "n_val_structures",
    "n_train_samples",
    "elements",
    "temperature_range",
    "command",
    "validation",
    "epoch",
    "train_config",
    "augment",
    "loss",
    "batch_size",
    "temperatures_per_epoch",
)


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_model_card(weights: Path, fields: dict[str, Any]) -> Path:
    """Write the model card of the shipped ``weights`` file beside it (same stem, ``.json``,
    atomically): ``fields`` plus the file's name, sha256 and size. Returns the card's path."""
    card = {
        **fields,
        "weights_file": weights.name,
        "sha256": sha256_of(weights),
        "size_bytes": weights.stat().st_size,
    }
    card_path = weights.with_suffix(".json")
    with atomic_write(card_path) as handle:
        json.dump(card, handle, indent=1)
        handle.write("\n")
    return card_path


def export_cartnet(
    checkpoint: str | os.PathLike | Sequence[str | os.PathLike],
    weights_out: str | os.PathLike,
    card: dict[str, Any],
    *,
    adp_floor: float | None = None,
    elements: Sequence[int] | None = None,
) -> tuple[Path, Path]:
    """Write the weights of ``checkpoint`` (no optimizer state; float32) to ``weights_out`` and
    the model card next to it (same stem, ``.json``). ``card`` holds the descriptive fields; the
    architecture, training metadata and sha256 are filled in here. ``adp_floor`` (Å²) replaces
    the config's ε of U = LᵀL + εI (a run trained with ε = 0 can predict needle-like ellipsoids
    that round to a non-positive-definite U). Several checkpoints of one architecture become one
    :class:`CartNetEnsemble` (their outputs averaged); the card's training metadata is the first
    member's, with every member's command and validation figures. ``elements`` (atomic numbers)
    replaces the training metadata's element list, e.g. with those of a pretraining run as well
    (the calculator warns outside it). Returns both paths."""
    paths = [checkpoint] if isinstance(checkpoint, (str, os.PathLike)) else list(checkpoint)
    payloads = [read_checkpoint(path) for path in paths]
    values = dict(payloads[0]["config"])
    if adp_floor is not None:
        values["adp_floor"] = float(adp_floor)
    for path, payload in zip(paths[1:], payloads[1:], strict=True):
        other = {**payload["config"], "adp_floor": values["adp_floor"]}
        if other != values:
            raise ValueError(f"{path} has another architecture than {paths[0]}; cannot ensemble")
    config = CartNetConfig.from_dict(values)
    if len(payloads) == 1:
        model: CartNet | CartNetEnsemble = CartNet(config)
        model.load_state_dict(payloads[0]["model_state"])
        name, saved_config = "cartnet", config.to_dict()
    else:
        model = CartNetEnsemble(config, len(payloads))
        for member, payload in zip(model.members, payloads, strict=True):
            member.load_state_dict(payload["model_state"])
        name, saved_config = ENSEMBLE_KIND, {**config.to_dict(), "ensemble_size": len(payloads)}
    metadata = {
        k: v for k, v in dict(payloads[0].get("metadata", {})).items() if k in KEEP_METADATA
    }
    if elements is not None:
        metadata["elements"] = sorted(int(z) for z in elements)
    if len(payloads) > 1:
        metadata["members"] = [
            {k: p.get("metadata", {}).get(k) for k in ("command", "validation", "epoch")}
            for p in payloads
        ]
    weights = save_checkpoint(
        weights_out, model.float(), model_name=name, config=saved_config, metadata=metadata
    )
    card_path = write_model_card(
        weights,
        {
            **card,
            "architecture": saved_config,
            "n_parameters": sum(p.numel() for p in model.parameters()),
            "training": metadata,
        },
    )
    return weights, card_path
