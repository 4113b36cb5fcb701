"""Resumable, executor-ready builder of ASE databases: one task per structure, one row each.

The one pattern behind every teacher dataset of the project — phonon_ref's harmonic-ADP rows
(:func:`phonon_ref.dataset.build_dataset`) and DeepRelax's teacher relaxation pairs
(:func:`ase_cartnet.train.deeprelax_teacher.build_teacher_pairs`):

* every structure has a ``source_id``; ids that already have a row are skipped, so a killed run
  resumes by calling again with the same ``out`` (``retry_failed`` also redoes "failed" rows);
* a *task* ``task(source_id, atoms, settings, parent_pid) -> record`` computes one structure and
  never raises: any failure comes back as ``record["status"] == "failed"`` with an ``error``;
  it runs in-process or on any :class:`concurrent.futures.Executor` (process pool,
  ``dask.distributed.Client.get_executor()``), so it and ``settings`` must be picklable;
* a *row writer* ``write_row(db, record)`` stores the finished record in one transaction, in
  this process only (``record["initial"]`` holds the input structure);
* builders on one SQLite database share the work: each structure is claimed before it is
  computed (:mod:`ase_cartnet.io.claims`), so that two builders started on the same ``out``
  (several jobs of a cluster, a resume while the first run still works) store every structure
  once; ids claimed by another builder are reported as ``elsewhere``;
* in-process, a structure during which the process dies (e.g. the out-of-memory killer) leaves
  its claim behind; it is retried once and then written as a failed row, instead of killing
  every later run too.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ase import Atoms
from tqdm.auto import tqdm

from ase_cartnet.errors import InputError

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 2
"""In-process runs: a structure during which the process died this many times is written as a
failed row instead of being tried again."""

Task = Callable[[str, Atoms, Any, int], dict[str, Any]]
RowWriter = Callable[[Any, dict[str, Any]], None]


@dataclass
class BuildSummary:
    """What :func:`build_rows` did: ids written as ``ok``/``unstable``/``failed`` in this call,
    ids ``skipped`` because a row already existed, ids done or in progress ``elsewhere`` (claimed
    by another builder on the same database), and the total ``seconds``."""

    out: Path
    ok: list[str] = field(default_factory=list)
    unstable: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def line(self, unstable: bool = True) -> str:
        """One line for the command line: counts per status and the time."""
        counts = [f"{len(self.ok)} ok"] + ([f"{len(self.unstable)} unstable"] if unstable else [])
        counts += [f"{len(self.failed)} failed", f"{len(self.skipped)} already done"]
        if self.elsewhere:
            counts.append(f"{len(self.elsewhere)} by another builder")
        return f"{self.out}: {', '.join(counts)} ({self.seconds:.0f} s)"


def as_items(structures: Mapping[str, Atoms] | Iterable[Any]) -> list[tuple[str, Atoms]]:
    """(source_id, Atoms) pairs from a mapping, (id, Atoms) tuples, or Atoms whose
    ``info["source_id"]`` names them (else ``"structure-<k>"``, k their position in the
    sequence). An id that reads as a number or a boolean (``"0"``, ``"1e3"``, ``"True"``) is
    refused: ``ase.db`` cannot store it as text."""
    items = structures.items() if isinstance(structures, Mapping) else structures
    out: list[tuple[str, Atoms]] = []
    for k, item in enumerate(items):
        if isinstance(item, Atoms):
            sid, atoms = str(item.info.get("source_id", f"structure-{k}")), item
        else:
            sid, atoms = item
            sid = str(sid)
        if not isinstance(atoms, Atoms):
            raise InputError(f"structure {sid!r} is not an ase.Atoms ({type(atoms).__name__})")
        if _reads_as_number(sid):
            raise InputError(
                f"source id {sid!r} (structure {k}) reads as a number, which ase.db cannot store "
                f"as a text id: name it, e.g. 'structure-{sid}'"
            )
        out.append((sid, atoms))
    ids = [sid for sid, _ in out]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise InputError(f"duplicate source ids: {dup[:10]}")
    return out


def _reads_as_number(text: str) -> bool:
    """Whether ``ase.db`` would refuse ``text`` as a string value (it parses as int, float or
    bool)."""
    from ase.db.core import str_represents

    return any(str_represents(text, t) for t in (bool, int, float))


def finished_ids(out: str | os.PathLike, include_failed: bool = True) -> set[str]:
    """source ids that already have a row in ``out`` (failed ones only if ``include_failed``)."""
    from ase.db import connect

    if not Path(out).exists():
        return set()
    with connect(out) as db:
        return {
            str(row.source_id)
            for row in db.select(include_data=False)
            if "source_id" in row and (include_failed or row.get("status") != "failed")
        }


def build_rows(
    items: list[tuple[str, Atoms]],
    task: Task,
    settings: Any,
    write_row: RowWriter,
    out: str | os.PathLike,
    executor: Executor | None = None,
    *,
    retry_failed: bool = False,
    progress: bool = True,
    max_pending: int | None = None,
) -> BuildSummary:
    """Run ``task`` on every (source_id, Atoms) of ``items`` without a row in ``out`` and store
    each record with ``write_row`` as it finishes (module docstring). With an ``executor``, at
    most ``max_pending`` structures are claimed and submitted at a time (default: twice its
    workers, else 64), so that other builders on ``out`` get a share. Returns a summary."""
    from ase.db import connect
    from ase.db.sqlite import SQLite3Database

    from ase_cartnet.io.claims import Claims

    start = time.perf_counter()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = BuildSummary(out=out)
    db = connect(out)
    claims = Claims(out, counted=executor is None) if isinstance(db, SQLite3Database) else None
    if claims is not None and items:  # before any reading: ASE would create the tables racily
        claims.initialize_database()
    done = finished_ids(out, include_failed=not retry_failed)
    pending = []
    for sid, atoms in items:
        if sid in done:
            summary.skipped.append(sid)
        else:
            pending.append((sid, atoms))
    if summary.skipped:
        log.info("%s: %d structures already done, skipped", out, len(summary.skipped))
    if not pending:
        summary.seconds = time.perf_counter() - start
        return summary
    initial = dict(pending)
    if retry_failed:
        stale = [row.id for row in db.select(status="failed") if row.source_id in initial]
        if stale:
            db.delete(stale)
    bar = tqdm(total=len(pending), desc="structures", disable=not progress)
    try:
        for record in _run(pending, task, settings, executor, claims, summary, max_pending):
            if record is not None:
                record["initial"] = initial[record["source_id"]]
                write_row(db, record)
                if claims is not None:
                    claims.release(record["source_id"])
                getattr(summary, record["status"]).append(record["source_id"])
                if record["status"] == "failed":
                    log.warning("%s failed: %s", record["source_id"], record["error"])
            bar.update()
    finally:
        bar.close()
        if claims is not None:
            claims.close()
    if summary.elsewhere:
        log.info("%s: %d structures done or in progress by another builder", out,
                 len(summary.elsewhere))  # fmt: skip
    summary.seconds = time.perf_counter() - start
    return summary


def _ready_record(sid: str, atoms: Atoms, attempts: int, in_process: bool) -> dict | None:
    """The failed record of a structure that is not computed (unreadable, or it killed the
    process ``MAX_ATTEMPTS`` times), else None."""
    if "read_error" in atoms.info:  # read_mp20(keep_unreadable=True): nothing to compute
        error = atoms.info["read_error"]
    elif in_process and attempts > MAX_ATTEMPTS:
        error = (
            f"the process died {attempts - 1} times while computing this structure (killed, "
            "e.g. by the out-of-memory killer); not tried again"
        )
    else:
        return None
    return {"source_id": sid, "atoms": atoms, "status": "failed", "error": error, "timings": {}}


def _run(
    pending: list[tuple[str, Atoms]],
    task: Task,
    settings: Any,
    executor: Executor | None,
    claims: Any,
    summary: BuildSummary,
    max_pending: int | None,
) -> Iterator[dict[str, Any] | None]:
    """Yield finished records as they complete (in order in-process), each structure claimed
    first; None for a structure another builder claimed (listed in ``summary.elsewhere``)."""
    pid = os.getpid()

    def claim(sid: str) -> int | None:
        attempts = 1 if claims is None else claims.take(sid)
        if attempts is None:
            summary.elsewhere.append(sid)
        return attempts

    if executor is None:
        for sid, atoms in pending:
            attempts = claim(sid)
            if attempts is None:
                yield None
                continue
            ready = _ready_record(sid, atoms, attempts, in_process=True)
            yield ready if ready is not None else task(sid, atoms, settings, pid)
        return
    window = max_pending or _window(executor)
    queue = iter(pending)
    futures: dict[Future, tuple[str, Atoms]] = {}
    while True:
        for sid, atoms in queue:  # claim and submit up to the window
            attempts = claim(sid)
            if attempts is None:
                yield None
                continue
            ready = _ready_record(sid, atoms, attempts, in_process=False)
            if ready is not None:
                yield ready
                continue
            futures[executor.submit(task, sid, atoms, settings, pid)] = (sid, atoms)
            if len(futures) >= window:
                break
        if not futures:
            return
        finished, _ = wait(futures, return_when=FIRST_COMPLETED)
        for fut in finished:
            sid, atoms = futures.pop(fut)
            try:
                yield fut.result()
            except Exception as exc:  # the worker itself died (killed, out of memory, …)
                yield {
                    "source_id": sid,
                    "atoms": atoms,
                    "status": "failed",
                    "error": f"{type(exc).__name__}: {exc}",
                    "timings": {},
                }


def _window(executor: Executor) -> int:
    """Twice the workers of ``executor`` (a process or thread pool, or dask.distributed's
    executor, whose client knows its threads), else 64."""
    workers = getattr(executor, "_max_workers", None)
    client = getattr(executor, "_client", None)
    if workers is None and client is not None:
        try:
            workers = sum(client.nthreads().values())
        except Exception:  # noqa: BLE001 - any client that cannot tell: the default
            workers = None
    return 2 * workers if workers else 64


def teacher_row(record: dict[str, Any], teacher: dict[str, str], atoms: Atoms):
    """The fields every teacher row holds: a calculator- and constraint-free copy of ``atoms``;
    ``source_id``, ``status``, ``teacher`` (and ``teacher_energy`` after a relaxation) as keys;
    the teacher's name and version, timings, the relaxation record and a failure's error and
    traceback as data. Returns (atoms, key_value_pairs, data) for the pipeline to complete."""
    atoms = atoms.copy()
    atoms.calc = None
    atoms.set_constraint()
    kvp: dict[str, Any] = {
        "source_id": record["source_id"],
        "status": record["status"],
        "teacher": teacher["name"],
    }
    data: dict[str, Any] = {
        "teacher": teacher["name"],
        "teacher_version": teacher["version"],
        "timings": record.get("timings", {}),
    }
    if "relax" in record:
        data["relax"] = record["relax"]
        kvp["teacher_energy"] = float(record["energy"])
    if record["status"] == "failed":
        data["error"] = record["error"]
        data["traceback"] = record.get("traceback", "")
    return atoms, kvp, data


def teacher_row_writer(
    describe_teacher: Callable[[], dict[str, str]],
    write: Callable[[Any, dict[str, Any], dict[str, str]], None],
) -> Callable[[Any, dict[str, Any]], None]:
    """The ``write_row`` of :func:`build_rows` for a teacher pipeline: ``write(db, record,
    teacher)``, with ``teacher`` (name, version) from ``describe_teacher()`` at the first finished
    row, so that a run with nothing left to do loads no teacher."""
    teacher: dict[str, str] = {}

    def write_row(db, record: dict[str, Any]) -> None:
        if not teacher:
            teacher.update(describe_teacher())
        write(db, record, teacher)

    return write_row


@contextmanager
def task_record(source_id: str, atoms: Atoms) -> Iterator[dict[str, Any]]:
    """The record of one task of a pipeline (``source_id``, ``atoms``, ``timings``, s): an
    ``Exception`` inside the block makes it a "failed" record with the error and a traceback
    instead of propagating (a batch never dies of one item); ``timings["total"]`` is set on
    exit."""
    started = time.perf_counter()
    record: dict[str, Any] = {"source_id": source_id, "atoms": atoms, "timings": {}}
    try:
        yield record
    except Exception as exc:  # robust: any failure becomes a "failed" row
        record["status"] = "failed"
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc(limit=8)
    record["timings"]["total"] = time.perf_counter() - started
