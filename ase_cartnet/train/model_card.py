"""Ship a trained checkpoint: a weights-only ase-cartnet checkpoint plus a JSON model card.

The card states what the model is and is not: training data (sources, counts, teacher and its
version, temperature range, elements), the exact training command, held-out metrics, licence, and
the sha256 of the weights file it describes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ase_cartnet.io.checkpoint import ENSEMBLE_KIND, export_weights, load_model, read_checkpoint
from ase_cartnet.models.cartnet import CartNet, CartNetConfig, CartNetEnsemble
from ase_cartnet.models.empnn import count_parameters

KEEP_METADATA = (
    "data_source",
    "n_train_structures",
    "n_val_structures",
    "n_train_samples",
    "elements",
    "temperature_range",
    "command",
    "averaged_from",
    "validation",
    "epoch",
    "train_config",
    "augment",
    "loss",
    "batch_size",
    "temperatures_per_epoch",
)


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
    return export_weights(
        weights_out,
        model,
        kind=name,
        config=saved_config,
        metadata=metadata,
        card={
            **card,
            "architecture": saved_config,
            "n_parameters": sum(p.numel() for p in model.parameters()),
            "training": metadata,
        },
    )


def export_property_model(
    checkpoint: str | os.PathLike, weights_out: str | os.PathLike, card: dict[str, Any]
) -> tuple[Path, Path]:
    """Weights of a property checkpoint (CrysToGraph or CartNet's scalar head; no optimizer
    state, float32) to ``weights_out`` plus a model card (same stem, ``.json``) with ``card``'s
    fields, the architecture, the training metadata, the parameter count, size and sha256."""
    loaded = load_model(checkpoint, "property")
    config = loaded.config.to_dict()
    full_card = {
        **card,
        "model": loaded.kind,
        "target": loaded.config.target,
        "units": loaded.config.units,
        "architecture": config,
        "n_parameters": sum(p.numel() for p in loaded.model.parameters()),
        "training": loaded.metadata,
    }
    return export_weights(
        weights_out,
        loaded.model,
        kind=loaded.kind,
        config=config,
        metadata=loaded.metadata,
        card=full_card,
    )


EMPNN_KEEP = (
    "data_source",
    "n_train_structures",
    "n_val_structures",
    "elements",
    "max_atoms",
    "sigma",
    "symmetric_noise",
    "loss",
    "batch_size",
    "command",
    "validation",
    "epoch",
    "train_config",
    "n_parameters",
)


def export_empnn(
    checkpoint: str | os.PathLike, weights_out: str | os.PathLike, card: dict[str, Any]
) -> tuple[Path, Path]:
    """Write ``checkpoint``'s weights (float32, no optimizer state) and the card beside them."""
    loaded = load_model(checkpoint, "empnn")
    model = loaded.model
    metadata = {k: v for k, v in loaded.metadata.items() if k in EMPNN_KEEP}
    full = {
        **card,
        "command": metadata.get("command", ""),
        "sigma": metadata.get("sigma"),
        "symmetric_noise": metadata.get("symmetric_noise"),
        "loss": metadata.get("loss"),
        "architecture": model.config.to_dict(),
        "n_parameters": count_parameters(model),
        "training": metadata,
    }
    return export_weights(
        weights_out,
        model,
        kind="empnn",
        config=model.config.to_dict(),
        metadata=metadata,
        card=full,
    )
