"""DeepRelax with the shipped weights predicts the same relaxed crystal however the input is
written (hypothesis over random crystals): relabelled atoms, a translated crystal, another
periodic image of an atom, another cell basis, other structures in the batch.

Tolerances: 1e-6 Å / 1e-6 Å² (float32 model; the canonical listing makes the model's inputs
bitwise equal, so what remains is the round-off of mapping the answer back). Translation by t
moves the result by t L⁻¹L̂ (the cell deforms about the Cartesian origin, as in ASE's cell
filters and the teacher relaxations), and the relaxed crystal itself is unchanged."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from ase import Atoms
from crystal_strategies import BASES, crystals
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ase_cartnet.calculators.deeprelax import load_deeprelax, predict
from ase_cartnet.weights import DEFAULT_DEEPRELAX

pytestmark = pytest.mark.skipif(
    not DEFAULT_DEEPRELAX.is_file(), reason="no shipped DeepRelax weights"
)
TOL = 1e-6
CRYSTALS = crystals(volume_per_atom=(8, 20), min_distance=1.2)
"""Denser than the default: 8–20 Å³ per atom, atoms at least 1.2 Å apart."""


@pytest.fixture(scope="module")
def ensemble():
    return load_deeprelax()[0]


def _run(ensemble, structures, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return predict(ensemble, structures, threshold=0.1, **kwargs)


def _same(a, b, shift=0.0) -> None:
    np.testing.assert_allclose(b.atoms.cell[:], a.atoms.cell[:], atol=TOL)
    np.testing.assert_allclose(b.atoms.positions, a.atoms.positions + shift, atol=TOL)
    assert abs(a.uncertainty.global_uncertainty - b.uncertainty.global_uncertainty) < TOL
    assert a.uncertainty.trusted == b.uncertainty.trusted


SETTINGS = settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(CRYSTALS, st.randoms(use_true_random=False))
def test_permutation(ensemble, atoms, random):
    perm = np.array(random.sample(range(len(atoms)), len(atoms)))
    a, b = _run(ensemble, [atoms, atoms[perm]])
    np.testing.assert_allclose(b.atoms.positions, a.atoms.positions[perm], atol=TOL)
    np.testing.assert_allclose(b.atoms.cell[:], a.atoms.cell[:], atol=TOL)


@SETTINGS
@given(CRYSTALS, st.lists(st.floats(-7, 7), min_size=3, max_size=3))
def test_translation(ensemble, atoms, t):
    moved = atoms.copy()
    moved.translate(t)
    a, b = _run(ensemble, [atoms, moved])
    _same(a, b, shift=np.asarray(t) @ np.linalg.solve(atoms.cell[:], a.atoms.cell[:]))


@SETTINGS
@given(CRYSTALS, st.integers(0, 5), st.lists(st.integers(-2, 2), min_size=3, max_size=3))
def test_periodic_image(ensemble, atoms, index, image):
    index %= len(atoms)
    other = atoms.copy()
    other.positions[index] += np.asarray(image) @ atoms.cell[:]
    a, b = _run(ensemble, [atoms, other])
    expected = a.atoms.positions.copy()
    expected[index] += np.asarray(image) @ a.atoms.cell[:]  # the image in the predicted cell
    np.testing.assert_allclose(b.atoms.positions, expected, atol=TOL)
    np.testing.assert_allclose(b.atoms.cell[:], a.atoms.cell[:], atol=TOL)


@SETTINGS
@given(CRYSTALS, st.sampled_from(BASES))
def test_cell_basis(ensemble, atoms, basis):
    basis = np.asarray(basis)
    assert abs(round(np.linalg.det(basis))) == 1
    other = atoms.copy()
    other.set_cell(basis @ atoms.cell[:], scale_atoms=False)  # the same lattice
    a, b = _run(ensemble, [atoms, other])
    np.testing.assert_allclose(b.atoms.cell[:], basis @ a.atoms.cell[:], atol=TOL)
    np.testing.assert_allclose(b.atoms.positions, a.atoms.positions, atol=TOL)


@settings(
    max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(CRYSTALS, min_size=3, max_size=5))
def test_batch_independence(ensemble, structures):
    together = _run(ensemble, structures, batch_size=16)
    for atoms, batched in zip(structures, together, strict=True):
        (alone,) = _run(ensemble, [atoms], batch_size=1)
        _same(alone, batched)


def test_float64_too(ensemble):
    """The same holds in float64 (one example: the mapping, not the dtype, is what is tested)."""
    rng = np.random.default_rng(5)
    atoms = Atoms("NaCl", scaled_positions=[[0, 0, 0], [0.48, 0.52, 0.5]], pbc=True,
                  cell=np.eye(3) * 3.2 + rng.normal(scale=0.2, size=(3, 3)))  # fmt: skip
    double = load_deeprelax(dtype=torch.float64)[0]
    moved = atoms.copy()
    moved.translate([1.3, -0.4, 2.2])
    a, b = _run(double, [atoms, moved])
    _same(a, b, shift=np.array([1.3, -0.4, 2.2]) @ np.linalg.solve(atoms.cell[:], a.atoms.cell[:]))
