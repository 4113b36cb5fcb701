"""ORTEP-style ellipsoid plots: files are written atomically, inputs are never overwritten."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from matplotlib.figure import Figure
from scipy.spatial.transform import Rotation

from ase_cartnet.plot import plot_ellipsoids

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def random_adps(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q = Rotation.random(n, random_state=rng).as_matrix()
    w = 0.02 * np.exp(0.5 * rng.normal(size=(n, 3)))
    return q @ (w[:, :, None] * np.swapaxes(q, -1, -2))


@pytest.fixture
def molecule_in_cell() -> tuple[Atoms, np.ndarray]:
    atoms = Atoms(
        "COH2N",
        positions=[[1.0, 1.0, 1.0], [2.2, 1.0, 1.0], [0.5, 1.9, 1.0], [0.5, 0.1, 1.0], [3, 2, 2]],
        cell=[[5.0, 0.0, 0.0], [0.8, 6.0, 0.0], [0.5, 0.4, 4.5]],
        pbc=True,
    )
    u = random_adps(len(atoms))
    u[2:4] = np.nan  # hydrogens without ADPs: drawn as small spheres
    return atoms, u


def test_plot_without_reference_writes_a_png(tmp_path, molecule_in_cell):
    atoms, u = molecule_in_cell
    out = plot_ellipsoids(tmp_path / "ortep.png", atoms, u, labels=["C1", "O1", "H1", "H2", "N1"])
    assert out == tmp_path / "ortep.png"
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ortep.png"]  # no temporary left


def test_plot_with_reference_writes_a_png(tmp_path, molecule_in_cell):
    atoms, u = molecule_in_cell
    ref = 1.1 * u
    ref[4] = np.nan  # reference missing for one atom: prediction alone is drawn there
    out = plot_ellipsoids(
        tmp_path / "compare.png", atoms, u, reference=ref, title="prediction vs experiment"
    )
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_plot_of_more_than_200_atoms(tmp_path):
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat((3, 3, 3))
    assert len(atoms) == 216
    u = random_adps(len(atoms), seed=1)
    out = plot_ellipsoids(tmp_path / "big.png", atoms, u, reference=u * 1.05, dpi=60)
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_plot_refuses_to_overwrite_an_input_file(tmp_path, molecule_in_cell):
    atoms, u = molecule_in_cell
    source = tmp_path / "structure.cif"
    source.write_text("data_x\n")
    with pytest.raises(ValueError, match="overwrite"):
        plot_ellipsoids(source, atoms, u, inputs=[source])
    with pytest.raises(ValueError, match="overwrite"):
        plot_ellipsoids(tmp_path / "." / "structure.cif", atoms, u, inputs=[None, str(source)])
    assert source.read_text() == "data_x\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["structure.cif"]


def test_failed_plot_leaves_nothing_behind(tmp_path, molecule_in_cell, monkeypatch):
    atoms, u = molecule_in_cell
    target = tmp_path / "ortep.png"
    target.write_bytes(b"old")

    def broken_savefig(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="disk full"):
        plot_ellipsoids(target, atoms, u)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ortep.png"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"adps": np.zeros((2, 3, 3))}, "shape"),
        ({"adps": np.stack([np.diag([0.01, -0.01, 0.02])] * 5)}, "positive definite"),
        ({"reference": np.zeros((5, 3))}, "shape"),
        ({"labels": ["C1"]}, "labels"),
        ({"probability": 1.2}, "probability"),
        ({"path": "ortep.xyz"}, "format"),
    ],
)
def test_bad_input_raises_before_writing(tmp_path, molecule_in_cell, kwargs, match):
    atoms, u = molecule_in_cell
    args = {"path": tmp_path / "ortep.png", "atoms": atoms, "adps": u} | kwargs
    if not isinstance(args["path"], type(tmp_path)):
        args["path"] = tmp_path / args["path"]
    with pytest.raises(ValueError, match=match):
        plot_ellipsoids(**args)
    assert list(tmp_path.iterdir()) == []


def test_empty_structure_is_refused(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        plot_ellipsoids(tmp_path / "x.png", Atoms(), np.zeros((0, 3, 3)))


def test_scene_draws_whole_molecules_with_bonds_and_one_copy_per_site():
    """L-alanine: the asymmetric unit is one whole molecule (13 atoms, 12 bonds, none cut at
    a cell face); a network solid gets each site once, joined by bonds, with its shell."""
    import warnings

    from ase_cartnet.data import L_ALANINE_CIF
    from ase_cartnet.io.cif import read_cif
    from ase_cartnet.scene import build_scene

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alanine = read_cif(L_ALANINE_CIF)
    scene = build_scene(alanine)
    assert len(scene.index) == 13 and scene.asymmetric.all() and len(scene.bonds) == 12
    lengths = np.linalg.norm(np.subtract(*scene.positions[scene.bonds.T]), axis=1)
    assert lengths.max() < 1.6  # C-C 1.53 Å; a molecule cut at a cell face would not be
    assert alanine[scene.index].get_chemical_formula(mode="hill") == "C3H7NO2"

    salt = bulk("NaCl", "rocksalt", a=5.64)
    salt.new_array("asym_index", np.array([0, 1]))
    network = build_scene(salt)
    assert network.asymmetric.sum() == 2  # one Na, one Cl, labelled once each
    copies = network.positions[network.asymmetric]
    assert np.linalg.norm(copies[0] - copies[1]) == pytest.approx(2.82, abs=0.01)  # bonded
    assert len(network.index) == 1 + 6 + 5  # Na, its Cl6 octahedron (one the Cl site), 5 more Na


def test_side_by_side_figure_compares_the_asymmetric_unit_without_h(tmp_path):
    import warnings

    from matplotlib.image import imread

    from ase_cartnet.data import L_ALANINE_CIF
    from ase_cartnet.io.cif import read_cif
    from ase_cartnet.report import comparison_atoms

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        atoms = read_cif(L_ALANINE_CIF)
    ref = atoms.arrays["adps"]
    compared = comparison_atoms(atoms, 1.1 * np.nan_to_num(ref, nan=0.01), ref)
    assert len(compared) == 6 and (atoms.numbers[compared] != 1).all()  # C3NO2, no H
    assert len(set(atoms.arrays["site_label"][compared])) == 6
    u = np.where(np.isfinite(ref), 1.2 * ref, np.nan)
    png = plot_ellipsoids(tmp_path / "pair.png", atoms, u, reference=ref, dpi=50)
    height, width = imread(png).shape[:2]
    assert width > 1.5 * height  # two panels side by side
