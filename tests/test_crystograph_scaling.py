"""Positional encodings of large cells: the sparse paths equal the dense computations."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from ase_cartnet.benchmarking.reference import dense_random_walk
from ase_cartnet.graph import crystograph as cg
from ase_cartnet.graph.neighbours import knn_graph


def random_cell(n: int, seed: int) -> Atoms:
    """n atoms at random in a triclinic cell (no symmetry: non-degenerate spectrum)."""
    rng = np.random.default_rng(seed)
    length = (n * 12.0) ** (1 / 3)
    return Atoms(
        rng.choice(["Na", "Cl", "O"], size=n),
        scaled_positions=rng.uniform(size=(n, 3)),
        cell=[length, 1.07 * length, 0.95 * length, 84, 97, 101],
        pbc=True,
    )


def edges_of(atoms: Atoms) -> np.ndarray:
    return knn_graph(atoms.positions, atoms.cell[:], atoms.pbc, 12).edge_index


@pytest.mark.parametrize(
    "atoms",
    [random_cell(37, 0), bulk("Cu", "fcc", a=3.6, cubic=True) * (3, 3, 3), bulk("Cu", "fcc")],
    ids=["random-37", "cu-108", "cu-1"],
)
def test_sparse_random_walk_equals_dense_powers(atoms, monkeypatch):
    monkeypatch.setattr(cg, "WALK_ROW_BLOCK", 16)  # several row blocks
    edges = edges_of(atoms)
    got = cg.random_walk_pe(edges, len(atoms), 16)
    np.testing.assert_allclose(got, dense_random_walk(edges, len(atoms), 16), rtol=0, atol=1e-13)


def test_sparse_laplacian_equals_dense_for_a_non_degenerate_spectrum(monkeypatch):
    atoms = random_cell(90, 1)
    edges = edges_of(atoms)
    dense = cg.laplacian_pe(edges, len(atoms), 8, "signed")
    monkeypatch.setattr(cg, "DENSE_EIGEN_MAX", 10)
    sparse = cg.laplacian_pe(edges, len(atoms), 8, "signed")
    np.testing.assert_allclose(sparse, dense, rtol=0, atol=1e-8)


def test_sparse_laplacian_projector_equals_dense_with_degenerate_eigenspaces(monkeypatch):
    """A Cu supercell's spectrum is highly degenerate: the projector form is basis-free, and the
    sparse solve extends its eigenpairs until the last eigenspace is complete."""
    atoms = bulk("Cu", "fcc", a=3.6) * (4, 4, 4)
    edges = edges_of(atoms)
    dense = cg.laplacian_pe(edges, len(atoms), 8, "projector")
    monkeypatch.setattr(cg, "DENSE_EIGEN_MAX", 10)
    sparse = cg.laplacian_pe(edges, len(atoms), 8, "projector")
    np.testing.assert_allclose(sparse, dense, rtol=0, atol=1e-8)
