"""Relaxation of positions and cell with the teacher before force constants are computed."""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator

from ase_cartnet.errors import InputError
from ase_cartnet.io import row_builder
from phonon_ref.calculators import configure_worker, get_calculator, teacher_info

DEFAULT_FMAX = 1e-3
"""eV/Å on every atom and on the cell degrees of freedom (FrechetCellFilter's generalised
forces: stress × volume, per atom)."""

DEFAULT_MAX_STEPS = 400


def single_threaded_blas():
    """A context with BLAS on one thread (threadpoolctl; a no-op without it).

    The optimizer's 3×3 and 9×9 algebra (FrechetCellFilter's matrix exponentials) runs 5–15×
    slower with multi-threaded OpenBLAS on a busy 2-core machine than on one thread.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional speed-up
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


@dataclass(frozen=True)
class Relaxation:
    """Result of :func:`relax`: the relaxed ``atoms`` (no calculator attached), whether the
    largest generalised force fell below ``fmax`` within ``max_steps`` (``converged``),
    ``steps`` taken, the final ``fmax_reached`` (eV/Å), ``energy`` (eV) and ``seconds``."""

    atoms: Atoms
    converged: bool
    steps: int
    fmax_reached: float
    energy: float
    seconds: float
    frames: tuple[Atoms, ...] = ()


def relax(
    atoms: Atoms,
    calculator: str | BaseCalculator,
    fmax: float = DEFAULT_FMAX,
    max_steps: int = DEFAULT_MAX_STEPS,
    fix_symmetry: bool = True,
    symprec: float = 1e-3,
    keep_frames: int = 0,
) -> Relaxation:
    """Relax positions and cell (``ase.filters.FrechetCellFilter`` + BFGS) to ``fmax`` eV/Å.

    With ``fix_symmetry`` (default) the space group found at ``symprec`` Å is kept
    (``ase.constraints.FixSymmetry``): the relaxed crystal stays exactly symmetric, so phonopy
    needs few displacements, and no float32 noise of an ML potential can lower the symmetry.
    ``keep_frames`` > 0 keeps up to that many intermediate structures of the trajectory
    (``Relaxation.frames``: the start and log-spaced steps, the minimum excluded), e.g. as extra
    (frame → relaxed) training pairs. ``atoms`` is not modified.
    """
    from ase.constraints import FixSymmetry
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    if not (math.isfinite(fmax) and fmax > 0):
        raise InputError(f"fmax must be a positive force in eV/Å, got {fmax}")
    if int(max_steps) < 0:
        raise InputError(f"max_steps must be >= 0, got {max_steps}")
    start = time.perf_counter()
    work = atoms.copy()
    work.calc = get_calculator(calculator)
    if fix_symmetry:
        work.set_constraint(FixSymmetry(work, symprec=symprec))
    filtered = FrechetCellFilter(work)
    opt = BFGS(filtered, logfile=None)
    trajectory: list[Atoms] = []
    if keep_frames > 0:

        def keep() -> None:
            frame = work.copy()
            frame.set_constraint()
            frame.calc = None
            trajectory.append(frame)

        opt.attach(keep, interval=1)
    with warnings.catch_warnings(), single_threaded_blas():
        # CHGNet converts to pymatgen, which cannot carry FixSymmetry; harmless here
        warnings.filterwarnings("ignore", message="Only FixAtoms and FixCartesian")
        converged = bool(opt.run(fmax=fmax, steps=int(max_steps)))
    reached = float(np.sqrt((filtered.get_forces() ** 2).sum(axis=1).max()))
    energy = float(work.get_potential_energy())
    out = work.copy()
    out.set_constraint()
    out.calc = None
    frames = _log_spaced(trajectory[:-1], keep_frames) if keep_frames > 0 else []
    return Relaxation(
        atoms=out,
        converged=converged,
        steps=int(opt.nsteps),
        fmax_reached=reached,
        energy=energy,
        seconds=time.perf_counter() - start,
        frames=tuple(frames),
    )


def _log_spaced(frames: list[Atoms], n: int) -> list[Atoms]:
    """At most ``n`` of ``frames``: the first, then log-spaced steps (the early steps move most)."""
    if len(frames) <= n:
        return frames
    picks = np.unique(np.round(np.geomspace(1, len(frames), n)).astype(int) - 1)
    return [frames[i] for i in picks]


def relax_into_record(
    atoms: Atoms,
    calculator: str | BaseCalculator,
    record: dict,
    fmax: float,
    max_steps: int,
    fix_symmetry: bool,
    require_converged: bool = True,
    keep_frames: int = 0,
) -> Relaxation:
    """:func:`relax` as one step of a dataset task (``phonon_ref.dataset``,
    ``ase_cartnet.train.deeprelax_teacher``): stores ``timings["relax"]``, ``relax``
    (converged, steps, fmax_reached), ``energy`` and — once converged, or when convergence is not
    required — the relaxed ``atoms`` in ``record``; raises RuntimeError if not converged."""
    rel = relax(
        atoms,
        calculator,
        fmax=fmax,
        max_steps=max_steps,
        fix_symmetry=fix_symmetry,
        keep_frames=keep_frames,
    )
    record["timings"]["relax"] = rel.seconds
    record["relax"] = {
        "converged": rel.converged,
        "steps": rel.steps,
        "fmax_reached": rel.fmax_reached,
    }
    record["energy"] = rel.energy
    if rel.frames:
        record["frames"] = rel.frames
    if require_converged and not rel.converged:
        raise RuntimeError(
            f"relaxation did not reach fmax={fmax} eV/Å in {rel.steps} steps "
            f"(reached {rel.fmax_reached:.2e} eV/Å)"
        )
    record["atoms"] = rel.atoms
    return rel


def load_and_relax(
    atoms: Atoms, settings, record: dict, parent_pid: int, **options
) -> tuple[BaseCalculator, Relaxation]:
    """One teacher task's start, in its worker: threads as ``settings.n_threads``, the teacher
    ``settings.calculator`` loaded on ``settings.device`` (``timings["load"]``, s), then
    :func:`relax_into_record` with ``settings.fmax`` (eV/Å), ``max_steps``, ``fix_symmetry``
    and ``options``. Returns the teacher and the relaxation."""
    started = time.perf_counter()
    configure_worker(parent_pid, settings.n_threads)
    calc = get_calculator(settings.calculator, device=settings.device)
    record["timings"]["load"] = time.perf_counter() - started
    relaxation = relax_into_record(
        atoms,
        calc,
        record,
        fmax=settings.fmax,
        max_steps=settings.max_steps,
        fix_symmetry=settings.fix_symmetry,
        **options,
    )
    return calc, relaxation


def build_teacher_rows(
    items: list[tuple[str, Atoms]],
    task: row_builder.Task,
    write: Callable[[Any, dict[str, Any], Any, dict[str, str]], None],
    settings,
    out,
    executor: Executor | None = None,
    **options,
) -> row_builder.BuildSummary:
    """:func:`~ase_cartnet.io.row_builder.build_rows` (``options``: ``retry_failed``,
    ``progress``) for a teacher pipeline: ``task`` (which starts with :func:`load_and_relax`)
    on every (source_id, Atoms) of ``items``, each record stored by ``write(db, record,
    settings, teacher)``, with the teacher ``settings.calculator`` described
    (:func:`~phonon_ref.calculators.teacher_info`) at the first finished row."""
    write_row = row_builder.teacher_row_writer(
        lambda: teacher_info(settings.calculator, load_here=executor is None),
        lambda db, record, teacher: write(db, record, settings, teacher),
    )
    return row_builder.build_rows(items, task, settings, write_row, out, executor, **options)
