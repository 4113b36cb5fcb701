"""A model trained on standardised targets, reporting them in their units; CartNet's scalar head
as a property model (CartNet paper, ESI S4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ase_cartnet.errors import CheckpointError
from ase_cartnet.models.cartnet import CartNet, CartNetConfig
from ase_cartnet.models.config import ConfigDict


class Standardised(nn.Module):
    """``mean + std * model(batch)``: a model trained on (y − mean) / std, reporting y."""

    def __init__(self, model: nn.Module, mean: float, std: float) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, batch) -> torch.Tensor:
        return self.mean + self.std * self.model(batch)


@dataclass
class StandardisedCartNetConfig(ConfigDict):
    """A ``cartnet_scalar`` checkpoint's config: the CartNet config dict (scalar head, no
    temperature), the training targets' mean and std (in ``units``) and the target's name."""

    cartnet: dict[str, Any]
    target_mean: float
    target_std: float
    target: str
    units: str = ""

    def __post_init__(self) -> None:
        self.check_fields(positive=("target_std",))


def standardised_cartnet(cartnet_config: dict, mean: float, std: float) -> nn.Module:
    """CartNet with its scalar head (ESI S4), reporting mean + std × output."""
    config = CartNetConfig.from_dict(dict(cartnet_config))
    if config.head != "scalar" or config.use_temperature:
        raise CheckpointError("a CartNet property model needs head='scalar', no temperature")
    return Standardised(CartNet(config), mean, std)


def build_standardised_cartnet(config: StandardisedCartNetConfig) -> nn.Module:
    """The model of a ``cartnet_scalar`` checkpoint."""
    return standardised_cartnet(config.cartnet, config.target_mean, config.target_std)
