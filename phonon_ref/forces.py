"""Forces on a list of structures from an ASE calculator, in-process or on any Executor."""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from concurrent.futures import Executor

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator
from numpy.typing import NDArray
from tqdm.auto import tqdm

from ase_cartnet.errors import InputError
from phonon_ref.calculators import configure_worker, forces_only, get_calculator

WORKER_THREADS = 1
"""Torch/BLAS threads per worker *process* (workers share the machine's cores)."""


def _forces(calc: BaseCalculator, atoms: Atoms) -> NDArray[np.float64]:
    atoms = atoms.copy()
    atoms.calc = calc
    with forces_only(calc):
        try:
            forces = np.array(atoms.get_forces(), dtype=np.float64)
        except NotImplementedError as exc:  # e.g. EMT on an element it has no potential for
            raise InputError(
                f"{type(calc).__name__} cannot compute the forces of "
                f"{atoms.get_chemical_formula()}: {exc}; choose another calculator"
            ) from exc
    if forces.shape != (len(atoms), 3) or not np.all(np.isfinite(forces)):
        raise RuntimeError(f"the calculator returned invalid forces (shape {forces.shape})")
    return forces


def forces_task(
    calculator: str | BaseCalculator,
    atoms: Atoms,
    parent_pid: int,
    n_threads: int | None = WORKER_THREADS,
) -> NDArray[np.float64]:
    """One force call as a picklable task: (n, 3) eV/Å.

    In a worker process the thread count is limited first, and a named calculator is loaded
    once per worker and reused. A calculator object is copied, so that threads of one process
    never share its mutable state.
    """
    configure_worker(parent_pid, n_threads)
    calc = get_calculator(calculator) if isinstance(calculator, str) else copy.deepcopy(calculator)
    return _forces(calc, atoms)


def compute_forces(
    structures: Sequence[Atoms],
    calculator: str | BaseCalculator,
    executor: Executor | None = None,
    progress: bool = True,
    desc: str = "displaced supercells",
) -> NDArray[np.float64]:
    """Forces of every structure, shape (k, n, 3) in eV/Å (all structures have n atoms).

    ``executor`` is any :class:`concurrent.futures.Executor` (a process or thread pool,
    ``dask.distributed.Client.get_executor()``); ``None`` runs here, one after another. With
    process or dask workers pass the calculator by name (``"chgnet"``), so each worker loads
    the model once instead of receiving a pickled copy with every task.
    """
    if not structures:
        return np.zeros((0, 0, 3))
    bar = tqdm(total=len(structures), desc=desc, disable=not progress, leave=False)
    try:
        if executor is None:
            calc = get_calculator(calculator)
            out = []
            for atoms in structures:
                out.append(_forces(calc, atoms))
                bar.update()
        else:
            futures = [
                executor.submit(forces_task, calculator, atoms, os.getpid()) for atoms in structures
            ]
            out = []
            for fut in futures:
                out.append(fut.result())
                bar.update()
    finally:
        bar.close()
    shapes = {f.shape for f in out}
    if len(shapes) != 1:
        raise InputError(f"structures of different sizes were given: {sorted(shapes)}")
    return np.stack(out)
