"""Property-based checks over random crystals (hypothesis) for the shipped models: outputs are
finite, and permuting the atoms, translating the crystal or choosing another cell of the same
lattice changes them only as promised.

* CartNet ADPs (Å²): per-atom U follows the permutation; equal under translation and under a
  change of basis (Cartesian directions only; ``symmetrize=False``: the raw model).
* EMPNN: the predicted action h (3, 3) is invariant to permutation, translation and basis (an
  equivariant model of the lattice).
* Property models: invariant to permutation and translation; not to the cell (documented:
  CrysToGraph's cell-frame angles, CartNet's cell frame), so no basis check.
* DeepRelax: finite outputs here; its covariances are in ``test_deeprelax_covariance.py``.

Tolerances: float32 models, 1e-6 of the largest U for CartNet (2e-5 for another basis: the
edge vectors r_j + n @ cell are summed from longer vectors), 1e-5 for EMPNN and the property
models.
The ``slow`` variants run more examples."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from ase import Atoms
from ase.geometry import cellpar_to_cell
from crystal_strategies import BASES, ELEMENTS, crystals
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ase_cartnet.weights import (
    DEFAULT_CARTNET,
    DEFAULT_DEEPRELAX,
    DEFAULT_EMPNN,
    DEFAULT_PROPERTY,
)

FAST = settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
MORE = settings(FAST, max_examples=40)


def variants(atoms: Atoms, seed: int, basis) -> tuple[np.ndarray, Atoms, Atoms, Atoms]:
    """(permutation, permuted, translated, rebased) copies of ``atoms``."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(atoms))
    translated = atoms.copy()
    translated.translate(rng.uniform(-7, 7, size=3))
    rebased = atoms.copy()
    rebased.set_cell(np.asarray(basis) @ atoms.cell[:], scale_atoms=False)
    return perm, atoms[perm], translated, rebased


def _quiet(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


@pytest.fixture(scope="module")
def cartnet():
    if not DEFAULT_CARTNET.is_file():
        pytest.skip("no shipped CartNet weights")
    from ase_cartnet.calculators.cartnet_adp import CartNetADP

    return CartNetADP(temperature=300.0, symmetrize=False)


@pytest.fixture(scope="module")
def empnn_model():
    if not DEFAULT_EMPNN.is_file():
        pytest.skip("no shipped EMPNN weights")
    from ase_cartnet.io.checkpoint import load_model

    return load_model("empnn", "empnn").model


@pytest.fixture(scope="module", params=sorted(DEFAULT_PROPERTY))
def property_calc(request):
    if not DEFAULT_PROPERTY[request.param].is_file():
        pytest.skip("no shipped property weights")
    from ase_cartnet.calculators.crystograph_property import CrysToGraphProperty

    return CrysToGraphProperty(target=request.param)


def check_cartnet(calc, atoms, seed, basis) -> None:
    perm, permuted, translated, rebased = variants(atoms, seed, basis)
    u, u_perm, u_trans, u_basis = _quiet(
        calc.predict_many, [atoms, permuted, translated, rebased], batch_size=1
    )
    assert np.isfinite(u).all()
    assert np.all(np.linalg.eigvalsh(u) > 0)
    tol = 1e-6 * np.abs(u).max()
    np.testing.assert_allclose(u_perm, u[perm], atol=tol)
    np.testing.assert_allclose(u_trans, u, atol=tol)
    # another basis: r_j + n @ cell in float32 with longer vectors (a few 1e-6 Å of round-off)
    np.testing.assert_allclose(u_basis, u, atol=20 * tol)


def empnn_action(model, atoms: Atoms) -> np.ndarray:
    """The total lattice action h (3, 3) the model predicts for ``atoms``."""
    from ase_cartnet.calculators.empnn_lattice import EMPNNLattice

    opt = EMPNNLattice(atoms.copy(), model=model, logfile=None)
    opt.run()
    return opt.action


def check_empnn(model, atoms, seed, basis) -> None:
    _, permuted, translated, rebased = variants(atoms, seed, basis)
    h = [_quiet(empnn_action, model, a) for a in (atoms, permuted, translated, rebased)]
    assert np.isfinite(h[0]).all() and np.linalg.det(h[0]) > 0
    for other in h[1:]:
        np.testing.assert_allclose(other, h[0], atol=1e-5 * max(1.0, np.abs(h[0]).max()))


def check_property(calc, atoms, seed, basis) -> None:
    _, permuted, translated, _ = variants(atoms, seed, basis)
    values = _quiet(calc.predict_many, [atoms, permuted, translated])
    assert np.isfinite(values).all()
    np.testing.assert_allclose(values, values[0], atol=1e-5 * max(1.0, abs(values[0])))


@FAST
@given(crystals(), st.integers(0, 2**16), st.sampled_from(BASES))
def test_cartnet_covariance(cartnet, atoms, seed, basis):
    check_cartnet(cartnet, atoms, seed, basis)


@FAST
@given(crystals(), st.integers(0, 2**16), st.sampled_from(BASES))
def test_empnn_invariance(empnn_model, atoms, seed, basis):
    check_empnn(empnn_model, atoms, seed, basis)


@FAST
@given(crystals(), st.integers(0, 2**16))
def test_property_model_invariance(property_calc, atoms, seed):
    check_property(property_calc, atoms, seed, BASES[0])


@pytest.fixture(scope="module")
def deeprelax_ensemble():
    if not DEFAULT_DEEPRELAX.is_file():
        pytest.skip("no shipped DeepRelax weights")
    from ase_cartnet.calculators.deeprelax import load_deeprelax

    return load_deeprelax()[0]


@FAST
@given(st.lists(crystals(), min_size=2, max_size=3))
def test_deeprelax_outputs_are_finite(deeprelax_ensemble, structures):
    from ase_cartnet.calculators.deeprelax import predict

    for result in _quiet(predict, deeprelax_ensemble, structures, threshold=0.1):
        assert np.isfinite(result.atoms.positions).all()
        assert np.isfinite(result.atoms.cell[:]).all() and result.atoms.get_volume() > 0
        assert np.isfinite(result.uncertainty.global_uncertainty)


LATTICES = {  # cells with lattice automorphisms beyond ±I: several reduced bases, one metric
    "fcc": [[0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]],
    "bcc": [[-0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.5, 0.5, -0.5]],
    "cubic": np.eye(3),
    "hexagonal": [[1, 0, 0], [-0.5, 0.75**0.5, 0], [0, 0, 1.6]],
    "rhombohedral": cellpar_to_cell([1, 1, 1, 72, 72, 72]),
}


@st.composite
def symmetric_crystals(draw) -> Atoms:
    """2–5 atoms in a cubic, fcc, bcc, hexagonal or rhombohedral cell of 10–20 Å³ per atom."""
    n = draw(st.integers(2, 5))
    cell = np.asarray(LATTICES[draw(st.sampled_from(sorted(LATTICES)))], dtype=float)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    cell = cell * (n * rng.uniform(10, 20) / abs(np.linalg.det(cell))) ** (1 / 3)
    for _ in range(50):
        atoms = Atoms(rng.choice(ELEMENTS, size=n), scaled_positions=rng.random((n, 3)),
                      cell=cell, pbc=True)  # fmt: skip
        if atoms.get_all_distances(mic=True)[np.triu_indices(n, 1)].min() > 1.5:
            return atoms
    raise AssertionError("no crystal drawn")


@FAST
@given(symmetric_crystals(), st.integers(0, 2**16), st.sampled_from(BASES))
def test_deeprelax_covariance_on_symmetric_lattices(deeprelax_ensemble, atoms, seed, basis):
    """Another basis of a lattice with automorphisms (the Niggli reduction then returns another
    of its equivalent reduced bases) and a translation give the same prediction, re-expressed:
    1e-6 Å (as ``test_deeprelax_covariance.py``)."""
    from ase_cartnet.calculators.deeprelax import predict

    _, _, translated, rebased = variants(atoms, seed, basis)
    a, b, c = _quiet(predict, deeprelax_ensemble, [atoms, rebased, translated], threshold=0.1)
    np.testing.assert_allclose(b.atoms.cell[:], np.asarray(basis) @ a.atoms.cell[:], atol=1e-6)
    np.testing.assert_allclose(b.atoms.positions, a.atoms.positions, atol=1e-6)
    t = translated.positions[0] - atoms.positions[0]
    shift = t @ np.linalg.solve(atoms.cell[:], a.atoms.cell[:])  # the ASE cell-filter rule
    np.testing.assert_allclose(c.atoms.positions, a.atoms.positions + shift, atol=1e-6)
    np.testing.assert_allclose(c.atoms.cell[:], a.atoms.cell[:], atol=1e-6)


@pytest.mark.slow
@MORE
@given(crystals(), st.integers(0, 2**16), st.sampled_from(BASES))
def test_cartnet_covariance_many(cartnet, atoms, seed, basis):
    """40 crystals, about 2 min on one CPU thread."""
    check_cartnet(cartnet, atoms, seed, basis)


@pytest.mark.slow
@MORE
@given(crystals(), st.integers(0, 2**16), st.sampled_from(BASES))
def test_empnn_invariance_many(empnn_model, atoms, seed, basis):
    """40 crystals, about 1 min on one CPU thread."""
    check_empnn(empnn_model, atoms, seed, basis)


@pytest.mark.slow
@MORE
@given(crystals(), st.integers(0, 2**16))
def test_property_model_invariance_many(property_calc, atoms, seed):
    """40 crystals per shipped target, about 1 min on one CPU thread."""
    check_property(property_calc, atoms, seed, BASES[0])
