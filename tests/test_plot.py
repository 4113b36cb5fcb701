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
