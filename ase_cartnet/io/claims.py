"""Claims on the structures of a dataset build: which process computes which ``source_id``.

Builders that share one ASE database (SQLite) take a claim before computing a structure and
drop it once its row is written, so that they partition the work instead of doubling it. The
claims live in a table of that database (``row_builder_claims``: source_id, host, pid,
attempts, seen), taken in ``BEGIN IMMEDIATE`` transactions; a structure is claimable when it
has no row and no live claim. A claim is dead, and is taken over, when its process no longer
exists on this host, or when its builder has not refreshed it for ``STALE_S`` (another host,
or a pid reused since). Each builder refreshes its claims every ``HEARTBEAT_S`` from a
background thread. ``attempts`` counts the in-process runs that held the claim: a structure
whose process died while it was claimed is tried again only up to a limit (row_builder). The
table is dropped when the last claim is released.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ase_cartnet.io.atomic import process_alive

log = logging.getLogger(__name__)

TABLE = "row_builder_claims"
HEARTBEAT_S = 30.0
"""s between two refreshes of a builder's claims."""
STALE_S = 600.0
"""s without a refresh after which a claim is dead, whatever its host."""
TIMEOUT_S = 120.0
"""s a builder waits for the database lock (another builder's transaction) before failing."""


class Claims:
    """The claims of this process on the SQLite ASE database ``path``.

    ``counted``: a claim taken over from a dead process counts one more attempt (in-process
    runs, where a structure that kills its process takes the builder down with it); executor
    runs keep the count (their workers' deaths come back as failed records).
    """

    def __init__(self, path: str | os.PathLike, counted: bool = True):
        self.path = Path(path)
        self.counted = counted
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.owned: set[str] = set()
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    # -- transactions ----------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=TIMEOUT_S, isolation_level=None)

    @contextlib.contextmanager
    def _transaction(self, create: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction taken at once (``BEGIN IMMEDIATE``): one builder at a time; the
        claims table is created first unless ``create`` is False."""
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                if create:
                    con.execute(
                        f"CREATE TABLE IF NOT EXISTS {TABLE} (source_id TEXT PRIMARY KEY, "
                        "host TEXT, pid INTEGER, attempts INTEGER, seen REAL)"
                    )
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        finally:
            con.close()

    def initialize_database(self) -> None:
        """Create the ASE tables if the file has none yet, under the lock: two builders that
        start together on a new file would otherwise both create them (and one would fail)."""
        from ase.db.sqlite import index_statements, init_statements

        with self._transaction(create=False) as con:
            query = "SELECT COUNT(*) FROM sqlite_master WHERE name = 'systems'"
            if con.execute(query).fetchone()[0] == 0:
                for statement in init_statements + index_statements:
                    con.execute(statement)

    # -- claims ----------------------------------------------------------------------------

    def take(self, source_id: str) -> int | None:
        """Claim ``source_id``: its attempt count (≥ 1 in-process), or None when it already has
        a row or a live claim of another builder."""
        with self._transaction() as con:
            if _has_row(con, source_id):
                con.execute(f"DELETE FROM {TABLE} WHERE source_id = ?", (source_id,))
                return None
            held = con.execute(
                f"SELECT host, pid, attempts, seen FROM {TABLE} WHERE source_id = ?",
                (source_id,),
            ).fetchone()
            attempts = 0
            if held is not None:
                host, pid, attempts, seen = held
                if self._alive(host, pid, seen):
                    return None
                log.info("%s: taking over the claim of dead process %s on %s", source_id, pid,
                         host)  # fmt: skip
            attempts += int(self.counted)
            con.execute(
                f"INSERT OR REPLACE INTO {TABLE} VALUES (?, ?, ?, ?, ?)",
                (source_id, self.host, self.pid, attempts, time.time()),
            )
        self.owned.add(source_id)
        self._start_heartbeat()
        return max(attempts, 1)

    def release(self, source_id: str) -> None:
        """Drop the claim on ``source_id`` (its row is written, or this builder gives it up)."""
        with self._transaction() as con:
            con.execute(
                f"DELETE FROM {TABLE} WHERE source_id = ? AND host = ? AND pid = ?",
                (source_id, self.host, self.pid),
            )
        self.owned.discard(source_id)

    def close(self) -> None:
        """Release every claim still held, stop the heartbeat, and drop the table once no
        builder holds a claim."""
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        with self._transaction() as con:
            for sid in list(self.owned):
                con.execute(
                    f"DELETE FROM {TABLE} WHERE source_id = ? AND host = ? AND pid = ?",
                    (sid, self.host, self.pid),
                )
            if con.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0] == 0:
                con.execute(f"DROP TABLE {TABLE}")
        self.owned.clear()

    def _alive(self, host: str, pid: int, seen: float) -> bool:
        if host == self.host and pid == self.pid:
            return True  # this process (another thread's build)
        if time.time() - seen > STALE_S:
            return False
        return host != self.host or process_alive(pid)

    def _start_heartbeat(self) -> None:
        if self._heartbeat is None:
            self._heartbeat = threading.Thread(
                target=self._beat, name="row-builder-claims", daemon=True
            )
            self._heartbeat.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                with self._transaction() as con:
                    con.execute(
                        f"UPDATE {TABLE} SET seen = ? WHERE host = ? AND pid = ?",
                        (time.time(), self.host, self.pid),
                    )
            except sqlite3.Error as exc:  # a busy database: the next beat will do
                log.warning("%s: could not refresh the claims: %s", self.path, exc)


def _has_row(con: sqlite3.Connection, source_id: str) -> bool:
    """Whether the ASE database already holds a row with this ``source_id`` (any status).
    Reads ASE's schema (text key-value pairs), which is the same in every format since 5."""
    return (
        con.execute(
            "SELECT 1 FROM text_key_values WHERE key = 'source_id' AND value = ? LIMIT 1",
            (source_id,),
        ).fetchone()
        is not None
    )
