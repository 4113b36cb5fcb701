"""CrysToGraphProperty: the ASE calculator, batch prediction, the ``property`` CLI, checkpoints of
both property models, shipped defaults, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from ase_cartnet.calculators.crystograph_property import load_property_model
from ase_cartnet.errors import CheckpointError, InputError
from ase_cartnet.io.checkpoint import save_checkpoint
from ase_cartnet.models.crystograph import CrysToGraph, CrysToGraphConfig
from ase_cartnet.models.standardised import standardised_cartnet
from ase_cartnet.train.model_card import export_property_model
from ase_cartnet.weights import DEFAULT_PROPERTY as DEFAULT_WEIGHTS

torch.set_num_threads(1)

SMALL = {"dim": 16, "num_heads": 2, "head_dim": 8, "ffn_factor": 1, "lap_mode": "projector"}
SMALL |= {"line_dim": 8, "line_head_dim": 4, "lap_dim": 3, "rw_dim": 4}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    config = CrysToGraphConfig(
        **SMALL,
        target="formation_energy_per_atom",
        units="eV/atom",
        target_mean=-1.0,
        target_std=0.5,
    )
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    return save_checkpoint(
        path,
        CrysToGraph(config),
        model_name="crystograph",
        config=config.to_dict(),
        metadata={"elements": [11, 17, 29]},
    )


def structures():
    nacl = bulk("NaCl", "rocksalt", a=5.64)
    cu = bulk("Cu", "fcc", a=3.6)
    return [nacl, cu, nacl * (1, 1, 2)]


def test_calculator_names_its_target_and_matches_predict_many(checkpoint):
    from ase_cartnet import CrysToGraphProperty

    calc = CrysToGraphProperty(checkpoint=checkpoint)
    assert calc.target == "formation_energy_per_atom" and calc.units == "eV/atom"
    atoms = structures()[0]
    atoms.calc = calc
    value = atoms.calc.get_property("formation_energy_per_atom", atoms)
    assert value == calc.get_property("property", atoms)
    many = calc.predict_many(structures(), batch_size=2)
    assert many.shape == (3,)
    assert many[0] == pytest.approx(value, abs=1e-6)
    # a cell change triggers a new calculation
    atoms.set_cell(atoms.cell[:] * 1.05, scale_atoms=True)
    assert atoms.calc.get_property("property", atoms) != pytest.approx(value, abs=1e-9)


def test_calculator_refuses_bad_input(checkpoint):
    from ase_cartnet import CrysToGraphProperty

    calc = CrysToGraphProperty(checkpoint=checkpoint)
    with pytest.raises(InputError, match="periodic along a, b and c"):
        calc.predict_many([Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]])])
    overlapping = bulk("Cu", "fcc", a=3.6) * (2, 1, 1)
    overlapping.positions[1] = overlapping.positions[0] + 0.1
    with pytest.raises(InputError, match="overlap"):
        calc.predict_many([overlapping])
    with pytest.raises(InputError, match="batch_size"):
        calc.predict_many(structures(), batch_size=0)
    with pytest.raises(InputError, match="not 'heat_ref'"):
        CrysToGraphProperty(checkpoint=checkpoint, target="heat_ref")
    with pytest.raises(InputError, match="no shipped property model"):
        CrysToGraphProperty(target="band_gap")
    with pytest.warns(UserWarning, match="Fe were not in the training data"):
        calc.predict_many([bulk("Fe", "bcc", a=2.87)])


def test_other_checkpoints_are_refused(tmp_path):
    from ase_cartnet.models.cartnet import CartNet, CartNetConfig

    path = save_checkpoint(
        tmp_path / "adp.pt", CartNet(CartNetConfig(dim=8)), model_name="cartnet", config={}
    )
    with pytest.raises(CheckpointError, match="not a property model"):
        load_property_model(path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_property_model(tmp_path / "junk.pt")


def test_cartnet_scalar_checkpoint_goes_through_the_same_calculator(tmp_path):
    from ase_cartnet import CrysToGraphProperty

    cartnet = {"dim": 8, "dim_rbf": 8, "num_layers": 1, "head": "scalar", "use_temperature": False}
    torch.manual_seed(1)
    model = standardised_cartnet(cartnet, 2.0, 0.1)
    config = {
        "cartnet": model.model.config.to_dict(),
        "target_mean": 2.0,
        "target_std": 0.1,
        "target": "heat_ref",
        "units": "eV",
    }
    path = save_checkpoint(tmp_path / "c.pt", model, model_name="cartnet_scalar", config=config)
    calc = CrysToGraphProperty(checkpoint=path)
    assert calc.target == "heat_ref"
    values = calc.predict_many(structures())
    # CartNet's radius graph and mean readout are the same for a supercell
    assert values[2] == pytest.approx(values[0], abs=1e-5)
    # graphs are built in the cell frame, so a rotated crystal gives the same value
    from scipy.spatial.transform import Rotation

    r = Rotation.random(random_state=0).as_matrix()
    turned = structures()[0]
    turned.set_cell(turned.cell[:] @ r.T, scale_atoms=True)
    assert calc.predict_many([turned])[0] == pytest.approx(values[0], abs=1e-5)


def test_export_writes_weights_and_card(checkpoint, tmp_path):
    weights, card = export_property_model(checkpoint, tmp_path / "w.pt", {"licence": "MIT"})
    data = json.loads(card.read_text())
    assert data["target"] == "formation_energy_per_atom" and data["licence"] == "MIT"
    from ase_cartnet.io.checkpoint import sha256_of

    assert data["sha256"] == sha256_of(weights)
    a = load_property_model(checkpoint).model(_batch())
    b = load_property_model(weights).model(_batch())
    torch.testing.assert_close(a, b)


def _batch():
    from ase_cartnet.graph.crystograph import crystograph_graph
    from ase_cartnet.graph.neighbours import batch_graphs

    return batch_graphs(
        [crystograph_graph(a, lap_dim=3, rw_dim=4, lap_mode="projector") for a in structures()]
    )


def test_property_cli(checkpoint, tmp_path, capsys):
    from ase.io import write

    from ase_cartnet.cli import main

    path = tmp_path / "nacl.cif"
    write(path, bulk("NaCl", "rocksalt", a=5.64))
    assert main(["property", str(path), "--checkpoint", str(checkpoint), "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "formation_energy_per_atom (eV/atom)" in out and "ClNa" in out
    assert main(["property", str(tmp_path / "missing.cif"), "--checkpoint", str(checkpoint)]) == 2


@pytest.mark.skipif(
    not all(p.is_file() for p in DEFAULT_WEIGHTS.values()), reason="weights not shipped yet"
)
def test_shipped_defaults_load_offline_and_match_their_cards():
    from ase_cartnet import CrysToGraphProperty
    from ase_cartnet.io.checkpoint import sha256_of

    for target, path in DEFAULT_WEIGHTS.items():
        card = json.loads(path.with_suffix(".json").read_text())
        assert card["sha256"] == sha256_of(path) and card["target"] == target
        assert path.stat().st_size < 20e6
        calc = CrysToGraphProperty(target=target)
        value = calc.predict_many([bulk("NaCl", "rocksalt", a=5.64)])[0]
        assert np.isfinite(value)
