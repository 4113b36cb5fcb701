"""Checkpoints: the one place that reads or writes model weights, and the registry of models.

Two formats are read, always with ``torch.load(..., weights_only=True)`` (a checkpoint can never
run code):

* the **official CartNet format**: a dict with top-level ``"model_state"`` (a state_dict) and
  possibly ``"optimizer_state"`` (ignored). The architecture is inferred from tensor shapes; the
  temperature statistics are the released model's (192.1785 K, 81.2135 K).
* **ase-cartnet checkpoints**: the same ``"model_state"`` plus ``"format": "ase-cartnet"``,
  ``"model"`` (e.g. "cartnet"), ``"config"`` (the model's config dict) and optional ``"metadata"``
  (training statistics, model card fields). Training checkpoints may also hold optimizer and
  scheduler states and the epoch, which loaders of weights ignore.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ase_cartnet.errors import CheckpointError
from ase_cartnet.io.atomic import atomic_path, atomic_write
from ase_cartnet.models.cartnet import CartNet, CartNetConfig, CartNetEnsemble
from ase_cartnet.models.crystograph import CrysToGraph, CrysToGraphConfig
from ase_cartnet.models.deeprelax import DeepRelaxConfig, DeepRelaxEnsemble, DeepRelaxModel
from ase_cartnet.models.empnn import EMPNN, EMPNNConfig, LatticeFF, build_model
from ase_cartnet.models.standardised import StandardisedCartNetConfig, build_standardised_cartnet
from ase_cartnet.weights import shipped, shipped_names

FORMAT_TAG = "ase-cartnet"
ENSEMBLE_KIND = "cartnet_ensemble"
"""``model`` name of a CartNetEnsemble checkpoint; its config adds ``ensemble_size``."""


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint dict safely (``weights_only=True``, CPU). Raises ``CheckpointError``."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint file not found: {p}")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(
            f"cannot read checkpoint {p}: the file is truncated, corrupt or not a torch checkpoint "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refusing checkpoint {p}: it is not a torch zip checkpoint, or it holds objects other "
            "than tensors and plain containers (only weights_only=True loading is allowed)"
        ) from exc
    except Exception as exc:  # the legacy (non-zip) unpickler fails with assorted errors
        raise CheckpointError(
            f"cannot read checkpoint {p}: not a torch checkpoint ({type(exc).__name__})"
        ) from exc
    if not isinstance(payload, dict) or "model_state" not in payload:
        keys = sorted(payload)[:8] if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"checkpoint {p} has no top-level 'model_state' (found {keys}); expected the official "
            "CartNet format or an ase-cartnet checkpoint"
        )
    state = payload["model_state"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {p}: 'model_state' is not a state_dict of tensors")
    return payload


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    *,
    model_name: str,
    config: dict[str, Any],
    metadata: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write an ase-cartnet checkpoint atomically. ``extra`` may hold training state (optimizer,
    scheduler, epoch); everything must be tensors or plain Python containers/numbers/strings."""
    payload: dict[str, Any] = {
        "format": FORMAT_TAG,
        "model": model_name,
        "config": dict(config),
        "metadata": dict(metadata or {}),
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    if extra:
        payload.update(extra)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with a ``CheckpointError`` that lists every missing,
    unexpected and shape-mismatched key instead of torch's traceback."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(state)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or mismatched:
        lines = [f"checkpoint {source} does not match the {type(model).__name__} architecture:"]
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape", mismatched),
        ):
            if keys:
                shown = ", ".join(keys[:12]) + (
                    f", … (+{len(keys) - 12})" if len(keys) > 12 else ""
                )
                lines.append(f"  {label} keys ({len(keys)}): {shown}")
        raise CheckpointError("\n".join(lines))
    model.load_state_dict(state, strict=True)


OFFICIAL_APP_MAX_NEIGHBOURS = 64
"""The official web app caps each atom's incoming edges (fixture README); training used no cap."""


def infer_official_cartnet_config(state: dict[str, torch.Tensor]) -> CartNetConfig:
    """Architecture of an official-format CartNet state_dict, read from tensor shapes.

    dim from ``encoder.encoder_atom.1.weight``, K from ``encoder.rbf.means``, the cutoff from the
    first RBF centre (μ₀ = exp(−r_c)), the layer count from ``layers.L.*`` keys, direction and
    temperature inputs from the edge-encoder width and the temperature projection, the head from
    its output width. The envelope cannot be seen in weights; the released model uses it. Keys that
    are absent fall back to the released defaults, so the strict load reports them by name.
    """
    defaults = CartNetConfig()
    atom = state.get("encoder.encoder_atom.1.weight")
    means = state.get("encoder.rbf.means")
    edge = state.get("encoder.encoder_edge.0.weight")
    head = state.get("head.MLP.2.weight")
    dim = int(atom.shape[0]) if atom is not None else defaults.dim
    dim_rbf = int(means.shape[0]) if means is not None else defaults.dim_rbf
    cutoff = defaults.cutoff
    if means is not None and float(means[0]) > 0:
        cutoff = round(-math.log(float(means[0])), 4)
    layer_ids = {
        int(k.split(".")[1]) for k in state if k.startswith("layers.") and k.split(".")[1].isdigit()
    }
    return CartNetConfig(
        dim=dim,
        dim_rbf=dim_rbf,
        num_layers=(max(layer_ids) + 1) if layer_ids else defaults.num_layers,
        cutoff=cutoff,
        use_direction=edge is None or int(edge.shape[1]) == dim_rbf + 3,
        use_temperature="encoder.temperature_proj_atom.weight" in state,
        use_envelope=True,
        head="scalar" if head is not None and int(head.shape[0]) == 1 else "cholesky",
        max_neighbours=OFFICIAL_APP_MAX_NEIGHBOURS,
    )


MODELS: dict[str, tuple[type, Callable[..., nn.Module]]] = {
    "cartnet": (CartNetConfig, CartNet),
    ENSEMBLE_KIND: (CartNetConfig, CartNetEnsemble),
    "cartnet_scalar": (StandardisedCartNetConfig, build_standardised_cartnet),
    "crystograph": (CrysToGraphConfig, CrysToGraph),
    "deeprelax": (DeepRelaxConfig, DeepRelaxModel),
    "deeprelax_ensemble": (DeepRelaxConfig, DeepRelaxEnsemble),
    "empnn": (EMPNNConfig, build_model),
}
"""Checkpoint ``model`` tag → (config class, builder). An ensemble's config adds
``ensemble_size``, which its builder takes as a second argument."""

ENSEMBLES = (ENSEMBLE_KIND, "deeprelax_ensemble")

FAMILIES: dict[str, tuple[tuple[str, ...], str]] = {
    "cartnet": (("cartnet", ENSEMBLE_KIND), "a CartNet"),
    "deeprelax": (("deeprelax", "deeprelax_ensemble"), "DeepRelax"),
    "empnn": (("empnn",), "an ase-cartnet EMPNN checkpoint"),
    "crystograph": (("crystograph",), "a CrysToGraph"),
    "property": (
        ("crystograph", "cartnet_scalar"),
        "a property model (CrysToGraph or CartNet with the scalar head)",
    ),
}
"""What each adapter loads: family → (accepted tags, how an error names them). Official CartNet
checkpoints carry no tag and are read as ``cartnet``."""


def model_tag(model: nn.Module) -> str:
    """The checkpoint tag (:data:`MODELS`) of a model built by one of the registry's classes."""
    tags = {
        CartNet: "cartnet",
        CartNetEnsemble: ENSEMBLE_KIND,
        CrysToGraph: "crystograph",
        DeepRelaxModel: "deeprelax",
        DeepRelaxEnsemble: "deeprelax_ensemble",
        EMPNN: "empnn",
        LatticeFF: "empnn",
    }
    if type(model) not in tags:
        raise CheckpointError(f"no checkpoint tag for a {type(model).__name__}: pass model_name")
    return tags[type(model)]


@dataclass
class LoadedModel:
    """A model from :func:`load_model`, in eval mode, with what its checkpoint said about it
    and its model card (:func:`read_model_card`; empty without one)."""

    model: nn.Module
    kind: str
    config: Any
    metadata: dict[str, Any]
    path: Path
    card: dict[str, Any] = field(default_factory=dict)


def read_model_card(path: Path) -> dict[str, Any]:
    """The model card of the weights at ``path`` (same stem, ``.json``) when one describes this
    file (its ``weights_file`` is ``path``'s name), its sha256 verified: a ``CheckpointError``
    names the file when the bytes differ from the card's (a corrupted or altered copy). Empty
    when there is no such card."""
    card_path = path.with_suffix(".json")
    if not card_path.is_file():
        return {}
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # some other JSON beside a user's checkpoint, not a model card
    if not isinstance(card, dict) or card.get("weights_file") != path.name:
        return {}
    expected = card.get("sha256")
    if expected is not None:
        actual = sha256_of(path)
        if actual != expected:
            raise CheckpointError(
                f"checkpoint {path} does not match its model card {card_path.name}: sha256 "
                f"{actual} != {expected} (the file is corrupted or was altered; reinstall it)"
            )
    return card


def check_finite(state: dict[str, torch.Tensor], path: Path) -> None:
    """A ``CheckpointError`` naming ``path`` and the first tensor of ``state`` that holds NaN
    or inf (a diverged training run, a corrupted file): such weights predict nothing usable."""
    for key, tensor in state.items():
        if tensor.is_floating_point() or tensor.is_complex():
            finite = torch.isfinite(tensor)
            if not bool(finite.all()):
                bad = int((~finite).sum())
                raise CheckpointError(
                    f"checkpoint {path}: tensor {key!r} holds {bad} non-finite value(s) "
                    f"(NaN or inf) of {tensor.numel()}; refusing to load it"
                )


OFFICIAL_TEMPERATURE_SIGMAS = 3.0
"""The official checkpoints state no temperature range: their training temperatures' mean ± this
many standard deviations (192 ± 244 K, i.e. up to 436 K) stands in for it."""


def trained_temperatures(loaded: LoadedModel) -> tuple[float, float] | None:
    """The temperatures (low, high) K a CartNet checkpoint was trained on: its training
    metadata (``temperature_range``), else its model card (``temperature_range_K``), else, for
    a model that reads T through standardisation (the official checkpoints), the mean ± 3
    standard deviations of its training temperatures, floored at 0 K; None when unknown."""
    for stated in (
        loaded.metadata.get("temperature_range"),
        loaded.card.get("temperature_range_K"),
    ):
        if isinstance(stated, list | tuple) and len(stated) == 2:
            return float(stated[0]), float(stated[1])
    config = loaded.config
    if getattr(config, "use_temperature", False):
        spread = OFFICIAL_TEMPERATURE_SIGMAS * config.temperature_std
        return max(0.0, config.temperature_mean - spread), config.temperature_mean + spread
    return None


def checkpoint_path(source: str | os.PathLike) -> Path:
    """A checkpoint file: ``source`` itself, or the shipped weights of that name
    (:func:`ase_cartnet.weights.shipped`) when no such file exists."""
    path = Path(source)
    if not path.exists() and isinstance(source, str) and source in shipped_names():
        return shipped(source)
    return path


def load_model(
    source: str | os.PathLike,
    family: str | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> LoadedModel:
    """Load a checkpoint file or shipped name (``weights_only=True``, strict state dict, eval).

    ``family`` (:data:`FAMILIES`) restricts the accepted ``model`` tags; None accepts every tag
    of :data:`MODELS`. An untagged checkpoint is read as the official CartNet format when
    ``cartnet`` is accepted. Raises ``CheckpointError`` naming the file for unreadable files,
    a sha256 that differs from the model card beside the file, non-finite weights, other
    models, invalid configs and weights that do not fit the architecture.
    """
    kinds, what = FAMILIES[family] if family else (tuple(MODELS), "a model this version knows")
    path = checkpoint_path(source)
    payload = read_checkpoint(path)
    card = read_model_card(path)
    check_finite(payload["model_state"], path)
    tagged = payload.get("format") == FORMAT_TAG
    kind = payload.get("model") if tagged else "cartnet"
    if kind not in kinds:
        found = f"a {kind!r}" if tagged else "an untagged (official CartNet format)"
        raise CheckpointError(f"checkpoint {path} holds {found} model, not {what}")
    config_class, build = MODELS[kind]
    values = dict(payload.get("config", {}))
    size = None
    try:
        if not tagged:
            config = infer_official_cartnet_config(payload["model_state"])
        else:
            size = int(values.pop("ensemble_size")) if kind in ENSEMBLES else None
            config = config_class.from_dict(values)
        model = build(config) if size is None else build(config, size)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path}: invalid {kind} config ({exc})") from exc
    if tagged:
        metadata = dict(payload.get("metadata", {}))
    else:
        metadata = {
            "source_format": "official CartNet (model_state)",
            "temperature_mean": config.temperature_mean,
            "temperature_std": config.temperature_std,
        }
    load_state_strict(model, payload["model_state"], str(path))
    model.to(device=device, dtype=dtype)
    model.eval()
    return LoadedModel(model, kind, config, metadata, path, card)


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
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


def export_weights(
    weights_out: str | os.PathLike,
    model: nn.Module,
    *,
    kind: str,
    config: dict[str, Any],
    metadata: dict[str, Any],
    card: dict[str, Any],
) -> tuple[Path, Path]:
    """Ship ``model``: float32 weights without training state in an ase-cartnet checkpoint, and
    the model card ``card`` beside them (:func:`write_model_card`). Returns both paths."""
    if kind not in MODELS:
        raise CheckpointError(f"cannot export a {kind!r} model: not in the checkpoint registry")
    weights = save_checkpoint(
        weights_out, model.float(), model_name=kind, config=config, metadata=metadata
    )
    return weights, write_model_card(weights, card)
