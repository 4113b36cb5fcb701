"""The harmonic ADP head (eqns 2–3 over frequency bins): physics limits against phonon_ref's own
mode weights, completeness, positive definiteness and monotonicity in T, one pass for many
temperatures, training on joint samples and the calculator's temperature sweeps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk
from hypothesis import given, settings
from hypothesis import strategies as st

from ase_cartnet.benchmarking.models import (
    SMALL,
    ethanol_crystal,
    randomised_model,
    small_checkpoint,
)
from ase_cartnet.calculators.cartnet_adp import CartNetADP
from ase_cartnet.graph.neighbours import atoms_to_graph, batch_graphs
from ase_cartnet.models.cartnet import CartNet, CartNetConfig
from ase_cartnet.models.harmonic_head import (
    H_THZ_OVER_KB,
    HBAR_OVER_2_AMU_THZ,
    HarmonicHead,
    bin_frequencies,
    oscillator_factor,
)

HARMONIC = dict(SMALL, head="harmonic", use_temperature=False, harmonic_bins=12)
KB_OVER_AMU_THZ2 = 1.380649e-23 / (1.66053906660e-27 * (2 * np.pi * 1e12) ** 2) * 1e20
"""k_B T / (m ω²) in Å² for T = 1 K, m = 1 amu, ν = 1 THz."""


def graph_at(atoms, temperatures, dtype=torch.float64):
    g = atoms_to_graph(atoms, 5.0, dtype=dtype)
    g.temperature = torch.tensor([temperatures], dtype=dtype)
    return g


def test_oscillator_factor_is_phonon_refs_mode_weight_of_eqns_2_and_3():
    from phonon_ref.harmonic import _one_plus_two_n_over_omega, phonopy_units

    units = phonopy_units()
    nu = np.array([0.25, 1.0, 4.0, 12.0, 45.0])
    temps = np.array([0.0, 5.0, 77.0, 300.0, 800.0, 2000.0])
    # phonon_ref: ħ(1 + 2n)/ω in eV s², times eV/(2 amu) and 1e20 for Å² at m = 1 amu
    ref = (
        _one_plus_two_n_over_omega(nu, temps, units)
        * units["hbar"] * units["ev"] / (2 * units["amu"]) * 1e20
    )  # fmt: skip
    mine = oscillator_factor(torch.tensor(nu), torch.tensor(temps)).numpy()
    np.testing.assert_allclose(mine, ref, rtol=1e-6)  # CODATA 2006 (phonopy) vs 2018


def test_oscillator_limits_zero_point_and_classical():
    nu = torch.tensor([3.0])
    zero = oscillator_factor(nu, torch.tensor(0.0)).item()
    assert zero == pytest.approx(HBAR_OVER_2_AMU_THZ / 3.0, rel=1e-12)  # ħ/(2mω)
    hot = 1e5  # k_B T ≫ hν: U → k_B T / (m ω²)
    assert oscillator_factor(nu, torch.tensor(hot)).item() == pytest.approx(
        KB_OVER_AMU_THZ2 * hot / 9.0, rel=1e-6
    )
    assert H_THZ_OVER_KB == pytest.approx(47.9924, rel=1e-5)


def test_single_bin_of_an_einstein_solid_gives_the_analytic_adp():
    head = HarmonicHead(dim=8, num_bins=5, freq_min=1.0, freq_max=16.0).double()
    weights = torch.zeros(2, 5, 3, 3, dtype=torch.float64)
    weights[:, 2] = torch.eye(3)  # all of each atom's modes at ν = 4 THz, isotropic
    masses = torch.tensor([12.0, 63.5], dtype=torch.float64)
    u = head.adps(weights, masses, torch.tensor([300.0, 300.0], dtype=torch.float64)).numpy()
    x = H_THZ_OVER_KB * 4.0 / (2 * 300.0)
    expected = HBAR_OVER_2_AMU_THZ / (masses.numpy() * 4.0) / np.tanh(x)
    np.testing.assert_allclose(u, expected[:, None, None] * np.eye(3), rtol=1e-12)


def test_spectral_weights_are_psd_and_complete():
    torch.manual_seed(3)
    head = HarmonicHead(dim=16, num_bins=7, freq_min=0.5, freq_max=30.0).double()
    for layer in head.MLP:
        if isinstance(layer, torch.nn.Linear):
            layer.weight.data.normal_(0.0, 1.0)
    w = head.spectral_weights(torch.randn(11, 16, dtype=torch.float64))
    assert w.shape == (11, 7, 3, 3)
    trace = torch.diagonal(w, dim1=-2, dim2=-1).sum(dim=(-1, -2))
    torch.testing.assert_close(trace, torch.full((11,), 3.0, dtype=torch.float64))
    assert (torch.linalg.eigvalsh(w) > -1e-12).all()


def test_initial_spectrum_is_centred_on_typical_frequencies():
    head = HarmonicHead(dim=16, num_bins=24, freq_min=0.2, freq_max=50.0)
    with torch.no_grad():
        w = head.spectral_weights(torch.zeros(1, 16))[0]
    share = torch.diagonal(w, dim1=-2, dim2=-1).sum(-1) / 3.0
    peak = bin_frequencies(24, 0.2, 50.0)[share.argmax()]
    assert 3.0 < peak < 8.0
    assert share[:3].sum() < 1e-3  # nothing in the soft bins that would blow U up


def test_config_keeps_temperature_out_of_the_harmonic_trunk():
    with pytest.raises(ValueError, match="use_temperature=False"):
        CartNetConfig(head="harmonic")
    with pytest.raises(ValueError, match="head must be"):
        CartNetConfig(head="spline")


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000), t_low=st.floats(1.0, 400.0), dt=st.floats(1.0, 600.0))
def test_adps_are_spd_and_grow_with_temperature(seed, t_low, dt):
    model = randomised_model(CartNetConfig(**HARMONIC), seed=seed % 3)
    atoms = bulk("NaCl", "rocksalt", a=5.6) * (1, 1, 2)
    atoms.rattle(0.05, seed=seed)
    with torch.no_grad():
        u = model(graph_at(atoms, [t_low, t_low + dt])).numpy()  # (N, 2, 3, 3)
    assert u.shape == (len(atoms), 2, 3, 3)
    np.testing.assert_allclose(u, np.swapaxes(u, -1, -2), atol=1e-15)
    assert (np.linalg.eigvalsh(u) > 0).all()
    assert (np.linalg.eigvalsh(u[:, 1] - u[:, 0]) > -1e-15).all()  # U(T₂) − U(T₁) ⪰ 0


def test_high_temperature_adps_are_linear_in_t_and_inverse_in_mass():
    model = randomised_model(CartNetConfig(**HARMONIC))
    atoms = bulk("Cu", "fcc", a=3.6) * (2, 1, 1)
    heavy = atoms.copy()
    heavy.set_masses(atoms.get_masses() * 4.0)
    with torch.no_grad():
        u = model(graph_at(atoms, [5e4, 1e5])).numpy()
        u_heavy_cold = model(graph_at(heavy, [0.0])).numpy()
        u_cold = model(graph_at(atoms, [0.0])).numpy()
    np.testing.assert_allclose(u[:, 1], 2.0 * u[:, 0], rtol=1e-4)  # classical limit
    np.testing.assert_allclose(u_heavy_cold, u_cold / 4.0, rtol=1e-12)  # zero point ∝ 1/m


def test_one_pass_for_many_temperatures_equals_one_pass_each_and_batches():
    model = randomised_model(CartNetConfig(**HARMONIC))
    a, b = ethanol_crystal(1), bulk("NaCl", "rocksalt", a=5.6)
    temps = [20.0, 150.0, 600.0]
    with torch.no_grad():
        joint = model(batch_graphs([graph_at(a, temps), graph_at(b, temps)])).numpy()
        single = [
            np.concatenate([model(graph_at(x, [t])).numpy()[:, 0] for x in (a, b)]) for t in temps
        ]
        scalar = atoms_to_graph(a, 5.0, dtype=torch.float64)
        scalar.temperature = torch.tensor([150.0], dtype=torch.float64)  # (B,) gives (N, 3, 3)
        u_scalar = model(scalar).numpy()
    for k in range(3):
        np.testing.assert_allclose(joint[:, k], single[k], rtol=1e-12, atol=1e-18)
    np.testing.assert_allclose(u_scalar, single[1][: len(a)], rtol=1e-12, atol=1e-18)


def test_permutation_equivariance_and_translation_invariance():
    model = randomised_model(CartNetConfig(**HARMONIC))
    atoms = ethanol_crystal(2)
    perm = np.random.default_rng(0).permutation(len(atoms))
    moved = atoms.copy()
    moved.translate([0.37, -1.21, 2.05])
    with torch.no_grad():
        u = model(graph_at(atoms, [120.0, 300.0])).numpy()
        u_perm = model(graph_at(atoms[perm], [120.0, 300.0])).numpy()
        u_moved = model(graph_at(moved, [120.0, 300.0])).numpy()
    np.testing.assert_allclose(u_perm, u[perm], rtol=1e-10, atol=1e-16)
    np.testing.assert_allclose(u_moved, u, rtol=1e-10, atol=1e-16)


def test_calculator_sweep_equals_separate_calls(tmp_path):
    path = small_checkpoint(tmp_path, **{k: v for k, v in HARMONIC.items() if k not in SMALL})
    calc = CartNetADP(checkpoint=path, hydrogen="riding")
    crystal, salt = ethanol_crystal(0), bulk("NaCl", "rocksalt", a=5.6)
    # two sweeps of different lengths, interleaved, in one call (padding must not leak)
    structures = [crystal, salt, crystal, crystal, salt]
    temps = [100.0, 50.0, 200.0, 300.0, 500.0]
    swept = calc.predict_many(structures, temperatures=temps, batch_size=2)
    for atoms, t, u in zip(structures, temps, swept, strict=True):
        alone = CartNetADP(checkpoint=path, hydrogen="riding", temperature=t)
        np.testing.assert_allclose(
            u, alone.get_property("adps", atoms.copy()), rtol=1e-5, atol=1e-9
        )
    assert np.isfinite(swept[0]).all()  # riding H filled in


def test_structure_context_stays_per_structure_equivariant_and_starts_as_a_no_op():
    """The whole-crystal pathway: batching must not mix structures, U does not see a translation
    and follows a permutation of the atoms, and a freshly added (zero) context changes nothing."""
    config = CartNetConfig(**HARMONIC, structure_context=True)
    model = randomised_model(config)
    with torch.no_grad():  # a trained context, not the zero it starts from
        model.context.weight.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(2))
        model.context.bias.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(4))
    a, b = ethanol_crystal(1), bulk("NaCl", "rocksalt", a=5.6)
    moved = a.copy()
    moved.translate([0.37, -1.21, 2.05])
    perm = np.random.default_rng(1).permutation(len(a))
    with torch.no_grad():
        joint = model(batch_graphs([graph_at(a, [300.0]), graph_at(b, [300.0])])).numpy()
        alone = [model(graph_at(x, [300.0])).numpy() for x in (a, b)]
        u_moved = model(graph_at(moved, [300.0])).numpy()
        u_perm = model(graph_at(a[perm], [300.0])).numpy()
    np.testing.assert_allclose(joint, np.concatenate(alone), rtol=1e-10, atol=1e-16)
    np.testing.assert_allclose(u_moved, alone[0], rtol=1e-10, atol=1e-16)
    np.testing.assert_allclose(u_perm, alone[0][perm], rtol=1e-10, atol=1e-16)
    plain = CartNet(CartNetConfig(**HARMONIC)).double().eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if "context" not in k})
    with torch.no_grad():
        model.context.weight.zero_()
        model.context.bias.zero_()
        np.testing.assert_array_equal(
            model(graph_at(b, [300.0])).numpy(), plain(graph_at(b, [300.0])).numpy()
        )
