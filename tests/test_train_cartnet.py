"""The shared training loop on CartNet/ADPs: a tiny end-to-end run, resume after a kill, and
loading the result through the calculator."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.db import connect

from ase_cartnet.calculators.cartnet_adp import CartNetADP
from ase_cartnet.train.adp_data import structures_from_db, temperature_statistics
from ase_cartnet.train.cartnet import train_cartnet
from ase_cartnet.train.cartnet_task import CartNetADPTask
from ase_cartnet.train.loop import TrainConfig, random_split

TEMPERATURES = np.array([50.0, 150.0, 300.0])
ARCH = dict(dim=16, dim_rbf=8, num_layers=1)


def synthetic_db(path, n=8, seed=0):
    """Rows in the phonon_ref.build_dataset format with anisotropic U that grow with T."""
    rng = np.random.default_rng(seed)
    with connect(path) as db:
        for k in range(n):
            a = rng.uniform(3.5, 4.2)
            atoms = bulk("NaCl", "rocksalt", a=a * 1.4) if k % 2 else bulk("Cu", "fcc", a=a)
            atoms = atoms * (1, 1, 2)
            atoms.rattle(0.02, seed=k)
            base = np.diag([1.0, 1.2, 0.8]) * 1e-4 * (1 + 0.2 * atoms.numbers[:, None, None] / 29)
            adps = TEMPERATURES[:, None, None, None] * base[None]
            db.write(
                atoms,
                key_value_pairs={"source_id": f"s{k}", "status": "ok"},
                data={"temperatures": TEMPERATURES, "adps": adps},
            )
        db.write(bulk("Cu"), key_value_pairs={"source_id": "bad", "status": "unstable"}, data={})
    return path


def test_db_loading_split_and_statistics(tmp_path):
    structures = structures_from_db(synthetic_db(tmp_path / "d.db"))
    assert len(structures) == 8  # the unstable row is not a sample
    train, val = random_split(structures, 0.25, seed=0)
    assert len(val) == 2 and not {s.key for s in train} & {s.key for s in val}
    mean, std = temperature_statistics(train)
    assert mean == pytest.approx(TEMPERATURES.mean()) and std == pytest.approx(TEMPERATURES.std())


def test_augmentation_rotates_geometry_and_targets_consistently(tmp_path):
    """A rotated batch has edge vectors R·v and targets R U Rᵀ (eqns 19–20)."""
    from ase_cartnet.graph.neighbours import edge_vectors

    structures = structures_from_db(synthetic_db(tmp_path / "d.db", n=2))
    task = CartNetADPTask(structures, structures, cutoff=5.0, batch_size=4, dtype=torch.float64)
    from ase_cartnet.train.cartnet_task import _Sample

    samples = [_Sample(0, 1), _Sample(1, 2)]
    plain = task.collate(structures, task.train_graphs, samples)
    rotated = task.collate(structures, task.train_graphs, samples, torch.Generator().manual_seed(3))
    from ase_cartnet.models.so3 import random_rotations

    r = random_rotations(2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    v0 = edge_vectors(plain.pos, plain.cell, plain.edge_index, plain.cell_shift, plain.batch)
    v1 = edge_vectors(
        rotated.pos, rotated.cell, rotated.edge_index, rotated.cell_shift, rotated.batch
    )
    r_edge = r[plain.batch[plain.edge_index[1]]]
    torch.testing.assert_close(v1, torch.einsum("eij,ej->ei", r_edge, v0))
    r_atom = r[plain.batch]
    torch.testing.assert_close(rotated.target, r_atom @ plain.target @ r_atom.transpose(1, 2))


def test_relative_l1_divides_each_samples_error_by_its_mean_u_eq(tmp_path):
    """loss="relative_l1" = mean over labelled atoms and elements of |ΔU| / ⟨U_eq⟩(sample)."""
    from ase_cartnet.models.cartnet import CartNet, CartNetConfig
    from ase_cartnet.train.cartnet_task import _Sample

    structures = structures_from_db(synthetic_db(tmp_path / "d.db", n=2))
    samples = [_Sample(0, 0), _Sample(1, 2)]  # 50 K and 300 K: scales differ by 6x
    plain = CartNetADPTask(structures, [], cutoff=5.0, dtype=torch.float64)
    relative = CartNetADPTask(structures, [], cutoff=5.0, dtype=torch.float64, loss="relative_l1")
    torch.manual_seed(0)
    model = CartNet(CartNetConfig(**ARCH, temperature_mean=150.0, temperature_std=100.0)).double()
    model.eval()
    batch = plain.collate(structures, plain.train_graphs, samples)
    with torch.no_grad():
        error = (model(batch, output_mask=batch.label_mask) - batch.target).abs()
        l1, rel = plain.loss(model, batch), relative.loss(model, batch)
    scales = [
        np.trace(structures[s.structure].adps[s.temperature], axis1=1, axis2=2).mean() / 3
        for s in samples
    ]
    sizes = [len(structures[s.structure].atoms) for s in samples]
    per_atom_scale = torch.tensor(np.repeat(scales, sizes))
    torch.testing.assert_close(l1, error.mean())
    torch.testing.assert_close(rel, (error / per_atom_scale[:, None, None]).mean())
    with pytest.raises(ValueError, match="unknown loss"):
        CartNetADPTask(structures, [], cutoff=5.0, loss="l2")


def _run(db, out, epochs=4, **kwargs):
    structures = structures_from_db(db)
    config = TrainConfig(epochs=epochs, lr=1e-2, seed=1)
    return train_cartnet(
        structures,
        out,
        architecture=ARCH,
        train_config=config,
        val_fraction=0.25,
        batch_size=4,
        progress=False,
        **kwargs,
    )


def test_tiny_training_run_learns_and_loads_in_the_calculator(tmp_path):
    db = synthetic_db(tmp_path / "d.db")
    summary = _run(db, tmp_path / "run", epochs=8)
    history = summary["history"]
    assert len(history) == 8
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    for name in ("best.pt", "last.pt", "history.json"):
        assert (tmp_path / "run" / name).is_file()
    stored = json.loads((tmp_path / "run" / "history.json").read_text())
    assert stored["best"]["epoch"] == summary["best"]["epoch"]
    atoms = bulk("Cu", "fcc", a=3.8) * (1, 1, 2)
    calc = CartNetADP(checkpoint=tmp_path / "run" / "best.pt", temperature=150.0)
    u = calc.get_property("adps", atoms)
    assert (np.linalg.eigvalsh(u) > 0).all()
    assert calc.model.config.temperature_mean == pytest.approx(TEMPERATURES.mean())


def test_resume_after_a_kill_repeats_the_uninterrupted_run(tmp_path, monkeypatch):
    db = synthetic_db(tmp_path / "d.db")
    reference = _run(db, tmp_path / "full")
    original = CartNetADPTask.train_batches

    def killed_at_epoch_2(self, epoch, generator):
        if epoch == 2:
            raise KeyboardInterrupt("simulated kill")
        return original(self, epoch, generator)

    monkeypatch.setattr(CartNetADPTask, "train_batches", killed_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        _run(db, tmp_path / "resumed")
    monkeypatch.setattr(CartNetADPTask, "train_batches", original)
    resumed = _run(db, tmp_path / "resumed")
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3, 4]
    for a, b in zip(reference["history"], resumed["history"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
        assert a["val_mae"] == pytest.approx(b["val_mae"], rel=1e-6)
    w_ref = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["model_state"]
    w_res = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)["model_state"]
    for key in w_ref:
        torch.testing.assert_close(w_ref[key], w_res[key], rtol=1e-6, atol=1e-7)


def test_cli_train_from_cif_folder(tmp_path):
    """--cif-dir trains on experimental ADPs read through the CIF module."""
    from ase_cartnet.cli import main
    from ase_cartnet.data import L_ALANINE_CIF
    from ase_cartnet.io.cif import read_cif, write_cif

    folder = tmp_path / "cifs"
    atoms = read_cif(L_ALANINE_CIF)
    for k, scale in enumerate((1.0, 1.1, 0.9, 1.2)):
        variant = atoms.copy()
        variant.info["temperature"] = 100.0 * scale
        write_cif(folder / f"alanine_{k}.cif", variant, atoms.arrays["adps"] * scale)
    code = main(
        [
            "train",
            "cartnet",
            "--cif-dir",
            str(folder),
            "--out",
            str(tmp_path / "run"),
            "--epochs",
            "2",
            "--dim",
            "16",
            "--rbf",
            "8",
            "--layers",
            "1",
            "--batch-size",
            "2",
            "--val-fraction",
            "0.25",
            "--threads",
            "1",
        ]
    )
    assert code == 0 and (tmp_path / "run" / "best.pt").is_file()


# -- the harmonic head: joint (structure, all temperatures) samples -----------------------------

HARMONIC_ARCH = dict(ARCH, head="harmonic", use_temperature=False, harmonic_bins=8)


def test_joint_samples_carry_every_temperature_and_rotate_with_their_structure(tmp_path):
    from ase_cartnet.train.cartnet_task import _Sample

    structures = structures_from_db(synthetic_db(tmp_path / "d.db", n=2))
    structures[1].temperatures = structures[1].temperatures[:2]  # a shorter list gets padded
    structures[1].adps = structures[1].adps[:2]
    task = CartNetADPTask(structures, [], cutoff=5.0, dtype=torch.float64, joint_temperatures=True)
    samples = [_Sample(0, None), _Sample(1, None)]
    plain = task.collate(structures, task.train_graphs, samples)
    n0 = len(structures[0].atoms)
    assert plain.temperature.shape == (2, 3)
    torch.testing.assert_close(plain.temperature[1], torch.tensor([50.0, 150.0, 150.0]).double())
    assert plain.target.shape == (plain.num_nodes, 3, 3, 3)
    assert plain.temperature_mask[:n0].all() and not plain.temperature_mask[n0:, 2].any()
    rotated = task.collate(structures, task.train_graphs, samples, torch.Generator().manual_seed(3))
    from ase_cartnet.models.so3 import random_rotations

    r = random_rotations(2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    r_atom = r[plain.batch][:, None]
    torch.testing.assert_close(rotated.target, r_atom @ plain.target @ r_atom.transpose(-1, -2))


def test_joint_loss_equals_the_per_temperature_loss_on_the_same_samples(tmp_path):
    from ase_cartnet.models.cartnet import CartNet, CartNetConfig
    from ase_cartnet.train.cartnet_task import _Sample

    structures = structures_from_db(synthetic_db(tmp_path / "d.db", n=2))
    joint = CartNetADPTask(structures, [], cutoff=5.0, dtype=torch.float64, joint_temperatures=True)
    single = CartNetADPTask(structures, [], cutoff=5.0, dtype=torch.float64)
    torch.manual_seed(0)
    model = CartNet(CartNetConfig(**HARMONIC_ARCH)).double().eval()
    with torch.no_grad():
        l_joint = joint.loss(
            model, joint.collate(structures, joint.train_graphs, [_Sample(0, None)])
        )
        per_t = [
            single.loss(model, single.collate(structures, single.train_graphs, [_Sample(0, k)]))
            for k in range(3)
        ]
        p_joint, t_joint, temps = joint.predict(model, structures, joint.train_graphs)
        p_single, t_single, _ = single.predict(model, structures, single.train_graphs)
    torch.testing.assert_close(l_joint, torch.stack(per_t).mean())
    assert len(p_joint) == len(p_single) == sum(3 * len(s.atoms) for s in structures)
    # the same (atom, T) rows, in another order: atom-major instead of temperature-major
    for joint_rows, single_rows in ((p_joint, p_single), (t_joint, t_single)):
        np.testing.assert_allclose(
            np.sort(joint_rows.reshape(len(joint_rows), -1), axis=0),
            np.sort(single_rows.reshape(len(single_rows), -1), axis=0),
            rtol=1e-12,
        )
    assert sorted(temps) == sorted(np.repeat([50.0, 150.0, 300.0], len(temps) // 3))


def test_tiny_harmonic_training_run_learns_and_sweeps_temperatures(tmp_path):
    db = synthetic_db(tmp_path / "d.db")
    structures = structures_from_db(db)
    summary = train_cartnet(
        structures,
        tmp_path / "run",
        architecture=HARMONIC_ARCH,
        train_config=TrainConfig(epochs=8, lr=1e-2, seed=1),
        val_fraction=0.25,
        batch_size=2,
        progress=False,
    )
    history = summary["history"]
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    calc = CartNetADP(checkpoint=tmp_path / "run" / "best.pt")
    assert calc.model.config.head == "harmonic"
    atoms = bulk("Cu", "fcc", a=3.8) * (1, 1, 2)
    cold, hot = calc.predict_many([atoms, atoms], temperatures=[50.0, 300.0])
    assert (np.linalg.eigvalsh(hot - cold) > 0).all()
