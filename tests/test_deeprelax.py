"""DeepRelax: E(3) and permutation equivariance, the offset encoding, the Laplace loss, ensemble
uncertainty (eqns 21–24), the EDG solver, synthetic pairs, the adapter, CLI and bad inputs, and
a tiny end-to-end training run through ``ase-cartnet train deeprelax``."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from ase_cartnet.errors import CheckpointError, InputError
from ase_cartnet.graph.deeprelax import deeprelax_graph
from ase_cartnet.graph.neighbours import batch_graphs
from ase_cartnet.models.deeprelax import (
    ORIGIN_INDEX,
    DeepRelaxConfig,
    DeepRelaxEnsemble,
    DeepRelaxModel,
    DeepRelaxOutput,
    cell_offset_index,
    combine_members,
    periodic_offset_encoding,
)
from ase_cartnet.models.deeprelax_solver import solve_positions
from ase_cartnet.train.deeprelax_data import (
    RelaxPair,
    distort,
    pairs_from_db,
    synthetic_pairs,
    write_pairs_db,
)
from ase_cartnet.train.deeprelax_task import deeprelax_loss, laplace_nll, relaxed_targets

TINY = DeepRelaxConfig(hidden=16, num_layers=2, num_rbf=8, pcoe_dim=8, max_neighbours=12)


def _crystal(seed: int = 0) -> Atoms:
    """A low-symmetry 4-atom crystal (no distance ties, so graphs do not depend on round-off)."""
    rng = np.random.default_rng(seed)
    atoms = bulk("NaCl", "rocksalt", a=5.6) * (2, 1, 1)
    atoms.set_cell(atoms.cell[:] @ (np.eye(3) + 0.05 * rng.normal(size=(3, 3))), scale_atoms=True)
    atoms.rattle(0.1, seed=seed)
    return atoms


def _random_model(config: DeepRelaxConfig = TINY, seed: int = 0) -> DeepRelaxModel:
    torch.manual_seed(seed)
    model = DeepRelaxModel(config).double()
    with torch.no_grad():  # the heads start at zero: give every weight a non-trivial value
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def _orthogonal(seed: int, reflect: bool) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if (np.linalg.det(q) < 0) != reflect:
        q[:, 0] *= -1
    return q


def _transform(atoms: Atoms, q: np.ndarray, t: np.ndarray) -> Atoms:
    out = atoms.copy()
    out.set_cell(atoms.cell[:] @ q.T, scale_atoms=False)
    out.set_positions(atoms.positions @ q.T + t)
    return out


# --------------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reflect", [False, True])
def test_e3_equivariance_of_heads_and_solver(reflect):
    """Rotating (or reflecting) and translating the input leaves distances and scales unchanged,
    rotates the lattice (L̂ → L̂ Qᵀ) and moves the solved positions rigidly (R̂ → R̂ Qᵀ + t)."""
    model = _random_model()
    atoms = _crystal(1)
    q, t = _orthogonal(3, reflect), np.array([0.7, -1.3, 2.1])
    moved = _transform(atoms, q, t)
    outs, solved = [], []
    for a in (atoms, moved):
        g = batch_graphs([deeprelax_graph(a, TINY, torch.float64)])
        with torch.no_grad():
            o = model(g)
        outs.append(o)
        r = solve_positions(
            g.pos, o.lattice, g.edge_index, g.cell_shift, o.distance, torch.exp(o.log_scale),
            g.disp_index, o.disp_distance, torch.exp(o.disp_log_scale), g.batch,
        )  # fmt: skip
        solved.append(r.positions.numpy())
    a, b = outs
    for name in ("distance", "log_scale", "disp_distance", "disp_log_scale"):
        assert torch.allclose(getattr(a, name), getattr(b, name), atol=1e-10, rtol=0), name
    assert np.allclose(a.lattice[0].numpy() @ q.T, b.lattice[0].numpy(), atol=1e-10)
    assert np.abs(a.lattice[0].numpy() - atoms.cell[:]).max() > 1e-3  # the head is not trivial
    assert np.allclose(solved[0] @ q.T + t, solved[1], atol=1e-8)


def test_prediction_rotates_with_the_input_and_starts_from_fractional_coordinates():
    """The full pipeline (ensemble, affine start, solver): rotating the input rotates the
    predicted structure; with 0 solver steps the result is the input's fractional coordinates
    in the predicted lattice."""
    from ase_cartnet.calculators.deeprelax import predict

    ensemble = DeepRelaxEnsemble.from_members([_random_model(seed=s) for s in (0, 1)]).double()
    atoms = _crystal(5)
    q = _orthogonal(7, reflect=False)
    r0, r1 = predict(ensemble, [atoms, _transform(atoms, q, np.zeros(3))])
    assert np.allclose(r0.atoms.positions @ q.T, r1.atoms.positions, atol=1e-8)
    assert np.allclose(r0.atoms.cell[:] @ q.T, r1.atoms.cell[:], atol=1e-10)
    (lattice_only,) = predict(ensemble, [atoms], steps=0)
    assert np.allclose(
        lattice_only.atoms.get_scaled_positions(wrap=False),
        atoms.get_scaled_positions(wrap=False),
        atol=1e-10,
    )


def test_permutation_equivariance():
    """Relabelling the atoms permutes the solved positions and leaves lattice and uncertainty."""
    from ase_cartnet.calculators.deeprelax import predict

    torch.manual_seed(0)
    ensemble = DeepRelaxEnsemble.from_members([_random_model(seed=s) for s in (0, 1)]).double()
    atoms = _crystal(2)
    perm = np.array([2, 0, 3, 1])
    (r0, r1) = predict(ensemble, [atoms, atoms[perm]])
    assert np.allclose(r0.atoms.positions[perm], r1.atoms.positions, atol=1e-8)
    assert np.allclose(r0.atoms.cell[:], r1.atoms.cell[:], atol=1e-10)
    u0, u1 = r0.uncertainty, r1.uncertainty
    assert math.isclose(u0.global_uncertainty, u1.global_uncertainty, rel_tol=1e-10)
    assert u0.epistemic > 0
    assert np.allclose(np.sort(u0.bond_uncertainty), np.sort(u1.bond_uncertainty), atol=1e-10)


def test_untrained_model_returns_the_input():
    """Zero-initialised last layers: d̂ = d⁰ and L̂ = L (the Dummy baseline) before training."""
    torch.manual_seed(0)
    model = DeepRelaxModel(TINY).double().eval()
    g = batch_graphs([deeprelax_graph(_crystal(), TINY, torch.float64)])
    with torch.no_grad():
        out = model(g)
    d0 = torch.linalg.norm(
        g.pos[g.edge_index[0]] + g.cell_shift @ g.cell[0] - g.pos[g.edge_index[1]], dim=1
    )
    assert torch.allclose(out.distance, d0, atol=1e-9)
    assert torch.allclose(out.lattice, g.cell, atol=1e-12)
    assert torch.allclose(out.log_scale, torch.full_like(d0, math.log(0.1)))


def test_offset_encoding_eqns_2_3():
    shifts = torch.tensor([[0.0, 0, 0], [-2, -2, -2], [2, 2, 2], [1, -1, 0]])
    k = cell_offset_index(shifts)
    assert k.tolist() == [ORIGIN_INDEX, 0, 124, 3 + 5 * 1 + 25 * 2]
    p = periodic_offset_encoding(k, 8, torch.float64)
    for f in range(8):
        expected = (math.sin if f % 2 == 0 else math.cos)(62 / 10000 ** ((f - f % 2) / 8))
        assert math.isclose(float(p[0, f]), expected, rel_tol=1e-12)
    with pytest.raises(ValueError, match=r"\{-2, \.\.\., 2\}"):
        cell_offset_index(torch.tensor([[3.0, 0, 0]]))


def test_laplace_loss_is_the_negative_log_likelihood():
    """Eqn 15 with b = exp(û): log(2b) + |x − μ|/b; the total loss adds L_d and L_l (eqn 14)."""
    pred, target = torch.tensor([1.0, 2.0]), torch.tensor([1.5, 1.0])
    b = torch.tensor([0.5, 2.0])
    expected = torch.log(2 * b) + (pred - target).abs() / b
    assert torch.allclose(laplace_nll(pred, torch.log(b), target), expected)
    pair = synthetic_pairs([_crystal()], seed=3)[0]
    g = batch_graphs([deeprelax_graph(pair.initial, TINY, torch.float64, pair.relaxed)])
    d, dd = relaxed_targets(g)
    out = DeepRelaxOutput(d, torch.zeros_like(d), dd, torch.zeros_like(dd), g.target_cell)
    parts = deeprelax_loss(out, g)
    assert math.isclose(float(parts["loss"]), 2 * math.log(2.0), rel_tol=1e-12)  # exact: log 2 each
    assert float(parts["lattice"]) == 0.0


def test_ensemble_uncertainty_eqns_21_to_24():
    """Two members on a 2-atom cell: Û_a = (mean over pairs of mean_t e^û)², Û_e = mean var."""
    g = batch_graphs([deeprelax_graph(bulk("Cu", "fcc", a=3.6), TINY, torch.float64)])
    e, d = g.edge_index.shape[1], g.disp_index.shape[1]
    rng = np.random.default_rng(0)
    outs = []
    for _ in range(2):
        outs.append(
            DeepRelaxOutput(
                torch.as_tensor(rng.uniform(2, 3, e)),
                torch.as_tensor(rng.normal(-2, 0.3, e)),
                torch.as_tensor(rng.uniform(0, 1, d)),
                torch.as_tensor(rng.normal(-2, 0.3, d)),
                g.cell.clone(),
            )
        )
    result = combine_members(outs, g)
    log_scales = [np.concatenate([o.log_scale, o.disp_log_scale]) for o in outs]
    scales = np.exp(np.stack(log_scales))
    values = np.concatenate(
        [np.stack([o.distance for o in outs]), np.stack([o.disp_distance for o in outs])], axis=1
    )
    u_a = scales.mean(0).mean() ** 2
    u_e = values.var(0).mean()
    assert math.isclose(float(result.aleatoric[0]), u_a, rel_tol=1e-12)
    assert math.isclose(float(result.epistemic[0]), u_e, rel_tol=1e-12)
    assert math.isclose(float(result.global_[0]), u_a + u_e, rel_tol=1e-12)


# --------------------------------------------------------------------------------------------
# solver
# --------------------------------------------------------------------------------------------


def _exact_problem(pairs):
    graphs = [deeprelax_graph(p.initial, TINY, torch.float64, p.relaxed) for p in pairs]
    g = batch_graphs(graphs)
    d, dd = relaxed_targets(g)
    return g, d, dd


def test_solver_recovers_a_known_crystal_from_exact_distances():
    """Exact relaxed distances (tight bounds) and the relaxed lattice: from a strained, rattled
    start the solver returns the relaxed crystal (the displacement edges fix the rigid motion)."""
    relaxed = [bulk("NaCl", "rocksalt", a=5.64), bulk("Si", "diamond", a=5.43)]
    pairs = synthetic_pairs(relaxed, strain_std=0.03, rattle_std=0.05, seed=0)
    g, d, dd = _exact_problem(pairs)
    start_error = float((g.pos - g.target_pos).norm(dim=1).max())
    assert start_error > 0.1
    tight = 1e-4
    common = (g.target_cell, g.edge_index, g.cell_shift, d, torch.full_like(d, tight), g.disp_index)
    r = solve_positions(
        g.pos, *common, dd, torch.full_like(dd, tight), g.batch, steps=1000, lr=0.05, decay=True
    )
    error = r.positions - g.target_pos
    rigid = torch.zeros(2, 3, dtype=error.dtype).index_add_(0, g.batch, error) / 2  # 2 atoms each
    # a 2-atom cell leaves its common translation only weakly (second-order) anchored
    assert float((error - rigid[g.batch]).norm(dim=1).max()) < 2e-3
    assert float(rigid.norm(dim=1).max()) < 0.1
    # the official settings (100 Adam steps at a constant 0.1 Å) stop within ≈ 0.1 Å: Adam's
    # steps stay ≈ lr long while the tight bounds are crossed back and forth
    r = solve_positions(g.pos, *common, dd, torch.full_like(dd, tight), g.batch)
    assert float((r.positions - g.target_pos).norm(dim=1).mean()) < 0.1


def test_solver_batched_equals_separate_and_is_deterministic():
    pairs = synthetic_pairs([_crystal(0), bulk("Si", "diamond", a=5.43)], seed=1)
    g, d, dd = _exact_problem(pairs)
    w, dw = torch.full_like(d, 0.02), torch.full_like(dd, 0.02)
    args = (g.target_cell, g.edge_index, g.cell_shift, d, w, g.disp_index, dd, dw, g.batch)
    together = solve_positions(g.pos, *args).positions
    again = solve_positions(g.pos, *args).positions
    assert torch.equal(together, again)
    for k, p in enumerate(pairs):
        gk, dk, ddk = _exact_problem([p])
        alone = solve_positions(
            gk.pos, gk.target_cell, gk.edge_index, gk.cell_shift, dk, torch.full_like(dk, 0.02),
            gk.disp_index, ddk, torch.full_like(ddk, 0.02), gk.batch,
        ).positions  # fmt: skip
        assert torch.allclose(alone, together[g.ptr[k] : g.ptr[k + 1]], atol=1e-10)


def test_solver_rejects_bad_settings():
    g, d, dd = _exact_problem(synthetic_pairs([bulk("Cu", "fcc", a=3.6)]))
    args = (g.pos, g.target_cell, g.edge_index, g.cell_shift, d, d, g.disp_index, dd, dd)
    with pytest.raises(ValueError, match="steps"):
        solve_positions(*args, steps=-1)
    with pytest.raises(ValueError, match="lr"):
        solve_positions(*args, lr=0.0)


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


def test_synthetic_distortion_is_a_symmetric_strain_plus_rattle(tmp_path):
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    no_rattle = distort(atoms, strain_std=0.05, rattle_std=0.0, rng=np.random.default_rng(0))
    strain = np.linalg.solve(atoms.cell[:], no_rattle.cell[:])  # L̃ = L exp(A)
    assert np.allclose(strain, strain.T, atol=1e-12)
    assert np.all(np.linalg.eigvalsh(strain) > 0)
    assert np.allclose(
        no_rattle.get_scaled_positions(wrap=False), atoms.get_scaled_positions(wrap=False)
    )
    a = synthetic_pairs([atoms], seed=5)[0]
    b = synthetic_pairs([atoms], seed=5)[0]
    c = synthetic_pairs([atoms], seed=6)[0]
    assert np.array_equal(a.initial.positions, b.initial.positions)
    assert not np.allclose(a.initial.positions, c.initial.positions)
    path = write_pairs_db([a], tmp_path / "pairs.db")
    (back,) = pairs_from_db(path)
    assert np.allclose(back.initial.positions, a.initial.positions)
    assert np.allclose(back.relaxed.cell[:], a.relaxed.cell[:])


def test_multigraph_caps_neighbours_and_offsets():
    atoms = bulk("Cu", "fcc", a=3.6)  # 1 atom: 12 nearest at a/√2, many more within 6 Å
    g = deeprelax_graph(atoms, DeepRelaxConfig(hidden=8, max_neighbours=12), torch.float64)
    assert g.edge_index.shape[1] == 12
    assert g.disp_index.tolist() == [[0], [0]]
    g = deeprelax_graph(atoms, DeepRelaxConfig(hidden=8, max_neighbours=500), torch.float64)
    assert g.cell_shift.abs().max() <= 2


# --------------------------------------------------------------------------------------------
# adapter, CLI, training
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two replicates trained for 2 epochs on synthetic pairs, exported as an ensemble."""
    from ase_cartnet.train.deeprelax import export_deeprelax, train_deeprelax
    from ase_cartnet.train.loop import TrainConfig

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("deeprelax")
    base = [
        bulk("NaCl", "rocksalt", a=5.64),
        bulk("Si", "diamond", a=5.43),
        bulk("Cu", "fcc", a=3.6),
    ]
    structures = []
    for k in range(12):
        s = base[k % 3].copy()
        s.info["source_id"] = f"s{k}"
        structures.append(s)
    pairs = synthetic_pairs(structures, seed=0)
    arch = {
        k: getattr(TINY, k)
        for k in ("hidden", "num_layers", "num_rbf", "pcoe_dim", "max_neighbours")
    }
    summaries = train_deeprelax(
        pairs, out / "run", architecture=arch, train_config=TrainConfig(epochs=2, lr=3e-3),
        replicates=2, val_fraction=0.25, batch_size=4, progress=False,
    )  # fmt: skip
    weights, card = export_deeprelax(
        out / "run", out / "ensemble.pt", {"name": "test"}, uncertainty_threshold=1e3
    )
    return {
        "summaries": summaries, "weights": weights, "card": card, "out": out, "pairs": pairs,
        "architecture": arch,
    }  # fmt: skip


def test_tiny_training_and_export(trained):
    import json

    for summary in trained["summaries"]:
        assert len(summary["history"]) == 2
        assert all(
            math.isfinite(h["train_loss"]) and h["val_mae"] < 1.0 for h in summary["history"]
        )
        assert (Path(summary["run_dir"]) / "best.pt").is_file()
    card = json.loads(trained["card"].read_text())
    assert card["ensemble_size"] == 2 and len(card["sha256"]) == 64
    seeds = [r["seed"] for r in card["training"]["replicates"]]
    assert seeds == [0, 1]


def test_a_replicate_trained_alone_equals_the_same_member_of_the_joint_run(trained, tmp_path):
    """--first-replicate: another process can train member 1 with the same seed and split."""
    from ase_cartnet.train.deeprelax import train_deeprelax
    from ase_cartnet.train.loop import TrainConfig

    (alone,) = train_deeprelax(
        trained["pairs"], tmp_path / "run", architecture=trained["architecture"],
        train_config=TrainConfig(epochs=2, lr=3e-3), replicates=1, first_replicate=1,
        val_fraction=0.25, batch_size=4, progress=False,
    )  # fmt: skip
    assert Path(alone["run_dir"]).name == "replicate_1"
    joint = torch.load(trained["out"] / "run" / "replicate_1" / "best.pt", weights_only=True)
    single = torch.load(tmp_path / "run" / "replicate_1" / "best.pt", weights_only=True)
    assert single["metadata"]["val_ids"] == joint["metadata"]["val_ids"]
    for key, tensor in joint["model_state"].items():
        assert torch.equal(single["model_state"][key], tensor), key


def test_adapter_mutates_in_place_unwraps_filters_and_writes_trajectory(trained, tmp_path):
    from ase.filters import FrechetCellFilter
    from ase.io import read

    from ase_cartnet import DeepRelax

    atoms = synthetic_pairs([bulk("NaCl", "rocksalt", a=5.64)], seed=9)[0].initial
    before = atoms.copy()
    log = tmp_path / "log.txt"
    opt = DeepRelax(
        FrechetCellFilter(atoms),
        model=trained["weights"],
        trajectory=tmp_path / "t.traj",
        logfile=log,
    )
    assert opt.run() is True  # threshold 1e3 Å²
    assert not np.allclose(atoms.cell[:], before.cell[:])  # the filter's atoms were changed
    frames = read(tmp_path / "t.traj", ":")
    assert len(frames) == 2
    assert np.allclose(frames[0].positions, before.positions)
    assert np.allclose(frames[1].positions, atoms.positions)
    assert np.allclose(frames[1].cell[:], atoms.cell[:])
    assert "trusted" in log.read_text()
    u = opt.uncertainty
    assert u.bond_index.shape == (len(u.bond_length), 2) and np.all(u.bond_uncertainty > 0)
    assert DeepRelax(atoms, model=trained["weights"], threshold=0.0, logfile=None).run() is False


def test_adapter_behaves_like_an_ase_optimizer(trained, tmp_path):
    """``with``, an open Trajectory, ``attach``, ``irun``, ``run(fmax, steps)``; a second run
    changes nothing; ``steps=0`` takes no step."""
    from ase.filters import UnitCellFilter
    from ase.io import Trajectory, read

    from ase_cartnet import DeepRelax

    atoms = synthetic_pairs([bulk("NaCl", "rocksalt", a=5.64)], seed=4)[0].initial
    before = atoms.copy()
    calls = []
    with (
        Trajectory(tmp_path / "t.traj", "w") as traj,
        DeepRelax(
            UnitCellFilter(atoms), model=trained["weights"], trajectory=traj, logfile=None
        ) as opt,
    ):
        opt.attach(lambda: calls.append(opt.nsteps))
        assert opt.run(steps=0) is False and opt.nsteps == 0
        np.testing.assert_array_equal(atoms.positions, before.positions)
        assert list(opt.irun(fmax=0.05)) == [False, True]
        relaxed = atoms.copy()
        assert opt.run(fmax=0.01, steps=10) is True and opt.nsteps == 1  # idempotent
    np.testing.assert_array_equal(atoms.positions, relaxed.positions)
    np.testing.assert_array_equal(atoms.cell[:], relaxed.cell[:])
    assert calls == [0, 1]
    frames = read(tmp_path / "t.traj", ":")
    assert len(frames) == 2 and np.allclose(frames[1].cell[:], relaxed.cell[:])


def test_relax_many_takes_structures_and_skips_bad_items(trained):
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    from ase_cartnet import DeepRelax
    from ase_cartnet.errors import BatchItemWarning

    atoms = synthetic_pairs([bulk("Si", "diamond", a=5.43)], seed=3)[0].initial
    structure = AseAtomsAdaptor.get_structure(atoms)
    bad = Atoms("Cu", cell=np.eye(3) * 4, pbc=False)
    with pytest.warns(BatchItemWarning, match="structure 1"):
        out = DeepRelax.relax_many(
            [structure, bad, atoms], model=trained["weights"], errors="skip", dtype=torch.float64
        )
    assert isinstance(out[0].atoms, Structure) and out[1] is None
    assert isinstance(out[2].atoms, Atoms)
    np.testing.assert_allclose(out[0].atoms.lattice.matrix, out[2].atoms.cell[:], atol=1e-8)
    np.testing.assert_allclose(out[0].atoms.cart_coords, out[2].atoms.positions, atol=1e-8)
    with pytest.raises(InputError, match="structure 1"):
        DeepRelax.relax_many([atoms, bad], model=trained["weights"])
    with pytest.raises(InputError, match="errors must be"):
        DeepRelax.relax_many([atoms], model=trained["weights"], errors="ignore")


def test_overlapping_prediction_falls_back_to_the_input():
    """A prediction that puts atoms < 0.5 Å apart is never trusted: the input is returned."""
    from ase_cartnet.calculators.deeprelax import predict

    model = _random_model(seed=3)
    with torch.no_grad():  # a lattice head that halves a and stretches b, c: L̂ = (I + M) L
        model.lattice_out[2].weight.zero_()
        model.lattice_out[2].bias.copy_(torch.tensor([-0.5, 0, 0, 0, 0.5, 0, 0, 0, 0.5]))
    ensemble = DeepRelaxEnsemble.from_members([model]).double()
    # an orthorhombic cell: the shortest vector, along the bond, is the canonical a (in a cubic
    # one the listing may take any axis as a)
    cell = np.diag([4.0, 4.5, 5.0])
    atoms = Atoms("H2", positions=[[0.2, 0.3, 0.1], [1.1, 0.3, 0.1]], cell=cell, pbc=True)
    with pytest.warns(UserWarning, match="apart"):  # 0.9 Å along a becomes 0.45 Å
        (result,) = predict(ensemble, [atoms], threshold=1e9, steps=0)
    assert result.uncertainty.trusted is False
    np.testing.assert_array_equal(result.atoms.positions, atoms.positions)
    np.testing.assert_array_equal(result.atoms.cell[:], atoms.cell[:])


def test_relax_many_matches_single_runs_and_executor(trained):
    from concurrent.futures import ThreadPoolExecutor

    from ase_cartnet import DeepRelax

    inputs = [
        p.initial
        for p in synthetic_pairs([_crystal(0), bulk("Si", "diamond", a=5.43), _crystal(4)], seed=2)
    ]
    copies = [a.copy() for a in inputs]
    many = DeepRelax.relax_many(inputs, batch_size=2, model=trained["weights"], dtype=torch.float64)
    for a, c in zip(inputs, copies, strict=True):
        assert np.array_equal(a.positions, c.positions)  # inputs untouched
    for a, r in zip(copies, many, strict=True):
        DeepRelax(a, model=trained["weights"], logfile=None, dtype=torch.float64).run()
        assert np.allclose(a.positions, r.atoms.positions, atol=1e-8)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pooled = DeepRelax.relax_many(
            inputs, batch_size=2, executor=pool, model=str(trained["weights"]), dtype=torch.float64
        )
    for x, y in zip(many, pooled, strict=True):
        assert np.allclose(x.atoms.positions, y.atoms.positions, atol=1e-8)


def test_cli_relax_writes_the_format_its_name_says_and_never_overwrites(trained, tmp_path):
    from ase.io import read, write

    from ase_cartnet.cli import main

    w = ["--checkpoint", str(trained["weights"]), "--threads", "1"]
    poscar = tmp_path / "POSCAR"
    write(
        poscar, synthetic_pairs([bulk("Si", "diamond", a=5.43)], seed=1)[0].initial, format="vasp"
    )
    assert main(["relax", str(poscar), *w]) == 0
    out = read(tmp_path / "POSCAR_prerelaxed.vasp")  # ase.io.read can tell the format
    assert len(out) == 2
    cif = tmp_path / "si.cif"
    write(cif, synthetic_pairs([bulk("NaCl", "rocksalt", a=5.64)], seed=2)[0].initial)
    assert main(["relax", str(poscar), "-o", str(tmp_path / "b.cif"), *w]) == 0
    assert (tmp_path / "b.cif").read_text().lstrip().startswith(("data_", "#"))  # a CIF
    assert len(read(tmp_path / "b.cif")) == 2
    assert main(["relax", str(cif), str(poscar), str(tmp_path / "missing.cif"), *w]) == 2
    assert len(read(tmp_path / "si_prerelaxed.cif")) == 2  # the good inputs were written
    before = poscar.read_bytes()
    assert main(["relax", str(poscar), "-o", str(poscar), *w]) == 2
    assert main(["relax", str(poscar), "-o", str(tmp_path / "x.prerelaxed"), *w]) == 2
    assert main(["relax", str(poscar), str(cif), "-o", str(tmp_path / "y.cif"), *w]) == 2
    assert poscar.read_bytes() == before


def test_bad_inputs(trained, tmp_path):
    from ase_cartnet import DeepRelax
    from ase_cartnet.io.checkpoint import save_checkpoint

    w = trained["weights"]
    with pytest.raises(InputError, match="3D crystal"):
        DeepRelax(Atoms("H2O", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]), model=w)
    with pytest.raises(InputError, match="empty"):
        DeepRelax(Atoms(cell=np.eye(3) * 5, pbc=True), model=w)
    with pytest.raises(InputError, match="overlap"):
        DeepRelax(
            Atoms("Cu2", positions=[[0, 0, 0], [0.1, 0, 0]], cell=np.eye(3) * 4, pbc=True), model=w
        )
    with pytest.raises(InputError, match="zero volume|missing"):
        DeepRelax(Atoms("Cu", cell=np.zeros((3, 3)), pbc=True), model=w)
    with pytest.raises(InputError, match="ase.Atoms"):
        DeepRelax("POSCAR", model=w)
    with pytest.raises(InputError, match="model must be"):
        DeepRelax(bulk("Cu"), model=42)
    other = save_checkpoint(
        tmp_path / "x.pt", torch.nn.Linear(2, 2), model_name="cartnet", config={}
    )
    with pytest.raises(CheckpointError, match="not DeepRelax"):
        DeepRelax(bulk("Cu"), model=other)
    with pytest.raises(CheckpointError, match="not found"):
        DeepRelax(bulk("Cu"), model=tmp_path / "missing.pt")
    with pytest.raises(InputError, match="batch_size"):
        DeepRelax.relax_many([bulk("Cu")], batch_size=0, model=w)
    with pytest.raises(InputError, match="structure 1"):
        DeepRelax.relax_many([bulk("Cu"), Atoms("Cu", pbc=False)], model=w)
    with pytest.raises(InputError, match="differ"):
        RelaxPair("x", bulk("Cu"), bulk("Si"))
    with pytest.raises(ValueError, match="hidden"):
        DeepRelaxConfig(hidden=0)


def test_shipped_weights_load_offline():
    from ase_cartnet.weights import DEFAULT_DEEPRELAX

    if not DEFAULT_DEEPRELAX.is_file():
        pytest.skip("no shipped DeepRelax weights in this checkout")
    from ase_cartnet import DeepRelax

    atoms = synthetic_pairs([bulk("NaCl", "rocksalt", a=5.64)], seed=0)[0].initial
    opt = DeepRelax(atoms, logfile=None)
    assert len(opt.ensemble.members) >= 1
    assert opt.threshold is not None
    opt.run()
    assert np.linalg.det(atoms.cell[:]) > 0


def test_canonical_listing_is_bitwise_the_same_for_every_way_of_writing_a_crystal():
    """Translation, another image, another basis, a permutation and a rotation give bitwise the
    same canonical crystal; mapping the canonical atoms back returns the input (1e-8 Å)."""
    from ase_cartnet.canonical_cell import canonical_listing

    atoms = _crystal(6)
    ref = canonical_listing(atoms)
    translated = atoms.copy()
    translated.translate([0.3, -2.1, 4.4])
    imaged = atoms.copy()
    imaged.positions[2] += 2 * atoms.cell[1] - atoms.cell[0]
    rebased = atoms.copy()
    rebased.set_cell(np.array([[1, 2, 0], [0, 1, 0], [-1, 1, 1]]) @ atoms.cell[:])
    rotated = _transform(atoms, _orthogonal(4, reflect=False), np.zeros(3))
    for other in (translated, imaged, rebased, atoms[[3, 1, 0, 2]], rotated):
        c = canonical_listing(other)
        assert np.array_equal(c.atoms.positions, ref.atoms.positions)
        assert np.array_equal(c.atoms.cell[:], ref.atoms.cell[:])
        assert np.array_equal(c.atoms.numbers, ref.atoms.numbers)
    back = ref.positions_to_input(ref.atoms.positions, ref.atoms.cell[:])
    np.testing.assert_allclose(back, atoms.positions, atol=1e-8)
    np.testing.assert_allclose(ref.cell_to_input(ref.atoms.cell[:]), atoms.cell[:], atol=1e-8)


SYMMETRIC_LATTICES = {  # (cell, the lattice's proper point group order)
    "fcc": (bulk("Cu", "fcc", a=3.6).cell[:], 24),
    "bcc": (bulk("Fe", "bcc", a=2.9).cell[:], 24),
    "cubic": (np.eye(3) * 3.1, 24),
    "hexagonal": (bulk("Mg", "hcp", a=3.2, c=5.2).cell[:], 12),
    "tetragonal": (np.diag([3.0, 3.0, 4.1]), 8),
}


@pytest.mark.parametrize("name", sorted(SYMMETRIC_LATTICES))
def test_canonical_listing_of_a_symmetric_lattice_does_not_depend_on_the_basis(name):
    """A lattice with more symmetry than ±I has several reduced bases of one metric, and which
    one the Niggli reduction returns depends on the basis it starts from (the robustness case
    "equivalent cell basis": b → b + a of a rattled fcc crystal gave another reduced basis, the
    crystal rotated in it, and 0.08 Å in the prediction). The listing is bitwise the same for
    every basis, translation and image, and maps back to the input."""
    from ase_cartnet.canonical_cell import _proper_automorphisms, canonical_listing

    cell, order = SYMMETRIC_LATTICES[name]
    rng = np.random.default_rng(11)
    atoms = Atoms("NaCl2", scaled_positions=rng.random((3, 3)), cell=cell, pbc=True)
    ref = canonical_listing(atoms)
    assert len(_proper_automorphisms(ref.atoms.cell[:])) == order
    bases = [[[1, 0, 0], [1, 1, 0], [0, 0, 1]], [[0, 1, 0], [0, 0, 1], [1, 0, 0]],
             [[1, 0, 2], [0, -1, 0], [1, 1, 3]], [[0, 1, 0], [1, 0, 0], [0, 0, -1]]]  # fmt: skip
    for basis in bases:
        other = atoms.copy()
        other.set_cell(np.asarray(basis) @ cell, scale_atoms=False)
        other.wrap()
        other.translate([0.3, -1.7, 0.9])
        c = canonical_listing(other)
        assert np.array_equal(c.atoms.positions, ref.atoms.positions)
        assert np.array_equal(c.atoms.cell[:], ref.atoms.cell[:])
        back = c.positions_to_input(c.atoms.positions, c.atoms.cell[:])
        np.testing.assert_allclose(back, other.positions, atol=1e-8)
        np.testing.assert_allclose(c.cell_to_input(c.atoms.cell[:]), other.cell[:], atol=1e-8)


def test_translation_moves_an_ase_cell_filter_relaxation_by_t_inverse_l_l_hat():
    """The convention DeepRelax's prediction follows (``positions_to_input``): an ASE relaxation
    with a cell filter deforms the cell about the Cartesian origin, so translating the input by
    t moves the relaxed positions by t L⁻¹L̂, not by t (here 0.17 Å apart, 8 % strain)."""
    from ase.calculators.emt import EMT
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    start = bulk("Cu", "fcc", a=3.9).repeat((2, 1, 1))
    start.rattle(0.05, seed=3)
    t = np.array([0.7, -1.3, 2.1])
    relaxed = []
    for shift in (np.zeros(3), t):
        atoms = start.copy()
        atoms.translate(shift)
        atoms.calc = EMT()
        BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=1e-4, steps=200)
        relaxed.append(atoms)
    moved = relaxed[1].positions - relaxed[0].positions
    expected = t @ np.linalg.solve(start.cell[:], relaxed[0].cell[:])
    np.testing.assert_allclose(moved, np.broadcast_to(expected, moved.shape), atol=1e-8)
    assert np.abs(moved - t).max() > 0.1


def test_canonical_listing_of_a_cell_on_which_niggli_reduction_cycles():
    """A relaxation frame whose metric sits on a Niggli boundary made ASE's reduction give up
    ("not done in 10000 steps"); the listing falls back and still maps back exactly."""
    from ase.build.tools import niggli_reduce_cell

    from ase_cartnet.canonical_cell import canonical_listing

    cell = np.array(
        [
            [5.35062621, 0.13922136, 0.09712293],
            [2.94106184, 4.47198829, 0.09711869],
            [2.9410685, 1.63559585, 4.16328436],
        ]
    )
    with pytest.raises(RuntimeError, match="Niggli"):
        niggli_reduce_cell(cell)
    atoms = Atoms("NaCl", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]], cell=cell, pbc=True)
    listing = canonical_listing(atoms)
    assert round(abs(np.linalg.det(listing.atoms.cell[:])), 6) == round(atoms.get_volume(), 6)
    back = listing.positions_to_input(listing.atoms.positions, listing.atoms.cell[:])
    np.testing.assert_allclose(back, atoms.positions, atol=1e-8)
    np.testing.assert_allclose(listing.cell_to_input(listing.atoms.cell[:]), cell, atol=1e-8)


def test_canonical_listing_carries_a_relaxed_partner_both_ways():
    from ase_cartnet.canonical_cell import canonical_listing

    pair = synthetic_pairs([_crystal(7)], seed=5)[0]
    listing = canonical_listing(pair.initial)
    carried = listing.carry(pair.relaxed)
    np.testing.assert_array_equal(carried.numbers, listing.atoms.numbers)
    np.testing.assert_allclose(
        listing.cell_to_input(carried.cell[:]), pair.relaxed.cell[:], atol=1e-9
    )
    np.testing.assert_allclose(
        listing.positions_to_input(carried.positions, carried.cell[:]),
        pair.relaxed.positions,
        atol=1e-9,
    )
    order = listing.order  # the same crystal: distances between the same atoms agree
    np.testing.assert_allclose(
        carried.get_all_distances(mic=True),
        pair.relaxed[order].get_all_distances(mic=True),
        atol=1e-9,
    )


def test_displacement_pairs_within_a_distance_are_the_all_pairs_edges_that_close():
    from ase_cartnet.graph.deeprelax import displacement_pairs

    positions = np.random.default_rng(3).uniform(0, 12, size=(40, 3))
    every = displacement_pairs(positions)
    assert every.shape == (2, 1600)
    lengths = np.linalg.norm(positions[every[0]] - positions[every[1]], axis=1)
    near = displacement_pairs(positions, 5.0)
    np.testing.assert_array_equal(near, every[:, lengths <= 5.0])  # same pairs, same order
    np.testing.assert_array_equal(displacement_pairs(positions, 100.0), every)
