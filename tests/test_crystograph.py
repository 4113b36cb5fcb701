"""CrysToGraph: atom descriptors, graph/line-graph/positional-encoding construction, invariances
of the model (float64, random weights), cell-choice dependence, bad input, a tiny training run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from ase_cartnet.errors import InputError
from ase_cartnet.graph.atom_features import BLOCKS, NUM_FEATURES, atom_feature_table, atom_features
from ase_cartnet.graph.crystograph import (
    crystograph_graph,
    laplacian_pe,
    line_graph,
    random_laplacian_sign_flip,
    random_walk_pe,
)
from ase_cartnet.graph.neighbours import batch_graphs, knn_graph
from ase_cartnet.models.crystograph import CrysToGraph, CrysToGraphConfig, cell_frames
from ase_cartnet.train.loop import TrainConfig, fit
from ase_cartnet.train.property_task import PropertyTask, predict_graphs

torch.set_num_threads(1)

SMALL = dict(dim=16, num_heads=2, head_dim=8, ffn_factor=1, line_dim=8, line_head_dim=4)


def low_symmetry(seed: int = 0, n: int = 5) -> Atoms:
    """A triclinic cell with random positions: no two neighbour distances tie."""
    rng = np.random.default_rng(seed)
    cell = np.diag([4.3, 4.9, 5.4]) + rng.uniform(-0.4, 0.4, (3, 3))
    while True:
        frac = rng.random((n, 3))
        atoms = Atoms(
            numbers=rng.choice([3, 8, 12, 26, 57], n), scaled_positions=frac, cell=cell, pbc=True
        )
        if np.min(atoms.get_all_distances(mic=True) + 10 * np.eye(n)) > 1.2:
            return atoms


def cu3au() -> Atoms:
    """L1₂ Cu3Au, 4-atom cubic cell: every atom's 12 nearest neighbours are a closed shell."""
    atoms = bulk("Cu", "fcc", a=3.75, cubic=True)
    atoms.numbers[0] = 79
    return atoms


def model(seed: int = 0, **changes) -> CrysToGraph:
    torch.manual_seed(seed)
    m = CrysToGraph(CrysToGraphConfig(**{**SMALL, **changes})).double().eval()
    # give BatchNorm non-trivial running statistics, so eval mode is not the identity
    for module in m.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    return m


def predict(m: CrysToGraph, structures) -> np.ndarray:
    c = m.config
    graphs = [
        crystograph_graph(
            a, lap_dim=c.lap_dim, rw_dim=c.rw_dim, lap_mode=c.lap_mode, dtype=torch.float64
        )
        for a in structures
    ]
    with torch.no_grad():
        return m(batch_graphs(graphs)).numpy()


def rotated(atoms: Atoms, seed: int, shift=(0.7, -1.3, 2.1)) -> Atoms:
    from scipy.spatial.transform import Rotation

    r = Rotation.random(random_state=seed).as_matrix()
    out = atoms.copy()
    out.set_cell(atoms.cell[:] @ r.T)
    out.positions = atoms.positions @ r.T + np.asarray(shift)
    return out


# -- atom descriptors ------------------------------------------------------------------------


def test_atom_descriptors_are_92_one_hot_blocks():
    table = atom_feature_table()
    assert NUM_FEATURES == 92 and table.shape == (101, 92)
    widths = [w for _, w in BLOCKS]
    starts = np.cumsum([0] + widths[:-1])
    for z in range(1, 101):
        for start, width in zip(starts, widths, strict=True):
            assert table[z, start : start + width].sum() <= 1.0  # one-hot or unknown (zero)
        assert table[z].sum() >= 7  # at most two properties unknown for any element
    # oxygen: group 16, period 2, 6 valence electrons, p block
    o = atom_features([8])[0]
    assert o[16] == 1 and o[19 + 1] == 1 and o[46 + 5] == 1 and o[78 + 1] == 1
    # iron: group 8, period 4, 8 valence electrons (3d6 4s2), d block
    fe = atom_features([26])[0]
    assert fe[8] == 1 and fe[19 + 3] == 1 and fe[46 + 7] == 1 and fe[78 + 2] == 1
    # lanthanum (f block in pymatgen) is in the 0th group category; lutetium in group 3
    assert atom_features([57])[0][0] == 1 and atom_features([71])[0][3] == 1
    assert len({tuple(row) for row in table[1:]}) > 90  # descriptors tell elements apart


def test_atom_descriptors_refuse_unknown_elements():
    with pytest.raises(InputError, match="atomic number 110"):
        atom_features([8, 110])
    with pytest.raises(InputError, match="atomic number 0"):
        atom_features([0])


# -- graphs and encodings ----------------------------------------------------------------------


def test_line_graph_pairs_every_incoming_with_every_outgoing_edge():
    atoms = low_symmetry(1)
    nl = knn_graph(atoms.positions, atoms.cell[:], atoms.pbc, 12)
    src, tgt = nl.edge_index
    lg = line_graph(nl.edge_index)
    out_degree = np.bincount(src, minlength=len(atoms))
    assert lg.shape[1] == int(out_degree[tgt].sum())
    assert np.all(tgt[lg[0]] == src[lg[1]])
    assert np.all(np.diff(lg[1]) >= 0)  # sorted by the receiving line-graph node
    assert len({(int(a), int(b)) for a, b in lg.T}) == lg.shape[1]


def test_random_walk_of_one_atom_cell_always_returns():
    """Every neighbour of a one-atom cell is an image of itself: return probability 1."""
    atoms = bulk("Cu", "fcc", a=3.6)
    g = crystograph_graph(atoms, lap_dim=4, rw_dim=5)
    assert g.edge_index.shape == (2, 12)
    assert torch.allclose(g.pe[:, 4:], torch.ones(1, 5))
    assert torch.all(g.pe[:, :4] == 0)  # no non-trivial Laplacian eigenvectors


def test_random_walk_first_step_is_self_image_fraction():
    atoms = low_symmetry(2)
    nl = knn_graph(atoms.positions, atoms.cell[:], atoms.pbc, 12)
    rw = random_walk_pe(nl.edge_index, len(atoms), 3)
    src, tgt = nl.edge_index
    self_fraction = np.bincount(tgt[src == tgt], minlength=len(atoms)) / 12.0
    np.testing.assert_allclose(rw[:, 0], self_fraction, atol=1e-15)


def test_laplacian_projector_encoding_is_basis_free():
    """N·diag(P_λ) sums to N × multiplicity per column and is unchanged by relabelling atoms,
    even for a symmetric structure with degenerate eigenvalues. (Cu3Au, L1₂: the 12 nearest
    neighbours are a closed shell, so k-NN has no ties that relabelling could break.)"""
    atoms = cu3au()
    nl = knn_graph(atoms.positions, atoms.cell[:], atoms.pbc, 12)
    n = len(atoms)
    pe = laplacian_pe(nl.edge_index, n, 5, "projector")
    assert np.all(pe >= -1e-12)
    column_sums = pe.sum(axis=0) / n
    np.testing.assert_allclose(column_sums, np.round(column_sums), atol=1e-9)
    perm = np.random.default_rng(0).permutation(n)
    shuffled = atoms[perm]
    nl2 = knn_graph(shuffled.positions, shuffled.cell[:], shuffled.pbc, 12)
    pe2 = laplacian_pe(nl2.edge_index, n, 5, "projector")
    np.testing.assert_allclose(pe2, pe[perm], atol=1e-9)


def test_signed_laplacian_encoding_is_unit_norm_and_flips():
    atoms = low_symmetry(3)
    nl = knn_graph(atoms.positions, atoms.cell[:], atoms.pbc, 12)
    n = len(atoms)
    pe = laplacian_pe(nl.edge_index, n, 3, "signed")
    np.testing.assert_allclose((pe**2).sum(axis=0), n, rtol=1e-12)  # √N · unit vectors
    graph = crystograph_graph(atoms, lap_dim=3, rw_dim=2)
    batch = batch_graphs([graph, graph])
    before = batch.pe.clone()
    random_laplacian_sign_flip(batch, 3, torch.Generator().manual_seed(1))
    assert torch.equal(batch.pe.abs(), before.abs())
    assert torch.equal(batch.pe[:, 3:], before[:, 3:])  # random-walk part untouched


def test_cell_frames_are_orthonormal_and_follow_rotations():
    cell = torch.tensor(low_symmetry(0).cell[:], dtype=torch.float64).unsqueeze(0)
    frame = cell_frames(cell)[0]
    torch.testing.assert_close(frame @ frame.T, torch.eye(3, dtype=torch.float64))
    assert torch.isclose(torch.linalg.det(frame), torch.tensor(1.0, dtype=torch.float64))
    local = cell[0] @ frame.T  # a along x, b in the xy plane
    assert abs(float(local[0, 1])) < 1e-12 and abs(float(local[1, 2])) < 1e-12


# -- invariances (float64, random weights) ---------------------------------------------------


@pytest.mark.parametrize("lap_mode", ["signed", "projector"])
def test_rotation_and_translation_invariance(lap_mode):
    m = model(lap_mode=lap_mode)
    structures = [low_symmetry(4), bulk("NaCl", "rocksalt", a=5.64)]
    reference = predict(m, structures)
    moved = predict(m, [rotated(a, seed) for seed, a in enumerate(structures)])
    np.testing.assert_allclose(moved, reference, atol=1e-12, rtol=0)


def test_permutation_invariance():
    """Exact for the projector encoding; for signed eigenvectors only without degeneracies.
    (Where the k-th neighbour distance is tied, as in rock salt with k = 12, k-NN itself picks
    neighbours by atom order, so no k-NN model is permutation invariant there.)"""
    rng = np.random.default_rng(0)
    sym = cu3au()
    low = low_symmetry(5, n=6)
    for lap_mode, structures in (("projector", [sym, low]), ("signed", [low])):
        m = model(lap_mode=lap_mode)
        reference = predict(m, structures)
        shuffled = predict(m, [a[rng.permutation(len(a))] for a in structures])
        np.testing.assert_allclose(shuffled, reference, atol=1e-12, rtol=0)


def test_batch_does_not_mix_structures():
    m = model()
    structures = [low_symmetry(6), bulk("Cu", "fcc", a=3.6), low_symmetry(7, n=3)]
    together = predict(m, structures)
    alone = np.concatenate([predict(m, [a]) for a in structures])
    np.testing.assert_allclose(together, alone, atol=1e-12, rtol=0)


# -- cell-choice dependence --------------------------------------------------------------------


def sl3z_cell(atoms: Atoms) -> Atoms:
    """The same crystal in another basis: a' = a + b, b' = b, c' = a + b + c (det 1)."""
    m = np.array([[1, 1, 0], [0, 1, 0], [1, 1, 1]])
    out = atoms.copy()
    out.set_cell(m @ atoms.cell[:], scale_atoms=False)
    out.wrap()
    return out


def cell_choice_changes(m: CrysToGraph, atoms: Atoms) -> tuple[float, float]:
    """|f(2×2×2 supercell) − f(cell)| and |f(SL3(Z) cell) − f(cell)| for an intensive f."""
    base, supercell, other = predict(m, [atoms, atoms * (2, 2, 2), sl3z_cell(atoms)])
    return abs(supercell - base), abs(other - base)


def test_cell_choice_without_encodings_or_angles_is_exact():
    """k-NN graph, line graph, eTGC, GwT attention and the mean readout are all the same for
    any cell of one crystal: without positional encodings and cell-frame angles the intensive
    prediction is exactly cell-independent (a low-symmetry crystal, so k-NN has no ties)."""
    m = model(lap_dim=0, rw_dim=0, use_edge_angles=False)
    supercell, other = cell_choice_changes(m, low_symmetry(8))
    assert supercell < 1e-11 and other < 1e-11


def test_cell_choice_dependence_is_measured(capsys):
    """The measurement of the issue (random weights; the trained numbers are in the README):
    positional encodings change with a supercell, cell-frame angles with an SL3(Z) basis. The
    projector encoding removes the eigenvector sign/basis part of the supercell change."""
    rows = []
    atoms = low_symmetry(9)
    for label, changes in (
        ("signed PE + angles (paper)", {"lap_mode": "signed"}),
        ("projector PE + angles", {"lap_mode": "projector"}),
        ("projector PE, no angles", {"lap_mode": "projector", "use_edge_angles": False}),
        ("random-walk PE only, no angles", {"lap_dim": 0, "use_edge_angles": False}),
    ):
        changes_seen = [cell_choice_changes(model(seed, **changes), atoms) for seed in range(3)]
        rows.append((label, *np.mean(changes_seen, axis=0)))
    with capsys.disabled():
        print("\n|Δ prediction| (random weights, output std 1): 2×2×2 supercell, SL3(Z) cell")
        for label, sc, sl in rows:
            print(f"  {label:<32} {sc:.3e}  {sl:.3e}")
    by_label = {label: (sc, sl) for label, sc, sl in rows}
    # without cell-frame angles an SL3(Z) basis change is exact (same graph, same encodings)
    assert by_label["projector PE, no angles"][1] < 1e-11
    assert by_label["random-walk PE only, no angles"][1] < 1e-11
    # with them it is not: the spherical angles live in the cell's frame
    assert by_label["projector PE + angles"][1] > 1e-6
    # the supercell changes the encodings, so its prediction changes in every variant with PEs
    assert all(sc > 1e-8 for sc, _ in by_label.values())


# -- bad input ---------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    molecule = Atoms("H2O", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    with pytest.raises(InputError, match="periodic along a, b and c"):
        crystograph_graph(molecule)
    with pytest.raises(InputError, match="empty"):
        crystograph_graph(Atoms(cell=np.eye(3) * 4, pbc=True))
    with pytest.raises(InputError, match="ase.Atoms"):
        crystograph_graph("NaCl.cif")
    bad = bulk("Cu", "fcc", a=3.6)
    bad.numbers[0] = 110
    with pytest.raises(InputError, match="atomic number 110"):
        crystograph_graph(bad)
    with pytest.raises(InputError, match="lap_mode"):
        crystograph_graph(bulk("Cu", "fcc", a=3.6), lap_mode="absolute")
    with pytest.raises(ValueError, match="lap_mode"):
        CrysToGraphConfig(lap_mode="abs")
    with pytest.raises(ValueError, match="target_std"):
        CrysToGraphConfig(target_std=0.0)
    with pytest.raises(ValueError, match="unknown CrysToGraphConfig fields"):
        CrysToGraphConfig.from_dict({"dim": 8, "depth": 3})


def test_checkpoint_of_another_model_is_refused(tmp_path):
    from ase_cartnet.errors import CheckpointError
    from ase_cartnet.io.checkpoint import load_model, save_checkpoint
    from ase_cartnet.models.cartnet import CartNet, CartNetConfig

    path = save_checkpoint(
        tmp_path / "cartnet.pt", CartNet(CartNetConfig(dim=8)), model_name="cartnet", config={}
    )
    with pytest.raises(CheckpointError, match="not a CrysToGraph"):
        load_model(path, "crystograph")
    m = CrysToGraph(CrysToGraphConfig(**SMALL))
    path = save_checkpoint(
        tmp_path / "wrong.pt",
        m,
        model_name="crystograph",
        config=CrysToGraphConfig(**{**SMALL, "dim": 24}).to_dict(),
    )
    with pytest.raises(CheckpointError, match="does not match"):
        load_model(path, "crystograph")


# -- training ------------------------------------------------------------------------------------


def test_tiny_training_run_learns_and_round_trips(tmp_path):
    """16 structures whose target is the lithium fraction: a small model trained for 25 epochs
    with the shared loop beats the mean predictor, and best.pt reloads to the same numbers."""
    from ase_cartnet.io.checkpoint import load_model

    structures = []
    rng = np.random.default_rng(0)
    for seed in range(16):
        a = low_symmetry(100 + seed, n=4)
        a.numbers = rng.choice([3, 9], 4)
        structures.append(a)
    y = np.array([np.mean(a.numbers == 3) for a in structures])
    config = CrysToGraphConfig(
        **SMALL, lap_dim=2, rw_dim=4, target_mean=float(y.mean()), target_std=float(y.std())
    )
    graphs = [crystograph_graph(a, lap_dim=2, rw_dim=4) for a in structures]
    task = PropertyTask(graphs, y, graphs, y, target_std=config.target_std, batch_size=4)
    torch.manual_seed(0)
    m = CrysToGraph(config)
    summary = fit(
        m,
        task,
        TrainConfig(epochs=25, lr=5e-3, pct_start=0.2),
        tmp_path,
        model_name="crystograph",
        model_config=config.to_dict(),
        progress=False,
    )
    dummy = float(np.abs(y - y.mean()).mean())
    assert summary["best"]["mae"] < 0.5 * dummy
    reloaded = load_model(tmp_path / "best.pt", "crystograph").model
    err = np.abs(predict_graphs(reloaded, graphs) - y).mean()
    assert err == pytest.approx(summary["best"]["mae"], rel=1e-5)
