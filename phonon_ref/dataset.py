"""Training data: relax with a teacher, harmonic ADPs at many temperatures, one ase.db row each.

>>> from ase_cartnet.io.datasets import read_mp20
>>> from phonon_ref.dataset import build_dataset
>>> build_dataset(read_mp20("val.csv.gz", limit=100), calculator="chgnet", out="adp.db")

Each structure becomes one row, written in one transaction when it is finished:

* the relaxed structure (positions and cell, FrechetCellFilter, fmax ≤ 1e-3 eV/Å);
* ``key_value_pairs``: ``source_id``, ``status`` ("ok", "unstable", "failed"), ``stable``
  (bool; absent for failures), ``teacher``, ``min_frequency`` (THz), ``teacher_energy`` (eV);
* ``data``: ``temperatures`` (T,) K; ``adps`` (T, N, 3, 3) Cartesian U in Å², the mesh sum
  (phonopy's numbers; stable rows only); ``adps_extrapolated``, the same extrapolated to an
  infinite mesh (``PhononReference.run_extrapolated``); ``min_frequency``, ``max_frequency``
  (THz), ``n_imaginary``; ``teacher``, ``teacher_version``; ``supercell_matrix`` (3, 3),
  ``mesh`` (3,), ``displacement`` (Å), ``freq_min`` (THz); ``relax`` (converged, steps,
  fmax_reached); ``timings`` (s); ``initial_cell``, ``initial_positions`` (before relaxation);
  ``error`` and ``traceback`` for failures.

Dynamically unstable structures (a mode below −``imaginary_tol``) are kept as marked rows
without ADPs, so they are not tried again; train on ``db.select(status="ok")``
(:func:`read_dataset`). A killed run is resumed by calling again with the same ``out``:
finished ``source_id`` rows (failures included, unless ``retry_failed``) are skipped. A
structure that raises is logged (logger ``phonon_ref.dataset``), written as a "failed" row
with its error, and skipped.

Costs and the share of stable structures with the CHGNet teacher: README ("CHGNet teacher
cost").
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np
from ase import Atoms
from numpy.typing import ArrayLike

from ase_cartnet.errors import InputError
from ase_cartnet.io import row_builder
from phonon_ref.grids import DEFAULT_MESH_LENGTH, DEFAULT_MIN_LENGTH, MeshSpec, SupercellSpec
from phonon_ref.harmonic import DEFAULT_FREQ_MIN, DEFAULT_IMAGINARY_TOL
from phonon_ref.reference import DEFAULT_DISPLACEMENT, PhononReference
from phonon_ref.relax import (
    DEFAULT_FMAX,
    DEFAULT_MAX_STEPS,
    build_teacher_rows,
    load_and_relax,
)

log = logging.getLogger(__name__)

DEFAULT_TEMPERATURES = tuple(float(t) for t in range(50, 501, 50))
"""K: 50, 100, …, 500 (CSD measurements lie mostly in 90–300 K). Extra temperatures cost one
small matrix product each."""


@dataclass(frozen=True)
class DatasetSettings:
    """Everything a worker needs for one structure (picklable)."""

    calculator: str
    temperatures: tuple[float, ...]
    supercell: Any
    mesh: Any
    fmax: float
    max_steps: int
    displacement: float
    fix_symmetry: bool
    freq_min: float
    imaginary_tol: float
    require_converged: bool
    n_threads: int | None
    cache_dir: str | None = None
    device: str = "cpu"


def process_structure(
    source_id: str, atoms: Atoms, settings: DatasetSettings, parent_pid: int
) -> dict[str, Any]:
    """Relax, force constants and ADPs of one structure; never raises an ``Exception``.

    Returns a dict with ``status`` ("ok", "unstable", "failed") and the row contents.
    Runs in a worker (process, thread or dask) or in the caller's process.
    """
    with row_builder.task_record(source_id, atoms) as record:
        calc, rel = load_and_relax(
            atoms, settings, record, parent_pid, require_converged=settings.require_converged
        )
        t1 = time.perf_counter()
        ref = PhononReference(
            rel.atoms,
            calculator=calc,
            calculator_name=settings.calculator,
            cache_dir=settings.cache_dir,
            supercell=settings.supercell,
            mesh=settings.mesh,
            displacement=settings.displacement,
            progress=False,
            freq_min=settings.freq_min,
            imaginary_tol=settings.imaginary_tol,
            on_imaginary="ignore",
        )
        record["timings"]["force_constants"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        result = ref.run(settings.temperatures)
        extrapolated = ref.run_extrapolated(settings.temperatures) if result.is_stable else None
        record["timings"]["adps"] = time.perf_counter() - t2
        if result.is_stable and not _positive_definite(result.u_cart):
            # e.g. a teacher that sees no interaction (zero forces: every mode skipped, U = 0)
            raise RuntimeError(
                "harmonic ADPs are not positive definite (no vibrational mode above freq_min "
                f"for some atom; max frequency {result.max_frequency:.3g} THz)"
            )
        record.update(
            status="ok" if result.is_stable else "unstable",
            adps=result.u_cart,
            adps_extrapolated=None if extrapolated is None else extrapolated.u_cart,
            min_frequency=result.min_frequency,
            max_frequency=result.max_frequency,
            n_imaginary=result.n_imaginary,
            supercell_matrix=ref.supercell_matrix,
            n_supercell_atoms=len(ref.phonopy.supercell),
            n_force_calls=ref.n_force_calls,
            mesh=ref.mesh_numbers(),
        )
    return record


def _positive_definite(u: np.ndarray) -> bool:
    """Every 3×3 block of ``u`` (..., 3, 3) has only positive eigenvalues."""
    return bool(np.all(np.linalg.eigvalsh(np.asarray(u, dtype=float)) > 0))


def _write_row(db, record: dict[str, Any], settings: DatasetSettings, teacher: dict) -> None:
    """One row per structure, in one transaction (all or nothing)."""
    atoms, kvp, data = row_builder.teacher_row(record, teacher, record["atoms"])
    initial = record.get("initial")
    data.update(
        temperatures=np.asarray(settings.temperatures),
        displacement=settings.displacement,
        freq_min=settings.freq_min,
        imaginary_tol=settings.imaginary_tol,
        fmax=settings.fmax,
    )
    if initial is not None:
        data["initial_cell"] = np.asarray(initial.cell[:])
        data["initial_positions"] = initial.positions
    if record["status"] != "failed":
        kvp["stable"] = record["status"] == "ok"
        kvp["min_frequency"] = float(record["min_frequency"])
        data.update(
            min_frequency=float(record["min_frequency"]),
            max_frequency=float(record["max_frequency"]),
            n_imaginary=int(record["n_imaginary"]),
            supercell_matrix=np.asarray(record["supercell_matrix"]),
            n_supercell_atoms=int(record["n_supercell_atoms"]),
            n_force_calls=int(record["n_force_calls"]),
            mesh=np.asarray(record["mesh"]),
        )
        if record["status"] == "ok":
            data["adps"] = np.asarray(record["adps"])
            data["adps_extrapolated"] = np.asarray(record["adps_extrapolated"])
    with db:
        db.write(atoms, key_value_pairs=kvp, data=data)


def build_dataset(
    structures: Mapping[str, Atoms] | Iterable[Any],
    calculator: str = "chgnet",
    temperatures: Sequence[float] | ArrayLike = DEFAULT_TEMPERATURES,
    out: str | os.PathLike = "adp.db",
    executor: Executor | None = None,
    supercell: SupercellSpec = DEFAULT_MIN_LENGTH,
    mesh: MeshSpec = DEFAULT_MESH_LENGTH,
    fmax: float = DEFAULT_FMAX,
    max_steps: int = DEFAULT_MAX_STEPS,
    displacement: float = DEFAULT_DISPLACEMENT,
    *,
    fix_symmetry: bool = True,
    freq_min: float = DEFAULT_FREQ_MIN,
    imaginary_tol: float = DEFAULT_IMAGINARY_TOL,
    require_converged: bool = True,
    retry_failed: bool = False,
    worker_threads: int | None = 1,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    device: str = "cpu",
) -> row_builder.BuildSummary:
    """Relax every structure with the teacher, compute harmonic ADPs, store one row each.

    Parameters
    ----------
    structures
        ``{source_id: Atoms}``, ``(source_id, Atoms)`` pairs, or Atoms with
        ``info["source_id"]`` (see :func:`read_mp20`).
    calculator
        teacher name for :func:`phonon_ref.calculators.get_calculator` ("chgnet",
        "emt", "module:factory"); loaded once per worker.
    temperatures
        K, every one stored for every structure.
    out
        the ASE database (SQLite ``.db``); created or resumed.
    executor
        any ``concurrent.futures.Executor`` (e.g. ``Client(LocalCluster(n_workers=2,
        threads_per_worker=1)).get_executor()``); one task per structure. None: in-process.
    supercell, mesh, displacement
        as :class:`phonon_ref.reference.PhononReference`
        (defaults: widths ≥ 10 Å, 100 Å mesh length, 0.01 Å).
    fmax, max_steps
        relaxation target (eV/Å) and step cap; with ``require_converged`` an
        unconverged relaxation is a failure.
    fix_symmetry
        keep the space group during relaxation (FixSymmetry, symprec 1e-3 Å).
    retry_failed
        also redo ids whose row says "failed" (the old row is replaced).
    worker_threads
        torch/BLAS threads inside each worker *process* (not applied in-process).
    device
        where the teacher runs ("cpu", "cuda"); several worker processes may share one
        GPU.
    cache_dir
        keep every structure's force constants there (compressed npz), so
        other meshes, temperatures or imaginary-mode tolerances cost no force call later.

    Returns
    -------
    ase_cartnet.io.row_builder.BuildSummary
        The outcome per id (resumable as described in :mod:`ase_cartnet.io.row_builder`).
    """
    temps = tuple(float(t) for t in np.atleast_1d(np.asarray(temperatures, dtype=float)))
    if not temps or any(not np.isfinite(t) or t < 0 for t in temps):
        raise InputError(f"temperatures must be finite and >= 0 K, got {temps}")
    settings = DatasetSettings(
        calculator=calculator,
        temperatures=temps,
        supercell=supercell,
        mesh=mesh,
        fmax=float(fmax),
        max_steps=int(max_steps),
        displacement=float(displacement),
        fix_symmetry=bool(fix_symmetry),
        freq_min=float(freq_min),
        imaginary_tol=float(imaginary_tol),
        require_converged=bool(require_converged),
        n_threads=worker_threads,
        cache_dir=None if cache_dir is None else str(cache_dir),
        device=str(device),
    )
    return build_teacher_rows(
        row_builder.as_items(structures),
        process_structure,
        _write_row,
        settings,
        out,
        executor,
        retry_failed=retry_failed,
        progress=progress,
    )


def read_dataset(
    path: str | os.PathLike, status: str = "ok", extrapolated: bool = False
) -> Iterator[tuple[Atoms, np.ndarray, np.ndarray]]:
    """Yield ``(atoms, temperatures (T,), adps (T, N, 3, 3))`` of the rows with ``status``;
    ``extrapolated`` picks the infinite-mesh estimate instead of the mesh sum."""
    from ase.db import connect

    key = "adps_extrapolated" if extrapolated else "adps"
    with connect(path) as db:
        for row in db.select(status=status):
            atoms = row.toatoms()
            atoms.info["source_id"] = row.source_id
            yield atoms, np.asarray(row.data["temperatures"]), np.asarray(row.data[key])


if __name__ == "__main__":  # ``python -m phonon_ref.dataset``, as the generation scripts call it
    import sys

    from ase_cartnet.cli import main

    raise SystemExit(main(["phonon-dataset", *sys.argv[1:]]))
