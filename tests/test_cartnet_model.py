"""CartNet model: official-code compatibility, split/fused = direct form, symmetries, SPD output."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from hypothesis import given, settings
from hypothesis import strategies as st
from shared_paths import FIXTURES, needs_shared

from ase_cartnet.benchmarking.models import SMALL, ethanol_crystal, randomised_model
from ase_cartnet.benchmarking.reference import reference_cartnet
from ase_cartnet.graph.neighbours import atoms_to_graph, batch_graphs, edge_vectors
from ase_cartnet.io.checkpoint import infer_official_cartnet_config, load_model, read_checkpoint
from ase_cartnet.models.cartnet import CartNetConfig


def graph_of(atoms: Atoms, temperature: float, dtype=torch.float64, cutoff=5.0, cap=None):
    g = atoms_to_graph(atoms, cutoff, max_neighbours=cap, dtype=dtype)
    g.temperature = torch.tensor([temperature], dtype=dtype)
    return g


# -- the official checkpoint and outputs --------------------------------------------------------


@needs_shared
@pytest.mark.parametrize("name", ["small", "full"])
@pytest.mark.parametrize("cap", [64, None], ids=["app_cap64", "nocap"])
def test_reproduces_official_outputs(name, cap):
    """Every fixture structure: max |ΔU| ≤ 1e-5 Å² (float32) and ≤ 1e-10 Å² (float64)."""
    from ase.io import read

    expected = np.load(FIXTURES / f"expected_{name}.npz")
    suffix = "" if cap else "_nocap"
    for dtype, key, tol in ((torch.float32, "U", 1e-5), (torch.float64, "U_f64", 1e-10)):
        model = load_model(FIXTURES / f"cartnet_{name}_random.ckpt", "cartnet", dtype=dtype).model
        for k, atoms in enumerate(read(FIXTURES / "inputs.extxyz", ":")):
            g = graph_of(atoms, atoms.info["temperature"], dtype=dtype, cap=cap)
            assert g.edge_index.shape[1] == int(expected[f"s{k}_num_edges{suffix}"])
            with torch.no_grad():
                u = model(g).double().numpy()
            non_h = expected[f"s{k}_nonH"]
            err = np.abs(u[non_h] - expected[f"s{k}_{key}{suffix}"]).max()
            assert err <= tol, f"s{k} {dtype}: max |ΔU| = {err:.2e} Å²"


@needs_shared
def test_official_intermediate_activations_small():
    """Node features after the encoder and each layer match the official debug arrays."""
    from ase.io import read

    expected = np.load(FIXTURES / "expected_small.npz")
    model = load_model(FIXTURES / "cartnet_small_random.ckpt", "cartnet", dtype=torch.float64).model
    atoms = read(FIXTURES / "inputs.extxyz", index=2)
    g = graph_of(atoms, atoms.info["temperature"], cap=64)
    vec = -edge_vectors(g.pos, g.cell, g.edge_index, g.cell_shift)
    dist = vec.norm(dim=-1)
    t = model.standardise_temperature(g.temperature)
    assert float(t) == pytest.approx(float(expected["s2_temperature_std"][0]), abs=1e-6)
    with torch.no_grad():
        h = model.encoder.encode_atoms(g.numbers, t.expand(len(atoms)))
        np.testing.assert_allclose(h.numpy(), expected["s2_dbg_x_enc"], atol=1e-5)
        e = model.encoder.encode_edges(dist, vec / dist[:, None])
        env = torch.where(dist < 5.0, 0.5 * (torch.cos(torch.pi * dist / 5.0) + 1), 0.0)
        for layer_id, layer in enumerate(model.layers):
            h, e = layer(h, e, g.edge_index, env)
            np.testing.assert_allclose(h.numpy(), expected[f"s2_dbg_x_layer{layer_id}"], atol=1e-5)


@needs_shared
def test_inferred_config_of_official_checkpoints():
    for name, (dim, rbf, layers) in {"small": (32, 16, 2), "full": (256, 64, 4)}.items():
        state = read_checkpoint(FIXTURES / f"cartnet_{name}_random.ckpt")["model_state"]
        config = infer_official_cartnet_config(state)
        assert (config.dim, config.dim_rbf, config.num_layers) == (dim, rbf, layers)
        assert config.cutoff == 5.0 and config.use_direction and config.use_temperature
        assert config.max_neighbours == 64 and config.head == "cholesky"


# -- split/fused forward equals the direct concatenation form ----------------------------------


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_split_fused_equals_direct_eval(dtype, tol):
    model = randomised_model(CartNetConfig(**SMALL), dtype=dtype)
    atoms = ethanol_crystal()
    g = graph_of(atoms, 150.0, dtype=dtype)
    vec = -edge_vectors(g.pos, g.cell, g.edge_index, g.cell_shift)
    t_std = float(model.standardise_temperature(torch.tensor(150.0, dtype=torch.float64)))
    state = model.state_dict()
    with torch.no_grad():
        fast = model(g)
        direct = reference_cartnet(
            state, g.numbers, g.edge_index, vec, t_std, model.config.num_layers
        )
    scale = direct.abs().max()
    assert (fast - direct).abs().max() <= tol * max(1.0, float(scale))


def test_split_fused_equals_direct_train_mode():
    """In training mode (batch-statistics BatchNorm, no folding) the two forms agree as well."""
    model = randomised_model(CartNetConfig(**SMALL))
    atoms = ethanol_crystal(1)
    g = graph_of(atoms, 250.0)
    vec = -edge_vectors(g.pos, g.cell, g.edge_index, g.cell_shift)
    t_std = float(model.standardise_temperature(torch.tensor(250.0, dtype=torch.float64)))
    state = copy.deepcopy(model.state_dict())
    model.train()
    fast = model(g)
    direct = reference_cartnet(state, g.numbers, g.edge_index, vec, t_std, 2, training=True)
    torch.testing.assert_close(fast, direct, rtol=1e-10, atol=1e-10)


# -- symmetries and validity --------------------------------------------------------------------


def test_permutation_equivariance_and_translation_invariance():
    model = randomised_model(CartNetConfig(**SMALL))
    atoms = ethanol_crystal(2)
    with torch.no_grad():
        u = model(graph_of(atoms, 120.0)).numpy()
        perm = np.random.default_rng(0).permutation(len(atoms))
        u_perm = model(graph_of(atoms[perm], 120.0)).numpy()
        moved = atoms.copy()
        moved.translate([0.37, -1.21, 2.05])
        u_moved = model(graph_of(moved, 120.0)).numpy()
        wrapped = atoms.copy()
        wrapped.wrap()
        u_wrapped = model(graph_of(wrapped, 120.0)).numpy()
    np.testing.assert_allclose(u_perm, u[perm], atol=1e-12)
    np.testing.assert_allclose(u_moved, u, atol=1e-12)
    np.testing.assert_allclose(u_wrapped, u, atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_atoms=st.integers(1, 6),
    a=st.floats(2.5, 6.0),
    temperature=st.floats(1.0, 1000.0),
)
def test_output_is_symmetric_positive_definite(seed, n_atoms, a, temperature):
    rng = np.random.default_rng(seed)
    cell = np.diag([a, a * rng.uniform(0.8, 1.3), a * rng.uniform(0.8, 1.3)])
    cell[1, 0], cell[2, 1] = rng.uniform(-1, 1, 2)
    frac = rng.uniform(size=(n_atoms, 3))
    atoms = Atoms(numbers=rng.integers(1, 90, n_atoms), scaled_positions=frac, cell=cell, pbc=True)
    if n_atoms > 1 and atoms.get_all_distances(mic=True)[np.triu_indices(n_atoms, 1)].min() < 0.7:
        return
    model = randomised_model(CartNetConfig(**SMALL), seed=seed % 3)
    with torch.no_grad():
        u = model(graph_of(atoms, temperature)).numpy()
    np.testing.assert_allclose(u, np.swapaxes(u, 1, 2), atol=1e-14)
    assert (np.linalg.eigvalsh(u) > 0).all()


def test_rotation_changes_output_but_augmentation_helpers_are_consistent():
    """The model is not equivariant by construction; R U Rᵀ (eqn 20) is a proper rotation."""
    from ase_cartnet.models.so3 import random_rotations, rotate_adps

    rots = random_rotations(64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    np.testing.assert_allclose(
        rots @ rots.transpose(1, 2), np.broadcast_to(np.eye(3), (64, 3, 3)), atol=1e-12
    )
    np.testing.assert_allclose(torch.linalg.det(rots), np.ones(64), atol=1e-12)
    u = torch.diag_embed(torch.rand(64, 3, dtype=torch.float64) + 0.1)
    u_rot = rotate_adps(u, rots, torch.arange(64))
    np.testing.assert_allclose(torch.linalg.eigvalsh(u_rot), torch.linalg.eigvalsh(u), atol=1e-12)

    model = randomised_model(CartNetConfig(**SMALL))
    atoms = ethanol_crystal(3)
    rotated = atoms.copy()
    rotated.set_cell(atoms.cell[:] @ rots[1].numpy().T, scale_atoms=False)
    rotated.positions = atoms.positions @ rots[1].numpy().T
    with torch.no_grad():
        u0 = model(graph_of(atoms, 100.0)).numpy()
        u1 = model(graph_of(rotated, 100.0)).numpy()
    r = rots[1].numpy()
    assert np.abs(u1 - r @ u0 @ r.T).max() > 1e-3  # direction-dependent: not equivariant


# -- ablations and the scalar head ---------------------------------------------------------------


@pytest.mark.parametrize(
    "switch", [{"use_direction": False}, {"use_temperature": False}, {"use_envelope": False}]
)
def test_ablation_switches_run_and_change_architecture(switch):
    config = CartNetConfig(**SMALL, **switch)
    model = randomised_model(config)
    keys = model.state_dict().keys()
    if "use_direction" in switch:
        assert model.encoder.encoder_edge[0].in_features == config.dim_rbf
    if "use_temperature" in switch:
        assert not any("temperature_proj_atom" in k for k in keys)
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    with torch.no_grad():
        u = model(graph_of(atoms, 300.0)).numpy()
        u_hot = model(graph_of(atoms, 600.0)).numpy()
    assert u.shape == (2, 3, 3) and np.isfinite(u).all()
    if "use_temperature" in switch:
        np.testing.assert_allclose(u, u_hot)
    else:
        assert not np.allclose(u, u_hot)


def test_scalar_head_is_a_per_structure_mean_and_batches():
    model = randomised_model(CartNetConfig(**SMALL, head="scalar"))
    structures = [
        bulk("Cu", "fcc", a=3.6),
        ethanol_crystal(4),
        bulk("NaCl", "rocksalt", a=5.64) * (2, 1, 1),
    ]
    graphs = [graph_of(a, 300.0) for a in structures]
    with torch.no_grad():
        single = torch.cat([model(g) for g in graphs])
        batched = model(batch_graphs(graphs))
        perm = model(graph_of(structures[1][np.random.default_rng(1).permutation(36)], 300.0))
    assert batched.shape == (3,)
    torch.testing.assert_close(batched, single, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(perm, single[1:2], rtol=1e-10, atol=1e-12)
    # a supercell of a crystal is the same crystal: the mean over atoms is unchanged
    with torch.no_grad():
        sup = model(graph_of(structures[0] * (2, 1, 1), 300.0))
    torch.testing.assert_close(sup, single[0:1], rtol=1e-9, atol=1e-12)


def test_batched_adps_equal_individual_predictions():
    model = randomised_model(CartNetConfig(**SMALL))
    structures = [bulk("Cu", "fcc", a=3.6), ethanol_crystal(5), bulk("NaCl", "rocksalt", a=5.64)]
    graphs = [graph_of(a, t) for a, t in zip(structures, (50.0, 150.0, 400.0), strict=True)]
    with torch.no_grad():
        single = torch.cat([model(g) for g in graphs])
        batched = model(batch_graphs(graphs))
    torch.testing.assert_close(batched, single, rtol=1e-10, atol=1e-12)


def test_output_mask_prunes_last_layer_exactly():
    """Selecting the non-H atoms (last layer restricted to their incoming edges) changes nothing."""
    model = randomised_model(CartNetConfig(**SMALL))
    atoms = ethanol_crystal(6)
    g = graph_of(atoms, 200.0)
    heavy = g.numbers != 1
    with torch.no_grad():
        full = model(g)
        masked = model(g, output_mask=heavy)
    assert masked.shape == (int(heavy.sum()), 3, 3)
    torch.testing.assert_close(masked, full[heavy], rtol=1e-12, atol=1e-14)


def test_unsorted_edges_fall_back_to_scatter_sum():
    model = randomised_model(CartNetConfig(**SMALL))
    g = graph_of(ethanol_crystal(7), 90.0)
    perm = torch.randperm(g.edge_index.shape[1], generator=torch.Generator().manual_seed(0))
    shuffled = g.clone()
    shuffled.edge_index, shuffled.cell_shift = g.edge_index[:, perm], g.cell_shift[perm]
    with torch.no_grad():
        torch.testing.assert_close(model(shuffled), model(g), rtol=1e-10, atol=1e-12)


def test_needle_like_ellipsoids_stay_positive_definite_in_float32():
    """A tiny softplus diagonal (U₀₀ ~ 1e-8 Å²) must not round to an eigenvalue ≤ 0."""
    from ase_cartnet.models.cartnet import CholeskyHead

    torch.manual_seed(0)
    head = CholeskyHead(8)
    with torch.no_grad():
        head.MLP[2].bias.copy_(torch.tensor([-9.0, -2.0, 0.0, 0.3, -0.2, 0.5]))
        u = head(torch.randn(500, 8))
    assert u.dtype == torch.float64
    assert (torch.linalg.eigvalsh(u) > 0).all()


def test_adp_floor_keeps_extreme_needles_positive_definite():
    """Even float64 cannot resolve a 1e-20 Å² eigenvalue next to 0.1 Å²; the floor εI can."""
    from ase_cartnet.models.cartnet import CholeskyHead

    torch.manual_seed(0)
    plain, floored = CholeskyHead(8), CholeskyHead(8, floor=1e-6)
    floored.load_state_dict(plain.state_dict())
    with torch.no_grad():
        for head in (plain, floored):
            head.MLP[2].bias.copy_(torch.tensor([-60.0, -2.0, 0.0, 3.0, -2.0, 5.0]))
        h = torch.randn(2000, 8)
        u_plain, u_floor = plain(h), floored(h)
    assert (torch.linalg.eigvalsh(u_floor) > 0).all()
    torch.testing.assert_close(
        u_floor - u_plain, torch.eye(3, dtype=torch.float64).expand(2000, 3, 3) * 1e-6
    )


# -- the blocked, in-place inference path equals the layer-by-layer form ------------------------


def _both_paths(model, g, **kwargs):
    """(blocked in-place inference, autograd-enabled eval form) outputs of one graph."""
    with torch.no_grad():
        blocked = model(g, **kwargs)
    with torch.enable_grad():  # autograd on: the plain split/fused layers
        plain = model(g, **kwargs).detach()
    return blocked, plain


@pytest.mark.parametrize("chunk_size", [1, 7, 100, 10**6])
@pytest.mark.parametrize("head", ["cholesky", "harmonic", "scalar"])
def test_blocked_inference_equals_the_plain_forward(chunk_size, head):
    extra = {"use_temperature": False} if head == "harmonic" else {}
    model = randomised_model(CartNetConfig(**SMALL, head=head, **extra))
    model.chunk_size = chunk_size
    atoms = ethanol_crystal(8)
    g = graph_of(atoms, 180.0)
    if head == "harmonic":
        g.masses = torch.tensor(atoms.get_masses())
    mask = {"output_mask": g.numbers != 1} if head != "scalar" else {}
    blocked, plain = _both_paths(model, g, **mask)
    torch.testing.assert_close(blocked, plain, rtol=0, atol=1e-12 * float(plain.abs().max()))
    if head == "cholesky":  # against the direct concatenation form as well
        vec = -edge_vectors(g.pos, g.cell, g.edge_index, g.cell_shift)
        t_std = float(model.standardise_temperature(torch.tensor(180.0, dtype=torch.float64)))
        direct = reference_cartnet(model.state_dict(), g.numbers, g.edge_index, vec, t_std, 2)
        torch.testing.assert_close(blocked, direct[g.numbers != 1], rtol=0, atol=1e-12)


def test_blocked_inference_with_unsorted_edges_and_isolated_atoms():
    """Unsorted edges take edge tiles with a scatter sum; an atom without neighbours (here a
    far-away Cu in a large cell) keeps a zero message sum in every block layout."""
    model = randomised_model(CartNetConfig(**SMALL))
    model.chunk_size = 5
    atoms = ethanol_crystal(9)
    atoms.set_cell(atoms.cell[:] * 3, scale_atoms=False)
    atoms += Atoms("Cu", positions=[atoms.cell[:].sum(0) * 0.6])
    g = graph_of(atoms, 120.0)
    assert int((g.edge_index[1] == len(atoms) - 1).sum()) == 0
    perm = torch.randperm(g.edge_index.shape[1], generator=torch.Generator().manual_seed(1))
    shuffled = g.clone()
    shuffled.edge_index, shuffled.cell_shift = g.edge_index[:, perm], g.cell_shift[perm]
    for graph in (g, shuffled):
        blocked, plain = _both_paths(model, graph, output_mask=graph.numbers != 1)
        torch.testing.assert_close(blocked, plain, rtol=0, atol=1e-12)


def test_edge_blocks_cover_every_edge_once_in_whole_target_atoms():
    from ase_cartnet.models.blocks import segment_lengths
    from ase_cartnet.models.cartnet import edge_blocks

    target = torch.tensor([0, 0, 0, 2, 2, 3, 3, 3, 3, 3, 3, 5])
    lengths = segment_lengths(target, 7)
    blocks = edge_blocks(lengths, len(target), chunk_size=4)
    covered = torch.cat([torch.arange(len(target))[edges] for edges, _, _ in blocks])
    torch.testing.assert_close(covered, torch.arange(len(target)))
    for edges, first, end in blocks:
        nodes = target[edges]
        assert first <= int(nodes.min()) and int(nodes.max()) < end
        assert (
            not ((target >= first) & (target < end))
            .logical_xor(torch.isin(torch.arange(len(target)), torch.arange(len(target))[edges]))
            .any()
        )
    with pytest.raises(ValueError, match="chunk_size"):
        edge_blocks(lengths, len(target), chunk_size=0)


def test_compile_falls_back_to_eager_with_a_warning(monkeypatch):
    from ase_cartnet.models.cartnet import compile_blocks

    def broken_compile(*args, **kwargs):
        raise RuntimeError("no compiler on this platform")

    model = randomised_model(CartNetConfig(**SMALL))
    g = graph_of(ethanol_crystal(10), 210.0)
    with torch.no_grad():
        eager = model(g)
    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.warns(RuntimeWarning, match="torch.compile is unavailable"):
        compile_blocks(model)
    with torch.no_grad():
        torch.testing.assert_close(model(g), eager, rtol=0, atol=0)


def test_compiled_function_failing_at_run_time_falls_back(monkeypatch):
    from ase_cartnet.models import cartnet

    def compile_that_fails_later(function, **kwargs):
        def run(*args):
            raise RuntimeError("inductor: C++ compile failed")

        return run

    monkeypatch.setattr(torch, "compile", compile_that_fails_later)
    model = cartnet.compile_blocks(randomised_model(CartNetConfig(**SMALL)))
    g = graph_of(ethanol_crystal(11), 210.0)
    with pytest.warns(RuntimeWarning, match="runs uncompiled"), torch.no_grad():
        out = model(g)
    with torch.enable_grad():
        torch.testing.assert_close(out, model(g).detach(), rtol=0, atol=1e-12)
