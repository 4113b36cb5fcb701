"""Our eqns (2)–(3) against phonopy's run_thermal_displacement_matrices on real DFT force sets.

The load recipes come from ../shared/data/phonopy_examples/INDEX.json
(``phonon_ref.phonopy_examples``).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from shared_paths import needs_shared

from phonon_ref.harmonic import harmonic_adps
from phonon_ref.phonopy_examples import EXAMPLES, example_names, load_example

pytestmark = needs_shared  # every test reads the phonopy examples in ../shared

FREQ_MIN = 0.01  # THz, phonopy's regression setting
TEMPERATURES = [0.0, 100.0, 300.0, 1000.0]


def phonopy_and_ours(phonon, mesh, temperatures=TEMPERATURES):
    """(phonopy's U, our HarmonicADPs) on the same mesh, from the same modes."""
    phonon.run_mesh(mesh, with_eigenvectors=True, is_mesh_symmetry=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tdm = phonon.run_thermal_displacement_matrices(temperatures=temperatures, freq_min=FREQ_MIN)
        ours = harmonic_adps(
            phonon.mesh.frequencies,
            phonon.mesh.eigenvectors,
            phonon.primitive.masses,
            temperatures,
            freq_min=FREQ_MIN,
        )
    return np.asarray(tdm.thermal_displacement_matrices), ours


def max_relative_deviation(u, ref) -> float:
    """max over temperatures and atoms of ‖U − U_ref‖_F / ‖U_ref‖_F."""
    return float(
        (np.linalg.norm(u - ref, axis=(-2, -1)) / np.linalg.norm(ref, axis=(-2, -1))).max()
    )


def fast_mesh(phonon) -> list[int]:
    """5³ for cells up to 12 atoms, 3³ beyond (phonopy's loop costs ~0.1 ms per mode·atom)."""
    return [5, 5, 5] if len(phonon.primitive) <= 12 else [3, 3, 3]


@pytest.mark.parametrize("name", example_names(stable=True))
def test_equals_phonopy_on_every_stable_example(name):
    """≤ 1e-8 relative (Frobenius, per atom and temperature) on a small odd mesh."""
    phonon = load_example(name)
    ref, ours = phonopy_and_ours(phonon, fast_mesh(phonon))
    assert ours.u_cart.shape == ref.shape
    assert max_relative_deviation(ours.u_cart, ref) <= 1e-8
    assert ours.n_imaginary == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", example_names(stable=True))
def test_equals_phonopy_on_every_stable_example_7x7x7(name):
    """The full sweep on phonopy's verification mesh 7³ (budget: ~3 min in all, 2 cores)."""
    phonon = load_example(name)
    ref, ours = phonopy_and_ours(phonon, [7, 7, 7])
    assert max_relative_deviation(ours.u_cart, ref) <= 1e-8
    assert np.all(np.linalg.eigvalsh(ours.u_cart) > 0)


@pytest.mark.parametrize("name", ["CaTiO3", "spg-P4mm"])
def test_unstable_examples_count_imaginary_modes_and_still_match_phonopy(name):
    """phonopy silently drops imaginary modes; we drop the same ones but count and warn."""
    from phonon_ref.harmonic import ImaginaryModesError, ImaginaryModesWarning

    phonon = load_example(name)
    ref, _ = phonopy_and_ours(phonon, [3, 3, 3])
    mesh = phonon.mesh
    with pytest.warns(ImaginaryModesWarning, match="imaginary"):
        ours = harmonic_adps(
            mesh.frequencies, mesh.eigenvectors, phonon.primitive.masses, TEMPERATURES
        )
    assert ours.n_imaginary == int(np.count_nonzero(mesh.frequencies < -0.05))
    assert ours.n_imaginary > 0 and ours.min_frequency < -0.05
    assert max_relative_deviation(ours.u_cart, ref) <= 1e-8
    with pytest.raises(ImaginaryModesError, match="dynamically unstable"):
        harmonic_adps(
            mesh.frequencies,
            mesh.eigenvectors,
            phonon.primitive.masses,
            TEMPERATURES,
            raise_on_imaginary=True,
        )


def test_phonopy_regression_values():
    """phonopy's own test values (test_thermal_displacement.py), 8 decimals in Å².

    The JSON values are rounded to 1e-8 Å² and were produced by an older phonopy; phonopy 4.10
    itself reproduces them to 1.4e-8 Å² (SOURCES.md), so the tolerance is 2e-8 Å² absolute.
    """
    ref = json.loads((EXAMPLES / "phonopy_tdm_reference_values.json").read_text())
    for key, name in (("nacl", "test-NaCl"), ("sno2", "test-SnO2")):
        spec = ref[key]
        phonon = load_example(name)
        _, ours = phonopy_and_ours(phonon, spec["mesh"], spec["temperatures_K"])
        if key == "nacl":
            diag = np.diagonal(ours.u_cart, axis1=-2, axis2=-1).reshape(
                len(spec["temperatures_K"]), -1
            )
            expected = np.asarray(spec["thermal_displacements_A2"])
            assert np.abs(diag - expected).max() < 2e-8
        else:
            expected = np.asarray(spec["thermal_displacement_matrices_A2"])
            assert np.abs(ours.u_cart - expected).max() < 2e-8


@pytest.mark.parametrize("name", ["NaCl", "MgO"])
def test_cubic_sites_are_isotropic(name):
    """Rock salt: every site has m-3m symmetry, so U = U_iso I (primitive cell, NAC on)."""
    phonon = load_example(name)
    _, ours = phonopy_and_ours(phonon, [7, 7, 7])
    u = ours.u_cart
    iso = np.trace(u, axis1=-2, axis2=-1)[..., None, None] / 3.0 * np.eye(3)
    assert np.abs(u - iso).max() <= 1e-8 * np.abs(u).max()


def test_high_temperature_and_zero_point_limits_on_real_modes():
    """U ∝ T with U → k_B T/(N m) Σ e e*/ω² at high T; U(T→0) → ħ/(2 N m) Σ e e*/ω."""
    from phonon_ref.harmonic import phonopy_units

    phonon = load_example("SnO2")
    phonon.run_mesh([3, 3, 3], with_eigenvectors=True, is_mesh_symmetry=False)
    f = phonon.mesh.frequencies
    e = phonon.mesh.eigenvectors
    m = phonon.primitive.masses
    u = phonopy_units()
    valid = f > FREQ_MIN
    omega = np.where(valid, 2e12 * np.pi * f, np.inf)  # rad/s; skipped modes get weight 0
    n = len(m)
    ee = np.einsum(
        "qjav,qjbv->qvjab", e.reshape(len(f), n, 3, -1), e.conj().reshape(len(f), n, 3, -1)
    ).real
    mass_kg = m * u["amu"]
    hbar = u["hbar"] * u["ev"]
    kb = u["kb"] * u["ev"]
    classical = (
        np.einsum("qv,qvjab->jab", 1 / omega**2, ee) / len(f) / mass_kg[:, None, None] * 1e20
    )
    zero_point = (
        np.einsum("qv,qvjab->jab", 1 / omega, ee)
        * hbar
        / (2 * len(f))
        / mass_kg[:, None, None]
        * 1e20
    )
    t_high = 1e5
    res = harmonic_adps(f, e, m, [0.0, 1e-3, t_high, 2 * t_high])
    tiny = 1e-12 * np.abs(res.u_cart[0]).max()  # off-diagonal elements that vanish by symmetry
    np.testing.assert_allclose(res.u_cart[0], zero_point, rtol=1e-12, atol=tiny)
    np.testing.assert_allclose(res.u_cart[1], res.u_cart[0], rtol=1e-14, atol=tiny)
    # quantum correction at 1e5 K: (ħω/k_BT)²/12 ≤ 2e-5 for ω ≤ 25 THz
    big = 1e-12 * np.abs(res.u_cart[2]).max()
    np.testing.assert_allclose(res.u_cart[2], kb * t_high * classical, rtol=5e-5, atol=big)
    np.testing.assert_allclose(res.u_cart[3], 2.0 * res.u_cart[2], rtol=5e-5, atol=big)
