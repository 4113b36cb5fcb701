"""Claims of the row builder: live claims are respected, dead ones taken over, executors
share the work with other builders."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from ase.build import bulk

from ase_cartnet.io import claims as claims_module
from ase_cartnet.io.claims import TABLE, Claims
from ase_cartnet.io.row_builder import build_rows, finished_ids


def items(n=5):
    return [(f"cu-{k}", bulk("Cu", "fcc", a=3.6 + 0.01 * k)) for k in range(n)]


def task(sid, atoms, settings, parent_pid):
    return {"source_id": sid, "atoms": atoms, "status": "ok", "timings": {}}


def write_row(db, record):
    with db:
        db.write(record["atoms"], source_id=record["source_id"], status=record["status"])


def held(path):
    with sqlite3.connect(path) as con:
        if not con.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (TABLE,)).fetchone():
            return {}
        return dict(con.execute(f"SELECT source_id, pid FROM {TABLE}").fetchall())


def test_a_live_claim_is_left_to_its_builder_and_a_dead_one_taken_over(tmp_path):
    out = tmp_path / "rows.db"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        claims = Claims(out)
        claims.pid = other.pid  # a claim as another live builder holds it
        claims.initialize_database()
        assert claims.take("cu-1") == 1
        with ThreadPoolExecutor(2) as pool:
            summary = build_rows(items(), task, None, write_row, out, pool, max_pending=2,
                                 progress=False)  # fmt: skip
        assert summary.elsewhere == ["cu-1"] and sorted(summary.ok) == [
            "cu-0", "cu-2", "cu-3", "cu-4",
        ]  # fmt: skip
        assert held(out) == {"cu-1": other.pid}
    finally:
        claims._stop.set()  # its heartbeat
        other.kill()
        other.wait()
    summary = build_rows(items(), task, None, write_row, out, progress=False)
    assert summary.ok == ["cu-1"] and len(summary.skipped) == 4
    assert finished_ids(out) == {f"cu-{k}" for k in range(5)} and held(out) == {}


def test_a_claim_without_heartbeat_is_dead_on_any_host(tmp_path, monkeypatch):
    out = tmp_path / "rows.db"
    remote = Claims(out)
    remote.host = "another-host"
    remote.initialize_database()
    assert remote.take("cu-0") == 1 and remote.take("cu-1") == 1
    mine = Claims(out)
    assert mine.take("cu-0") is None  # another host, refreshed: alive whatever its pid
    remote._stop.set()  # its heartbeat
    later = time.time() + claims_module.STALE_S + 1
    monkeypatch.setattr(claims_module.time, "time", lambda: later)
    assert mine.take("cu-1") == 2  # not refreshed for too long: taken over, one more attempt
    mine.close()
    assert held(out) == {"cu-0": remote.pid}


def test_a_written_row_clears_a_leftover_claim(tmp_path):
    out = tmp_path / "rows.db"
    build_rows(items(1), task, None, write_row, out, progress=False)
    claims = Claims(out)
    claims.pid = 2**22 + 12345  # no such process: a builder killed between row and release
    with claims._transaction() as con:
        con.execute(f"INSERT INTO {TABLE} VALUES ('cu-0', ?, ?, 1, ?)",
                    (claims.host, claims.pid, time.time()))  # fmt: skip
    assert Claims(out).take("cu-0") is None and held(out) == {}
