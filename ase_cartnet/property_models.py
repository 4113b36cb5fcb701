"""Structure → scalar property models behind :class:`~ase_cartnet.CrysToGraphProperty`: loading
(CrysToGraph, or CartNet with its scalar head), featurising, the shipped defaults and their
export with a model card.

Checkpoints are ase-cartnet checkpoints (``weights_only=True``) with ``model`` either
``"crystograph"`` (config: :class:`CrysToGraphConfig`) or ``"cartnet_scalar"`` (config:
``{"cartnet": CartNetConfig dict, "target_mean", "target_std", "target", "units"}``; the state
is that of ``Standardised(CartNet)``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ase_cartnet.errors import CheckpointError, InputError
from ase_cartnet.graph.property import cartnet_property_graph
from ase_cartnet.io.checkpoint import (
    FORMAT_TAG,
    load_state_strict,
    read_checkpoint,
    save_checkpoint,
)
from ase_cartnet.weights import WEIGHTS_DIR

DEFAULT_WEIGHTS = {
    "formation_energy_per_atom": WEIGHTS_DIR / "property_mp20_formation_energy.pt",
    "heat_ref": WEIGHTS_DIR / "property_perov5_heat_ref.pt",
}
"""Shipped weights per target (each with a ``.json`` model card beside it)."""

DEFAULT_TARGET = "formation_energy_per_atom"


@dataclass
class PropertyModel:
    """A loaded property model: ``model(batch)`` → (B,) in ``units``; ``featurise(atoms)`` builds
    the graph it reads."""

    model: nn.Module
    featurise: Callable[..., Any]
    kind: str
    target: str
    units: str
    metadata: dict[str, Any]


def default_property_checkpoint(target: str = DEFAULT_TARGET) -> Path:
    """The shipped weights for ``target``; a clear error for other targets or missing files."""
    if target not in DEFAULT_WEIGHTS:
        raise InputError(
            f"no shipped property model for target {target!r}; shipped: {sorted(DEFAULT_WEIGHTS)}"
            " (pass checkpoint=... for another model)"
        )
    path = DEFAULT_WEIGHTS[target]
    if not path.is_file():
        raise CheckpointError(
            f"the shipped {target} weights are missing ({path}); pass checkpoint=..."
        )
    return path


def standardised_cartnet(cartnet_config: dict, mean: float, std: float) -> nn.Module:
    """CartNet with its scalar head (ESI S4), reporting mean + std × output."""
    from ase_cartnet.models.cartnet import CartNet, CartNetConfig
    from ase_cartnet.train.property_task import Standardised

    config = CartNetConfig.from_dict(dict(cartnet_config))
    if config.head != "scalar" or config.use_temperature:
        raise CheckpointError("a CartNet property model needs head='scalar', no temperature")
    return Standardised(CartNet(config), mean, std)


def load_property_model(
    path: str | os.PathLike, *, dtype: torch.dtype = torch.float32
) -> PropertyModel:
    """Load a property checkpoint (CrysToGraph or CartNet scalar head) in eval mode."""
    from ase_cartnet.graph.crystograph import crystograph_graph
    from ase_cartnet.models.crystograph import CrysToGraph, CrysToGraphConfig

    payload = read_checkpoint(path)
    kind = payload.get("model")
    if payload.get("format") != FORMAT_TAG or kind not in ("crystograph", "cartnet_scalar"):
        raise CheckpointError(
            f"checkpoint {path} holds a {kind!r} model, not a property model "
            "(CrysToGraph or CartNet with the scalar head)"
        )
    config = dict(payload.get("config", {}))
    try:
        if kind == "crystograph":
            c = CrysToGraphConfig.from_dict(config)
            model: nn.Module = CrysToGraph(c)
            target, units = c.target, c.units

            def featurise(atoms, c=c):
                return crystograph_graph(
                    atoms,
                    k=c.k,
                    lap_dim=c.lap_dim,
                    rw_dim=c.rw_dim,
                    lap_mode=c.lap_mode,
                    dtype=dtype,
                )

        else:
            model = standardised_cartnet(
                config["cartnet"], config["target_mean"], config["target_std"]
            )
            target, units = config["target"], config.get("units", "")
            cutoff = float(config["cartnet"]["cutoff"])

            def featurise(atoms, cutoff=cutoff):
                return cartnet_property_graph(atoms, cutoff, dtype)

    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path}: invalid {kind} config ({exc})") from exc
    load_state_strict(model, payload["model_state"], str(path))
    model.to(dtype=dtype).eval()
    return PropertyModel(model, featurise, kind, target, units, dict(payload.get("metadata", {})))


def export_property_model(
    checkpoint: str | os.PathLike, weights_out: str | os.PathLike, card: dict[str, Any]
) -> tuple[Path, Path]:
    """Weights of a training checkpoint (no optimizer state, float32) to ``weights_out`` plus a
    model card (same stem, ``.json``) with ``card``'s fields, the architecture, the training
    metadata, the parameter count, size and sha256."""
    from ase_cartnet.train.model_card import write_model_card

    loaded = load_property_model(checkpoint)
    payload = read_checkpoint(checkpoint)
    metadata = dict(payload.get("metadata", {}))
    weights = save_checkpoint(
        weights_out,
        loaded.model.float(),
        model_name=loaded.kind,
        config=dict(payload["config"]),
        metadata=metadata,
    )
    full_card = {
        **card,
        "model": loaded.kind,
        "target": loaded.target,
        "units": loaded.units,
        "architecture": dict(payload["config"]),
        "n_parameters": sum(p.numel() for p in loaded.model.parameters()),
        "training": metadata,
    }
    card_path = write_model_card(weights, full_card)
    return weights, card_path
