"""PhononReference: from phonopy files (equal to phonopy), from an ASE calculator (EMT), cache,
executors, imaginary-mode policy, supercell and mesh choices."""

from __future__ import annotations

import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from shared_paths import DATA, needs_shared

from ase_cartnet.adp import u_cart_to_u_cif
from ase_cartnet.errors import InputError
from phonon_ref.grids import resolve_mesh, resolve_supercell
from phonon_ref.harmonic import ImaginaryModesError, ImaginaryModesWarning
from phonon_ref.reference import PhononReference

EXAMPLES = DATA / "phonopy_examples"
CU_A = 3.5898  # Å, EMT's equilibrium lattice constant of fcc Cu (relaxed to < 1e-5 eV/Å³)


class CountingEMT(EMT):
    """EMT that counts its energy/force evaluations (shared between copies of one process)."""

    calls = 0

    def calculate(self, *args, **kwargs):
        type(self).calls += 1
        super().calculate(*args, **kwargs)


@pytest.fixture(scope="module")
def cu():
    return bulk("Cu", "fcc", a=CU_A)


@pytest.fixture(scope="module")
def cu_ref(cu):
    return PhononReference(
        cu, calculator="emt", supercell=(3, 3, 3), mesh=(9, 9, 9), progress=False
    )


def phonopy_tdm(phonon, mesh, temperatures):
    phonon.run_mesh(mesh, with_eigenvectors=True, is_mesh_symmetry=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tdm = phonon.run_thermal_displacement_matrices(temperatures=temperatures, freq_min=0.01)
    return np.asarray(tdm.thermal_displacement_matrices)


@needs_shared
def test_from_force_sets_equals_phonopy_for_every_atom_of_the_input_cell():
    """phonopy_disp.yaml + FORCE_SETS + BORN (NaCl, conventional cell of 8 atoms, 'P')."""
    import phonopy

    d = EXAMPLES / "NaCl"
    ref = PhononReference.from_phonopy_files(
        d / "phonopy_disp.yaml", d / "FORCE_SETS", born=d / "BORN", mesh=(5, 5, 5), progress=False
    )
    u = ref.adps([0.0, 300.0])
    assert u.shape == (2, 8, 3, 3) and len(ref.atoms) == 8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        phonon = phonopy.load(
            d / "phonopy_disp.yaml",
            force_sets_filename=d / "FORCE_SETS",
            born_filename=d / "BORN",
            primitive_matrix="P",
            log_level=0,
        )
    expected = phonopy_tdm(phonon, [5, 5, 5], [0.0, 300.0])
    assert np.abs(u - expected).max() <= 1e-8 * np.abs(expected).max()
    np.testing.assert_allclose(ref.u_cif(300.0), u_cart_to_u_cif(u[1], ref.atoms.cell[:]))
    assert ref.n_force_calls == 0
    lo, hi = ref.frequency_range()
    assert abs(lo) < 0.05 and 5.0 < hi < 10.0


@needs_shared
def test_from_phonopy_yaml_with_forces_inside():
    import phonopy

    path = EXAMPLES / "params-Si" / "phonopy_params.yaml"
    ref = PhononReference.from_phonopy_yaml(path, mesh=(5, 5, 5), progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        phonon = phonopy.load(path, primitive_matrix="P", log_level=0)
    expected = phonopy_tdm(phonon, [5, 5, 5], [300.0])[0]
    np.testing.assert_allclose(ref.adps(300.0), expected, rtol=1e-10, atol=1e-14)


@needs_shared
def test_from_force_constants_file():
    from ase.io import read

    d = EXAMPLES / "NaCl-VASPdfpt"
    atoms = read(d / "POSCAR-unitcell")
    ref = PhononReference.from_force_constants(
        atoms, d / "FORCE_CONSTANTS", supercell=(2, 2, 2), mesh=(5, 5, 5), progress=False
    )
    u = ref.adps(300.0)
    assert u.shape == (len(atoms), 3, 3)
    assert np.all(np.linalg.eigvalsh(u) > 0)
    with pytest.raises(InputError, match="do not fit"):
        PhononReference.from_force_constants(atoms, np.zeros((3, 3, 3, 3)), supercell=(2, 2, 2))


def test_emt_reference_is_symmetric_positive_definite_and_isotropic_for_fcc(cu_ref):
    u = cu_ref.adps([0.0, 300.0])
    assert u.shape == (2, 1, 3, 3)
    np.testing.assert_allclose(u, np.swapaxes(u, -1, -2), atol=1e-15)
    assert np.all(np.linalg.eigvalsh(u) > 0)
    iso = np.trace(u, axis1=-2, axis2=-1)[..., None, None] / 3 * np.eye(3)
    assert np.abs(u - iso).max() <= 1e-9 * np.abs(u).max()
    # EMT copper at 300 K on this coarse 9³ mesh: U_iso ≈ 0.0055 Å² (converged: 0.0061)
    assert 0.004 < u[1, 0, 0, 0] < 0.008 and u[1, 0, 0, 0] > 2 * u[0, 0, 0, 0]
    assert cu_ref.n_force_calls == 2  # one symmetry-distinct displacement + the perfect cell


def test_every_atom_of_a_conventional_cell_in_input_order():
    atoms = bulk("Cu", "fcc", a=CU_A, cubic=True)
    atoms.positions += [0.1, 0.2, 0.3]  # an arbitrary origin must not matter
    ref = PhononReference(atoms, "emt", supercell=(2, 2, 2), mesh=(5, 5, 5), progress=False)
    u = ref.adps(300.0)
    assert u.shape == (4, 3, 3)
    np.testing.assert_allclose(u, np.broadcast_to(u[0], u.shape), rtol=1e-9, atol=1e-15)
    assert ref.atoms.positions == pytest.approx(atoms.positions)


def test_cache_hit_makes_no_force_call_and_gives_the_same_numbers(cu, tmp_path):
    CountingEMT.calls = 0
    first = PhononReference(
        cu, CountingEMT(), supercell=(3, 3, 3), mesh=(7, 7, 7), cache_dir=tmp_path, progress=False
    )
    assert CountingEMT.calls == first.n_force_calls == 2 and not first.cache_hit
    assert first.cache_file.is_file() and first.cache_file.parent == tmp_path
    # compact force constants (1 × 27 atoms × 3 × 3) compressed: kilobytes, not a phonopy yaml
    assert first.cache_file.suffix == ".npz" and first.cache_file.stat().st_size < 10_000
    CountingEMT.calls = 0
    again = PhononReference(
        cu, CountingEMT(), supercell=(3, 3, 3), mesh=(9, 9, 9), cache_dir=tmp_path, progress=False
    )
    assert again.cache_hit and CountingEMT.calls == 0 and again.n_force_calls == 0
    np.testing.assert_allclose(again.force_constants, first.force_constants, atol=1e-12)
    np.testing.assert_allclose(again.adps(150.0, mesh=7), first.adps(150.0), rtol=1e-10, atol=1e-15)
    # another supercell or displacement is another entry
    other = PhononReference(
        cu, CountingEMT(), supercell=(2, 2, 2), mesh=7, cache_dir=tmp_path, progress=False
    )
    assert not other.cache_hit and len(list(tmp_path.glob("*.npz"))) == 2


@pytest.mark.parametrize("pool", [ThreadPoolExecutor, ProcessPoolExecutor])
def test_executor_path_gives_the_same_numbers(pool, cu_ref):
    atoms = bulk("Cu", "fcc", a=CU_A, cubic=True)  # 4 atoms: more than one task per worker
    atoms.rattle(0.02, seed=1)  # lower symmetry: 12 displaced supercells
    serial = PhononReference(
        atoms, "emt", supercell=(2, 2, 2), mesh=5, progress=False, on_imaginary="ignore"
    )
    with pool(max_workers=2) as executor:
        parallel = PhononReference(
            atoms,
            "emt",
            supercell=(2, 2, 2),
            mesh=5,
            executor=executor,
            progress=False,
            on_imaginary="ignore",
        )
    assert parallel.n_force_calls == serial.n_force_calls > 4
    np.testing.assert_array_equal(parallel.force_constants, serial.force_constants)
    np.testing.assert_array_equal(parallel.adps(300.0), serial.adps(300.0))


def test_an_object_calculator_is_copied_per_task_on_threads(cu):
    """Threads must not share one calculator's state: results equal the serial run."""
    atoms = cu.repeat((1, 1, 2))
    atoms.rattle(0.01, seed=3)
    serial = PhononReference(
        atoms, EMT(), supercell=(2, 2, 1), mesh=3, progress=False, on_imaginary="ignore"
    )
    with ThreadPoolExecutor(max_workers=2) as executor:
        threaded = PhononReference(
            atoms,
            EMT(),
            supercell=(2, 2, 1),
            mesh=3,
            executor=executor,
            progress=False,
            on_imaginary="ignore",
        )
    # EMT's neighbour-list reuse changes the summation order: equal to rounding
    np.testing.assert_allclose(
        threaded.force_constants, serial.force_constants, rtol=1e-10, atol=1e-11
    )


@needs_shared
def test_imaginary_mode_policy_warn_raise_ignore():
    """Cubic CaTiO3 (DFT force sets) is dynamically unstable."""
    d = EXAMPLES / "CaTiO3"
    kwargs = dict(mesh=(3, 3, 3), progress=False)
    warn = PhononReference.from_phonopy_files(d / "phonopy_disp.yaml", d / "FORCE_SETS", **kwargs)
    with pytest.warns(ImaginaryModesWarning, match="imaginary"):
        result = warn.run(300.0)
    assert result.n_imaginary > 0 and result.min_frequency < -1.0 and not result.is_stable
    strict = PhononReference.from_phonopy_files(
        d / "phonopy_disp.yaml", d / "FORCE_SETS", on_imaginary="raise", **kwargs
    )
    with pytest.raises(ImaginaryModesError, match="dynamically unstable"):
        strict.adps(300.0)
    quiet = PhononReference.from_phonopy_files(
        d / "phonopy_disp.yaml", d / "FORCE_SETS", on_imaginary="ignore", **kwargs
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert quiet.run(300.0).n_imaginary == result.n_imaginary


def test_strained_emt_copper_is_unstable_and_says_so():
    """A crystal far from its minimum (fcc Cu under a large tetragonal strain) gets imaginary
    modes and a warning."""
    atoms = bulk("Cu", "fcc", a=CU_A, cubic=True)
    atoms.set_cell(atoms.cell[:] * [1.25, 1.25, 0.7], scale_atoms=True)
    ref = PhononReference(atoms, "emt", supercell=(2, 2, 3), mesh=5, progress=False)
    with pytest.warns(ImaginaryModesWarning):
        result = ref.run(300.0)
    assert result.n_imaginary > 0


def test_mesh_extrapolation_removes_the_slow_1_over_n_deficit(cu_ref):
    """The 15³ sum is ~6 % low for primitive fcc Cu; the 9³/15³ extrapolation is within 0.5 %
    of the 27³/41³ one, which agrees with a 1/n fit of finer meshes to 0.1 %."""
    converged = cu_ref.adps(300.0, mesh=41, extrapolate=True)[0, 0, 0]
    raw = cu_ref.adps(300.0, mesh=15)[0, 0, 0]
    extrapolated = cu_ref.adps(300.0, mesh=15, extrapolate=True)
    assert 0.03 < 1 - raw / converged < 0.09
    assert abs(extrapolated[0, 0, 0] / converged - 1) < 0.005
    assert np.all(np.linalg.eigvalsh(extrapolated) > 0)
    with pytest.raises(InputError, match="too coarse"):
        cu_ref.run_extrapolated(300.0, mesh=(2, 2, 2))


def test_temperature_comes_from_the_argument_or_atoms_info(cu_ref, cu):
    with pytest.raises(InputError, match="no temperature"):
        cu_ref.adps()
    atoms = cu.copy()
    atoms.info["temperature"] = 200.0
    ref = PhononReference(atoms, "emt", supercell=(3, 3, 3), mesh=(9, 9, 9), progress=False)
    np.testing.assert_allclose(ref.adps(), cu_ref.adps(200.0))
    with pytest.raises(InputError, match=">= 0 K"):
        cu_ref.adps(-5.0)


def test_to_atoms_carries_adps_and_temperature(cu_ref):
    atoms = cu_ref.to_atoms(300.0)
    np.testing.assert_array_equal(atoms.arrays["adps"], cu_ref.adps(300.0))
    assert atoms.info["temperature"] == 300.0


def test_bad_input_is_refused(cu):
    with pytest.raises(InputError, match="needs a calculator"):
        PhononReference(cu)
    with pytest.raises(InputError, match="unknown calculator"):
        PhononReference(cu, "no-such-calculator", supercell=(2, 2, 2))
    with pytest.raises(InputError, match="periodic"):
        slab = cu.copy()
        slab.pbc = [True, True, False]
        PhononReference(slab, "emt")
    with pytest.raises(InputError, match="on_imaginary"):
        PhononReference(cu, "emt", supercell=(2, 2, 2), on_imaginary="maybe")
    with pytest.raises(InputError, match="displacement"):
        PhononReference(cu, "emt", displacement=0.0)


def test_supercell_choices():
    cell = bulk("Cu", "fcc", a=CU_A).cell[:]
    heights = 1.0 / np.linalg.norm(np.linalg.inv(cell).T, axis=1)  # ≈ 2.07 Å
    m = resolve_supercell(cell, 10.0)
    assert np.all(np.diag(m) * heights >= 10.0) and np.all((np.diag(m) - 1) * heights < 10.0)
    assert resolve_supercell(cell, None).tolist() == m.tolist()
    assert resolve_supercell(cell, (2, 3, 4)).tolist() == np.diag([2, 3, 4]).tolist()
    full = [[-1, 1, 1], [1, -1, 1], [1, 1, -1]]
    assert resolve_supercell(cell, full).tolist() == full
    with pytest.raises(InputError, match="ambiguous"):
        resolve_supercell(cell, 4)
    with pytest.raises(InputError, match="determinant"):
        resolve_supercell(cell, [[1, 0, 0], [0, 1, 0], [0, 0, 0]])
    with pytest.raises(InputError, match="integer"):
        resolve_supercell(cell, (2.5, 2, 2))


def test_mesh_choices():
    cell = np.diag([4.0, 5.0, 10.0])
    assert resolve_mesh(cell, 100.0).tolist() == [25, 21, 11]
    assert resolve_mesh(cell, 60.0).tolist() == [15, 13, 7]  # rounded up to odd
    assert resolve_mesh(cell, 7).tolist() == [7, 7, 7]
    assert resolve_mesh(cell, (4, 4, 4)).tolist() == [4, 4, 4]  # as given
    for bad in [0, (1, 2), -3.0, (2, 2, 0)]:
        with pytest.raises(InputError):
            resolve_mesh(cell, bad)


def test_a_corrupt_cache_entry_is_named(cu, tmp_path):
    from ase_cartnet.errors import InputError

    first = PhononReference(cu, "emt", supercell=(2, 2, 2), mesh=3, cache_dir=tmp_path,
                            progress=False)  # fmt: skip
    first.cache_file.write_bytes(first.cache_file.read_bytes()[:100])
    with pytest.raises(InputError, match=f"{first.cache_file.name}: not a readable"):
        PhononReference(cu, "emt", supercell=(2, 2, 2), mesh=3, cache_dir=tmp_path, progress=False)


def test_symfc_fit_agrees_with_finite_displacements_on_a_harmonic_model():
    """symfc's least-squares fit to random-displacement supercells recovers the finite-
    displacement ADPs of an (almost) harmonic EMT crystal, and its cache key differs."""
    atoms = bulk("Cu", "fcc", a=3.61)
    kw = dict(calculator=EMT(), supercell=(3, 3, 3), mesh=(9, 9, 9), progress=False)
    finite = PhononReference(atoms, **kw)
    symfc = PhononReference(atoms, fc_method="symfc", n_snapshots=2, **kw)
    u_f, u_s = finite.adps(300.0), symfc.adps(300.0)
    assert symfc.n_force_calls == 3  # two random supercells and the undisplaced one
    np.testing.assert_allclose(u_s, u_f, rtol=0, atol=0.01 * float(u_f[0, 0, 0]))
    with pytest.raises(InputError, match="fc_method"):
        PhononReference(atoms, fc_method="fit", **kw)
    with pytest.raises(InputError, match="n_snapshots"):
        PhononReference(atoms, n_snapshots=3, **kw)
