"""CIF reading (symmetry expansion with rotated ADPs) and writing (P1 with an aniso loop).

The real-data tests run on the 46 CIFs of ../shared/data/exp_adp_dev and are skipped where
../shared is absent; the hand-made CIFs below are written by the tests themselves.
"""

from __future__ import annotations

import csv
import functools
import re
import warnings
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.geometry import cellpar_to_cell
from shared_paths import DATA, needs_shared

import ase_cartnet.io.cif as cif_mod
from ase_cartnet import adp
from ase_cartnet.errors import CIFError, InputError
from ase_cartnet.io.cif import CIFWarning, read_cif, write_cif

EXP = DATA / "exp_adp_dev"


def _index_rows() -> list[dict[str, str]]:
    index = EXP / "INDEX.csv"
    if not index.is_file():
        return []
    with index.open(newline="") as handle:
        return list(csv.DictReader(handle))


ROWS = _index_rows()
FILES = [row["file"] for row in ROWS]

# Differences from pymatgen's CifParser, explained (everything else must agree exactly):
PYMATGEN_UNREADABLE = {
    # pymatgen 2026: "len(items)=457 is not a multiple of n=57" — a loop it cannot tokenise.
    "finalcif/nospera2.cif",
}
PYMATGEN_EXTRA_ATOMS = {
    # C20 (occupancy 0.25, SHELX PART -1) lies 0.036 Å off a 2-fold axis: we merge the two
    # images into one atom (< MERGE_TOLERANCE), pymatgen (1e-4 fractional) keeps both, so it
    # has 24 more atoms and 24 * 0.25 more total occupancy.
    "shelxfile/I-43d.cif": (24, 6.0),
}
EXPECTED_WARNINGS = {
    # the same C20: its two merged images carry differently rotated U (|ΔU| 0.066 Å²).
    "shelxfile/I-43d.cif": "break the site symmetry",
    # an independent-atom-model refinement whose own H ADPs are not positive definite
    "xharpy/iam_4.cif": "not positive definite (NPD; smallest principal U): H11 (-0.0004 Å²), H4",
}
UEQ_WITHIN_SU_ONLY = {
    # GSAS Rietveld output: U_eq(O2) = .140(10) but its own U_ij give 0.1347 Å² (within 1 s.u.).
    "cdvae_xrd/br1322Isup2.rtv.combined__I.cif",
}


@functools.cache
def _read_real(rel: str) -> tuple[Atoms, tuple[str, ...]]:
    """read_cif of one data file, every site kept (``disorder="all"``: these tests compare the
    expansion; the disorder policies are tested in test_disorder.py), cached (callers must not
    mutate), and its warning messages other than the partial-occupancy notes."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        atoms = read_cif(EXP / rel, disorder="all")
    return atoms, tuple(
        str(w.message)
        for w in caught
        if issubclass(w.category, CIFWarning) and "overlap no other atom" not in str(w.message)
    )


def _gemmi_block(rel: str):
    gemmi = pytest.importorskip("gemmi")
    return gemmi.cif.read(str(EXP / rel)).sole_block()


def _file_symops(rel: str) -> tuple[np.ndarray, np.ndarray]:
    """(R (M, 3, 3), t (M, 3)) straight from the file's symop loop, parsed by gemmi."""
    gemmi = pytest.importorskip("gemmi")
    block = _gemmi_block(rel)
    for tag in ("_space_group_symop_operation_xyz", "_symmetry_equiv_pos_as_xyz"):
        col = block.find_values(tag)
        if len(col):
            seitz = [np.array(gemmi.Op(gemmi.cif.as_string(v)).float_seitz()) for v in col]
            return np.array([s[:3, :3] for s in seitz]), np.array([s[:3, 3] for s in seitz])
    raise AssertionError(f"{rel}: no symop loop")


def _decimals(text: str) -> int:
    match = re.match(r"^[-+]?\d*(?:\.(\d*))?", text)
    return len(match.group(1) or "") if match else 0


def _leading_number(text: str) -> float:
    return float(re.match(r"^[-+]?(?:\d+\.?\d*|\.\d+)", text).group(0))


def _parents(atoms: Atoms) -> np.ndarray:
    """Index of the first atom of each atom's asymmetric-unit site (the identity image)."""
    asym = atoms.arrays["asym_index"]
    first = {}
    for i, k in enumerate(asym):
        first.setdefault(int(k), i)
    return np.array([first[int(k)] for k in asym])


# ----------------------------------------------------------------------------------------------
# The 46 experimental CIFs
# ----------------------------------------------------------------------------------------------


@needs_shared
def test_index_lists_46_files():
    assert len(FILES) == 46
    assert all((EXP / f).is_file() for f in FILES)


@needs_shared
@pytest.mark.parametrize("rel", FILES)
def test_real_cif_metadata_and_nonH_adps(rel):
    """Every non-H atom of the expanded cell has a finite, positive-definite U; the metadata is
    the file's; only documented files warn."""
    row = ROWS[FILES.index(rel)]
    atoms, messages = _read_real(rel)
    assert atoms.pbc.all()
    assert atoms.info["cif_block"] == row["block"]
    assert atoms.info["temperature"] == pytest.approx(float(row["T_K"]))
    assert Path(atoms.info["source_file"]).is_absolute()
    assert Path(atoms.info["source_file"]).samefile(EXP / rel)
    assert np.allclose(
        atoms.cell.cellpar(), [float(row[k]) for k in "a b c alpha beta gamma".split()]
    )
    # ASE's standard orientation: a along x, b in the xy plane
    assert np.allclose(atoms.cell.array[0, 1:], 0.0) and abs(atoms.cell.array[1, 2]) < 1e-12
    frac = atoms.get_scaled_positions(wrap=False)
    assert np.all((frac > -1e-12) & (frac < 1.0 + 1e-12))
    assert set(atoms.arrays) >= {"adps", "site_label", "asym_index", "adp_type", "occupancy"}

    u = atoms.arrays["adps"]
    heavy = atoms.numbers != 1
    assert heavy.sum() > 0
    assert np.isfinite(u[heavy]).all()
    assert np.allclose(u, np.swapaxes(u, 1, 2), atol=1e-15, equal_nan=True)
    assert (np.linalg.eigvalsh(u[heavy])[:, 0] > 0).all()
    assert set(atoms.arrays["adp_type"][heavy]) == {"Uani"}
    expected = EXPECTED_WARNINGS.get(rel)
    if expected is None:
        assert messages == ()
    else:
        assert len(messages) == 1 and expected in messages[0]


@needs_shared
@pytest.mark.parametrize("rel", FILES)
def test_real_cif_atom_count_matches_pymatgen(rel):
    """Same number of atoms and total occupancy as pymatgen's CifParser (documented exceptions:
    PYMATGEN_UNREADABLE falls back to gemmi's expansion, PYMATGEN_EXTRA_ATOMS)."""
    atoms, _ = _read_real(rel)
    if rel in PYMATGEN_UNREADABLE:
        gemmi = pytest.importorskip("gemmi")
        small = gemmi.make_small_structure_from_block(_gemmi_block(rel))
        assert len(atoms) == len(small.get_all_unit_cell_sites())
        return
    from pymatgen.io.cif import CifParser

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structure = CifParser(EXP / rel).parse_structures(primitive=False)[0]
    extra, extra_occ = PYMATGEN_EXTRA_ATOMS.get(rel, (0, 0.0))
    assert len(structure) == len(atoms) + extra
    pmg_occ = sum(site.species.num_atoms for site in structure)
    assert pmg_occ == pytest.approx(atoms.arrays["occupancy"].sum() + extra_occ, abs=1e-3)


@needs_shared
@pytest.mark.parametrize("rel", FILES)
def test_real_cif_u_equiv_matches_file(rel):
    """U_eq = tr(U_cart)/3 of each anisotropic asymmetric-unit atom equals the file's
    _atom_site_U_iso_or_equiv to within its rounding.

    The tolerance is 1.5 × the worst case of rounding: half a unit in the last printed decimal
    of U_eq plus Σ_k |∂U_eq/∂U_k| × half a unit in the last decimal of each printed U_ij (the
    refinement program computed U_eq from unrounded U_ij).  Observed worst ratio: 0.89.
    """
    atoms, _ = _read_real(rel)
    block = _gemmi_block(rel)
    gemmi = pytest.importorskip("gemmi")
    as_str = gemmi.cif.as_string
    ueq_file = {
        as_str(r[0]): as_str(r[1])
        for r in block.find(["_atom_site_label", "_atom_site_U_iso_or_equiv"])
    }
    comps = ("11", "22", "33", "23", "13", "12")
    aniso = {
        as_str(r[0]): [as_str(v) for v in list(r)[1:]]
        for r in block.find(["_atom_site_aniso_label"] + [f"_atom_site_aniso_U_{c}" for c in comps])
    }
    cell = atoms.cell.array
    coeff = np.array(
        [adp.u_equiv(adp.u_cif_to_u_cart(adp.six_to_matrix(e), cell)) for e in np.eye(6)]
    )
    ueq = adp.u_equiv(atoms.arrays["adps"])
    parents = np.unique(_parents(atoms))
    checked = 0
    for i in parents:
        label = str(atoms.arrays["site_label"][i])
        if label not in aniso:
            continue
        text = ueq_file[label]
        bound = 0.5 * 10.0 ** -_decimals(text) + sum(
            abs(coeff[k]) * 0.5 * 10.0 ** -_decimals(aniso[label][k]) for k in range(6)
        )
        if rel in UEQ_WITHIN_SU_ONLY:
            su = re.search(r"\((\d+)\)", text).group(1)
            bound = max(bound, int(su) * 10.0 ** -_decimals(text) / 1.5)
        assert abs(ueq[i] - _leading_number(text)) <= 1.5 * bound, (label, text, ueq[i])
        checked += 1
    assert checked == len(aniso)


@needs_shared
@pytest.mark.parametrize("rel", FILES)
def test_real_cif_symmetry_images_rotate_adps(rel):
    """Each atom is a symmetry image of its asymmetric-unit parent: x = R x_p + t (mod 1) for an
    operation of the file, U_cart = R_c U_p R_cᵀ with R_c = A R A⁻¹, and equal U_eq."""
    atoms, _ = _read_real(rel)
    rots, tras = _file_symops(rel)
    cell = atoms.cell.array
    a_mat = cell.T
    r_cart = a_mat @ rots @ np.linalg.inv(a_mat)  # (M, 3, 3)
    parents = _parents(atoms)
    frac = atoms.get_scaled_positions()
    u = atoms.arrays["adps"]

    images = np.einsum("mij,nj->mni", rots, frac[parents]) + tras[:, None, :]  # (M, N, 3)
    diff = images - frac[None]
    diff -= np.round(diff)
    dist = np.linalg.norm(diff @ cell, axis=-1)  # (M, N) Å
    on_image = dist < cif_mod.MERGE_TOLERANCE
    assert on_image.any(axis=0).all(), "an atom that is no symmetry image of its parent"

    rotated = np.einsum("mij,njk,mlk->mnil", r_cart, u[parents], r_cart)  # (M, N, 3, 3)
    err = np.abs(rotated - u[None]).max(axis=(-2, -1))
    err = np.where(on_image, err, np.inf).min(axis=0)  # best operation that maps p onto the atom
    finite = np.isfinite(u).all(axis=(1, 2))
    assert (err[finite] < 1e-12).all()
    assert np.allclose(adp.u_equiv(u[finite]), adp.u_equiv(u[parents][finite]), rtol=0, atol=1e-13)
    # the asymmetric unit comes first, in file order, as the identity images
    n_asym = int(atoms.arrays["asym_index"].max()) + 1
    assert np.array_equal(atoms.arrays["asym_index"][:n_asym], np.arange(n_asym))


@needs_shared
@pytest.mark.parametrize("rel", FILES)
def test_real_cif_write_read_round_trip(rel, tmp_path):
    atoms, _ = _read_real(rel)
    out = write_cif(tmp_path / "p1.cif", atoms, p1=True)
    assert out == tmp_path / "p1.cif"
    back = read_cif(out, require_adps=True, disorder="all")
    assert len(back) == len(atoms)
    assert back.get_chemical_symbols() == atoms.get_chemical_symbols()
    assert np.allclose(back.cell.array, atoms.cell.array, rtol=0, atol=1e-8)
    d = back.get_scaled_positions() - atoms.get_scaled_positions()
    d -= np.round(d)
    assert np.abs(d @ atoms.cell.array).max() < 1e-8
    assert np.abs(back.arrays["adps"] - atoms.arrays["adps"]).max() <= 1e-8
    assert np.allclose(back.arrays["occupancy"], atoms.arrays["occupancy"], atol=1e-6)
    assert back.info["temperature"] == atoms.info["temperature"]
    assert back.info["spacegroup"] == "P 1"


@needs_shared
@pytest.mark.parametrize(
    "rel", ["xharpy/CaF2.cif", "nosphera2/alanine.cif", "finalcif/1517679.cif"]
)
def test_real_cif_positions_match_ase_reader(rel):
    """Same atoms as ASE's own CIF reader (which drops the ADPs), in the same cell frame."""
    ours, _ = _read_real(rel)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = ase.io.read(EXP / rel)
    assert len(theirs) == len(ours)
    assert np.allclose(theirs.cell.array, ours.cell.array, atol=1e-8)
    d = ours.get_scaled_positions()[:, None] - theirs.get_scaled_positions()[None]
    d -= np.round(d)
    dist = np.linalg.norm(d @ ours.cell.array, axis=-1)
    nearest = dist.argmin(axis=1)
    assert dist.min(axis=1).max() < 1e-3
    assert sorted(nearest) == list(range(len(ours)))
    assert list(theirs.numbers[nearest]) == list(ours.numbers)


@needs_shared
def test_special_position_atoms_are_merged():
    """CaF2 (F m -3 m): Ca on 4a and F on 8c, 192 operations → 4 + 8 atoms, isotropic U."""
    atoms, _ = _read_real("xharpy/CaF2.cif")
    assert atoms.get_chemical_formula() == "Ca4F8"
    u = atoms.arrays["adps"]
    for i in range(len(atoms)):  # cubic site symmetry forces U = U_iso·I
        assert np.allclose(u[i], np.eye(3) * u[i, 0, 0], atol=1e-12)


@needs_shared
def test_coincident_riding_hydrogens_are_merged():
    """p31c: methyl H atoms on a 3-fold axis (H1A/H1B/H1C, occupancy 1/3 · 0.851 each) map onto
    each other; the expansion keeps one atom per position with the occupancies summed."""
    atoms, _ = _read_real("finalcif/p31c.cif")
    d = atoms.get_all_distances(mic=True)
    np.fill_diagonal(d, np.inf)
    same = atoms.numbers[:, None] == atoms.numbers[None, :]
    assert d[same].min() > cif_mod.COINCIDENCE_TOLERANCE
    labels = atoms.arrays["site_label"]
    occ = atoms.arrays["occupancy"][labels == "H1A"]
    assert len(occ) and np.allclose(occ, 3 * 0.2838, atol=1e-4)


@needs_shared
def test_pycifrw_backend_gives_the_same_atoms(monkeypatch):
    rel = "nosphera2/alanine.cif"
    ref, _ = _read_real(rel)
    pytest.importorskip("CifFile")
    monkeypatch.setattr(cif_mod, "_HAVE_GEMMI", False)
    other = read_cif(EXP / rel, disorder="all")
    assert np.allclose(other.positions, ref.positions, atol=1e-12)
    assert np.allclose(other.arrays["adps"], ref.arrays["adps"], atol=1e-15)
    assert list(other.arrays["site_label"]) == list(ref.arrays["site_label"])


# ----------------------------------------------------------------------------------------------
# Hand-made CIFs
# ----------------------------------------------------------------------------------------------

CELLPAR = (7.1, 9.3, 11.2, 90.0, 104.5, 90.0)
P21C_OPS = ("x, y, z", "-x, y+1/2, -z+1/2", "-x, -y, -z", "x, -y+1/2, z+1/2")
# label, type, x, y, z, U_iso_or_equiv, adp_type
SITES = (
    ("Fe1", "Fe", "0", "0", "0", "0.0150(2)", "Uani"),
    ("O1", "O", "0.1234(3)", "0.2345(2)", "0.3456(2)", "0.0211(4)", "Uani"),
    ("N1", "N", "0.61", "0.12", "0.81", "0.025(3)", "Uiso"),
    ("C1", "C", "0.31", "0.72", "0.11", "?", "Biso", "2.0(1)"),  # B in _atom_site_B_iso_or_equiv
    ("H1", "H", "0.41", "0.52", "0.61", "?", "."),
)
U_CIF = {  # U11 U22 U33 U23 U13 U12, Å²
    "Fe1": (0.0142, 0.0161, 0.0149, 0.0012, 0.0031, -0.0007),
    "O1": (0.0187, 0.0254, 0.0203, -0.0021, 0.0046, 0.0019),
}
COMPS = ("11", "22", "33", "23", "13", "12")


def _make_cif(
    *,
    kind: str = "U",
    comp_order: tuple[int, ...] = (0, 1, 2, 3, 4, 5),
    reverse_rows: bool = False,
    symmetry: str = "loop",
    temperature: str = "_diffrn_ambient_temperature 150(2)",
    with_type_symbol: bool = True,
    sites: tuple = SITES,
    aniso: dict | None = None,
    block: str = "test",
) -> str:
    cell = cellpar_to_cell(CELLPAR)
    lines = [f"data_{block}", temperature]
    for name, val in zip(("a", "b", "c"), CELLPAR[:3], strict=True):
        lines.append(f"_cell_length_{name} {val}")
    for name, val in zip(("alpha", "beta", "gamma"), CELLPAR[3:], strict=True):
        lines.append(f"_cell_angle_{name} {val}")
    if symmetry == "loop":
        lines += ["loop_", "_space_group_symop_operation_xyz", *(f"'{op}'" for op in P21C_OPS)]
    elif symmetry == "old_loop":
        lines += ["loop_", "_symmetry_equiv_pos_as_xyz", *(f"'{op}'" for op in P21C_OPS)]
    elif symmetry == "hm":
        lines.append("_symmetry_space_group_name_H-M 'P 1 21/c 1'")
    elif symmetry == "hall":
        lines.append("_space_group_name_Hall '-P 2ybc'")
    lines += ["loop_", "_atom_site_label"]
    if with_type_symbol:
        lines.append("_atom_site_type_symbol")
    lines += [
        "_atom_site_fract_x",
        "_atom_site_fract_y",
        "_atom_site_fract_z",
        "_atom_site_U_iso_or_equiv",
        "_atom_site_adp_type",
        "_atom_site_B_iso_or_equiv",
    ]
    for label, typ, x, y, z, uiso, adp_type, *b_iso in sites:
        cols = [label] + ([typ] if with_type_symbol else []) + [x, y, z, uiso, adp_type]
        lines.append(" ".join([*cols, b_iso[0] if b_iso else "?"]))
    aniso = U_CIF if aniso is None else aniso
    if aniso:
        tag = {"U": "U", "B": "B", "beta": "beta"}[kind]
        lines += ["loop_", "_atom_site_aniso_label"]
        lines += [f"_atom_site_aniso_{tag}_{COMPS[k]}" for k in comp_order]
        rows = list(aniso.items())
        if reverse_rows:
            rows.reverse()
        for label, six in rows:
            mat = adp.six_to_matrix(six)
            if kind == "B":
                mat = adp.u_to_b(mat)
            elif kind == "beta":
                mat = adp.u_star_to_beta(adp.u_cif_to_u_star(mat, cell))
            vals = adp.matrix_to_six(mat)
            lines.append(label + " " + " ".join(f"{float(vals[k])!r}" for k in comp_order))
    return "\n".join(lines) + "\n"


def _position_order(atoms: Atoms) -> np.ndarray:
    """Atom order sorted by fractional position (to compare expansions with other op orders)."""
    return np.lexsort(np.round(atoms.get_scaled_positions(), 6).T)


def _write(tmp_path: Path, text: str, name: str = "t.cif") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_hand_made_cif_expansion_and_adp_types(tmp_path):
    atoms = read_cif(_write(tmp_path, _make_cif()), require_adps=True)
    # Fe1 on an inversion centre: 2 images; 4 general sites × 4
    assert len(atoms) == 2 + 4 * 4
    assert atoms.info["temperature"] == 150.0
    assert atoms.info["spacegroup"] == "P 1 21/c 1"
    labels = list(atoms.arrays["site_label"][:5])
    assert labels == ["Fe1", "O1", "N1", "C1", "H1"]
    types = dict(zip(labels, atoms.arrays["adp_type"][:5], strict=True))
    assert types == {"Fe1": "Uani", "O1": "Uani", "N1": "Uiso", "C1": "Biso", "H1": "none"}
    u = atoms.arrays["adps"]
    cell = atoms.cell.array
    assert np.allclose(u[1], adp.u_cif_to_u_cart(adp.six_to_matrix(U_CIF["O1"]), cell), atol=1e-15)
    n_mask = atoms.arrays["site_label"] == "N1"
    assert np.allclose(u[n_mask], 0.025 * np.eye(3), atol=1e-15)
    c_mask = atoms.arrays["site_label"] == "C1"
    assert np.allclose(u[c_mask], 2.0 / (8 * np.pi**2) * np.eye(3), atol=1e-15)
    assert np.isnan(u[atoms.arrays["site_label"] == "H1"]).all()
    assert (atoms.arrays["occupancy"] == 1.0).all()
    assert atoms.arrays["asym_index"].dtype.kind == "i"
    # the 2₁ screw image of O1: U* rotates with R = diag(-1, 1, -1)
    r = np.diag([-1.0, 1.0, -1.0])
    u_star = adp.u_cif_to_u_star(adp.six_to_matrix(U_CIF["O1"]), cell)
    o_images = np.flatnonzero(atoms.arrays["site_label"] == "O1")
    frac = atoms.get_scaled_positions()
    target = (r @ np.array([0.1234, 0.2345, 0.3456]) + [0, 0.5, 0.5]) % 1.0
    k = o_images[np.argmin(np.linalg.norm((frac[o_images] - target + 0.5) % 1.0 - 0.5, axis=1))]
    assert np.allclose(u[k], adp.u_star_to_u_cart(r @ u_star @ r.T, cell), atol=1e-15)


@pytest.mark.parametrize("kind", ["B", "beta"])
def test_b_and_beta_input_equal_u_input(tmp_path, kind):
    ref = read_cif(_write(tmp_path, _make_cif(kind="U"), "u.cif"))
    other = read_cif(_write(tmp_path, _make_cif(kind=kind), f"{kind}.cif"))
    assert np.allclose(
        other.arrays["adps"], ref.arrays["adps"], rtol=1e-12, atol=1e-16, equal_nan=True
    )
    expected = "Bani" if kind == "B" else "Uani"
    assert other.arrays["adp_type"][0] == expected


def test_aniso_columns_mapped_by_tag_and_rows_by_label(tmp_path):
    ref = read_cif(_write(tmp_path, _make_cif(), "ref.cif"))
    shuffled = read_cif(
        _write(tmp_path, _make_cif(comp_order=(5, 2, 0, 4, 1, 3), reverse_rows=True), "shuf.cif")
    )
    assert np.array_equal(shuffled.arrays["adps"], ref.arrays["adps"], equal_nan=True)


@pytest.mark.parametrize("symmetry", ["old_loop", "hm", "hall"])
def test_symmetry_from_old_tags_and_symbols(tmp_path, symmetry):
    ref = read_cif(_write(tmp_path, _make_cif(), "ref.cif"))
    other = read_cif(_write(tmp_path, _make_cif(symmetry=symmetry), "other.cif"))
    assert len(other) == len(ref)
    key, key2 = _position_order(ref), _position_order(other)
    assert np.allclose(other.positions[key2], ref.positions[key], atol=1e-12)
    assert np.allclose(other.arrays["adps"][key2], ref.arrays["adps"][key], equal_nan=True)
    assert other.info["spacegroup"] in ("P 1 21/c 1", "P 21/c")


def test_no_symmetry_at_all_means_p1_with_a_warning(tmp_path):
    with pytest.warns(CIFWarning, match="assuming P 1"):
        atoms = read_cif(_write(tmp_path, _make_cif(symmetry="none")))
    assert len(atoms) == len(SITES)


def test_ddlm_dotted_tags(tmp_path):
    """CIF2/DDLm spellings (_atom_site.fract_x, _atom_site_aniso.U_11, _cell.length_a …)."""
    ref = read_cif(_write(tmp_path, _make_cif(), "ref.cif"))
    text = _make_cif(temperature="_diffrn.ambient_temperature 150(2)")
    for category in ("_atom_site_aniso", "_atom_site", "_cell", "_space_group_symop"):
        text = re.sub(rf"^{category}_(?!aniso)", f"{category}.", text, flags=re.MULTILINE)
    assert "_atom_site.fract_x" in text and "_atom_site_aniso.U_11" in text
    other = read_cif(_write(tmp_path, text, "dotted.cif"))
    assert np.array_equal(other.arrays["adps"], ref.arrays["adps"], equal_nan=True)
    assert np.array_equal(other.positions, ref.positions)
    assert other.info["temperature"] == 150.0


def test_dummy_atoms_are_skipped(tmp_path):
    """A site with _atom_site_calc_flag 'dum' (and its aniso row) is no atom."""
    lines = _make_cif().splitlines()
    start = lines.index("_atom_site_B_iso_or_equiv")
    lines.insert(start + 1, "_atom_site_calc_flag")
    end = start + 2
    while end < len(lines) and not lines[end].startswith("loop_"):
        lines[end] += " d"
        end += 1
    lines.insert(end, "Q1 Cu 0.5 0.5 0.5 0.05 Uiso ? dum")
    text = "\n".join(lines) + "\nQ1 0.01 0.01 0.01 0 0 0\n"
    atoms = read_cif(_write(tmp_path, text))
    assert "Q1" not in set(atoms.arrays["site_label"])
    assert "Cu" not in atoms.get_chemical_symbols()


def test_temperature_sources(tmp_path):
    cell_only = _make_cif(temperature="_cell_measurement_temperature 123(2)")
    assert read_cif(_write(tmp_path, cell_only, "a.cif")).info["temperature"] == 123.0
    both = _make_cif(
        temperature="_cell_measurement_temperature 123(2)\n_diffrn_ambient_temperature 100.0(1)"
    )
    assert read_cif(_write(tmp_path, both, "b.cif")).info["temperature"] == 100.0
    unknown = _make_cif(temperature="_diffrn_ambient_temperature ?")
    assert "temperature" not in read_cif(_write(tmp_path, unknown, "c.cif")).info


def test_elements_from_labels_without_type_symbol(tmp_path):
    sites = (
        ("CL1", "-", "0.1", "0.1", "0.1", "0.02", "Uiso"),
        ("Cl2", "-", "0.2", "0.1", "0.1", "0.02", "Uiso"),
        ("C1A", "-", "0.3", "0.1", "0.1", "0.02", "Uiso"),
        ("H1'", "-", "0.4", "0.1", "0.1", "0.02", "Uiso"),
        ("Fe1", "-", "0.5", "0.1", "0.1", "0.02", "Uiso"),
        ("O2B", "-", "0.6", "0.1", "0.1", "0.02", "Uiso"),
    )
    text = _make_cif(with_type_symbol=False, sites=sites, aniso={})
    with warnings.catch_warnings():
        warnings.simplefilter("error", CIFWarning)  # none of these is ambiguous
        atoms = read_cif(_write(tmp_path, text))
    assert atoms.get_chemical_symbols()[:6] == ["Cl", "Cl", "C", "H", "Fe", "O"]
    assert list(atoms.arrays["site_label"][:6]) == [s[0] for s in sites]


def test_ambiguous_capital_label_warns(tmp_path):
    sites = (("CA1", "-", "0.1", "0.1", "0.1", "0.02", "Uiso"),)
    text = _make_cif(with_type_symbol=False, sites=sites, aniso={})
    with pytest.warns(CIFWarning, match="ambiguous"):
        atoms = read_cif(_write(tmp_path, text))
    assert set(atoms.get_chemical_symbols()) == {"Ca"}


def test_type_symbol_wins_over_label(tmp_path):
    sites = (
        ("CA1", "C", "0.1", "0.1", "0.1", "0.02", "Uiso"),
        ("X7", "Fe3+", "0.2", "0.1", "0.1", "0.02", "Uiso"),
    )
    atoms = read_cif(_write(tmp_path, _make_cif(sites=sites, aniso={})))
    assert set(atoms.get_chemical_symbols()) == {"C", "Fe"}


def test_blocks_by_index_and_name(tmp_path):
    text = (
        "data_global\n_publ_contact_author_name 'Someone'\n"
        + _make_cif(block="first")
        + _make_cif(block="second", sites=SITES[:2], aniso={"Fe1": U_CIF["Fe1"], "O1": U_CIF["O1"]})
    )
    path = _write(tmp_path, text)
    assert read_cif(path).info["cif_block"] == "first"
    assert read_cif(path, index=1).info["cif_block"] == "second"
    assert read_cif(path, index=-1).info["cif_block"] == "second"
    assert read_cif(path, index="SECOND").info["cif_block"] == "second"
    assert len(read_cif(path, index="second")) == 2 + 4
    with pytest.raises(CIFError, match="out of range"):
        read_cif(path, index=2)
    with pytest.raises(CIFError, match="no data block named 'third'"):
        read_cif(path, index="third")
    with pytest.raises(CIFError, match="no cell"):
        read_cif(path, index="global")


def test_null_values_and_standard_uncertainties(tmp_path):
    sites = (
        ("Fe1", "Fe", "0", "0", "0", "0.0150(2)", "Uani"),
        ("O1", "O", "0.1234(3)", "0.2345(2)", "0.3456(2)", ".", "."),
    )
    text = _make_cif(sites=sites, aniso={"Fe1": U_CIF["Fe1"]}).replace(
        "_cell_length_a 7.1", "_cell_length_a 7.1000(3)"
    )
    atoms = read_cif(_write(tmp_path, text))
    assert atoms.cell.cellpar()[0] == pytest.approx(7.1)
    assert np.isnan(atoms.arrays["adps"][atoms.arrays["site_label"] == "O1"]).all()


def test_pycifrw_backend_on_hand_made_cif(tmp_path, monkeypatch):
    pytest.importorskip("CifFile")
    path = _write(tmp_path, _make_cif(symmetry="hm"))
    ref = read_cif(path)
    monkeypatch.setattr(cif_mod, "_HAVE_GEMMI", False)
    other = read_cif(path)  # the operations now come from spglib's table, in another order
    i, j = _position_order(ref), _position_order(other)
    assert np.allclose(other.positions[j], ref.positions[i], atol=1e-12)
    assert np.allclose(other.arrays["adps"][j], ref.arrays["adps"][i], atol=1e-15, equal_nan=True)


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(CIFError, match="file not found"):
        read_cif(tmp_path / "nope.cif")


@pytest.mark.parametrize(
    "content",
    [b"hello world, this is not a CIF\n", b"", b"\x00\x01\x02\xff\xfe binary\n"],
    ids=["text", "empty", "binary"],
)
def test_not_a_cif(tmp_path, content):
    path = tmp_path / "x.cif"
    path.write_bytes(content)
    with pytest.raises(CIFError, match="not a CIF") as info:
        read_cif(path)
    assert isinstance(info.value, ValueError)
    assert str(path) in str(info.value)


def test_no_adps_with_require_adps(tmp_path):
    sites = tuple((*s[:5], "?", ".") for s in SITES)
    path = _write(tmp_path, _make_cif(sites=sites, aniso={}))
    atoms = read_cif(path)  # fine without the requirement: all NaN
    assert np.isnan(atoms.arrays["adps"]).all()
    with pytest.raises(CIFError, match="no ADPs"):
        read_cif(path, require_adps=True)


def test_unknown_element(tmp_path):
    sites = (*SITES, ("Xx1", "Xx", "0.2", "0.2", "0.2", "0.02", "Uiso"))
    with pytest.raises(CIFError, match="unknown element.*Xx1"):
        read_cif(_write(tmp_path, _make_cif(sites=sites)))


def test_aniso_label_without_site(tmp_path):
    aniso = {**U_CIF, "S9": U_CIF["O1"]}
    with pytest.raises(CIFError, match="match no atom site.*S9"):
        read_cif(_write(tmp_path, _make_cif(aniso=aniso)))


def test_no_cell_and_no_sites(tmp_path):
    text = _make_cif()
    no_cell = "\n".join(ln for ln in text.splitlines() if not ln.startswith("_cell_length"))
    with pytest.raises(CIFError, match="no cell"):
        read_cif(_write(tmp_path, no_cell + "\n", "a.cif"))
    no_sites = "data_x\n_cell_length_a 5\n_cell_length_b 5\n_cell_length_c 5\n"
    with pytest.raises(CIFError, match="no atom sites"):
        read_cif(_write(tmp_path, no_sites, "b.cif"))


def test_unparsable_number_and_symop(tmp_path):
    bad_num = _make_cif().replace("0.1234(3)", "0.12x4")
    with pytest.raises(CIFError, match="not a number"):
        read_cif(_write(tmp_path, bad_num, "a.cif"))
    bad_op = _make_cif().replace("'-x, y+1/2, -z+1/2'", "'-x, q+1/2, -z'")
    with pytest.raises(CIFError, match="symmetry operation"):
        read_cif(_write(tmp_path, bad_op, "b.cif"))


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


def test_write_refuses_to_clobber_its_input(tmp_path):
    path = _write(tmp_path, _make_cif())
    before = path.read_text()
    atoms = read_cif(path)
    with pytest.raises(InputError, match="refusing to overwrite"):
        write_cif(path, atoms)
    assert path.read_text() == before
    assert write_cif(path, atoms, overwrite_input=True) == path
    assert read_cif(path).info["spacegroup"] == atoms.info["spacegroup"]  # written in its terms


def test_written_cif_is_read_by_ase_pymatgen_and_pycifrw(tmp_path):
    atoms = read_cif(_write(tmp_path, _make_cif(), "in.cif"))
    out = write_cif(tmp_path / "out.cif", atoms, p1=True)
    known = np.isfinite(atoms.arrays["adps"]).all(axis=(1, 2))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        via_ase = ase.io.read(out)
    assert len(via_ase) == len(atoms)
    assert np.allclose(via_ase.get_scaled_positions(), atoms.get_scaled_positions(), atol=1e-9)
    assert via_ase.get_chemical_symbols() == atoms.get_chemical_symbols()

    from pymatgen.io.cif import CifParser

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structure = CifParser(out).parse_structures(primitive=False)[0]
    assert len(structure) == len(atoms)
    assert sorted(str(s.specie) for s in structure) == sorted(atoms.get_chemical_symbols())

    import CifFile

    block = CifFile.ReadCif(str(out)).first_block()
    labels = list(block["_atom_site_aniso_label"])
    assert len(labels) == known.sum()
    u_cif = adp.u_cart_to_u_cif(atoms.arrays["adps"][known], atoms.cell.array)
    for k, comp in enumerate(COMPS):
        vals = np.array([float(v) for v in block[f"_atom_site_aniso_U_{comp}"]])
        assert np.allclose(vals, adp.matrix_to_six(u_cif)[:, k], atol=1e-10)
    assert float(block["_diffrn_ambient_temperature"]) == 150.0
    u_eq = block["_atom_site_U_iso_or_equiv"]
    assert [v == "?" for v in u_eq] == list(~known)
    assert len(set(block["_atom_site_label"])) == len(atoms)


def test_write_unknown_adps_round_trip_as_nan(tmp_path):
    atoms = read_cif(_write(tmp_path, _make_cif(), "in.cif"))
    back = read_cif(write_cif(tmp_path / "out.cif", atoms, p1=True))
    assert np.array_equal(
        np.isnan(back.arrays["adps"]).all(axis=(1, 2)),
        np.isnan(atoms.arrays["adps"]).all(axis=(1, 2)),
    )
    assert set(back.arrays["adp_type"]) == {"Uani", "none"}
    # labels: asymmetric-unit label for the first image, suffixed for the others
    assert list(back.arrays["site_label"][:5]) == ["Fe1", "O1", "N1", "C1", "H1"]
    assert "O1_2" in set(back.arrays["site_label"])


def test_write_plain_ase_atoms_with_explicit_adps_and_temperature(tmp_path):
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    rng = np.random.default_rng(0)
    m = rng.normal(size=(len(atoms), 3, 3)) * 0.05
    u = m @ np.swapaxes(m, 1, 2) + 0.005 * np.eye(3)
    out = write_cif(tmp_path / "nacl.cif", atoms, u, temperature=300.0)
    back = read_cif(out)
    assert back.info["temperature"] == 300.0
    assert back.get_chemical_symbols() == atoms.get_chemical_symbols()
    assert np.abs(back.arrays["adps"] - u).max() < 1e-9
    assert list(back.arrays["site_label"][:2]) == ["Na1", "Cl1"]


def test_write_rejects_bad_arguments(tmp_path):
    atoms = bulk("Cu", "fcc", a=3.6)
    with pytest.raises(InputError, match="shape"):
        write_cif(tmp_path / "a.cif", atoms, np.zeros((2, 3, 3)))
    with pytest.raises(InputError, match="temperature"):
        write_cif(tmp_path / "a.cif", atoms, np.eye(3)[None] * 0.01, temperature=-5)
    with pytest.raises(InputError, match="symmetric"):
        write_cif(
            tmp_path / "a.cif", atoms, np.array([[[0.01, 0.002, 0], [0, 0.01, 0], [0, 0, 0.01]]])
        )
    with pytest.raises(InputError, match="unique"):
        write_cif(tmp_path / "a.cif", bulk("Cu", "fcc", a=3.6, cubic=True), labels=["A"] * 4)
    with pytest.raises(InputError, match="empty"):
        write_cif(tmp_path / "a.cif", Atoms(cell=np.eye(3) * 3, pbc=True))
    with pytest.raises(InputError, match="periodic"):
        write_cif(tmp_path / "a.cif", Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.7]]))
    assert not (tmp_path / "a.cif").exists()
