"""build_dataset: rows, failures, resume after a kill, dask workers, the CHGNet teacher."""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.db import connect

import phonon_ref.dataset as dataset
from ase_cartnet.io.row_builder import finished_ids
from phonon_ref.dataset import build_dataset, read_dataset

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(calculator="emt", temperatures=[100.0, 300.0], supercell=6.0, mesh=5, progress=False)


def emt_structures():
    """Slightly strained fcc metals EMT knows (so the relaxation has work to do)."""
    out = []
    for symbol, a in (("Cu", 3.65), ("Al", 4.0), ("Ni", 3.55), ("Pd", 3.95)):
        atoms = bulk(symbol, "fcc", a=a)
        atoms.info["source_id"] = f"{symbol}-fcc"
        out.append(atoms)
    return out


def rows_by_id(path):
    with connect(path) as db:
        return {row.source_id: row for row in db.select()}


def test_one_row_per_structure_with_everything_the_trainer_needs(tmp_path):
    out = tmp_path / "adp.db"
    summary = build_dataset(emt_structures()[:2], out=out, **FAST)
    assert sorted(summary.ok) == ["Al-fcc", "Cu-fcc"] and not summary.failed
    rows = rows_by_id(out)
    assert set(rows) == {"Cu-fcc", "Al-fcc"}
    row = rows["Cu-fcc"]
    assert row.status == "ok" and row.stable and row.teacher == "emt"
    data = row.data
    assert data["adps"].shape == (2, 1, 3, 3) and list(data["temperatures"]) == [100.0, 300.0]
    assert np.all(np.linalg.eigvalsh(data["adps"]) > 0)
    assert data["relax"]["converged"] and data["relax"]["fmax_reached"] < 1e-3
    assert data["teacher_version"].startswith("ase ")
    assert data["supercell_matrix"].shape == (3, 3) and list(data["mesh"]) == [5, 5, 5]
    assert data["min_frequency"] == row.min_frequency > -0.05
    relaxed = row.toatoms()
    assert abs(relaxed.cell.cellpar()[0] - 3.5898 / np.sqrt(2)) < 2e-3  # EMT's Cu, not 3.65
    assert not np.allclose(data["initial_cell"], relaxed.cell[:])
    ext = data["adps_extrapolated"]  # the infinite-mesh estimate lies above the 5³ sum
    assert ext.shape == data["adps"].shape
    assert np.all(np.trace(ext - data["adps"], axis1=-2, axis2=-1) > 0)
    items = list(read_dataset(out))
    assert len(items) == 2 and items[0][2].shape[0] == 2
    assert not np.array_equal(next(read_dataset(out, extrapolated=True))[2], items[0][2])


def test_a_failing_structure_is_logged_written_and_skipped(tmp_path, caplog):
    bad = bulk("Fe", "bcc", a=2.87)  # EMT has no Fe parameters
    bad.info["source_id"] = "Fe-bcc"
    structures = [emt_structures()[0], bad, emt_structures()[1]]
    with caplog.at_level(logging.WARNING, logger="phonon_ref.dataset"):
        summary = build_dataset(structures, out=tmp_path / "adp.db", **FAST)
    assert summary.failed == ["Fe-bcc"] and len(summary.ok) == 2
    assert "Fe-bcc failed" in caplog.text
    row = rows_by_id(tmp_path / "adp.db")["Fe-bcc"]
    assert row.status == "failed" and "stable" not in row and "adps" not in row.data
    assert "NotImplementedError" in row.data["error"]
    # failures are finished rows: not retried unless asked
    again = build_dataset(structures, out=tmp_path / "adp.db", **FAST)
    assert sorted(again.skipped) == ["Al-fcc", "Cu-fcc", "Fe-bcc"] and not again.failed
    retried = build_dataset(structures, out=tmp_path / "adp.db", retry_failed=True, **FAST)
    assert retried.failed == ["Fe-bcc"] and len(rows_by_id(tmp_path / "adp.db")) == 3


def test_unstable_structures_are_marked_and_have_no_adps(tmp_path):
    atoms = bulk("Cu", "fcc", a=3.5898, cubic=True)
    atoms.set_cell(atoms.cell[:] * [1.25, 1.25, 0.7], scale_atoms=True)
    atoms.info["source_id"] = "strained"
    summary = build_dataset(
        [atoms], out=tmp_path / "adp.db", max_steps=0, require_converged=False, **FAST
    )
    assert summary.unstable == ["strained"]
    row = rows_by_id(tmp_path / "adp.db")["strained"]
    assert row.status == "unstable" and row.stable is False and row.min_frequency < -0.05
    assert "adps" not in row.data and row.data["n_imaginary"] > 0
    assert list(read_dataset(tmp_path / "adp.db")) == []


def test_resume_after_a_simulated_kill(tmp_path, monkeypatch):
    """The process dies while the third structure is being computed: rows 1–2 are complete,
    nothing of row 3 is written; a second call does only the rest."""
    out = tmp_path / "adp.db"
    real = dataset.process_structure
    seen = []

    def dies_on_third(source_id, *args, **kwargs):
        seen.append(source_id)
        if len(seen) == 3:
            raise KeyboardInterrupt  # not an Exception: aborts like a kill would
        return real(source_id, *args, **kwargs)

    monkeypatch.setattr(dataset, "process_structure", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        build_dataset(emt_structures(), out=out, **FAST)
    assert finished_ids(out) == {"Cu-fcc", "Al-fcc"}
    monkeypatch.setattr(dataset, "process_structure", real)
    summary = build_dataset(emt_structures(), out=out, **FAST)
    assert sorted(summary.skipped) == ["Al-fcc", "Cu-fcc"]
    assert sorted(summary.ok) == ["Ni-fcc", "Pd-fcc"]
    with connect(out) as db:
        assert db.count() == 4


SLOW_CALCULATOR = """
import time
from ase.calculators.emt import EMT

class SlowEMT(EMT):
    def calculate(self, *args, **kwargs):
        time.sleep(0.15)
        super().calculate(*args, **kwargs)

def make():
    return SlowEMT()
"""


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path, monkeypatch):
    """A real ``kill -9`` of a running build (budget: ~30 s). The database stays readable, every
    row is complete, and the resumed run does exactly the missing structures."""
    (tmp_path / "slow_emt.py").write_text(SLOW_CALCULATOR)
    out = tmp_path / "adp.db"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path[:0] = [{str(tmp_path)!r}, {str(ROOT / "tests")!r}, {str(ROOT)!r}]
        from test_phonon_ref_dataset import emt_structures
        from phonon_ref.dataset import build_dataset
        build_dataset(emt_structures(), calculator="slow_emt:make", out={str(out)!r},
                      temperatures=[300.0], supercell=6.0, mesh=5, progress=False)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.time() + 60
        while time.time() < deadline and len(finished_ids(out)) < 1:
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    done = finished_ids(out)
    assert 1 <= len(done) < 4, "the child should have been killed mid-way"
    monkeypatch.syspath_prepend(tmp_path)  # the calculator plugin module
    summary = build_dataset(
        emt_structures(), calculator="slow_emt:make", out=out,
        temperatures=[300.0], supercell=6.0, mesh=5, progress=False,
    )  # fmt: skip
    assert set(summary.skipped) == done and len(summary.ok) == 4 - len(done)
    rows = rows_by_id(out)
    assert len(rows) == 4 and all(r.data["adps"].shape == (1, 1, 3, 3) for r in rows.values())


def test_dask_workers_give_the_in_process_numbers(tmp_path):
    """Two single-threaded worker processes: same rows, one model load per worker, 1 thread."""
    distributed = pytest.importorskip("distributed")
    from phonon_ref.calculators import load_count

    structures = emt_structures()
    serial = tmp_path / "serial.db"
    build_dataset(structures, out=serial, **FAST)
    parallel = tmp_path / "dask.db"
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        summary = build_dataset(structures, out=parallel, executor=client.get_executor(), **FAST)
        loads = client.run(load_count)
        threads = client.run(lambda: __import__("torch").get_num_threads())
    assert len(summary.ok) == 4
    assert all(n <= 1 for n in loads.values()) and sum(loads.values()) >= 1
    assert set(threads.values()) == {1}
    a, b = rows_by_id(serial), rows_by_id(parallel)
    for sid in a:
        np.testing.assert_allclose(b[sid].data["adps"], a[sid].data["adps"], rtol=1e-9)
        np.testing.assert_allclose(b[sid].positions, a[sid].positions, atol=1e-12)


@pytest.mark.skipif(
    importlib.util.find_spec("chgnet") is None, reason="chgnet (teacher extra) not installed"
)
def test_chgnet_teacher_offline(tmp_path):
    """CHGNet's weights load from its wheel; silicon is stable and gets sensible ADPs."""
    si = bulk("Si", "diamond", a=5.45)
    si.info["source_id"] = "Si"
    out = tmp_path / "si.db"
    summary = build_dataset([si], out=out, calculator="chgnet", temperatures=[300.0],
                            supercell=(2, 2, 2), mesh=5, progress=False)  # fmt: skip
    assert summary.ok == ["Si"], summary
    row = rows_by_id(out)["Si"]
    assert row.teacher == "chgnet" and "model 0.3.0" in row.data["teacher_version"]
    u = row.data["adps"][0]
    assert np.all(np.linalg.eigvalsh(u) > 0)
    assert 0.003 < np.trace(u[0]) / 3 < 0.012  # experiment (B ≈ 0.46 Å²): U_iso ≈ 0.0058 Å²


def test_dataset_command_line(tmp_path, capsys):
    """``ase-cartnet phonon-dataset`` on an MP-20 style CSV (material_id, cif)."""
    import io

    import pandas as pd
    from ase.io import write

    from ase_cartnet.cli import main

    rows = []
    for atoms in emt_structures()[:2]:
        buffer = io.BytesIO()
        write(buffer, atoms, format="cif")
        rows.append({"material_id": atoms.info["source_id"], "cif": buffer.getvalue().decode()})
    csv = tmp_path / "structures.csv.gz"
    pd.DataFrame(rows).to_csv(csv, index=False)
    out = tmp_path / "adp.db"
    argv = ["phonon-dataset", str(csv), "-o", str(out), "--calculator", "emt", "-T", "300",
            "--supercell-length", "6", "--mesh-length", "20", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert "2 ok" in capsys.readouterr().out
    assert finished_ids(out) == {"Cu-fcc", "Al-fcc"}
    assert main(argv) == 0  # resumed: nothing left to do
    assert "2 already done" in capsys.readouterr().out


CLAIM_AND_DIE = """
import os, signal, sys
sys.path.insert(0, {root!r})
from ase_cartnet.io.claims import Claims
claims = Claims(sys.argv[1])
claims.initialize_database()
print(claims.take(sys.argv[2]), flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # dies while computing the structure
"""


def die_holding_a_claim(out, source_id):
    """A process that claims ``source_id`` on ``out`` and is killed; its printed attempt
    count."""
    code = CLAIM_AND_DIE.format(root=str(ROOT))
    done = subprocess.run([sys.executable, "-c", code, str(out), source_id],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == -signal.SIGKILL, done.stderr
    return int(done.stdout)


def test_a_structure_that_kills_the_process_twice_becomes_a_failed_row(tmp_path):
    """In-process runs claim the structure in flight; a second death on it (e.g. the OOM
    killer) turns it into a failed row on the next start instead of an endless retry."""
    from ase_cartnet.io.claims import TABLE

    out = tmp_path / "adp.db"
    structures = emt_structures()[:2]
    assert die_holding_a_claim(out, "Cu-fcc") == 1
    summary = build_dataset(structures, out=out, **FAST)  # died once before: retried
    assert sorted(summary.ok) == ["Al-fcc", "Cu-fcc"] and not summary.elsewhere
    with connect(out) as db:
        assert db.count() == 2

    out2 = tmp_path / "adp2.db"
    assert [die_holding_a_claim(out2, "Cu-fcc") for _ in range(2)] == [1, 2]
    summary = build_dataset(structures, out=out2, **FAST)
    assert summary.failed == ["Cu-fcc"] and summary.ok == ["Al-fcc"]
    row = rows_by_id(out2)["Cu-fcc"]
    assert row.status == "failed" and "died 2 times" in row.data["error"]
    again = build_dataset(structures, out=out2, **FAST)
    assert sorted(again.skipped) == ["Al-fcc", "Cu-fcc"]
    import sqlite3

    for path in (out, out2):  # every claim released: the table is gone
        with sqlite3.connect(path) as con:
            tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master")}
        assert TABLE not in tables and "systems" in tables


CONCURRENT_BUILDER = """
import json, os, sys, time
from pathlib import Path
sys.path[:0] = [{tmp!r}, {tests!r}, {root!r}]
from test_phonon_ref_dataset import emt_structures
from phonon_ref.dataset import build_dataset
structures = emt_structures()
go = Path(sys.argv[2])
while not go.exists():  # start together with the other builder
    time.sleep(0.01)
summary = build_dataset(structures, calculator="slow_emt:make", out=sys.argv[1],
                        temperatures=[300.0], supercell=6.0, mesh=5, progress=False)
print(json.dumps({{"ok": summary.ok, "elsewhere": summary.elsewhere,
                  "skipped": summary.skipped}}))
"""


def test_two_builders_on_one_database_share_the_work(tmp_path):
    """Two builder processes started together on one database: both exit 0, each structure is
    stored once, each builder computed a part and left the rest to the other."""
    import json

    (tmp_path / "slow_emt.py").write_text(SLOW_CALCULATOR)
    out, go = tmp_path / "shared.db", tmp_path / "go"
    code = CONCURRENT_BUILDER.format(tmp=str(tmp_path), tests=str(ROOT / "tests"), root=str(ROOT))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(out), str(go)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    time.sleep(0.5)
    go.touch()
    results = []
    for proc in procs:
        stdout, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    ids = {atoms.info["source_id"] for atoms in emt_structures()}
    with connect(out) as db:
        stored = [row.source_id for row in db.select()]
    assert sorted(stored) == sorted(ids)  # every structure once
    a, b = results
    assert set(a["ok"]) | set(b["ok"]) == ids and not set(a["ok"]) & set(b["ok"])
    assert a["ok"] and b["ok"], results  # the work was shared
    for mine, other in ((a, b), (b, a)):
        assert set(mine["elsewhere"]) | set(mine["skipped"]) == ids - set(mine["ok"])
        assert set(mine["elsewhere"]) <= set(other["ok"])
