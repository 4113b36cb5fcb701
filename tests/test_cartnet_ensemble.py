"""CartNetEnsemble: the mean of its members, exported from several runs and loaded through the
calculator like a single model."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from ase_cartnet.benchmarking.models import ethanol_crystal, small_checkpoint
from ase_cartnet.calculators.cartnet_adp import CartNetADP
from ase_cartnet.io.checkpoint import load_model
from ase_cartnet.models.cartnet import CartNetEnsemble
from ase_cartnet.train.model_card import export_cartnet

HARMONIC = dict(head="harmonic", use_temperature=False, harmonic_bins=6)


@pytest.mark.parametrize("overrides", [{}, HARMONIC], ids=["cholesky", "harmonic"])
def test_exported_ensemble_predicts_the_mean_of_its_members(tmp_path, overrides):
    members = [small_checkpoint(tmp_path, seed=k, **overrides) for k in range(3)]
    weights, card = export_cartnet(members, tmp_path / "ens.pt", {"name": "test"})
    loaded = load_model(weights, "cartnet")
    model, metadata = loaded.model, loaded.metadata
    assert isinstance(model, CartNetEnsemble) and len(model.members) == 3
    assert len(metadata["members"]) == 3 and card.is_file()
    structures = [ethanol_crystal(0), bulk("NaCl", "rocksalt", a=5.6)]
    temps = [120.0, 300.0]
    ensemble = CartNetADP(checkpoint=weights).predict_many(structures, temperatures=temps)
    singles = [
        CartNetADP(checkpoint=m).predict_many(structures, temperatures=temps) for m in members
    ]
    for k, u in enumerate(ensemble):
        mean = np.mean([s[k] for s in singles], axis=0)
        np.testing.assert_allclose(u, mean, rtol=1e-6, atol=1e-12)
        heavy = structures[k].numbers != 1
        assert (np.linalg.eigvalsh(u[heavy]) > 0).all()


def test_members_of_different_architectures_are_refused(tmp_path):
    a = small_checkpoint(tmp_path, seed=0)
    (tmp_path / "other").mkdir()
    b = small_checkpoint(tmp_path / "other", seed=1, num_layers=1)
    with pytest.raises(ValueError, match="another architecture"):
        export_cartnet([a, b], tmp_path / "ens.pt", {"name": "test"})
