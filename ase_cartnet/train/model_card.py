"""Ship a trained checkpoint: a weights-only ase-cartnet checkpoint plus a JSON model card.

The card states what the model is and is not: training data (sources, counts, teacher and its
version, temperature range, elements), the exact training command, held-out metrics, licence, and
the sha256 of the weights file it describes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ase_cartnet.io.atomic import atomic_write
from ase_cartnet.io.checkpoint import read_checkpoint, save_checkpoint
from ase_cartnet.models.cartnet import CartNet, CartNetConfig

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
    checkpoint: str | os.PathLike,
    weights_out: str | os.PathLike,
    card: dict[str, Any],
    *,
    adp_floor: float | None = None,
) -> tuple[Path, Path]:
    """Write the weights of ``checkpoint`` (no optimizer state; float32) to ``weights_out`` and
    the model card next to it (same stem, ``.json``). ``card`` holds the descriptive fields; the
    architecture, training metadata and sha256 are filled in here. ``adp_floor`` (Å²) replaces
    the config's ε of U = LᵀL + εI (a run trained with ε = 0 can predict needle-like ellipsoids
    that round to a non-positive-definite U). Returns both paths."""
    payload = read_checkpoint(checkpoint)
    values = dict(payload["config"])
    if adp_floor is not None:
        values["adp_floor"] = float(adp_floor)
    config = CartNetConfig.from_dict(values)
    model = CartNet(config)
    model.load_state_dict(payload["model_state"])
    metadata = {k: v for k, v in dict(payload.get("metadata", {})).items() if k in KEEP_METADATA}
    weights = save_checkpoint(
        weights_out, model.float(), model_name="cartnet", config=config.to_dict(), metadata=metadata
    )
    card_path = write_model_card(
        weights,
        {
            **card,
            "architecture": config.to_dict(),
            "n_parameters": sum(p.numel() for p in model.parameters()),
            "training": metadata,
        },
    )
    return weights, card_path
