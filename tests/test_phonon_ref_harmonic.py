"""Eqns (2)–(3) on synthetic phonon modes: limits, bookkeeping of skipped modes, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import phonon_ref.harmonic as harmonic
from ase_cartnet.errors import InputError
from phonon_ref.harmonic import (
    HarmonicSum,
    ImaginaryModesError,
    ImaginaryModesWarning,
    harmonic_adps,
    phonopy_units,
)


def random_modes(n_q: int = 6, n_atoms: int = 3, seed: int = 0, imaginary: int = 0):
    """Frequencies (THz) and unitary eigenvectors of random Hermitian 'dynamical matrices';
    ``imaginary`` modes of the first q-point are made negative."""
    rng = np.random.default_rng(seed)
    n3 = 3 * n_atoms
    freqs = np.empty((n_q, n3))
    vecs = np.empty((n_q, n3, n3), dtype=complex)
    for q in range(n_q):
        a = rng.normal(size=(n3, n3)) + 1j * rng.normal(size=(n3, n3))
        w, v = np.linalg.eigh(a @ a.conj().T + 0.5 * np.eye(n3))
        freqs[q] = np.sqrt(w)
        vecs[q] = v
    freqs[0, :imaginary] *= -1.0
    masses = rng.uniform(1.0, 200.0, size=n_atoms)
    return freqs, vecs, masses


def direct_sum(freqs, vecs, masses, temperature):
    """Eqn (2) term by term with Python loops (the textbook form), in Å²."""
    u = phonopy_units()
    n_q, n3 = freqs.shape
    out = np.zeros((len(masses), 3, 3))
    for q in range(n_q):
        for nu in range(n3):
            f = freqs[q, nu]
            if f <= harmonic.DEFAULT_FREQ_MIN:
                continue
            omega = 2e12 * np.pi * f
            x = u["thz_to_ev"] * f / (u["kb"] * temperature) if temperature > 0 else np.inf
            n = 0.0 if np.isinf(x) else 1.0 / np.expm1(x)
            for j, m in enumerate(masses):
                e = vecs[q, 3 * j : 3 * j + 3, nu]
                pref = u["hbar"] * u["ev"] / (2 * n_q * m * u["amu"]) * 1e20
                out[j] += pref * (1 + 2 * n) / omega * np.outer(e, e.conj()).real
    return out


@pytest.mark.parametrize("temperature", [0.0, 10.0, 300.0, 2000.0])
def test_matches_the_textbook_loop(temperature):
    freqs, vecs, masses = random_modes()
    res = harmonic_adps(freqs, vecs, masses, temperature)
    np.testing.assert_allclose(
        res.u_cart[0], direct_sum(freqs, vecs, masses, temperature), rtol=1e-12
    )
    assert res.u_cart.shape == (1, 3, 3, 3)


def test_result_is_symmetric_positive_definite_and_grows_with_temperature():
    freqs, vecs, masses = random_modes(seed=3)
    temps = [0.0, 100.0, 300.0, 1000.0]
    u = harmonic_adps(freqs, vecs, masses, temps).u_cart
    np.testing.assert_array_equal(u, np.swapaxes(u, -1, -2))
    assert np.all(np.linalg.eigvalsh(u) > 0)
    assert np.all(np.diff(np.trace(u, axis1=-2, axis2=-1), axis=0) > 0)


def test_high_temperature_limit_is_classical_and_linear_in_t():
    """U → k_B T/(N m) Σ e e*/ω²; U(2T) = 2 U(T) to the quantum correction (ħω/k_BT)²/12."""
    freqs, vecs, masses = random_modes(seed=1)
    u = phonopy_units()
    t = 1e6
    res = harmonic_adps(freqs, vecs, masses, [t, 2 * t])
    omega = 2e12 * np.pi * freqs
    n_atoms = len(masses)
    e = vecs.reshape(len(freqs), n_atoms, 3, -1)
    ee = np.einsum("qjav,qjbv->qvjab", e, e.conj()).real
    classical = (
        u["kb"] * u["ev"] * t
        * np.einsum("qv,qvjab->jab", 1 / omega**2, ee)
        / (len(freqs) * masses[:, None, None] * u["amu"]) * 1e20
    )  # fmt: skip
    np.testing.assert_allclose(res.u_cart[0], classical, rtol=1e-6)
    np.testing.assert_allclose(res.u_cart[1], 2 * res.u_cart[0], rtol=1e-6)


def test_zero_point_limit():
    """U(T → 0) = ħ/(2 N m) Σ e e*/ω; at 1 K the modes above ~0.5 THz are frozen out."""
    freqs, vecs, masses = random_modes(seed=2)
    res = harmonic_adps(freqs, vecs, masses, [0.0, 1e-3, 1.0])
    np.testing.assert_allclose(res.u_cart[1], res.u_cart[0], rtol=1e-15)
    np.testing.assert_allclose(res.u_cart[2], res.u_cart[0], rtol=1e-12)
    np.testing.assert_allclose(res.u_cart[0], direct_sum(freqs, vecs, masses, 0.0), rtol=1e-12)


def test_chunked_accumulation_equals_one_shot(monkeypatch):
    freqs, vecs, masses = random_modes(n_q=11, seed=4)
    whole = harmonic_adps(freqs, vecs, masses, [50.0, 500.0])
    monkeypatch.setattr(harmonic, "_CHUNK_ELEMENTS", 1)  # one q-point per matrix product
    acc = HarmonicSum(masses, [50.0, 500.0])
    acc.add(freqs[:4], vecs[:4])
    acc.add(freqs[4:], vecs[4:])
    parts = acc.result()
    np.testing.assert_allclose(parts.u_cart, whole.u_cart, rtol=1e-13)
    assert parts.n_qpoints == whole.n_qpoints == 11


def test_imaginary_modes_are_counted_skipped_and_warned():
    freqs, vecs, masses = random_modes(imaginary=2)
    freqs[1, 0] = -0.01  # numerical noise: skipped but not counted as imaginary
    freqs[2, 0] = 0.005  # near zero: skipped
    with pytest.warns(ImaginaryModesWarning, match="2 of 54 phonon modes are imaginary"):
        res = harmonic_adps(freqs, vecs, masses, 300.0)
    assert (res.n_imaginary, res.n_skipped, res.n_modes) == (2, 4, 54)
    assert res.min_frequency == freqs.min() < 0 and not res.is_stable
    kept = freqs.copy()
    kept[kept <= harmonic.DEFAULT_FREQ_MIN] = -1.0  # same modes dropped by the reference loop
    np.testing.assert_allclose(res.u_cart[0], direct_sum(kept, vecs, masses, 300.0), rtol=1e-12)
    with pytest.raises(ImaginaryModesError, match="dynamically unstable"):
        harmonic_adps(freqs, vecs, masses, 300.0, raise_on_imaginary=True)


def test_tolerances_control_what_counts():
    freqs, vecs, masses = random_modes(imaginary=1)
    freqs[0, 0] = -0.3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: -0.3 THz is within the tolerance
        res = harmonic_adps(freqs, vecs, masses, 300.0, imaginary_tol=0.5)
    assert res.n_imaginary == 0 and res.n_skipped == 1
    low = harmonic_adps(freqs, vecs, masses, 300.0, imaginary_tol=0.5, freq_min=1.0)
    assert low.n_skipped == int(np.count_nonzero(freqs <= 1.0))


def test_constants_are_phonopys():
    from phonopy.physical_units import get_physical_units

    units = get_physical_units()
    assert phonopy_units() == {
        "hbar": units.Hbar,
        "ev": units.EV,
        "amu": units.AMU,
        "kb": units.KB,
        "thz_to_ev": units.THzToEv,
    }


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"frequencies": np.zeros((2, 8))}, "frequencies must have shape"),
        ({"eigenvectors": np.zeros((2, 9, 8))}, "eigenvectors must have shape"),
        ({"masses": [1.0, 0.0, 2.0]}, "positive amu"),
        ({"temperatures": [-1.0]}, ">= 0 K"),
        ({"temperatures": [np.nan]}, ">= 0 K"),
        ({"temperatures": []}, "temperatures"),
        ({"freq_min": -0.1}, "freq_min"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(change, match):
    freqs, vecs, masses = random_modes(n_q=2)
    kwargs = {"frequencies": freqs, "eigenvectors": vecs, "masses": masses, "temperatures": 300.0}
    kwargs.update(change)
    with pytest.raises(InputError, match=match):
        harmonic_adps(**kwargs)


def test_nan_frequencies_are_refused():
    freqs, vecs, masses = random_modes(n_q=2)
    freqs[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        harmonic_adps(freqs, vecs, masses, 300.0)
