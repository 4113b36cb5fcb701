"""EMPNNLattice adapter, checkpoint loading, the ``denoise`` CLI and the shipped weights."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from ase_cartnet.calculators.empnn_lattice import EMPNNLattice
from ase_cartnet.errors import CheckpointError, InputError
from ase_cartnet.io.checkpoint import load_model, save_checkpoint
from ase_cartnet.models.empnn import EMPNN, EMPNNConfig

torch.set_num_threads(1)


def tiny_model(seed: int = 0) -> EMPNN:
    torch.manual_seed(seed)
    model = EMPNN(EMPNNConfig(dim=8, num_rbf=8, num_layers=1, num_steps=2)).double()
    with torch.no_grad():
        for head in model.edge_weights:
            head[-1].weight.normal_(std=0.3)
    return model.eval()


def distorted_silicon() -> Atoms:
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.set_cell(
        atoms.cell[:] @ np.array([[1.04, 0.02, 0.0], [0.02, 0.97, 0.01], [0, 0.01, 1.0]]),
        scale_atoms=True,
    )
    return atoms


def test_run_deforms_cell_keeps_fractional_coordinates(tmp_path):
    atoms = distorted_silicon()
    frac = atoms.get_scaled_positions(wrap=False)
    cell = atoms.cell[:].copy()
    log = io.StringIO()
    opt = EMPNNLattice(
        atoms, model=tiny_model(), trajectory=tmp_path / "d.traj", logfile=log, dtype=torch.float64
    )
    assert opt.run() is True
    h = opt.action
    assert h.shape == (3, 3)
    assert np.abs(h - np.eye(3)).max() > 1e-3
    np.testing.assert_allclose(atoms.cell[:], cell @ h.T, atol=1e-10)
    np.testing.assert_allclose(atoms.get_scaled_positions(wrap=False), frac, atol=1e-10)
    lines = log.getvalue().splitlines()
    assert len(lines) == 1 + 3 and lines[1].startswith("EMPNNLattice:")
    from ase.io import read

    frames = read(tmp_path / "d.traj", ":")
    assert len(frames) == 3
    np.testing.assert_allclose(frames[-1].cell[:], atoms.cell[:], atol=1e-10)
    assert len(opt.cells) == 3 and opt.nsteps == 2


def test_steps_are_layers_and_a_second_run_changes_nothing():
    """ASE semantics: ``steps`` bounds the layers applied now; once all are applied the run has
    converged and another ``run()`` leaves the cell alone (before, it re-predicted from the
    denoised cell and deformed it again: 0.17 Å median, 0.59 Å max with the shipped weights)."""
    atoms = distorted_silicon()
    cell = atoms.cell[:].copy()
    opt = EMPNNLattice(atoms, model=tiny_model(), logfile=None, dtype=torch.float64)
    assert opt.run(steps=0) is False
    assert np.array_equal(opt.action, np.eye(3))
    np.testing.assert_array_equal(atoms.cell[:], cell)
    assert opt.run(steps=1) is False
    one = opt.action.copy()
    assert np.abs(one - np.eye(3)).max() > 1e-4
    np.testing.assert_allclose(atoms.cell[:], cell @ one.T, atol=1e-10)
    assert opt.run(steps=5) is True and opt.nsteps == 2  # at most the remaining layer
    denoised = atoms.cell[:].copy()
    full = EMPNNLattice(distorted_silicon(), model=tiny_model(), logfile=None, dtype=torch.float64)
    full.run()
    np.testing.assert_allclose(opt.action, full.action, atol=1e-12)  # 1 + 1 layers = 2 layers
    assert opt.run() is True and opt.run(fmax=0.05, steps=100) is True
    np.testing.assert_array_equal(atoms.cell[:], denoised)
    with pytest.raises(InputError, match="non-negative integer"):
        opt.run(steps=-1)


def test_behaves_like_an_ase_optimizer(tmp_path):
    """Filters, open Trajectory objects, ``attach``, ``irun`` and ``with`` as with BFGS."""
    from ase.filters import FrechetCellFilter
    from ase.io import Trajectory, read

    atoms = distorted_silicon()
    seen = []
    with (
        Trajectory(tmp_path / "t.traj", "w") as traj,
        EMPNNLattice(
            FrechetCellFilter(atoms), model=tiny_model(), trajectory=traj, logfile=None
        ) as opt,
    ):
        opt.attach(lambda: seen.append(opt.nsteps))
        assert list(opt.irun()) == [False, False, True]
    assert seen == [0, 1, 2]
    frames = read(tmp_path / "t.traj", ":")
    assert len(frames) == 3
    np.testing.assert_allclose(frames[-1].cell[:], atoms.cell[:], atol=1e-6)
    assert np.abs(frames[0].cell[:] - atoms.cell[:]).max() > 1e-4


def test_rotated_input_gives_rotated_result():
    atoms = distorted_silicon()
    rotated = atoms.copy()
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
    rotated.set_cell(atoms.cell[:] @ q.T, scale_atoms=True)
    opt = EMPNNLattice(atoms, model=tiny_model(), logfile=None, dtype=torch.float64)
    opt_rot = EMPNNLattice(rotated, model=tiny_model(), logfile=None, dtype=torch.float64)
    opt.run(), opt_rot.run()
    h, h_rot = opt.action, opt_rot.action
    np.testing.assert_allclose(h_rot, q @ h @ q.T, atol=1e-10)


def test_checkpoint_round_trip_and_wrong_checkpoints(tmp_path):
    model = tiny_model()
    path = save_checkpoint(
        tmp_path / "e.pt", model, model_name="empnn", config=model.config.to_dict()
    )
    loaded = load_model(path, "empnn", dtype=torch.float64).model
    atoms = distorted_silicon()
    opt1 = EMPNNLattice(atoms.copy(), model=model, logfile=None, dtype=torch.float64)
    opt2 = EMPNNLattice(atoms.copy(), model=path, logfile=None, dtype=torch.float64)
    opt1.run(), opt2.run()
    np.testing.assert_allclose(opt1.action, opt2.action, atol=1e-12)
    assert loaded.config == model.config

    other = save_checkpoint(tmp_path / "c.pt", model, model_name="cartnet", config={})
    with pytest.raises(CheckpointError, match="not an ase-cartnet EMPNN"):
        load_model(other, "empnn")
    wrong = EMPNN(EMPNNConfig(dim=4, num_rbf=8, num_layers=1, num_steps=2))
    bad = save_checkpoint(
        tmp_path / "w.pt", wrong, model_name="empnn", config=model.config.to_dict()
    )
    with pytest.raises(CheckpointError, match="does not match"):
        load_model(bad, "empnn")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "junk.pt", "empnn")


def test_bad_inputs():
    with pytest.raises(InputError, match="periodic along a, b and c"):
        EMPNNLattice(
            Atoms("H2O", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]), model=tiny_model()
        )
    with pytest.raises(InputError, match="empty"):
        EMPNNLattice(Atoms(cell=np.eye(3) * 3, pbc=True), model=tiny_model())
    with pytest.raises(InputError, match="model must be"):
        EMPNNLattice(distorted_silicon(), model=42)
    opt = EMPNNLattice(distorted_silicon(), model=tiny_model(), logfile=None)
    with pytest.raises(InputError, match="integer"):
        opt.run(steps=1.5)
    with pytest.raises(InputError, match="pymatgen|ase.Atoms"):
        EMPNNLattice("POSCAR", model=tiny_model())


def test_denoise_cli_writes_output_and_refuses_input(tmp_path, capsys):
    from ase.io import write

    from ase_cartnet.cli import main

    model = tiny_model()
    ckpt = save_checkpoint(
        tmp_path / "e.pt", model, model_name="empnn", config=model.config.to_dict()
    )
    src = tmp_path / "si.cif"
    write(src, distorted_silicon(), format="cif")
    before = src.read_bytes()
    out = tmp_path / "si_denoised.cif"
    assert (
        main(["denoise", str(src), "-o", str(out), "--checkpoint", str(ckpt), "--threads", "1"])
        == 0
    )
    assert out.is_file() and "lattice action" in capsys.readouterr().out
    from ase_cartnet.io.structure import read_structure

    denoised = read_structure(out)
    assert len(denoised) == 2
    assert main(["denoise", str(src), "-o", str(src), "--checkpoint", str(ckpt)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert src.read_bytes() == before


def test_shipped_weights_and_model_card():
    from ase_cartnet.io.checkpoint import sha256_of
    from ase_cartnet.weights import DEFAULT_EMPNN

    if not DEFAULT_EMPNN.is_file():
        pytest.skip("no EMPNN weights in this checkout")
    card = json.loads(DEFAULT_EMPNN.with_suffix(".json").read_text())
    assert card["sha256"] == sha256_of(DEFAULT_EMPNN)
    assert DEFAULT_EMPNN.stat().st_size <= 20 * 1024 * 1024
    assert card["licence"] == "MIT"
    for key in ("training", "command", "held_out", "sigma"):
        assert key in card, key
    atoms = distorted_silicon()
    opt = EMPNNLattice(atoms, logfile=None)  # default weights, offline
    assert opt.run() is True
    h = opt.action
    assert np.isfinite(h).all() and np.linalg.det(h) > 0
