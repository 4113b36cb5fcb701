"""``ase-cartnet train average``: one checkpoint whose weights are the mean of several runs.

Runs fine-tuned from one starting point on the same data with different seeds usually lie in
one basin of the loss, so the mean of their weights (a "model soup", Wortsman et al., ICML
2022) predicts about as well as the mean of their predictions, at the cost of one model.
Floating-point tensors (weights and BatchNorm running statistics) are averaged in float64 and
stored in their own dtype; integer buffers (BatchNorm's batch counters) are taken from the
first run. Whether the mean beats its runs is for validation to say: the command does not
evaluate it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ase_cartnet.errors import InputError
from ase_cartnet.io.atomic import atomic_path, check_output, ensure_not_input
from ase_cartnet.io.checkpoint import read_checkpoint


def average_checkpoints(
    paths: list[str | os.PathLike], out: str | os.PathLike, command: str | None = None
) -> Path:
    """Write the weight mean of the ase-cartnet checkpoints ``paths`` (one model kind, one
    config, ≥ 2 runs) to ``out``; its metadata is the first run's (data, split) less its per-run
    figures, with ``averaged_from`` (each run's path, command, training settings, best epoch and
    its validation figures) and ``command``. Returns ``out``."""
    if len(paths) < 2:
        raise InputError(f"averaging needs at least two checkpoints, got {len(paths)}")
    out = check_output(ensure_not_input(out, *paths), "averaged checkpoint")
    payloads = [read_checkpoint(p) for p in paths]
    first = payloads[0]
    for path, payload in zip(paths[1:], payloads[1:], strict=True):
        _check_compatible(first, paths[0], payload, path)
    state: dict[str, torch.Tensor] = {}
    for key, tensor in first["model_state"].items():
        if tensor.is_floating_point():
            total = sum(p["model_state"][key].double() for p in payloads)
            state[key] = (total / len(payloads)).to(tensor.dtype)
        else:
            state[key] = tensor.clone()
    metadata: dict[str, Any] = dict(first.get("metadata", {}))
    for per_run in ("validation", "epoch", "train_config"):  # the first run's, not the mean's
        metadata.pop(per_run, None)
    metadata["averaged_from"] = [
        {
            "checkpoint": str(path),
            **{
                key: payload.get("metadata", {}).get(key)
                for key in ("command", "train_config", "epoch", "validation")
            },
        }
        for path, payload in zip(paths, payloads, strict=True)
    ]
    metadata["command"] = command
    averaged = {
        "format": first.get("format"),
        "model": first.get("model"),
        "config": dict(first.get("config", {})),
        "metadata": metadata,
        "model_state": state,
    }
    with atomic_path(out) as tmp:
        torch.save(averaged, tmp)
    return out


def _check_compatible(first: dict, first_path, payload: dict, path) -> None:
    """Raise ``InputError`` unless ``payload`` has ``first``'s model kind, config and tensors."""
    if payload.get("model") != first.get("model"):
        raise InputError(
            f"{path} holds a {payload.get('model')!r} model, {first_path} a {first.get('model')!r}"
        )
    config, reference = payload.get("config", {}), first.get("config", {})
    differing = sorted(k for k in set(config) | set(reference) if config.get(k) != reference.get(k))
    if differing:
        raise InputError(
            f"{path} and {first_path} differ in their config ({', '.join(differing)}); only runs "
            "of one architecture and data can be averaged"
        )
    state, reference_state = payload["model_state"], first["model_state"]
    if set(state) != set(reference_state) or any(
        state[k].shape != reference_state[k].shape for k in reference_state
    ):
        raise InputError(f"{path} and {first_path} hold different tensors")
