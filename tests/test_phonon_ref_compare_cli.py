"""compare(): metrics are ase_cartnet.adp's, table and plot; the phonon-ref command line."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.io import write
from shared_paths import FIXTURES, needs_shared

from ase_cartnet.adp import adp_metrics, per_atom_metrics
from ase_cartnet.cli import main
from ase_cartnet.errors import InputError
from ase_cartnet.io.cif import read_cif, write_cif
from phonon_ref.compare import compare
from phonon_ref.reference import PhononReference

CU_A = 3.5898


def random_spd(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.normal(scale=0.05, size=(n, 3, 3))
    return a @ np.swapaxes(a, 1, 2) + 0.002 * np.eye(3)


def water_like() -> Atoms:
    return Atoms(
        "OH2Cu",
        positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0], [2, 2, 2]],
        cell=[5, 5, 5],
        pbc=True,
    )


def test_metrics_are_the_calculators_and_hydrogen_is_left_out():
    atoms = water_like()
    pred, ref = random_spd(4, 1), random_spd(4, 2)
    result = compare(pred, ref, atoms)
    heavy = atoms.numbers != 1
    assert result.compared.tolist() == heavy.tolist()
    assert result.summary == adp_metrics(pred[heavy], ref[heavy])
    expected = per_atom_metrics(pred[heavy], ref[heavy])
    for key in ("mae", "s12", "iou"):
        np.testing.assert_array_equal(result.per_atom[key][heavy], expected[key])
        assert np.isnan(result.per_atom[key][~heavy]).all()
    with_h = compare(pred, ref, atoms, include_hydrogen=True)
    assert with_h.summary["n_atoms"] == 4


def test_identical_adps_score_perfectly_and_nan_rows_are_skipped():
    atoms = water_like()
    u = random_spd(4, 3)
    pred = u.copy()
    pred[3] = np.nan  # e.g. an atom without prediction
    result = compare(pred, u, atoms, include_hydrogen=True)
    assert result.compared.tolist() == [True, True, True, False]
    assert result.summary["mae"] == 0 and result.summary["s12"] == pytest.approx(0, abs=1e-12)
    assert result.summary["iou"] == 100
    text = result.table()
    assert "not compared" in text and "mean over 3 atoms" in text and "IoU" in text


def test_plot_writes_an_overlay(tmp_path):
    atoms = water_like()
    result = compare(random_spd(4, 4), random_spd(4, 5), atoms, names=("CartNet", "harmonic"))
    path = result.plot(tmp_path / "ortep.png")
    assert path.is_file() and path.stat().st_size > 1000


def test_bad_shapes_and_nothing_to_compare():
    atoms = water_like()
    with pytest.raises(InputError, match="shape"):
        compare(random_spd(3), random_spd(4), atoms)
    hydrogens = Atoms("H2", positions=[[0, 0, 0], [0.7, 0, 0]], cell=[4, 4, 4], pbc=True)
    with pytest.raises(InputError, match="no atom to compare"):
        compare(random_spd(2), random_spd(2), hydrogens)


@pytest.fixture()
def cu_cif(tmp_path):
    path = tmp_path / "cu.cif"
    write_cif(path, bulk("Cu", "fcc", a=CU_A, cubic=True), temperature=150.0)
    return path


def test_cli_writes_a_cif_with_the_reference_adps(cu_cif, tmp_path, capsys):
    out = tmp_path / "reference.cif"
    argv = ["phonon-ref", str(cu_cif), "--calculator", "emt", "-T", "300", "--supercell",
            "2", "2", "2", "--mesh", "5", "5", "5", "-o", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    atoms = read_cif(out)
    assert atoms.info["temperature"] == 300.0
    ref = PhononReference(read_cif(cu_cif), "emt", supercell=(2, 2, 2), mesh=5, progress=False)
    np.testing.assert_allclose(atoms.arrays["adps"], ref.adps(300.0), atol=1e-9)
    text = capsys.readouterr().out
    assert "U_eq" in text and "wrote" in text and "imaginary" in text


def test_cli_takes_the_temperature_from_the_cif_and_plots(cu_cif, tmp_path):
    out, png = tmp_path / "ref.cif", tmp_path / "ortep.png"
    argv = ["phonon-ref", str(cu_cif), "--calculator", "emt", "--supercell", "6.0", "--mesh",
            "5", "-o", str(out), "--plot", str(png), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert read_cif(out).info["temperature"] == 150.0
    assert png.is_file()


def test_cli_refuses_to_overwrite_its_input(cu_cif, capsys):
    before = cu_cif.read_bytes()
    argv = ["phonon-ref", str(cu_cif), "-T", "300", "--supercell", "2", "2", "2", "-o", str(cu_cif)]
    assert main(argv) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert cu_cif.read_bytes() == before


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    poscar = tmp_path / "POSCAR"
    write(poscar, bulk("Cu", "fcc", a=CU_A), format="vasp")
    assert main(["phonon-ref", str(poscar), "--supercell", "2", "2"]) == 2  # no temperature either
    assert "error" in capsys.readouterr().err
    assert main(["phonon-ref", str(poscar), "--supercell", "2", "2", "-T", "300"]) == 2
    assert "--supercell takes" in capsys.readouterr().err
    assert main(["phonon-ref", str(tmp_path / "missing.cif"), "-T", "300"]) == 2


@needs_shared
def test_cli_compare_with_a_cartnet_checkpoint(cu_cif, tmp_path, capsys):
    """A random-weight upstream checkpoint (shared fixture): checks the wiring, not accuracy."""
    ckpt = FIXTURES / "cartnet_small_random.ckpt"
    png = tmp_path / "overlay.png"
    argv = ["phonon-ref", str(cu_cif), "--calculator", "emt", "-T", "300", "--supercell", "2",
            "2", "2", "--mesh", "5", "--compare-with", str(ckpt), "--plot", str(png),
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "S12" in text and "mean over 4 atoms" in text
    assert png.is_file()
