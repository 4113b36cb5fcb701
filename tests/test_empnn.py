"""EMPNN: exact Euc(3) × SL₃(ℤ) × permutation equivariance (float64, random weights), the vector
fields against autograd gradients of the invariants (eqns 5–7), the 2-graph, losses, bad input,
and a tiny end-to-end denoising run through the shared loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ase_cartnet.graph.empnn import crystal_graph
from ase_cartnet.graph.neighbours import batch_graphs, knn_graph, triplets
from ase_cartnet.models.empnn import (
    EMPNN,
    EMPNNConfig,
    LatticeFF,
    cell_to_lattice_params,
    edge_field,
    geometry,
    lattice_params_to_cell,
    run_model,
    triplet_field,
)
from ase_cartnet.train.empnn_data import Crystal
from ase_cartnet.train.empnn_task import EMPNNDenoiseTask, lattice_loss, random_strain

torch.set_num_threads(1)

F64 = torch.float64
ALL_FIELDS = EMPNNConfig(
    dim=12,
    num_rbf=8,
    num_angle=6,
    num_layers=1,
    num_steps=2,
    edge_fields=("ketbra", "grad_r"),
    triplet_fields=("ketbra", "ketbra_cross", "grad_r", "grad_r2", "grad_theta", "grad_area"),
    triplet_messages=True,
)
VARIANTS = {
    "edge_ketbra": EMPNNConfig(dim=12, num_rbf=8, num_relative=6, num_layers=2, num_steps=3),
    "all_fields": ALL_FIELDS,
    "grad_sym_first_order": EMPNNConfig(
        dim=12,
        num_rbf=8,
        num_angle=6,
        num_layers=1,
        num_steps=2,
        edge_fields=("grad_r",),
        triplet_fields=("grad_theta", "grad_area"),
        sym=True,
        exponential="first_order",
    ),
}


def random_crystal(seed: int, n: int = 5):
    rng = np.random.default_rng(seed)
    cell = np.diag([4.0, 4.6, 5.2]) + rng.normal(scale=0.6, size=(3, 3))
    frac = rng.random((n, 3))
    numbers = rng.integers(1, 40, n)
    return numbers, frac, cell


def predict(model, numbers, positions, cell):
    graph = crystal_graph(numbers, positions, cell, model.config.k, dtype=F64)
    with torch.no_grad():
        return run_model(model, batch_graphs([graph]))


def scrambled(config: EMPNNConfig, seed: int = 0):
    """A model with random weights whose action is far from the identity."""
    torch.manual_seed(seed)
    model = EMPNN(config).double().eval()
    with torch.no_grad():
        for head in list(model.edge_weights) + list(model.triplet_weights):
            last = head[-1] if isinstance(head, torch.nn.Sequential) else head
            last.weight.normal_(std=0.3)
    return model


UNIMODULAR = (
    np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1]])
    @ np.array([[1, 0, 0], [0, 1, 0], [-1, 2, 1]])
    @ np.array([[1, 0, 0], [0, 1, -1], [0, 0, 1]])
)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_equivariance_euclid_sl3z_permutation(name):
    model = scrambled(VARIANTS[name])
    numbers, frac, cell = random_crystal(1)
    base = predict(model, numbers, frac @ cell, cell)
    h = base.action[0]
    assert (h - torch.eye(3, dtype=F64)).abs().max() > 0.02  # a real deformation

    # Euc(3): a rotation-reflection q and a translation t; h → q h qᵀ, cell' = q-rotated
    rng = np.random.default_rng(7)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    if np.linalg.det(q) > 0:
        q[:, 0] *= -1.0
    moved = predict(model, numbers, frac @ cell @ q.T + rng.normal(size=3) * 5.0, cell @ q.T)
    qt = torch.as_tensor(q)
    assert torch.allclose(moved.action[0], qt @ h @ qt.T, atol=1e-12, rtol=0)
    assert torch.allclose(moved.cell[0], base.cell[0] @ qt.T, atol=1e-12, rtol=0)

    # SL₃(ℤ) (Prop. 2): cell rows g·cell, fractional coordinates [x g⁻¹] wrapped; same cloud
    g = UNIMODULAR
    assert round(np.linalg.det(g)) == 1
    cell2 = g @ cell
    frac2 = np.mod(frac @ np.linalg.inv(g), 1.0)
    repaved = predict(model, numbers, frac2 @ cell2, cell2)
    assert torch.allclose(repaved.action[0], h, atol=1e-12, rtol=0)
    gt = torch.as_tensor(g, dtype=F64)
    assert torch.allclose(repaved.cell[0], gt @ base.cell[0], atol=1e-12, rtol=0)
    # the metric tensors agree up to the unimodular change: G' = g G gᵀ
    metric = base.cell[0] @ base.cell[0].T
    metric2 = repaved.cell[0] @ repaved.cell[0].T
    assert torch.allclose(metric2, gt @ metric @ gt.T, atol=1e-10, rtol=0)

    # permutation of the atoms
    perm = np.random.default_rng(3).permutation(len(numbers))
    shuffled = predict(model, numbers[perm], frac[perm] @ cell, cell)
    assert torch.allclose(shuffled.action[0], h, atol=1e-13, rtol=0)


def test_fractional_coordinates_kept_and_cell_right_handed():
    model = scrambled(VARIANTS["edge_ketbra"])
    numbers, frac, cell = random_crystal(2)
    out = predict(model, numbers, frac @ cell, cell)
    new_frac = out.positions.numpy() @ np.linalg.inv(out.cell[0].numpy())
    np.testing.assert_allclose(new_frac, frac, atol=1e-12)
    assert np.linalg.det(out.cell[0].numpy()) * np.linalg.det(cell) > 0
    # per-step cells: the input first, then one per deformation step
    assert len(out.cells) == model.config.num_steps + 1
    assert torch.equal(out.cells[0][0], torch.as_tensor(cell))


def test_zero_steps_is_identity():
    model = scrambled(VARIANTS["edge_ketbra"])
    numbers, frac, cell = random_crystal(2)
    graph = batch_graphs([crystal_graph(numbers, frac @ cell, cell, 16, dtype=F64)])
    out = run_model(model, graph, num_steps=0)
    assert torch.equal(out.action[0], torch.eye(3, dtype=F64))


def test_batching_matches_single_structures():
    model = scrambled(VARIANTS["all_fields"])
    structures = [random_crystal(s, n) for s, n in ((4, 3), (5, 6))]
    graphs = [crystal_graph(z, f @ c, c, 16, dtype=F64) for z, f, c in structures]
    with torch.no_grad():
        together = run_model(model, batch_graphs(graphs)).action
        alone = [run_model(model, batch_graphs([g])).action[0] for g in graphs]
    # the exponential's scaling 2^s is shared by the batch: equal up to round-off × 2^s
    for a, b in zip(together, alone, strict=True):
        assert torch.allclose(a, b, atol=1e-13, rtol=0)


def test_cell_choice_independent_graph_with_ties():
    # a cubic crystal: the 16th neighbour distance is tied, so breaking ties by shift would
    # depend on the cell; keep_ties keeps the whole shell in any cell of the lattice
    from ase.build import bulk

    atoms = bulk("NaCl", "rocksalt", a=5.64)
    base = knn_graph(atoms.positions, atoms.cell[:], True, 16, keep_ties=True)
    cell2 = UNIMODULAR @ atoms.cell[:]
    other = knn_graph(atoms.positions, cell2, True, 16, keep_ties=True)
    assert np.array_equal(np.bincount(base.edge_index[1]), [18, 18])
    assert np.allclose(np.sort(base.distances), np.sort(other.distances), atol=1e-12)


def test_triplets_chain_edges():
    numbers, frac, cell = random_crystal(3, 4)
    graph = crystal_graph(numbers, frac @ cell, cell, 6, dtype=F64)
    t = triplets(graph.edge_index, graph.cell_shift)
    src, tgt = graph.edge_index
    a, b = t
    assert torch.equal(src[a], tgt[b])
    shifts = graph.cell_shift.round().long()
    reversed_ = (src[b] == tgt[a]) & (shifts[a] + shifts[b] == 0).all(1)
    assert not reversed_.any()
    # count: every edge chains with all edges of its neighbour, minus its own reversal
    degree = torch.bincount(tgt, minlength=len(numbers))
    has_reverse = torch.zeros(len(src), dtype=torch.bool)
    for e in range(len(src)):
        has_reverse[e] = ((src == tgt[e]) & (tgt == src[e]) & (shifts == -shifts[e]).all(1)).any()
    assert t.shape[1] == int(degree[src].sum() - has_reverse.sum())


def test_fields_are_gradients_of_invariants():
    """∇f = ∂/∂X f(exp(X) ρ) at X = 0 (eqns 5–7) for r, θ and A, by autograd."""
    rng = np.random.default_rng(0)
    va = torch.as_tensor(rng.normal(size=(4, 3)))
    vb = torch.as_tensor(rng.normal(size=(4, 3)))
    v = torch.cat([va, vb])
    index = torch.stack([torch.arange(4), torch.arange(4, 8)])
    geo = geometry(v, index)
    for t in range(4):
        x = torch.zeros(3, 3, dtype=F64, requires_grad=True)
        m = torch.linalg.matrix_exp(x)
        a, b = m @ va[t], m @ vb[t]
        r = torch.linalg.vector_norm(a)
        theta = torch.arccos(torch.dot(a, b) / (r * torch.linalg.vector_norm(b)))
        area = 0.5 * torch.linalg.vector_norm(torch.linalg.cross(a, b))
        for value, name in ((theta, "grad_theta"), (area, "grad_area"), (r, "grad_r")):
            (grad,) = torch.autograd.grad(value, x, retain_graph=True)
            field = triplet_field(name, geo, index)[t]
            assert torch.allclose(field, grad, atol=1e-12), name
    assert torch.allclose(edge_field("grad_r", geo)[0], torch.outer(geo.u[0], v[0]))
    assert torch.allclose(edge_field("ketbra", geo)[0].trace(), torch.tensor(1.0, dtype=F64))


def test_lattice_parameters_round_trip_and_losses():
    lengths = torch.tensor([[3.0, 4.0, 5.0], [6.1, 6.1, 9.0]], dtype=F64)
    angles = torch.tensor([[80.0, 95.0, 100.0], [90.0, 90.0, 120.0]], dtype=F64)
    cell = lattice_params_to_cell(lengths, angles)
    back_l, back_a = cell_to_lattice_params(cell)
    assert torch.allclose(back_l, lengths, atol=1e-12)
    assert torch.allclose(back_a, angles, atol=1e-9)
    config = EMPNNConfig()
    n = torch.tensor([4, 8])
    rot = torch.linalg.qr(torch.randn(3, 3, dtype=F64, generator=torch.Generator().manual_seed(0)))[
        0
    ]
    for kind in ("param_mae", "param_mse", "metric_mae", "metric_mse", "riemann"):
        assert float(lattice_loss(cell, cell, n, kind, config)) == pytest.approx(0.0, abs=1e-9)
        # O(3)-invariant: a rotated prediction of the same lattice costs nothing
        assert float(lattice_loss(cell @ rot.T, cell, n, kind, config)) == pytest.approx(
            0.0, abs=1e-9
        )
    # the Riemannian distance of a uniform scaling s: 3 log²(s²)
    riemann = lattice_loss(1.1 * cell, cell, n, "riemann", config)
    assert float(riemann) == pytest.approx(3 * np.log(1.21) ** 2, rel=1e-9)


def test_random_strain_is_symmetric_stretch():
    h = random_strain(64, 0.1, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(h, h.transpose(1, 2), atol=1e-14)
    assert bool((torch.linalg.eigvalsh(h) > 0).all())
    log_strain = torch.linalg.eigvalsh(h).log()
    assert 0.05 < float(log_strain.std()) < 0.2


def test_ff_baseline_is_invariant():
    torch.manual_seed(0)
    config = EMPNNConfig(dim=12, num_rbf=8, num_layers=2, head="ff", edge_fields=(), num_steps=0)
    model = LatticeFF(config).double().eval()
    numbers, frac, cell = random_crystal(4)
    out = predict(model, numbers, frac @ cell, cell)
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))
    moved = predict(model, numbers, frac @ cell @ q.T, cell @ q.T)
    lengths, angles = cell_to_lattice_params(out.cell)
    lengths2, angles2 = cell_to_lattice_params(moved.cell)
    assert torch.allclose(lengths, lengths2, atol=1e-12)
    assert torch.allclose(angles, angles2, atol=1e-9)


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown vector field"):
        EMPNNConfig(edge_fields=("nope",))
    with pytest.raises(ValueError, match="at least one vector field"):
        EMPNNConfig(edge_fields=(), triplet_fields=())
    with pytest.raises(ValueError, match="exponential"):
        EMPNNConfig(exponential="pade")
    with pytest.raises(ValueError, match="unknown EMPNNConfig fields"):
        EMPNNConfig.from_dict({"dimension": 3})
    model = EMPNN(EMPNNConfig(dim=8, num_rbf=4, num_layers=1, num_steps=1)).double()
    numbers, frac, cell = random_crystal(5)
    graph = batch_graphs([crystal_graph(numbers, frac @ cell, cell, 16, dtype=F64)])
    with pytest.raises(ValueError, match="zero volume"):
        model(
            graph.numbers,
            graph.pos,
            graph.cell * 0.0,
            graph.edge_index,
            graph.cell_shift,
            graph.batch,
        )
    with pytest.raises(ValueError, match="atomic numbers"):
        model(
            graph.numbers * 0,
            graph.pos,
            graph.cell,
            graph.edge_index,
            graph.cell_shift,
            graph.batch,
        )
    with pytest.raises(ValueError, match="finite"):
        model(
            graph.numbers,
            graph.pos * np.nan,
            graph.cell,
            graph.edge_index,
            graph.cell_shift,
            graph.batch,
        )
    with pytest.raises(ValueError, match="num_steps"):
        run_model(model, graph, num_steps=5)
    with pytest.raises(ValueError, match="unknown loss"):
        EMPNNDenoiseTask([], [], EMPNNConfig(), loss="l7")


def test_tiny_denoising_run_improves(tmp_path):
    """Denoising end to end through the shared loop on crystals whose lattice is fixed by their
    elements (simple-cubic C, a = 3.0 Å; CsCl-type CO, a = 3.4 Å): after 40 steps the strained
    lattices are pulled back (about 10-15 s on one idle core)."""
    from ase_cartnet.train.empnn import train_empnn
    from ase_cartnet.train.loop import TrainConfig

    crystals = []
    for i in range(40):
        n = 1 + i % 2
        frac = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]])[:n]
        cell = np.eye(3) * (3.0, 3.4)[n - 1]
        crystals.append(Crystal(str(i), np.array([6, 8])[:n], cell, frac))
    architecture = {"dim": 32, "num_rbf": 32, "num_layers": 1, "num_steps": 1, "k": 8}
    summary = train_empnn(
        crystals,
        tmp_path / "run",
        architecture=architecture,
        train_config=TrainConfig(
            epochs=40, lr=3e-3, pct_start=0.1, grad_clip=1.0, select_metric="loss"
        ),
        sigma=0.1,
        val_fraction=0.25,
        batch_size=30,
        progress=False,
    )
    first = summary["history"][0]
    best = summary["best"]
    assert first["val_length_noisy"] == pytest.approx(0.2566, abs=0.01)  # Å, the noise
    assert best["length_improvement"] > 0.02  # Å
    assert best["loss"] < 0.95 * first["val_loss"]
    assert (tmp_path / "run" / "best.pt").is_file()
