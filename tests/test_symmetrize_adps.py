"""symmetrize_adps: site symmetry and equivalent atoms imposed on per-atom U (a projection)."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from scipy.spatial.transform import Rotation

from ase_cartnet.errors import InputError
from ase_cartnet.symmetry import symmetrize_adps


def random_spd(n: int, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(n, 3, 3)) * 0.05
    return a @ np.swapaxes(a, 1, 2) + 1e-3 * np.eye(3)


def test_cubic_sites_become_isotropic_and_equivalent_atoms_equal():
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True)  # 4 Na + 4 Cl, sites m-3m
    u, n_ops = symmetrize_adps(atoms, random_spd(len(atoms), 0))
    assert n_ops == 192  # Fm-3m in the conventional cell: 48 rotations x 4 centrings
    for species in (11, 17):
        rows = u[atoms.numbers == species]
        np.testing.assert_allclose(rows, np.broadcast_to(rows[0], rows.shape), atol=1e-15)
        np.testing.assert_allclose(rows[0], np.trace(rows[0]) / 3 * np.eye(3), atol=1e-15)


def test_hexagonal_site_has_the_axial_form():
    atoms = bulk("ZnO", "wurtzite", a=3.25, c=5.2)  # sites 3m: U11 = U22, U13 = U23 = 0 along c
    u, _ = symmetrize_adps(atoms, random_spd(len(atoms), 1))
    np.testing.assert_allclose(u[:, 0, 0], u[:, 1, 1], atol=1e-15)
    np.testing.assert_allclose(u[:, [0, 0, 1], [1, 2, 2]], 0.0, atol=1e-15)


def test_projection_is_idempotent_spd_and_rotation_equivariant():
    atoms = bulk("ZnO", "wurtzite", a=3.25, c=5.2) * (1, 1, 2)
    u, _ = symmetrize_adps(atoms, random_spd(len(atoms), 2))
    again, _ = symmetrize_adps(atoms, u)
    np.testing.assert_allclose(again, u, atol=1e-15)
    assert (np.linalg.eigvalsh(u) > 0).all()
    r = Rotation.from_euler("zyx", [31, -47, 12], degrees=True).as_matrix()
    turned = atoms.copy()
    turned.set_cell(atoms.cell[:] @ r.T, scale_atoms=False)
    turned.set_positions(atoms.positions @ r.T)
    u_raw = random_spd(len(atoms), 3)
    u_turned, _ = symmetrize_adps(turned, r @ u_raw @ r.T)
    np.testing.assert_allclose(u_turned, r @ symmetrize_adps(atoms, u_raw)[0] @ r.T, atol=1e-14)


def test_p1_is_returned_unchanged_and_shapes_are_checked():
    rng = np.random.default_rng(4)
    atoms = Atoms(
        "CNO",
        scaled_positions=rng.uniform(size=(3, 3)),
        cell=[4.1, 5.3, 6.2, 81, 97, 103],
        pbc=True,
    )
    u = random_spd(3, 5)
    out, n_ops = symmetrize_adps(atoms, u)
    assert n_ops == 1 and out is not u
    np.testing.assert_array_equal(out, u)
    with pytest.raises(InputError, match="shape"):
        symmetrize_adps(atoms, u[:2])


def test_calculator_option_returns_the_symmetrized_prediction(tmp_path):
    from ase_cartnet.benchmarking.models import small_checkpoint
    from ase_cartnet.calculators.cartnet_adp import CartNetADP

    path = small_checkpoint(tmp_path)
    atoms = bulk("ZnO", "wurtzite", a=3.25, c=5.2)
    raw = CartNetADP(checkpoint=path, temperature=300.0, symmetrize=False).get_property(
        "adps", atoms
    )
    calc = CartNetADP(checkpoint=path, temperature=300.0)  # symmetrize=True is the default
    np.testing.assert_allclose(calc.get_property("adps", atoms), symmetrize_adps(atoms, raw)[0])
    assert not np.allclose(raw[:, 0, 0], raw[:, 1, 1])  # the option is not a no-op here


def test_a_sweep_is_symmetrized_with_one_symmetry_search():
    atoms = bulk("ZnO", "wurtzite", a=3.25, c=5.2)
    sweep = np.stack([random_spd(len(atoms), k) for k in range(3)])  # (T, N, 3, 3)
    stacked, _ = symmetrize_adps(atoms, sweep)
    for k in range(3):
        np.testing.assert_allclose(stacked[k], symmetrize_adps(atoms, sweep[k])[0], atol=1e-15)


def prep_symmetry_reference(atoms: Atoms, adps: np.ndarray) -> np.ndarray:
    """The former implementation: ASE's prep_symmetry (a per-atom, per-operation Python loop,
    quadratic in N for supercells) and one scatter per operation."""
    from ase.spacegroup.symmetrize import prep_symmetry

    rotations, _, symm_map = prep_symmetry(atoms, symprec=1e-3)
    lattice = atoms.cell[:]
    to_cart = lattice.T @ rotations.astype(float) @ np.linalg.inv(lattice).T
    total = np.zeros_like(adps)
    for r_cart, images in zip(to_cart, symm_map, strict=True):
        total[..., np.asarray(images), :, :] += r_cart @ adps @ r_cart.T
    return total / len(rotations)


def low_symmetry_cell() -> Atoms:
    """P2/m-like monoclinic cell doubled along a (translations and a 2-fold axis)."""
    frac = [[0.1, 0.25, 0.3], [0.9, 0.75, 0.7], [0.2, 0.25, 0.6], [0.8, 0.75, 0.4]]
    cell = [4.1, 5.3, 6.2, 90, 103, 90]
    return Atoms("Ti2O2", scaled_positions=frac, cell=cell, pbc=True) * (2, 1, 1)


@pytest.mark.parametrize(
    "atoms",
    [
        bulk("NaCl", "rocksalt", a=5.64, cubic=True) * (2, 1, 1),
        bulk("ZnO", "wurtzite", a=3.25, c=5.2) * (2, 2, 1),
        bulk("Si", "diamond", a=5.43, cubic=True) * (2, 2, 1),
        low_symmetry_cell(),
    ],
    ids=["nacl-supercell", "wurtzite-supercell", "si-32", "monoclinic"],
)
def test_linear_time_average_equals_the_prep_symmetry_loop(atoms):
    u = np.stack([random_spd(len(atoms), 6), random_spd(len(atoms), 7)])  # a 2-T sweep
    u[:, 1] = np.nan  # an unpredicted atom spreads NaN to its equivalents only, as before
    expected = prep_symmetry_reference(atoms, u)
    got, _ = symmetrize_adps(atoms, u)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10, equal_nan=True)
    assert np.isnan(got).any()


@pytest.mark.slow
def test_linear_time_average_equals_the_loop_on_a_216_atom_supercell():
    atoms = bulk("Si", "diamond", a=5.43, cubic=True) * (3, 3, 3)  # |G| = 48 x 108 = 5,184
    atoms.rattle(1e-5, seed=8)  # inside the 1e-3 Å tolerance: the same group is found
    u = random_spd(len(atoms), 9)
    got, n_ops = symmetrize_adps(atoms, u)
    assert n_ops == 5184
    np.testing.assert_allclose(got, prep_symmetry_reference(atoms, u), rtol=0, atol=1e-10)


def test_symmetrize_like_equals_the_ase_rank1_rank2_projection():
    from ase.spacegroup.symmetrize import prep_symmetry, symmetrize_rank1, symmetrize_rank2

    from ase_cartnet.symmetry import symmetrize_like

    reference = bulk("ZnO", "wurtzite", a=3.25, c=5.2) * (2, 1, 2)
    rng = np.random.default_rng(10)
    predicted = reference.copy()
    predicted.set_cell(reference.cell[:] @ (np.eye(3) + 0.01 * rng.normal(size=(3, 3))),
                       scale_atoms=True)  # fmt: skip
    predicted.positions += 0.03 * rng.normal(size=predicted.positions.shape)
    got, n_ops = symmetrize_like(predicted, reference)

    rotations, translations, symm_map = prep_symmetry(reference, symprec=1e-3)
    cell0, cell1 = reference.cell[:], predicted.cell[:]
    inv0 = np.linalg.inv(cell0)
    strain = symmetrize_rank2(cell0, inv0, inv0 @ cell1 - np.eye(3), rotations)
    cell_sym = cell0 @ (np.eye(3) + strain)
    frac0 = reference.get_scaled_positions(wrap=False)
    frac1 = predicted.get_scaled_positions(wrap=False)
    shift = np.round(frac1 - frac0)
    disp = symmetrize_rank1(
        cell0, inv0, (frac1 - shift - frac0) @ cell0, rotations, translations, symm_map
    )
    assert n_ops == len(rotations) == 16  # the doubled a axis leaves 4 rotations x 4 shifts
    np.testing.assert_allclose(got.cell[:], cell_sym, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        got.positions, (frac0 + shift + disp @ inv0) @ cell_sym, rtol=0, atol=1e-12
    )
