"""DeepRelax inference in blocks of displacement edges equals the all-at-once form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk

from ase_cartnet.graph.deeprelax import deeprelax_graph
from ase_cartnet.graph.neighbours import batch_graphs
from ase_cartnet.models import deeprelax
from ase_cartnet.models.deeprelax import DeepRelaxConfig, DeepRelaxModel

TINY = DeepRelaxConfig(hidden=16, num_layers=2, num_rbf=8, pcoe_dim=8, max_neighbours=12)


def random_model() -> DeepRelaxModel:
    torch.manual_seed(3)
    model = DeepRelaxModel(TINY).double()
    with torch.no_grad():  # the heads start at zero: give every weight a non-trivial value
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("chunk", [1, 5, 64, 10**6])
def test_blocked_displacement_heads_equal_the_full_pass(chunk, monkeypatch):
    structures = []
    for seed, reps in ((0, (2, 1, 1)), (1, (1, 2, 2))):
        atoms = bulk("NaCl", "rocksalt", a=5.6) * reps
        atoms.rattle(0.1, seed=seed)
        structures.append(atoms)
    batch = batch_graphs([deeprelax_graph(a, TINY, dtype=torch.float64) for a in structures])
    model = random_model()
    with torch.enable_grad():  # autograd on: one pass over every displacement edge
        full = model(batch)
    monkeypatch.setattr(deeprelax, "PAIR_CHUNK", chunk)
    with torch.no_grad():
        blocked = model(batch)
    assert blocked.disp_distance.shape == (4**2 + 8**2,)
    for name in ("distance", "log_scale", "disp_distance", "disp_log_scale", "lattice"):
        np.testing.assert_allclose(
            getattr(blocked, name).numpy(),
            getattr(full, name).detach().numpy(),
            rtol=0,
            atol=1e-12,
            err_msg=name,
        )
