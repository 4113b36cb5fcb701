"""Neighbour lists and graphs (ase_cartnet.graph): edge sets, conventions, cap, kNN, batching."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.neighborlist import neighbor_list
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from shared_paths import FIXTURES, needs_shared

from ase_cartnet.graph.neighbours import (
    NeighbourList,
    atoms_to_graph,
    batch_graphs,
    cap_neighbours,
    edge_vectors,
    knn_graph,
    radius_graph,
)

# ----------------------------------------------------------------------------------------------
# brute-force reference (numpy, independent of vesin)
# ----------------------------------------------------------------------------------------------


def brute_force(pos, cell, pbc, cutoff):
    """{(target i, source j, n): d²} for every 1e-4 < d² <= cutoff², by scanning shifts.

    For each pair the shift range along periodic axis k is bounded with the reciprocal vector
    b_k of the periodic sub-lattice: b_k·(r_j − r_i + n·C) = b_k·(r_j − r_i) + n_k, and
    |b_k·v| <= |b_k| |v| <= |b_k| cutoff.
    """
    pos = np.asarray(pos, float)
    cell = np.asarray(cell, float)
    pbc = np.asarray(pbc, bool)
    axes = np.flatnonzero(pbc)
    recip = np.linalg.pinv(cell[axes]) if axes.size else np.zeros((3, 0))  # (3, k)
    reach = cutoff * np.linalg.norm(recip, axis=0)
    out = {}
    for i, j in itertools.product(range(len(pos)), repeat=2):
        delta = pos[j] - pos[i]
        frac = delta @ recip
        ranges = [range(0, 1)] * 3
        for slot, axis in enumerate(axes):
            lo = int(np.floor(-frac[slot] - reach[slot])) - 1
            hi = int(np.ceil(-frac[slot] + reach[slot])) + 1
            ranges[axis] = range(lo, hi + 1)
        shifts = np.array(list(itertools.product(*ranges)), dtype=np.int64)
        vec = delta + shifts @ cell
        d2 = np.einsum("ij,ij->i", vec, vec)
        for n, value in zip(
            shifts[(d2 > 1e-4) & (d2 <= cutoff**2)],
            d2[(d2 > 1e-4) & (d2 <= cutoff**2)],
            strict=True,
        ):
            out[(i, j, tuple(int(x) for x in n))] = float(value)
    return out


def as_dict(nl: NeighbourList):
    return {
        (int(i), int(j), tuple(int(x) for x in n)): float(d) ** 2
        for j, i, n, d in zip(
            nl.edge_index[0], nl.edge_index[1], nl.cell_shifts, nl.distances, strict=True
        )
    }


def unambiguous(edges, cutoff, eps=1e-9):
    """Drop edges whose d² is within eps of a boundary (float rounding may decide those)."""
    return {
        key: d2 for key, d2 in edges.items() if abs(d2 - cutoff**2) > eps and abs(d2 - 1e-4) > eps
    }


def assert_canonical(nl: NeighbourList, n_atoms: int):
    E = nl.num_edges
    assert nl.edge_index.shape == (2, E) and nl.edge_index.dtype == np.int64
    assert nl.cell_shifts.shape == (E, 3) and nl.cell_shifts.dtype == np.int64
    assert nl.distances.shape == (E,) and nl.distances.dtype == np.float64
    if E:
        assert nl.edge_index.min() >= 0 and nl.edge_index.max() < n_atoms
    keys = np.column_stack([nl.edge_index[1], nl.edge_index[0], nl.cell_shifts])
    # strictly increasing lexicographically: sorted and no duplicates
    for a, b in zip(keys[:-1], keys[1:], strict=True):
        assert tuple(a) < tuple(b)


# ----------------------------------------------------------------------------------------------
# hypothesis strategies
# ----------------------------------------------------------------------------------------------

unit = st.floats(-1.0, 1.0, allow_nan=False)


@st.composite
def structures(draw, max_atoms=6, min_length=1.5, max_length=6.0, periodic=None):
    lengths = draw(arrays(np.float64, 3, elements=st.floats(min_length, max_length)))
    skew = draw(arrays(np.float64, (3, 3), elements=unit))
    cell = lengths[:, None] * (np.eye(3) + 0.35 * skew)
    volume = abs(np.linalg.det(cell))
    assume(volume > 0.3 * np.prod(np.linalg.norm(cell, axis=1)))
    n_atoms = draw(st.integers(1, max_atoms))
    frac = draw(arrays(np.float64, (n_atoms, 3), elements=st.floats(-1.5, 2.5)))
    pos = frac @ cell
    if periodic is None:
        pbc = np.array(draw(st.tuples(st.booleans(), st.booleans(), st.booleans())))
    else:
        pbc = np.array(periodic, dtype=bool)
    if not pbc.all() and draw(st.booleans()):
        cell = cell.copy()
        cell[~pbc] = 0.0  # e.g. molecules with an all-zero cell, slabs without a c vector
    return pos, cell, pbc


FAST = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


# ----------------------------------------------------------------------------------------------
# radius graph
# ----------------------------------------------------------------------------------------------


@settings(FAST, max_examples=150)
@given(structures(), st.floats(0.5, 5.0))
def test_radius_graph_matches_brute_force(structure, cutoff):
    pos, cell, pbc = structure
    nl = radius_graph(pos, cell, pbc, cutoff)
    assert_canonical(nl, len(pos))
    ours, ref = as_dict(nl), brute_force(pos, cell, pbc, cutoff)
    assert set(unambiguous(ours, cutoff)) == set(unambiguous(ref, cutoff))
    for key, d2 in ours.items():
        if key in ref:
            assert abs(np.sqrt(d2) - np.sqrt(ref[key])) < 1e-9
    # distances are |r_j + n·C − r_i| of the positions as given (nothing wrapped)
    vec = pos[nl.edge_index[0]] + nl.cell_shifts @ cell - pos[nl.edge_index[1]]
    np.testing.assert_allclose(np.linalg.norm(vec, axis=1), nl.distances, atol=1e-10)


@settings(FAST, max_examples=30)
@given(structures(max_atoms=3, min_length=1.5, max_length=2.5, periodic=(True, True, True)))
def test_tiny_cells_long_cutoff_have_many_images(structure):
    """Cutoff several times the cell: many images, including an atom's own images."""
    pos, cell, pbc = structure
    nl = radius_graph(pos, cell, pbc, 6.0)
    ref = brute_force(pos, cell, pbc, 6.0)
    assert set(unambiguous(as_dict(nl), 6.0)) == set(unambiguous(ref, 6.0))
    self_images = nl.edge_index[0] == nl.edge_index[1]
    assert self_images.any()
    assert np.all(np.any(nl.cell_shifts[self_images] != 0, axis=1))
    assert np.abs(nl.cell_shifts).max() >= 2


def test_cutoff_is_inclusive_and_self_pair_excluded():
    pos = np.array([[0.0, 0.0, 0.0], [2.5, 0.0, 0.0], [2.5, 0.0, 0.005]])
    nl = radius_graph(pos, np.zeros((3, 3)), False, 2.5)
    pairs = {(int(j), int(i)) for j, i in nl.edge_index.T}
    assert (0, 1) in pairs and (1, 0) in pairs  # d = 2.5 exactly: inclusive
    assert (1, 2) not in pairs and (2, 1) not in pairs  # d² = 2.5e-5 <= 1e-4: not an edge
    # periodic cell of 2.5 Å: the atom's own image at exactly the cutoff is an edge
    nl = radius_graph(pos[:1], np.eye(3) * 2.5, True, 2.5)
    assert nl.num_edges == 6
    assert np.all(nl.edge_index == 0)


def test_radius_graph_agrees_with_ase_on_a_bulk_supercell():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((4, 4, 4))
    atoms.rattle(0.1, seed=1)
    atoms.positions += 7.3  # outside the cell: shifts are relative to the given positions
    nl = radius_graph(atoms.positions, atoms.cell, atoms.pbc, 5.0)
    i, j, S = neighbor_list("ijS", atoms, 5.0)
    ase_keys = set(zip(i.tolist(), j.tolist(), map(tuple, S.tolist()), strict=True))
    ours = set(
        zip(
            nl.edge_index[1].tolist(),
            nl.edge_index[0].tolist(),
            map(tuple, nl.cell_shifts.tolist()),
            strict=True,
        )
    )
    assert ours == ase_keys
    assert_canonical(nl, len(atoms))


def test_accepts_torch_and_ase_inputs():
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    a = radius_graph(atoms.positions, atoms.cell, atoms.pbc, 4.0)
    b = radius_graph(torch.tensor(atoms.positions), torch.tensor(atoms.cell[:]), [1, 1, 1], 4.0)
    np.testing.assert_array_equal(a.edge_index, b.edge_index)
    np.testing.assert_array_equal(a.cell_shifts, b.cell_shifts)


# ----------------------------------------------------------------------------------------------
# neighbour cap
# ----------------------------------------------------------------------------------------------


def star(d2_per_target):
    """A NeighbourList with the given squared distances on incoming edges of each target."""
    src, tgt, d2 = [], [], []
    for target, values in enumerate(d2_per_target):
        for source, value in enumerate(values):
            src.append(source + len(d2_per_target))
            tgt.append(target)
            d2.append(value)
    E = len(d2)
    return NeighbourList(
        edge_index=np.array([src, tgt], dtype=np.int64),
        cell_shifts=np.zeros((E, 3), dtype=np.int64),
        distances=np.sqrt(np.array(d2, dtype=np.float64)),
    )


def test_cap_with_64_or_65_neighbours_keeps_all():
    for count in (64, 65):
        nl = star([1.0 + 0.1 * np.arange(count)])
        capped = cap_neighbours(nl, 64)
        assert capped.num_edges == count


def test_cap_keeps_65_nearest_plus_ties_within_tolerance():
    d2 = 1.0 + 0.1 * np.arange(80)  # D65 = 1 + 6.4 = 7.4 Å²
    d2[70] = 7.4 + 0.009  # within 0.01 Å² of D65: kept
    d2[71] = 7.4 + 0.0  # an exact tie: kept
    d2[72] = 7.4 + 0.011  # just outside: dropped
    rng = np.random.default_rng(0)
    order = rng.permutation(80)  # the cap must not depend on edge order
    nl = star([d2[order], 2.0 + np.arange(30.0)])  # target 1 has 30 edges: untouched
    capped = cap_neighbours(nl, 64)
    kept0 = np.sort(capped.distances[capped.edge_index[1] == 0] ** 2)
    np.testing.assert_allclose(kept0, np.sort(np.r_[d2[:65], 7.409, 7.4]))
    assert (capped.edge_index[1] == 1).sum() == 30
    # edge order preserved (a subsequence of the input)
    keep = np.isin(nl.distances, capped.distances)
    np.testing.assert_array_equal(nl.edge_index[:, keep], capped.edge_index)


def test_cap_tolerance_is_on_squared_distance():
    d2 = np.r_[np.arange(1.0, 6.0), 6.0, 6.05]  # 5 smallest, D6 = 6.0, then 6.05
    assert cap_neighbours(star([d2]), 5, tolerance=0.01).num_edges == 6
    assert cap_neighbours(star([d2]), 5, tolerance=0.06).num_edges == 7
    assert cap_neighbours(star([d2]), 5, tolerance=0.0).num_edges == 6


def naive_cap(nl: NeighbourList, max_neighbours: int, tolerance: float) -> np.ndarray:
    """Indices of the kept edges, one target at a time."""
    kept = []
    for target in np.unique(nl.edge_index[1]):
        mine = np.flatnonzero(nl.edge_index[1] == target)
        d2 = nl.distances[mine] ** 2
        if len(mine) > max_neighbours:
            mine = mine[d2 <= np.sort(d2)[max_neighbours] + tolerance]
        kept.extend(mine.tolist())
    return np.sort(np.array(kept, dtype=np.int64))


@settings(FAST, max_examples=60)
@given(
    st.lists(st.integers(0, 40), min_size=1, max_size=80),
    st.sampled_from([0, 3000]),
    st.integers(1, 30),
    st.integers(0, 2**32 - 1),
)
def test_cap_matches_per_target_reference(degrees, big, max_neighbours, seed):
    """Any edge order, uneven degrees (one huge target exercises the sort-based path), and
    distances on a coarse grid so that ties and near-ties are common."""
    rng = np.random.default_rng(seed)
    degrees = [*degrees, big]
    tgt = np.repeat(np.arange(len(degrees)), degrees)
    d2 = 1.0 + 0.005 * rng.integers(0, 200, tgt.shape[0])
    perm = rng.permutation(tgt.shape[0])
    nl = NeighbourList(
        edge_index=np.stack([rng.integers(0, 50, tgt.shape[0]), tgt])[:, perm],
        cell_shifts=rng.integers(-2, 3, (tgt.shape[0], 3))[perm],
        distances=np.sqrt(d2)[perm],
    )
    capped = cap_neighbours(nl, max_neighbours, tolerance=0.01)
    kept = naive_cap(nl, max_neighbours, 0.01)
    np.testing.assert_array_equal(capped.edge_index, nl.edge_index[:, kept])
    np.testing.assert_array_equal(capped.cell_shifts, nl.cell_shifts[kept])
    np.testing.assert_array_equal(capped.distances, nl.distances[kept])


def test_radius_graph_cap_matches_a_per_atom_reference():
    atoms = bulk("Cu", "fcc", a=3.4, cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.2, seed=3)
    full = radius_graph(atoms.positions, atoms.cell, True, 5.0)
    capped = radius_graph(atoms.positions, atoms.cell, True, 5.0, max_neighbours=40)
    assert np.bincount(full.edge_index[1]).max() > 40
    expected = naive_cap(full, 40, 0.01)
    np.testing.assert_array_equal(capped.edge_index, full.edge_index[:, expected])
    np.testing.assert_array_equal(capped.cell_shifts, full.cell_shifts[expected])


# ----------------------------------------------------------------------------------------------
# the official CartNet fixture
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def upstream():
    from ase.io import read

    path = FIXTURES / "inputs.extxyz"
    if not path.is_file():
        pytest.skip("CartNet upstream fixture absent")
    return read(path, ":"), np.load(FIXTURES / "expected_small.npz")


@needs_shared
@pytest.mark.parametrize("k", [0, 1, 2])
@pytest.mark.parametrize("suffix", ["", "_nocap"])
def test_upstream_fixture_edges(upstream, k, suffix):
    frames, ref = upstream
    atoms = frames[k]
    cap = 64 if suffix == "" else None
    nl = radius_graph(atoms.positions, atoms.cell, atoms.pbc, 5.0, max_neighbours=cap)
    ref_index = ref[f"s{k}_edge_index{suffix}"]
    ref_shift = ref[f"s{k}_cell_offset{suffix}"]
    ours = set(zip(*nl.edge_index.tolist(), map(tuple, nl.cell_shifts.tolist()), strict=True))
    theirs = set(zip(*ref_index.tolist(), map(tuple, ref_shift.tolist()), strict=True))
    assert ours == theirs
    assert nl.num_edges == int(ref[f"s{k}_num_edges{suffix}"])
    np.testing.assert_array_equal(
        np.bincount(nl.edge_index[1], minlength=len(atoms)),
        ref[f"s{k}_neighbours_per_atom{suffix}"],
    )

    # edge vectors: upstream stores r_i − (r_j + n·C), the negative of ours
    position = {
        key: e
        for e, key in enumerate(
            zip(*ref_index.tolist(), map(tuple, ref_shift.tolist()), strict=True)
        )
    }
    perm = np.array(
        [
            position[key]
            for key in zip(
                *nl.edge_index.tolist(), map(tuple, nl.cell_shifts.tolist()), strict=True
            )
        ]
    )
    vec = edge_vectors(
        torch.tensor(atoms.positions),
        torch.tensor(atoms.cell[:]),
        torch.from_numpy(nl.edge_index),
        torch.from_numpy(nl.cell_shifts),
    )
    np.testing.assert_allclose(-vec.numpy(), ref[f"s{k}_edge_vec{suffix}"][perm], atol=1e-5)
    if k == 2:
        assert int((nl.edge_index[0] == nl.edge_index[1]).sum()) == 24


# ----------------------------------------------------------------------------------------------
# edge vectors (torch)
# ----------------------------------------------------------------------------------------------


def _small_periodic(seed=0, n=3):
    rng = np.random.default_rng(seed)
    cell = np.diag(rng.uniform(2.5, 3.5, 3)) + rng.uniform(-0.4, 0.4, (3, 3))
    pos = rng.uniform(-0.2, 1.2, (n, 3)) @ cell
    return pos, cell


def test_edge_vectors_gradcheck_positions_and_cell():
    pos, cell = _small_periodic()
    nl = radius_graph(pos, cell, True, 3.0)
    ei, shifts = torch.from_numpy(nl.edge_index), torch.from_numpy(nl.cell_shifts)
    p = torch.tensor(pos, requires_grad=True)
    c = torch.tensor(cell, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda p, c: edge_vectors(p, c, ei, shifts), (p, c), fast_mode=True
    )
    # batched form (B, 3, 3) with a batch vector, and (1, 3, 3) without one
    pos2, cell2 = _small_periodic(1, 2)
    p_all = torch.tensor(np.vstack([pos, pos2]), requires_grad=True)
    c_all = torch.tensor(np.stack([cell, cell2]), requires_grad=True)
    nl2 = radius_graph(pos2, cell2, True, 3.0)
    ei_all = torch.cat([ei, torch.from_numpy(nl2.edge_index) + len(pos)], dim=1)
    s_all = torch.cat([shifts, torch.from_numpy(nl2.cell_shifts)]).double()
    batch = torch.tensor([0] * len(pos) + [1] * len(pos2))
    assert torch.autograd.gradcheck(
        lambda p, c: edge_vectors(p, c, ei_all, s_all, batch), (p_all, c_all), fast_mode=True
    )
    c1 = torch.tensor(cell[None], requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda p, c: edge_vectors(p, c, ei, shifts), (p, c1), fast_mode=True
    )


def test_edge_vectors_batched_equal_single():
    eth = molecule("CH3CH2OH")  # non-periodic, zero cell
    nacl = bulk("NaCl", "rocksalt", a=5.64).repeat((2, 1, 1))
    nacl.rattle(0.05, seed=0)
    slab = bulk("Cu", "fcc", a=3.6, orthorhombic=True).repeat((2, 2, 2))
    slab.pbc = (True, True, False)
    slab.cell[2] = 0.0
    structures_ = [eth, nacl, slab]
    graphs = [atoms_to_graph(a, 4.0, dtype=torch.float64) for a in structures_]
    batch = batch_graphs(graphs)
    assert batch.cell.shape == (3, 3, 3)
    together = edge_vectors(batch.pos, batch.cell, batch.edge_index, batch.cell_shift, batch.batch)
    alone = torch.cat(
        [edge_vectors(g.pos, g.cell, g.edge_index, g.cell_shift) for g in graphs], dim=0
    )
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-12)
    for atoms, graph in zip(structures_, graphs, strict=True):
        nl = radius_graph(atoms.positions, atoms.cell, atoms.pbc, 4.0)
        vec = edge_vectors(graph.pos, graph.cell, graph.edge_index, graph.cell_shift)
        np.testing.assert_allclose(vec.norm(dim=1).numpy(), nl.distances, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# graphs and batches
# ----------------------------------------------------------------------------------------------


def test_atoms_to_graph_fields():
    atoms = bulk("NaCl", "rocksalt", a=5.64).repeat((2, 1, 1))
    graph = atoms_to_graph(atoms, 5.0)
    N, E = len(atoms), graph.edge_index.shape[1]
    assert graph.numbers.dtype == torch.int64 and graph.numbers.tolist() == [11, 17, 11, 17]
    assert graph.pos.shape == (N, 3) and graph.pos.dtype == torch.float32
    assert graph.cell.shape == (1, 3, 3) and graph.cell.dtype == torch.float32
    assert graph.pbc.shape == (1, 3) and graph.pbc.dtype == torch.bool
    assert graph.edge_index.dtype == torch.int64
    assert graph.cell_shift.shape == (E, 3) and graph.cell_shift.dtype == torch.float32
    assert graph.num_nodes == N
    capped = atoms_to_graph(atoms, 5.0, max_neighbours=10)
    assert capped.edge_index.shape[1] < E
    knn = atoms_to_graph(atoms, k=12, dtype=torch.float64)
    assert knn.pos.dtype == torch.float64
    assert torch.bincount(knn.edge_index[1]).tolist() == [12] * N


def test_batch_graphs_offsets_and_stacks():
    a = atoms_to_graph(molecule("H2O"), 3.0)
    b = atoms_to_graph(bulk("Si"), 3.0)
    a.temperature = torch.tensor([100.0])
    b.temperature = torch.tensor([300.0])
    batch = batch_graphs([a, b, a])
    assert batch.num_graphs == 3
    assert batch.cell.shape == (3, 3, 3) and batch.pbc.shape == (3, 3)
    assert batch.temperature.tolist() == [100.0, 300.0, 100.0]
    Ea, Eb = a.edge_index.shape[1], b.edge_index.shape[1]
    torch.testing.assert_close(batch.edge_index[:, Ea : Ea + Eb], b.edge_index + 3)
    torch.testing.assert_close(batch.edge_index[:, Ea + Eb :], a.edge_index + 5)
    assert batch.batch.tolist() == [0, 0, 0, 1, 1, 2, 2, 2]


# ----------------------------------------------------------------------------------------------
# kNN graph
# ----------------------------------------------------------------------------------------------


@settings(FAST, max_examples=60)
@given(structures(max_atoms=5, min_length=2.0, max_length=5.0), st.integers(1, 14))
def test_knn_graph_is_k_nearest(structure, k):
    pos, cell, pbc = structure
    if not pbc.any():
        assume(len(pos) > k)
        assume(
            np.min(np.linalg.norm(pos[:, None] - pos[None], axis=-1) + 1e3 * np.eye(len(pos)))
            > 0.05
        )
    nl = knn_graph(pos, cell, pbc, k, initial_cutoff=1.5)
    assert_canonical(nl, len(pos))
    np.testing.assert_array_equal(np.bincount(nl.edge_index[1], minlength=len(pos)), k)
    ref = brute_force(pos, cell, pbc, nl.distances.max() + 0.5)
    mine = as_dict(nl)
    assert set(mine) <= set(ref)
    for target in range(len(pos)):
        chosen = np.sort([np.sqrt(d2) for (i, _, _), d2 in mine.items() if i == target])
        nearest = np.sort([np.sqrt(d2) for (i, _, _), d2 in ref.items() if i == target])[:k]
        np.testing.assert_allclose(chosen, nearest, atol=1e-7)


def test_knn_ties_are_deterministic():
    """fcc has 12 equal nearest neighbours: k = 8 picks by (source, shift), not float noise."""
    atoms = bulk("Cu", "fcc", a=3.6)
    base = knn_graph(atoms.positions, atoms.cell, True, 8)
    moved = knn_graph(atoms.positions + [0.123, -7.77, 3.3], atoms.cell, True, 8)
    np.testing.assert_array_equal(base.edge_index, moved.edge_index)
    np.testing.assert_array_equal(base.cell_shifts, moved.cell_shifts)


def test_knn_molecule_needs_k_plus_one_atoms():
    water = molecule("H2O")
    nl = knn_graph(water.positions, None, False, 2)
    assert nl.num_edges == 6
    with pytest.raises(ValueError, match="k=3"):
        knn_graph(water.positions, np.zeros((3, 3)), False, 3)


# ----------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------

GOOD_POS = np.zeros((2, 3)) + [[0, 0, 0], [1, 1, 1]]
GOOD_CELL = np.eye(3) * 4.0


@pytest.mark.parametrize(
    ("positions", "cell", "pbc", "cutoff", "match"),
    [
        (np.zeros((2, 2)), GOOD_CELL, True, 5.0, "shape"),
        (np.zeros((0, 3)), GOOD_CELL, True, 5.0, "empty"),
        (GOOD_POS + [[np.nan, 0, 0], [0, 0, 0]], GOOD_CELL, True, 5.0, "non-finite"),
        (GOOD_POS + [[np.inf, 0, 0], [0, 0, 0]], GOOD_CELL, False, 5.0, "non-finite"),
        (GOOD_POS, GOOD_CELL, True, 0.0, "cutoff"),
        (GOOD_POS, GOOD_CELL, True, -1.0, "cutoff"),
        (GOOD_POS, GOOD_CELL, True, float("nan"), "cutoff"),
        (GOOD_POS, GOOD_CELL, True, "5", "cutoff"),
        (GOOD_POS, np.eye(2), True, 5.0, "shape"),
        (GOOD_POS, np.zeros((3, 3)), True, 5.0, "zero-length"),
        (GOOD_POS, np.array([[4.0, 0, 0], [0, 4, 0], [4, 4, 0]]), True, 5.0, "zero volume"),
        (GOOD_POS, np.array([[4.0, 0, 0], [8, 0, 0], [0, 0, 0]]), [1, 1, 0], 5.0, "zero volume"),
        (GOOD_POS, GOOD_CELL * [[1], [1], [0]], [True, True, True], 5.0, "zero-length"),
        (GOOD_POS, GOOD_CELL * [[np.nan], [1], [1]], True, 5.0, "non-finite"),
        (GOOD_POS, None, True, 5.0, "cell is required"),
        (GOOD_POS, GOOD_CELL, [True, False], 5.0, "pbc"),
        (GOOD_POS, np.eye(3) * 1e-3, True, 5.0, "too small"),
        (GOOD_POS, np.diag([1e-4, 1e-4, 0.0]), [1, 1, 0], 5.0, "too small"),
    ],
)
def test_radius_graph_bad_input(positions, cell, pbc, cutoff, match):
    with pytest.raises(ValueError, match=match):
        radius_graph(positions, cell, pbc, cutoff)


def test_other_bad_input():
    nl = radius_graph(GOOD_POS, GOOD_CELL, True, 5.0)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="max_neighbours"):
            cap_neighbours(nl, bad)
    with pytest.raises(ValueError, match="tolerance"):
        cap_neighbours(nl, 4, tolerance=-0.1)
    with pytest.raises(ValueError, match="k must"):
        knn_graph(GOOD_POS, GOOD_CELL, True, 0)
    atoms = Atoms("H2", positions=GOOD_POS, cell=GOOD_CELL, pbc=True)
    with pytest.raises(ValueError, match="exactly one"):
        atoms_to_graph(atoms, 5.0, k=3)
    with pytest.raises(ValueError, match="exactly one"):
        atoms_to_graph(atoms)
    with pytest.raises(ValueError, match="ase.Atoms"):
        atoms_to_graph(GOOD_POS, 5.0)
    with pytest.raises(ValueError, match="empty"):
        atoms_to_graph(Atoms(), 5.0)
    with pytest.raises(ValueError, match="k-NN"):
        atoms_to_graph(atoms, k=3, max_neighbours=2)
    with pytest.raises(ValueError, match="dtype"):
        atoms_to_graph(atoms, 5.0, dtype=torch.int64)
    with pytest.raises(ValueError, match="no graphs"):
        batch_graphs([])
    graph = atoms_to_graph(atoms, 5.0)
    batch = batch_graphs([graph, graph])
    with pytest.raises(ValueError, match="batch"):
        edge_vectors(batch.pos, batch.cell, batch.edge_index, batch.cell_shift)
    with pytest.raises(ValueError, match="cell_shifts"):
        edge_vectors(graph.pos, graph.cell, graph.edge_index, graph.cell_shift[:1])


def test_closest_pairs_finds_coincident_atoms_and_close_images():
    """Coincident atoms (d = 0, not edges by contract) and too-close periodic images are found."""
    from ase.build import bulk

    from ase_cartnet.graph.neighbours import closest_pairs

    atoms = bulk("NaCl", "rocksalt", a=5.64)
    assert len(closest_pairs(atoms.positions, atoms.cell[:], atoms.pbc, 0.5)) == 0
    atoms.positions[1] = atoms.positions[0]
    rows = closest_pairs(atoms.positions, atoms.cell[:], atoms.pbc, 0.5)
    assert len(rows) == 1 and tuple(rows[0, :2]) == (0, 1) and rows[0, 2] == 0.0
    tiny = bulk("Cu", "fcc", a=1.0)  # nearest image at 0.707 Å: an atom overlaps its own images
    rows = closest_pairs(tiny.positions, tiny.cell[:], tiny.pbc, 0.8)
    assert len(rows) == 6 and np.allclose(rows[:, 2], 1.0 / np.sqrt(2))
