"""The Python API behaves like ASE's own and checks what it is given: ``Calculator.set``,
pymatgen inputs, temperatures, isolated atoms, checkpoints (sha256 of the card, non-finite
weights, invalid configs), ``dir``/``__version__``, file modes, skewed cells and CIF quirks."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

import ase_cartnet
from ase_cartnet.benchmarking.models import small_checkpoint
from ase_cartnet.calculators.cartnet_adp import CartNetADP
from ase_cartnet.calculators.crystograph_property import CrysToGraphProperty
from ase_cartnet.errors import CheckpointError, CIFWarning, ExtrapolationWarning, InputError
from ase_cartnet.io.atomic import atomic_path, atomic_write
from ase_cartnet.io.checkpoint import LoadedModel, load_model, trained_temperatures
from ase_cartnet.validation import MAX_TEMPERATURE, validate_structure
from ase_cartnet.weights import DEFAULT_CARTNET, DEFAULT_PROPERTY, shipped_names

needs_default = pytest.mark.skipif(not DEFAULT_CARTNET.is_file(), reason="no shipped weights")


@pytest.fixture(scope="module")
def calc():
    return CartNetADP(temperature=300.0)


def nacl() -> Atoms:
    return bulk("NaCl", "rocksalt", a=5.64)


# -- Calculator.set ------------------------------------------------------------------------


@needs_default
def test_set_temperature_and_symmetrize_recompute(calc):
    atoms = nacl()  # the model alone breaks the site symmetry slightly: symmetrize matters
    calc.set(temperature=300.0, symmetrize=True)
    cold = calc.get_property("u_equiv", atoms).copy()
    assert calc.set(temperature=300.0) == {}  # no change, results kept
    assert "u_equiv" in calc.results
    with pytest.warns(ExtrapolationWarning, match="900 K is outside the 20–800 K"):
        assert calc.set(temperature=900) == {"temperature": 900.0}
        assert calc.results == {}  # ASE: a changed parameter discards the results
        hot = calc.get_property("u_equiv", atoms).copy()
    assert np.all(hot > 2 * cold)  # harmonic U ∝ T at high T
    with pytest.warns(ExtrapolationWarning):
        fresh = CartNetADP(temperature=900.0).predict_many([atoms])[0]
    np.testing.assert_allclose(calc.get_property("adps", atoms), fresh, atol=1e-7)

    calc.set(temperature=300.0)
    sym = calc.get_property("adps", atoms).copy()
    calc.set(symmetrize=False)
    assert calc.symmetrize is False
    raw = calc.get_property("adps", atoms)
    assert np.abs(raw - sym).max() > 1e-6
    np.testing.assert_allclose(
        raw, CartNetADP(temperature=300.0, symmetrize=False).predict_many([atoms])[0], atol=1e-7
    )
    calc.set(symmetrize=True)
    np.testing.assert_allclose(calc.get_property("adps", atoms), sym, atol=1e-7)


@needs_default
def test_set_checks_values_and_refuses_fixed_parameters(calc):
    with pytest.raises(InputError, match="hydrogen"):
        calc.set(hydrogen="bogus")
    with pytest.raises(InputError, match=r"'300'"):
        calc.set(temperature="300")
    with pytest.raises(InputError, match="checkpoint.*new CartNetADP"):
        calc.set(checkpoint="other.pt")
    with pytest.raises(InputError, match="foo"):
        CartNetADP(foo=1)
    assert calc.parameters["temperature"] == 300.0  # a refused set changes nothing


def test_property_calculator_has_nothing_to_set():
    if not DEFAULT_PROPERTY["formation_energy_per_atom"].is_file():
        pytest.skip("no shipped property weights")
    prop = CrysToGraphProperty()
    assert prop.set() == {}
    with pytest.raises(InputError, match="no settable parameters.*target"):
        prop.set(target="heat_ref")
    with pytest.raises(InputError, match="no settable"):
        CrysToGraphProperty(foo=1)


# -- pymatgen ------------------------------------------------------------------------------


@needs_default
def test_pymatgen_structures_are_accepted(calc):
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = nacl()
    atoms.rattle(0.03, seed=2)
    structure = AseAtomsAdaptor.get_structure(atoms)
    calc.set(temperature=300.0)
    u_atoms, u_structure = calc.predict_many([atoms, structure])
    np.testing.assert_allclose(u_structure, u_atoms, atol=1e-7)
    np.testing.assert_allclose(calc.get_property("adps", structure), u_atoms, atol=1e-7)
    with pytest.raises(InputError, match="structure 1: expected an ase.Atoms or a pymatgen"):
        calc.predict_many([atoms, "NaCl.cif"])
    if DEFAULT_PROPERTY["formation_energy_per_atom"].is_file():
        prop = CrysToGraphProperty()
        np.testing.assert_allclose(
            prop.predict_many([structure]), prop.predict_many([atoms]), atol=1e-6
        )
        assert prop.get_property("property", structure) == pytest.approx(
            float(prop.predict_many([atoms])[0]), abs=1e-6
        )


def test_empnn_changes_a_pymatgen_structure_in_place():
    from pymatgen.io.ase import AseAtomsAdaptor

    from ase_cartnet.calculators.empnn_lattice import EMPNNLattice
    from ase_cartnet.weights import DEFAULT_EMPNN

    if not DEFAULT_EMPNN.is_file():
        pytest.skip("no shipped EMPNN weights")
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.set_cell(atoms.cell[:] @ np.array([[1.05, 0.02, 0], [0, 0.97, 0], [0, 0, 1.03]]), True)
    structure = AseAtomsAdaptor.get_structure(atoms)
    EMPNNLattice(atoms, logfile=None).run()
    EMPNNLattice(structure, logfile=None).run()
    np.testing.assert_allclose(structure.lattice.matrix, atoms.cell[:], atol=1e-6)
    np.testing.assert_allclose(structure.frac_coords, atoms.get_scaled_positions(), atol=1e-6)


def test_deeprelax_returns_and_changes_pymatgen_structures():
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    from ase_cartnet.calculators.deeprelax import DeepRelax, load_deeprelax, predict
    from ase_cartnet.weights import DEFAULT_DEEPRELAX

    if not DEFAULT_DEEPRELAX.is_file():
        pytest.skip("no shipped DeepRelax weights")
    atoms = nacl()
    atoms.rattle(0.1, seed=3)
    structure = AseAtomsAdaptor.get_structure(atoms)
    ensemble = load_deeprelax()[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from_atoms, from_structure = predict(ensemble, [atoms, structure])
        assert isinstance(from_structure.atoms, Structure)
        assert isinstance(from_atoms.atoms, Atoms)
        np.testing.assert_allclose(
            from_structure.atoms.lattice.matrix, from_atoms.atoms.cell[:], atol=1e-5
        )
        DeepRelax(structure, model=ensemble, logfile=None).run()
    np.testing.assert_allclose(structure.lattice.matrix, from_atoms.atoms.cell[:], atol=1e-5)
    np.testing.assert_allclose(structure.cart_coords, from_atoms.atoms.positions, atol=1e-5)


# -- temperatures --------------------------------------------------------------------------


@needs_default
@pytest.mark.parametrize(
    "value",
    [True, np.bool_(True), "300", 300 + 0j, math.nan, math.inf, -5.0, 0.0, 1e6, 1e30, 1e300],
    ids=repr,
)
def test_bad_temperatures_are_refused_naming_the_value(calc, value):
    with pytest.raises(InputError, match=re.escape(repr(value))):
        CartNetADP(temperature=value)
    with pytest.raises(InputError, match=re.escape(repr(value))):
        calc.predict_many([nacl()], temperatures=value)
    atoms = nacl()
    atoms.info["temperature"] = value
    calc.set(temperature=None)  # read from atoms.info
    try:
        with pytest.raises(InputError, match=r"structure 0 \(ClNa\).*" + re.escape(repr(value))):
            calc.predict_many([atoms])
    finally:
        calc.set(temperature=300.0)


@needs_default
def test_real_number_types_are_accepted_and_range_warns(calc):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExtrapolationWarning)  # inside 20–800 K: no warning
        u = [calc.predict_many([nacl()], temperatures=t)[0] for t in (300, np.float32(300.0))]
    np.testing.assert_allclose(u[0], u[1], atol=1e-8)
    for t in (10.0, 1e-300, MAX_TEMPERATURE):
        with pytest.warns(ExtrapolationWarning, match=f"{t:g} K is outside the 20–800 K"):
            assert np.isfinite(calc.predict_many([nacl()], temperatures=t)[0]).all()


def test_training_temperature_range_of_official_and_own_checkpoints(tmp_path):
    from ase_cartnet.models.cartnet import CartNetConfig

    official = LoadedModel(None, "cartnet", CartNetConfig(), {}, tmp_path, {})
    low, high = trained_temperatures(official)
    assert low == 0.0 and high == pytest.approx(192.1785 + 3 * 81.2135)
    harmonic = CartNetConfig(head="harmonic", use_temperature=False)
    assert trained_temperatures(LoadedModel(None, "cartnet", harmonic, {}, tmp_path, {})) is None
    card = {"temperature_range_K": [20.0, 800.0]}
    assert trained_temperatures(LoadedModel(None, "cartnet", harmonic, {}, tmp_path, card)) == (
        20.0,
        800.0,
    )
    loaded = load_model(small_checkpoint(tmp_path), "cartnet")  # no stated range: mean ± 3σ
    assert trained_temperatures(loaded)[1] == pytest.approx(
        loaded.config.temperature_mean + 3 * loaded.config.temperature_std
    )


# -- isolated atoms ------------------------------------------------------------------------


@needs_default
def test_atom_without_neighbours_warns_naming_the_site(calc):
    atoms = Atoms(
        "NaClCu", positions=[[0, 0, 0], [2.82, 0, 0], [10, 10, 10]], cell=[20] * 3, pbc=True
    )
    atoms.arrays["site_label"] = np.array(["Na1", "Cl1", "Cu9"])
    with pytest.warns(ExtrapolationWarning, match=r"atom\(s\) 2 \(Cu, Cu9\) have no neighbour"):
        u = calc.predict_many([atoms], temperatures=300.0)[0]
    assert np.isfinite(u).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExtrapolationWarning)
        calc.predict_many([nacl()], temperatures=300.0)  # every atom has neighbours


# -- checkpoints ---------------------------------------------------------------------------


@needs_default
def test_shipped_checkpoint_is_verified_against_its_card(tmp_path):
    for suffix in (".pt", ".json"):
        shutil.copy(DEFAULT_CARTNET.with_suffix(suffix), tmp_path / f"copy{suffix}")
    card = json.loads((tmp_path / "copy.json").read_text())
    card["weights_file"] = "copy.pt"
    (tmp_path / "copy.json").write_text(json.dumps(card))
    load_model(tmp_path / "copy.pt", "cartnet")  # an intact copy with its card loads
    data = bytearray((tmp_path / "copy.pt").read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    (tmp_path / "copy.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"copy\.pt does not match its model card.*sha256"):
        CartNetADP(checkpoint=tmp_path / "copy.pt")


@pytest.mark.parametrize("name", shipped_names())
def test_non_finite_weights_are_refused_for_every_model(tmp_path, name):
    from ase_cartnet.weights import shipped

    try:
        source = shipped(name)
    except CheckpointError:
        pytest.skip(f"{name} is not shipped")
    payload = torch.load(source, map_location="cpu", weights_only=True)
    key = next(k for k, v in payload["model_state"].items() if v.is_floating_point())
    payload["model_state"][key] = payload["model_state"][key].clone()
    payload["model_state"][key].view(-1)[0] = math.nan
    path = tmp_path / "nan.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=rf"nan\.pt: tensor '{re.escape(key)}'.*non-finite"):
        load_model(path)


@pytest.mark.parametrize(
    "override", [{"cutoff": -1.0}, {"cutoff": math.nan}, {"dim": 0}, {"temperature_std": 0.0}]
)
def test_invalid_config_fails_at_load_naming_the_file(tmp_path, override):
    path = small_checkpoint(tmp_path)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    payload["config"].update(override)
    bad = tmp_path / "bad_config.pt"
    torch.save(payload, bad)
    field = next(iter(override))
    with pytest.raises(CheckpointError, match=rf"bad_config\.pt: invalid cartnet config.*{field}"):
        CartNetADP(checkpoint=bad)


# -- the package ---------------------------------------------------------------------------


def test_dir_lists_the_lazy_classes_and_version_exists():
    names = dir(ase_cartnet)
    for name in ("CartNetADP", "DeepRelax", "EMPNNLattice", "CrysToGraphProperty", "__version__"):
        assert name in names
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert f'version = "{ase_cartnet.__version__}"' in pyproject


# -- file modes ----------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_new_outputs_get_the_umask_mode(tmp_path, umask):
    old = os.umask(umask)
    try:
        with atomic_write(tmp_path / "a.txt") as handle:
            handle.write("x")
        with atomic_path(tmp_path / "b.bin") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(old)
    for name in ("a.txt", "b.bin"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_rewritten_output_keeps_its_mode(tmp_path):
    target = tmp_path / "kept.txt"
    target.write_text("old")
    target.chmod(0o640)
    with atomic_write(target) as handle:
        handle.write("new")
    assert target.read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o640


# -- skewed cells --------------------------------------------------------------------------

SKEW = np.array([[8001, 20, 400], [400, 1, 20], [20, 0, 1]])
"""A unimodular change of basis: fcc Cu (11.8 Å³) with vectors of 21,000, 1,050 and 52 Å."""


def skewed_copper() -> tuple[Atoms, Atoms]:
    cu = bulk("Cu", "fcc", a=3.61) * (1, 1, 1)
    skewed = cu.copy()
    skewed.set_cell(SKEW @ cu.cell[:], scale_atoms=False)
    return cu, skewed


def test_a_skewed_basis_is_not_a_zero_volume_cell():
    cu, skewed = skewed_copper()
    assert round(abs(np.linalg.det(SKEW))) == 1
    assert skewed.get_volume() == pytest.approx(cu.get_volume())
    validate_structure(skewed)
    with pytest.raises(InputError, match="zero volume"):
        validate_structure(Atoms("Cu", cell=[[3, 0, 0], [6, 0, 0], [0, 0, 3]], pbc=True))


@needs_default
@pytest.mark.parametrize("symmetrize", [True, False])
def test_cartnet_is_covariant_under_a_skewed_basis(symmetrize):
    cu, skewed = skewed_copper()
    nacl_atoms = nacl()
    nacl_atoms.rattle(0.05, seed=4)
    nacl_skewed = nacl_atoms.copy()
    basis = np.array([[1, 0, 20], [20, 1, 400], [0, 20, 1]])
    nacl_skewed.set_cell(basis @ nacl_atoms.cell[:], scale_atoms=False)
    calc = CartNetADP(temperature=300.0, symmetrize=symmetrize)
    plain = calc.predict_many([cu, nacl_atoms])
    other = calc.predict_many([skewed, nacl_skewed])
    for a, b in zip(plain, other, strict=True):
        np.testing.assert_allclose(b, a, atol=2e-6 * np.abs(a).max())


# -- CIFs ----------------------------------------------------------------------------------

CIF = """data_nacl
_cell_length_a 5.64
_cell_length_b 5.64
_cell_length_c 5.64
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
_diffrn_ambient_temperature 150
loop_
_symmetry_equiv_pos_as_xyz
'x, y, z'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_U_iso_or_equiv
Na1 Na 0 0 0 0.01
Cl1 Cl 0.5 0.5 0.5 0.01
loop_
_atom_site_aniso_label
_atom_site_aniso_U_11
_atom_site_aniso_U_22
_atom_site_aniso_U_33
_atom_site_aniso_U_12
_atom_site_aniso_U_13
_atom_site_aniso_U_23
Na1 0.01 0.01 0.01 0 0 0
Cl1 {cl}
"""


def _read(path: Path):
    from ase_cartnet.io.cif import read_cif

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        atoms = read_cif(path)
    return atoms, [str(w.message) for w in caught if issubclass(w.category, CIFWarning)]


@pytest.mark.parametrize("gemmi", [True, False], ids=["gemmi", "pycifrw"])
def test_cif_with_a_byte_order_mark_reads_like_without(tmp_path, monkeypatch, gemmi):
    import ase_cartnet.io.cif as cif_mod

    if not gemmi:
        pytest.importorskip("CifFile")
        monkeypatch.setattr(cif_mod, "_HAVE_GEMMI", False)
    text = CIF.format(cl="0.012 0.011 0.010 0.001 0 0")
    (tmp_path / "plain.cif").write_text(text, encoding="utf-8")
    (tmp_path / "bom.cif").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    plain, _ = _read(tmp_path / "plain.cif")
    with_bom, messages = _read(tmp_path / "bom.cif")
    assert not messages
    assert with_bom.get_chemical_symbols() == plain.get_chemical_symbols() == ["Na", "Cl"]
    np.testing.assert_allclose(with_bom.positions, plain.positions)
    np.testing.assert_allclose(with_bom.arrays["adps"], plain.arrays["adps"])
    assert with_bom.info["temperature"] == 150.0


def test_cif_with_non_positive_definite_adps_warns_naming_the_atoms(tmp_path):
    (tmp_path / "npd.cif").write_text(CIF.format(cl="0.01 -0.002 0.01 0 0 0"))
    atoms, messages = _read(tmp_path / "npd.cif")
    npd = [m for m in messages if "not positive definite" in m]
    assert len(npd) == 1 and "Cl1 (-0.002 Å²)" in npd[0] and "Na1" not in npd[0]
    assert atoms.arrays["adps"][1, 1, 1] == pytest.approx(-0.002)  # kept as the file says
    (tmp_path / "pd.cif").write_text(CIF.format(cl="0.01 0.01 0.01 0.002 0 0"))
    assert not [m for m in _read(tmp_path / "pd.cif")[1] if "positive definite" in m]
