"""The one training loop of the package: Adam + OneCycle (CartNet ESI S4), resumable checkpoints,
validation every epoch, best-model selection, a progress bar and a fixed seed.

A *task* knows the data and the loss of one model; the loop knows nothing model-specific:

    class Task(Protocol):
        def num_train_batches(self) -> int: ...
        def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator[Any]: ...
        def loss(self, model: nn.Module, batch: Any) -> torch.Tensor: ...
        def validate(self, model: nn.Module) -> dict[str, float]: ...

Every epoch writes ``run_dir/last.pt`` (weights, optimizer, scheduler, epoch, history) and, when
the selection metric improves, ``run_dir/best.pt``; ``history.json`` is rewritten atomically.
Calling :func:`fit` again with the same ``run_dir`` resumes after the last finished epoch; the
shuffling and augmentation of epoch k depend only on (seed, k), so a resumed run repeats the
data order of an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ase_cartnet.errors import InputError
from ase_cartnet.io.atomic import atomic_write
from ase_cartnet.io.checkpoint import model_tag, read_checkpoint, save_checkpoint

Item = TypeVar("Item")


def random_split(
    items: Sequence[Item], val_fraction: float, seed: int, what: str = "structures"
) -> tuple[list[Item], list[Item]]:
    """Random (train, validation) split of ``items`` (structures, pairs: a structure's samples
    stay on one side), fixed by ``seed`` so that resumed runs and ensemble members share it; at
    least one item on each side, both in input order. ``what`` names the items in errors."""
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"val_fraction must be in (0, 1), got {val_fraction}")
    order = np.random.default_rng(seed).permutation(len(items))
    n_val = max(1, int(round(val_fraction * len(items))))
    if n_val >= len(items):
        raise InputError(f"{len(items)} {what} are too few to hold out {n_val}")
    return [items[i] for i in sorted(order[n_val:])], [items[i] for i in sorted(order[:n_val])]


class Task(Protocol):
    def num_train_batches(self) -> int: ...

    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator[Any]: ...

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor: ...

    def validate(self, model: nn.Module) -> dict[str, float]: ...


@dataclass
class TrainConfig:
    """Optimisation settings.

    Attributes
    ----------
    epochs
        passes over the training batches.
    lr
        peak learning rate of the OneCycle schedule (ESI S4: 1e-3).
    pct_start
        fraction of steps spent warming up (ESI S4: 0.01).
    weight_decay
        Adam's L2 penalty.
    grad_clip
        max gradient norm (None: no clipping).
    seed
        fixes initialisation, shuffling and augmentation.
    select_metric
        validation metric used to keep ``best.pt``; minimised unless it is in
        ``MAXIMISED`` (e.g. "iou").
    device
        where the model trains ("cpu", "cuda"); batches are moved there, checkpoints
        are written on the CPU.
    """

    epochs: int = 50
    lr: float = 1e-3
    pct_start: float = 0.01
    weight_decay: float = 0.0
    grad_clip: float | None = None
    seed: int = 0
    select_metric: str = "mae"
    device: str = "cpu"

    MAXIMISED = ("iou",)

    def better(self, new: float, old: float | None) -> bool:
        if old is None or not math.isfinite(old):
            return math.isfinite(new)
        return new > old if self.select_metric in self.MAXIMISED else new < old


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def fit(
    model: nn.Module,
    task: Task,
    config: TrainConfig,
    run_dir: str | Path,
    *,
    model_name: str | None = None,
    model_config: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    resume: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``model`` on ``task``; returns {"history": [...], "best": {...}, "run_dir": ...}.

    Checkpoints are ase-cartnet checkpoints (``ase_cartnet.io.checkpoint``) whose metadata holds
    ``metadata`` plus the epoch's validation metrics; their tag and config are ``model_name``
    and ``model_config``, by default the model's own (:func:`model_tag`, ``model.config``).
    """
    model_name = model_name or model_tag(model)
    model_config = model.config.to_dict() if model_config is None else model_config
    if config.epochs < 1:
        raise InputError(f"epochs must be >= 1, got {config.epochs}")
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    steps_per_epoch = task.num_train_batches()
    if steps_per_epoch < 1:
        raise InputError("the training set gives no batches")
    device = torch.device(config.device)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=config.lr,
        total_steps=config.epochs * steps_per_epoch,
        pct_start=config.pct_start,
    )
    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    start_epoch = 0
    last_path = run / "last.pt"
    if resume and last_path.is_file():
        payload = read_checkpoint(last_path)
        model.load_state_dict(payload["model_state"])
        optimizer.load_state_dict(payload["optimizer_state"])
        scheduler.load_state_dict(payload["scheduler_state"])
        history = json.loads(payload["history_json"])
        best = json.loads(payload["best_json"]) if payload.get("best_json") else None
        start_epoch = int(payload["epoch"]) + 1
        if progress:
            print(f"resuming {run} after epoch {start_epoch} of {config.epochs}")
    else:
        torch.manual_seed(config.seed)

    meta = dict(metadata or {})
    meta["train_config"] = {k: v for k, v in asdict(config).items()}
    for epoch in range(start_epoch, config.epochs):
        model.train()
        generator = _epoch_generator(config.seed, epoch)
        started = time.perf_counter()
        total, count = 0.0, 0
        bar = tqdm(
            task.train_batches(epoch, generator),
            total=steps_per_epoch,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=not progress,
            leave=False,
        )
        for batch in bar:
            if hasattr(batch, "to"):  # PyG batches; tasks with other batches place their own
                batch = batch.to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = task.loss(model, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite training loss at epoch {epoch + 1}")
            loss.backward()
            if config.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            if scheduler.last_epoch < scheduler.total_steps:
                scheduler.step()
            total += float(loss.detach())
            count += 1
            bar.set_postfix(loss=f"{total / count:.4g}")
        model.eval()
        with torch.no_grad():
            metrics = task.validate(model)
        record = {
            "epoch": epoch + 1,
            "train_loss": total / max(count, 1),
            "lr": scheduler.get_last_lr()[0],
            "seconds": time.perf_counter() - started,
            **{f"val_{k}": float(v) for k, v in metrics.items()},
        }
        history.append(record)
        selected = float(metrics.get(config.select_metric, float("nan")))
        improved = config.better(selected, best["value"] if best else None)
        if improved:
            best = {
                "epoch": epoch + 1,
                "metric": config.select_metric,
                "value": selected,
                **metrics,
            }
            save_checkpoint(
                run / "best.pt",
                model,
                model_name=model_name,
                config=model_config,
                metadata={**meta, "validation": metrics, "epoch": epoch + 1},
            )
        save_checkpoint(
            last_path,
            model,
            model_name=model_name,
            config=model_config,
            metadata={**meta, "validation": metrics, "epoch": epoch + 1},
            extra={
                "optimizer_state": optimizer.state_dict(),
                "scheduler_state": scheduler.state_dict(),
                "epoch": epoch,
                "history_json": json.dumps(history),
                "best_json": json.dumps(best) if best else "",
            },
        )
        with atomic_write(run / "history.json") as handle:
            json.dump({"history": history, "best": best}, handle, indent=1)
        if progress:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
            print(
                f"epoch {epoch + 1}/{config.epochs}: loss {record['train_loss']:.4g}, {shown}"
                f"{' *' if improved else ''} ({record['seconds']:.0f} s)"
            )
    return {"history": history, "best": best, "run_dir": str(run)}
