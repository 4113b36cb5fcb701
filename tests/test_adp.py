"""ADP mathematics: conversions, derived quantities and the CartNet paper's metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.geometry import cellpar_to_cell
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from ase_cartnet import adp

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def random_spd(rng: np.random.Generator, n: int | None = None, spread: float = 0.7) -> np.ndarray:
    """Random symmetric positive-definite U (Å²): random orientation, eigenvalues ~0.005-0.1."""
    shape = () if n is None else (n,)
    q = Rotation.random(int(np.prod(shape, dtype=int)) or 1, random_state=rng).as_matrix()
    w = 0.02 * np.exp(spread * rng.normal(size=(q.shape[0], 3)))
    u = q @ (w[:, :, None] * np.swapaxes(q, -1, -2))
    return u.reshape(shape + (3, 3))


cellpars = st.tuples(
    st.floats(2.5, 25.0),
    st.floats(2.5, 25.0),
    st.floats(2.5, 25.0),
    st.floats(55.0, 125.0),
    st.floats(55.0, 125.0),
    st.floats(55.0, 125.0),
)
seeds = st.integers(0, 2**32 - 1)


def triclinic(cellpar) -> np.ndarray:
    ca, cb, cg = np.cos(np.radians(cellpar[3:]))
    # a valid, not too flat angle triple: (V / abc)² = 1 - ca² - cb² - cg² + 2 ca cb cg > 0
    v2 = 1 - ca**2 - cb**2 - cg**2 + 2 * ca * cb * cg
    assume(v2 > 0.05)
    return cellpar_to_cell(list(cellpar))


# --------------------------------------------------------------------------- conversions


@SETTINGS
@given(cellpars, seeds)
def test_round_trips_between_all_conventions(cellpar, seed):
    cell = triclinic(cellpar)
    rng = np.random.default_rng(seed)
    u_cart = random_spd(rng, 4)
    u_cif = adp.u_cart_to_u_cif(u_cart, cell)
    u_star = adp.u_cif_to_u_star(u_cif, cell)
    beta = adp.u_star_to_beta(u_star)
    b_cif = adp.u_to_b(u_cif)
    np.testing.assert_allclose(adp.u_cif_to_u_cart(u_cif, cell), u_cart, atol=1e-12)
    np.testing.assert_allclose(adp.u_star_to_u_cart(u_star, cell), u_cart, atol=1e-12)
    np.testing.assert_allclose(adp.u_cart_to_u_star(u_cart, cell), u_star, atol=1e-14)
    np.testing.assert_allclose(adp.beta_to_u_star(beta), u_star, atol=1e-14)
    np.testing.assert_allclose(adp.u_star_to_u_cif(u_star, cell), u_cif, atol=1e-12)
    np.testing.assert_allclose(adp.b_to_u(b_cif), u_cif, atol=1e-12)
    np.testing.assert_allclose(adp.six_to_matrix(adp.matrix_to_six(u_cif)), u_cif, atol=0)


@SETTINGS
@given(cellpars, seeds)
def test_u_equiv_is_the_same_from_cartesian_and_cif(cellpar, seed):
    """tr(U_cart)/3 equals (1/3) Σ_ij U^ij a*_i a*_j (a_i·a_j) (Fischer & Tillmanns 1988)."""
    cell = triclinic(cellpar)
    u_cart = random_spd(np.random.default_rng(seed), 3)
    u_cif = adp.u_cart_to_u_cif(u_cart, cell)
    n = adp.reciprocal_lengths(cell)
    metric = cell @ cell.T  # a_i · a_j
    u_eq_cif = np.einsum("kij,i,j,ij->k", u_cif, n, n, metric) / 3.0
    np.testing.assert_allclose(adp.u_equiv(u_cart), u_eq_cif, rtol=1e-12)


def test_cubic_cell_has_u_cart_equal_u_cif():
    u = random_spd(np.random.default_rng(1), 5)
    cell = 7.3 * np.eye(3)
    np.testing.assert_allclose(adp.u_cif_to_u_cart(u, cell), u, atol=1e-15)
    np.testing.assert_allclose(adp.u_cart_to_u_cif(u, cell), u, atol=1e-15)


# ----------------------------------------------------------------- derived quantities


@SETTINGS
@given(seeds)
def test_principal_axes_reconstruct_u(seed):
    u = random_spd(np.random.default_rng(seed), 6, spread=1.5)
    w, v = adp.principal_axes(u)
    assert w.shape == (6, 3) and v.shape == (6, 3, 3)
    assert np.all(np.diff(w, axis=-1) >= 0)
    np.testing.assert_allclose(v @ (w[..., None] * np.swapaxes(v, -1, -2)), u, atol=1e-14)
    np.testing.assert_allclose(
        np.swapaxes(v, -1, -2) @ v, np.broadcast_to(np.eye(3), v.shape), atol=1e-12
    )
    np.testing.assert_allclose(np.linalg.det(v), 1.0, atol=1e-12)  # proper rotations


def test_principal_axes_of_a_single_matrix():
    w, v = adp.principal_axes(np.diag([0.03, 0.01, 0.02]))
    np.testing.assert_allclose(w, [0.01, 0.02, 0.03])
    np.testing.assert_allclose(np.abs(v), np.eye(3)[:, [1, 2, 0]], atol=1e-15)


def test_is_positive_definite():
    good = np.diag([0.01, 0.02, 0.03])
    stack = np.array(
        [
            good,
            np.diag([0.01, -0.02, 0.03]),  # negative eigenvalue
            np.diag([0.01, 0.0, 0.03]),  # singular
            np.full((3, 3), np.nan),  # missing
            good + np.triu(np.full((3, 3), 0.005), 1),  # not symmetric
        ]
    )
    np.testing.assert_array_equal(adp.is_positive_definite(stack), [True] + [False] * 4)
    assert adp.is_positive_definite(good).shape == ()
    assert not adp.is_positive_definite(good, tol=0.015)
    with pytest.raises(ValueError, match="shape"):
        adp.is_positive_definite(np.ones((3, 4)))


def test_probability_scale():
    assert round(adp.probability_scale(0.5), 4) == 1.5382
    assert isinstance(adp.probability_scale(0.5), float)
    # 3D Gaussian: P(r <= 1 sigma) = 0.19875, P(r <= 2 sigma) = 0.73854
    np.testing.assert_allclose(adp.probability_scale([0.198748, 0.738536]), [1.0, 2.0], atol=1e-5)
    for bad in (0.0, 1.0, -0.1, 1.5, np.nan):
        with pytest.raises(ValueError, match="probability"):
            adp.probability_scale(bad)


@pytest.mark.parametrize("probability", [None, 0.5, 0.9])
def test_ellipsoid_volume_of_a_sphere(probability):
    u = 0.013
    c = 1.0 if probability is None else adp.probability_scale(probability)
    expected = 4.0 / 3.0 * np.pi * (c * np.sqrt(u)) ** 3
    got = adp.ellipsoid_volume(u * np.eye(3), probability=probability)
    assert got.shape == ()
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    stack = adp.ellipsoid_volume(np.stack([u * np.eye(3)] * 4), probability=probability)
    np.testing.assert_allclose(stack, [expected] * 4, rtol=1e-12)


def test_ellipsoid_volume_is_rotation_invariant():
    rng = np.random.default_rng(3)
    u = random_spd(rng, 8)
    r = Rotation.random(random_state=rng).as_matrix()
    np.testing.assert_allclose(adp.ellipsoid_volume(r @ u @ r.T), adp.ellipsoid_volume(u))


def test_ellipsoid_surface_lies_on_the_probability_ellipsoid():
    u = random_spd(np.random.default_rng(4))
    centre = np.array([1.0, -2.0, 0.5])
    x, y, z = adp.ellipsoid_surface(u, probability=0.5, center=centre, n_azimuth=12, n_polar=6)
    assert x.shape == y.shape == z.shape == (7, 13)
    d = np.stack([x, y, z], axis=-1) - centre
    mahal_sq = np.einsum("...i,ij,...j->...", d, np.linalg.inv(u), d)
    np.testing.assert_allclose(mahal_sq, adp.probability_scale(0.5) ** 2, rtol=1e-10)


# ------------------------------------------------------------------------------ metrics


def s12_literal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """S12 written exactly as Whitten & Spackman (2006), with inverses."""
    ai, bi = np.linalg.inv(a), np.linalg.inv(b)
    r12 = 2**1.5 * np.linalg.det(ai @ bi) ** 0.25 / np.linalg.det(ai + bi) ** 0.5
    return 100.0 * (1.0 - r12)


def test_mae_pools_all_nine_elements():
    a = np.zeros((2, 3, 3))
    b = np.zeros((2, 3, 3))
    b[0, 0, 0] = 0.009
    b[1] = 0.001
    assert adp.mae(a, b) == pytest.approx((0.009 + 9 * 0.001) / 18)
    assert adp.mae(a, a) == 0.0
    assert isinstance(adp.mae(a, b), float)


def test_s12_of_identical_and_scaled_adps():
    u = random_spd(np.random.default_rng(5), 10, spread=1.5)
    np.testing.assert_allclose(adp.s12(u, u), 0.0, atol=1e-12)
    expected = 100.0 * (1.0 - (2 / 2.1) ** 1.5 * 1.1**0.75)
    assert expected == pytest.approx(0.170, abs=5e-4)
    np.testing.assert_allclose(adp.s12(u, 1.1 * u), expected, rtol=1e-9)
    assert adp.s12(u[0], u[0]).shape == ()


def test_s12_matches_the_literal_formula_and_is_symmetric():
    rng = np.random.default_rng(6)
    a, b = random_spd(rng, 50), random_spd(rng, 50)
    np.testing.assert_allclose(adp.s12(a, b), s12_literal(a, b), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(adp.s12(a, b), adp.s12(b, a), rtol=1e-12)
    assert np.all(adp.s12(a, b) > 0)


def test_iou_of_identical_adps_is_100():
    u = random_spd(np.random.default_rng(7), 20, spread=1.5)
    np.testing.assert_array_equal(adp.iou(u, u), 100.0)


@pytest.mark.parametrize("ratio", [0.5, 0.7, 0.9])
def test_iou_of_concentric_spheres(ratio):
    r2 = 0.15
    got = adp.iou((ratio * r2) ** 2 * np.eye(3), r2**2 * np.eye(3))
    # the larger sphere has radius 3^(-1/4) = 0.76 on the [-1, 1] grid: ~24 voxels
    assert got == pytest.approx(100.0 * ratio**3, rel=0.04)


def test_iou_equals_a_brute_force_voxel_count():
    """The analytic line count gives the same voxels as evaluating all 64³ grid points."""
    rng = np.random.default_rng(8)
    a = random_spd(rng, 12, spread=1.5)
    b = a * np.exp(0.2 * rng.normal(size=(12, 1, 1))) + 0.3 * random_spd(rng, 12)
    np.testing.assert_allclose(adp.iou(a, b), adp._iou_dense(a, b), atol=0.02)
    np.testing.assert_allclose(adp.iou(a, b, grid=17), adp._iou_dense(a, b, grid=17), atol=0.02)


def test_iou_is_scale_free_and_symmetric():
    rng = np.random.default_rng(9)
    a, b = random_spd(rng, 10), random_spd(rng, 10)
    np.testing.assert_allclose(adp.iou(3.7 * a, 3.7 * b), adp.iou(a, b), atol=1e-9)
    np.testing.assert_allclose(adp.iou(a, b), adp.iou(b, a), atol=1e-9)


@SETTINGS
@given(seeds)
def test_s12_and_iou_are_invariant_under_a_common_rotation(seed):
    rng = np.random.default_rng(seed)
    a = random_spd(rng, 3)
    b = a * np.exp(0.3 * rng.normal(size=(3, 1, 1))) + 0.5 * random_spd(rng, 3)
    r = Rotation.random(random_state=rng).as_matrix()
    ra, rb = r @ a @ r.T, r @ b @ r.T
    np.testing.assert_allclose(adp.s12(ra, rb), adp.s12(a, b), rtol=1e-8, atol=1e-10)
    # the voxel grid is not rotation invariant: a few % tolerance
    np.testing.assert_allclose(adp.iou(ra, rb), adp.iou(a, b), atol=3.0)


def test_metrics_agree_with_each_other():
    rng = np.random.default_rng(11)
    a, b = random_spd(rng, 7), random_spd(rng, 7)
    per_atom = adp.per_atom_metrics(a, b)
    assert set(per_atom) == {"mae", "s12", "iou"}
    assert all(v.shape == (7,) for v in per_atom.values())
    summary = adp.adp_metrics(a, b)
    assert summary["n_atoms"] == 7
    assert summary["mae"] == pytest.approx(adp.mae(a, b))
    assert summary["s12"] == pytest.approx(adp.s12(a, b).mean())
    assert summary["iou"] == pytest.approx(adp.iou(a, b).mean())
    assert all(isinstance(summary[k], float) for k in ("mae", "s12", "iou"))


def test_metrics_accept_torch_tensors():
    rng = np.random.default_rng(12)
    a, b = random_spd(rng, 4), random_spd(rng, 4)
    ta = torch.tensor(a, dtype=torch.float32, requires_grad=True)
    summary = adp.adp_metrics(ta, torch.tensor(b))
    assert summary["s12"] == pytest.approx(adp.s12(a, b).mean(), rel=1e-4)


# ---------------------------------------------------------------------------- bad input


def test_bad_inputs_raise_value_error():
    rng = np.random.default_rng(13)
    u = random_spd(rng, 3)
    nan = u.copy()
    nan[1, 0, 0] = np.nan
    not_pd = u.copy()
    not_pd[2] = np.diag([0.01, -0.01, 0.02])
    asym = u.copy()
    asym[0, 0, 1] += 0.01
    for fn in (adp.s12, adp.iou, adp.per_atom_metrics, adp.adp_metrics):
        with pytest.raises(ValueError, match="shape mismatch"):
            fn(u, u[:2])
        with pytest.raises(ValueError, match="non-finite"):
            fn(nan, u)
        with pytest.raises(ValueError, match="positive definite.*index 2"):
            fn(u, not_pd)
        with pytest.raises(ValueError, match="symmetric"):
            fn(asym, u)
        with pytest.raises(ValueError, match=r"\(\.\.\., 3, 3\)"):
            fn(np.ones((3, 3, 2)), np.ones((3, 3, 2)))
    with pytest.raises(ValueError, match="shape mismatch"):
        adp.mae(u, u[:2])
    with pytest.raises(ValueError, match="non-finite"):
        adp.mae(u, nan)
    with pytest.raises(ValueError, match="no atoms"):
        adp.mae(np.zeros((0, 3, 3)), np.zeros((0, 3, 3)))
    with pytest.raises(ValueError, match="no atoms"):
        adp.adp_metrics(np.zeros((0, 3, 3)), np.zeros((0, 3, 3)))
    with pytest.raises(ValueError, match="grid"):
        adp.iou(u, u, grid=1)
    with pytest.raises(ValueError, match="positive definite"):
        adp.ellipsoid_volume(not_pd)
    with pytest.raises(ValueError, match="non-finite"):
        adp.principal_axes(nan)
    with pytest.raises(ValueError, match="one"):
        adp.ellipsoid_surface(u)
