"""Small CartNets with random weights (saved as ase-cartnet checkpoints) and a small molecular
crystal, for the tests and benchmarks of the calculators."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.build import molecule

from ase_cartnet.io.checkpoint import save_checkpoint
from ase_cartnet.models.cartnet import CartNet, CartNetConfig

SMALL = dict(dim=32, dim_rbf=16, num_layers=2)


def randomised_model(config: CartNetConfig, seed: int = 0, dtype=torch.float64) -> CartNet:
    """A CartNet with random weights and non-trivial BatchNorm statistics, in eval mode.

    As in the upstream fixture, the direction columns of the edge encoder are scaled ×20 so the
    output visibly depends on edge directions (with default init it barely does).
    """
    torch.manual_seed(seed)
    model = CartNet(config)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.normal_(0.0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0.0, 0.1)
    if config.use_direction:
        model.encoder.encoder_edge[0].weight.data[:, config.dim_rbf :] *= 20
    return model.to(dtype).eval()


def small_checkpoint(directory: Path, seed: int = 0, **config_overrides) -> Path:
    """Save a random small CartNet as an ase-cartnet checkpoint and return its path."""
    config = CartNetConfig(**{**SMALL, **config_overrides})
    model = randomised_model(config, seed=seed, dtype=torch.float32)
    path = Path(directory) / f"cartnet_small_{seed}.pt"
    return save_checkpoint(
        path,
        model,
        model_name="cartnet",
        config=config.to_dict(),
        metadata={"elements": [1, 6, 7, 8, 11, 17, 29]},
    )


def ethanol_crystal(seed: int = 0) -> Atoms:
    """Four ethanol molecules in a small triclinic cell (a molecular crystal with H)."""
    rng = np.random.default_rng(seed)
    cell = Atoms(cell=[6.2, 6.7, 7.2, 80, 95, 100], pbc=True).cell
    atoms = Atoms(cell=cell, pbc=True)
    for shift in ([0.1, 0.1, 0.1], [0.6, 0.1, 0.5], [0.1, 0.6, 0.6], [0.6, 0.6, 0.1]):
        mol = molecule("CH3CH2OH")
        mol.rotate(rng.uniform(0, 360), rng.normal(size=3))
        mol.translate(np.asarray(shift) @ cell[:] - mol.get_center_of_mass())
        atoms += mol
    return atoms
