"""Command-line failure modes: one line naming the problem (never a traceback), outputs checked
before anything is computed, only the package's own errors caught; the phonon commands' inputs."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.db import connect
from shared_paths import DATA, needs_shared

from ase_cartnet import __version__
from ase_cartnet.cli import main
from ase_cartnet.data import MGAL2SI2_CIF
from ase_cartnet.errors import InputError
from ase_cartnet.io.atomic import check_output
from ase_cartnet.io.cif import read_cif, write_cif

ROOT = Path(__file__).resolve().parents[1]
PHONOPY = DATA / "phonopy_examples"


def usage_error(argv, capsys) -> str:
    """argparse's one-line usage error (exit status 2) for ``argv``."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.fixture()
def no_model(monkeypatch):
    """Fail the test if a CartNet prediction or a DeepRelax model is started."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model ran before the outputs were checked")

    monkeypatch.setattr("ase_cartnet.batch.predict_file", refuse)
    monkeypatch.setattr("ase_cartnet.calculators.deeprelax.DeepRelax.run", refuse)


@pytest.fixture()
def cu_cif(tmp_path):
    path = tmp_path / "cu.cif"
    write_cif(path, bulk("Cu", "fcc", a=3.61), temperature=300.0)
    return path


# -- options ---------------------------------------------------------------------------------


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"ase-cartnet {__version__}"


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["predict", "x.cif", "--threads", "0"], "--threads"),
        (["relax", "x.cif", "--threads", "-2"], "--threads"),
        (["predict", "x.cif", "--rotations", "two"], "--rotations"),
        (["predict", "x.cif", "-T", "-5"], "-T/--temperature"),
        (["phonon-ref", "x.cif", "--mesh", "abc"], "--mesh"),
        (["phonon-ref", "x.cif", "--supercell", "2", "0", "2"], "--supercell"),
        (["phonon-dataset", "x.csv", "-T", "-5"], "-T/--temperatures"),
        (["phonon-dataset", "x.csv", "--workers", "-1"], "--workers"),
    ],
)
def test_bad_option_values_name_the_option(argv, option, capsys):
    err = usage_error(argv, capsys)
    assert f"argument {option}:" in err and "Traceback" not in err


def test_only_the_packages_errors_are_one_line(monkeypatch, capsys):
    """InputError → status 2 and one line; an OSError → 1; any other exception is a bug and
    keeps its traceback (not hidden as a one-line error)."""
    import ase_cartnet.cli.property as prop

    def fails_with(exc):
        def run(args):
            raise exc

        return run

    for exc, code in ((InputError("bad input named here"), 2), (OSError(28, "disk full"), 1)):
        monkeypatch.setattr(prop, "_run", fails_with(exc))
        assert main(["property", "x.cif"]) == code
        err = capsys.readouterr().err
        assert err.startswith("ase-cartnet property: error:") and str(exc) in err
    monkeypatch.setattr(prop, "_run", fails_with(ValueError("a bug")))
    with pytest.raises(ValueError, match="a bug"):
        main(["property", "x.cif"])


# -- outputs checked before computing ----------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "IN", "-T", "300", "-o", "DIR"],
        ["predict", "IN", "-T", "300", "--plot", "DIR"],
        ["predict", "IN", "-T", "300", "--html", "DIR"],
        ["relax", "IN", "-o", "DIR"],
        ["relax", "IN", "--trajectory", "DIR"],
        ["phonon-ref", "IN", "--calculator", "emt", "-T", "300", "-o", "DIR"],
        ["phonon-ref", "IN", "--calculator", "emt", "-T", "300", "--plot", "DIR"],
    ],
)
def test_an_output_that_is_a_folder_is_refused_before_computing(argv, tmp_path, capsys, no_model):
    folder = tmp_path / "existing_folder"
    folder.mkdir()
    argv = [str(MGAL2SI2_CIF) if a == "IN" else str(folder) if a == "DIR" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{folder} is a folder" in err and "Traceback" not in err
    assert list(folder.iterdir()) == []


def test_outputs_that_are_not_regular_files_are_never_replaced(tmp_path, capsys, no_model):
    fifo = tmp_path / "pipe.cif"
    os.mkfifo(fifo)
    link = tmp_path / "link.cif"
    target = tmp_path / "target.cif"
    target.write_text("keep me")
    link.symlink_to(target)
    for out in (fifo, link):
        assert main(["relax", str(MGAL2SI2_CIF), "-o", str(out)]) == 2
        assert "not a regular file" in capsys.readouterr().err
    assert fifo.is_fifo() and link.is_symlink() and target.read_text() == "keep me"


def test_an_unwritable_folder_is_found_before_computing(tmp_path, monkeypatch, capsys, no_model):
    """A read-only folder (simulated: root may write anywhere, so the probe file is refused)."""
    import tempfile

    real = tempfile.mkstemp

    def read_only(*args, **kwargs):
        if kwargs.get("suffix") == ".probe":
            raise PermissionError(13, "Permission denied")
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    out = tmp_path / "out.cif"
    assert main(["predict", str(MGAL2SI2_CIF), "-T", "300", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "cannot write --output" in err and "Permission denied" in err
    assert main(["relax", str(MGAL2SI2_CIF), "-o", str(out)]) == 2
    assert "Permission denied" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(InputError, match="cannot write"):
            check_output(folder / "out.cif")
    finally:
        folder.chmod(0o755)


def test_check_output_names_what_is_in_the_way(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(InputError, match="is not a folder"):
        check_output(blocker / "sub" / "out.cif")
    assert check_output(tmp_path / "new" / "deeper" / "out.cif").name == "out.cif"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_relax_format_nonsense_is_one_line(capsys, no_model):
    assert main(["relax", str(MGAL2SI2_CIF), "--format", "nonsense"]) == 2
    assert "'nonsense' is not a structure format" in capsys.readouterr().err


def test_relax_writes_a_cif_ase_can_read(tmp_path):
    from ase.io import read

    from ase_cartnet.cli.options import plan_outputs

    src = tmp_path / "a.cif"
    src.write_bytes(MGAL2SI2_CIF.read_bytes())
    out = tmp_path / "b.cif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["relax", str(src), "-o", str(out)]) == 0
    assert out.read_text().startswith("data_")
    assert len(read(out)) == len(read(src)) == 5
    import argparse

    args = argparse.Namespace(input=[str(src)], output=None, format=None, trajectory=None)
    ((_, default, fmt),) = plan_outputs(args, "prerelaxed")
    assert default.name == "a_prerelaxed.cif" and fmt == "cif"


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", str(MGAL2SI2_CIF), "--threads", "0"],
        ["phonon-dataset", "missing.csv", "--calculator", "emt"],
        ["phonon-ref", str(MGAL2SI2_CIF), "-T", "300", "--mesh", "abc"],
    ],
)
def test_console_script_prints_no_traceback(argv, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "ase_cartnet.cli", *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "error:" in done.stderr


# -- phonon-dataset inputs -----------------------------------------------------------------------


def write_csv(path, rows):
    import pandas as pd

    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def cif_text(atoms) -> str:
    from ase.io import write

    buffer = io.BytesIO()
    write(buffer, atoms, format="cif")
    return buffer.getvalue().decode()


def test_phonon_dataset_input_errors_are_one_line(tmp_path, capsys):
    out = tmp_path / "adp.db"
    base = ["-o", str(out), "--calculator", "emt", "--no-progress"]
    assert main(["phonon-dataset", str(tmp_path / "missing.csv"), *base]) == 2
    assert "dataset file not found" in capsys.readouterr().err
    no_cif = write_csv(tmp_path / "no_cif.csv", [{"material_id": "x", "structure": "y"}])
    assert main(["phonon-dataset", str(no_cif), *base]) == 2
    assert "no column 'cif'" in capsys.readouterr().err
    assert main(["phonon-dataset", str(no_cif), "-o", str(tmp_path), "--calculator", "emt"]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert not out.exists()


def test_one_unreadable_cif_row_becomes_a_failed_row(tmp_path, capsys):
    good = bulk("Cu", "fcc", a=3.65)
    rows = [
        {"material_id": "mp-good", "cif": cif_text(good)},
        {"material_id": "mp-bad", "cif": "data_broken\n_cell_length_a 3\nloop_\n_foo\n"},
    ]
    csv = write_csv(tmp_path / "mixed.csv", rows)
    out = tmp_path / "adp.db"
    argv = ["phonon-dataset", str(csv), "-o", str(out), "--calculator", "emt", "-T", "300",
            "--supercell-length", "6", "--mesh-length", "20", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert "1 ok, 0 unstable, 1 failed" in capsys.readouterr().out
    with connect(out) as db:
        rows = {row.source_id: row for row in db.select()}
    assert rows["mp-good"].status == "ok"
    assert np.all(np.linalg.eigvalsh(rows["mp-good"].data["adps"][0]) > 0)
    assert rows["mp-bad"].status == "failed"
    assert "mp-bad: unreadable CIF" in rows["mp-bad"].data["error"]


def test_read_mp20_names_the_row_it_cannot_read(tmp_path):
    from ase_cartnet.io.datasets import read_mp20

    csv = write_csv(tmp_path / "x.csv", [{"material_id": "mp-7", "cif": "garbage"}])
    with pytest.raises(InputError, match="material_id mp-7: unreadable CIF"):
        read_mp20(csv)
    (kept,) = read_mp20(csv, keep_unreadable=True)
    assert len(kept) == 0 and kept.info["source_id"] == "mp-7" and "read_error" in kept.info
    with pytest.raises(InputError, match="no rows with material_id"):
        read_mp20(csv, ids=["mp-8"])


# -- phonon-ref ----------------------------------------------------------------------------------


def test_phonon_ref_refuses_undefined_adps_instead_of_writing_zero(cu_cif, tmp_path, capsys):
    out = tmp_path / "lj.cif"
    lj = "ase.calculators.lj:LennardJones"
    argv = ["phonon-ref", str(cu_cif), "--calculator", lj, "--supercell", "2", "2", "2",
            "--mesh", "4", "-o", str(out), "--no-progress"]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no harmonic ADP for 1 of 1 atoms" in err and "192 of 192 modes skipped" in err
    assert not out.exists()


def test_phonon_ref_names_a_calculator_that_cannot_do_the_elements(tmp_path, capsys):
    sn = tmp_path / "sn.cif"
    write_cif(sn, bulk("Sn", "diamond", a=6.5), temperature=300.0)
    argv = ["phonon-ref", str(sn), "--calculator", "emt", "--supercell", "1", "1", "1",
            "--mesh", "2", "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    assert "EMT cannot compute the forces of Sn" in capsys.readouterr().err


def test_phonon_ref_without_a_calculator_uses_the_named_default_teacher(
    cu_cif, monkeypatch, capsys
):
    import ase_cartnet.cli.phonon as phonon

    assert phonon.DEFAULT_CALCULATOR == "chgnet"  # the project's teacher, never EMT silently
    monkeypatch.setattr(phonon, "DEFAULT_CALCULATOR", "emt")  # fast stand-in for the wiring
    argv = ["phonon-ref", str(cu_cif), "--supercell", "2", "2", "2", "--mesh", "4",
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert "calculator emt (the default teacher; choose one with --calculator)" in (
        capsys.readouterr().out
    )


def test_phonon_ref_compare_with_the_shipped_cartnet(cu_cif, capsys):
    argv = ["phonon-ref", str(cu_cif), "--calculator", "emt", "--supercell", "2", "2", "2",
            "--mesh", "4", "--compare-with", "default", "--no-progress"]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(argv) == 0
    text = capsys.readouterr().out
    assert "cartnet_adp_default" in text and "mean over 1 atoms" in text


@needs_shared
def test_phonon_ref_reads_a_phonopy_calculation(tmp_path, capsys):
    from phonon_ref import PhononReference

    folder = PHONOPY / "MgO"
    out = tmp_path / "mgo.cif"
    argv = ["phonon-ref", str(folder), "-T", "300", "--mesh", "6", "-o", str(out),
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert "FORCE_SETS (phonopy)" in capsys.readouterr().out
    expected = PhononReference.from_phonopy_files(
        folder / "phonopy_disp.yaml", folder / "FORCE_SETS", mesh=6, progress=False
    ).adps(300.0)
    np.testing.assert_allclose(read_cif(out).arrays["adps"], expected, rtol=1e-6, atol=1e-9)
    assert 0.002 < expected[0, 0, 0] < 0.01  # MgO at 300 K: U_iso ≈ 0.004 Å²
    # the yaml itself, FORCE_SETS named; a calculator cannot apply to it
    argv = ["phonon-ref", str(folder / "phonopy_disp.yaml"), "--force-sets",
            str(folder / "FORCE_SETS"), "-T", "300", "--mesh", "6", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert main([*argv, "--calculator", "emt"]) == 2
    assert "--calculator cannot apply" in capsys.readouterr().err
    assert main(["phonon-ref", str(folder / "phonopy_disp.yaml"), "--mesh", "6"]) == 2
    assert "pass -T" in capsys.readouterr().err
