"""The ASE ``Dynamics`` base of the optimizers whose steps a model predicts, without forces
(:class:`~ase_cartnet.calculators.deeprelax.DeepRelax`,
:class:`~ase_cartnet.calculators.empnn_lattice.EMPNNLattice`)."""

from __future__ import annotations

import os
from typing import IO, Any

from ase import Atoms
from ase.optimize.optimize import DEFAULT_MAX_STEPS, Dynamics

from ase_cartnet.errors import InputError
from ase_cartnet.validation import as_atoms, is_pymatgen, write_back


def unwrap_atoms(atoms: Any) -> Atoms:
    """The Atoms behind an ASE Filter (FrechetCellFilter, UnitCellFilter, …), Atoms itself, or
    a pymatgen Structure converted (:func:`~ase_cartnet.validation.as_atoms`)."""
    if isinstance(atoms, Atoms):
        return atoms
    if is_pymatgen(atoms):
        return as_atoms(atoms)
    inner = getattr(atoms, "atoms", None)
    if isinstance(inner, Atoms):
        return inner
    raise InputError(
        f"expected an ase.Atoms or an ASE Filter around one, got {type(atoms).__name__} "
        "or a pymatgen Structure"
    )


class ModelDynamics(Dynamics):
    """An ASE optimizer whose steps a model predicts, with no forces: used like ``BFGS``
    (``attach``, ``irun``, ``run``, ``logfile``, ``trajectory`` as a file name or an open
    ``Trajectory``, ``with`` blocks, Filters).

    A subclass's ``__init__`` calls :meth:`_take_input`, checks ``self.target`` and loads its
    model, and only then this ``__init__``, which opens the log and trajectory files (a bad
    input leaves them untouched). It gives ``step`` (changing ``self.target``; then
    :meth:`_write_back`), ``converged``, ``log`` and :meth:`_outcome`.
    """

    def __init__(
        self,
        atoms: Any,
        trajectory: Any,
        logfile: str | os.PathLike | IO | None,
        append_trajectory: bool,
        loginterval: int,
    ) -> None:
        super().__init__(
            atoms,
            logfile=logfile,
            trajectory=trajectory,
            append_trajectory=append_trajectory,
            loginterval=loginterval,
        )

    def _take_input(self, atoms: Any) -> Any:
        """Set ``structure`` (a pymatgen input, changed in place after every step; else None)
        and ``target`` (the Atoms the steps change, behind any Filter); returns what the
        ``Dynamics`` runs on (a pymatgen input converted to Atoms)."""
        self.structure = atoms if is_pymatgen(atoms) else None
        if self.structure is not None:
            atoms = as_atoms(atoms)
        self.target = unwrap_atoms(atoms)
        return atoms

    def _write_back(self) -> None:
        """Carry ``target`` over to a pymatgen input."""
        if self.structure is not None:
            write_back(self.structure, self.target)

    def _outcome(self) -> bool:
        """What ``irun`` yields and ``run`` returns: whether the run has converged."""
        return self.converged()

    def todict(self) -> dict[str, Any]:
        return {"type": "optimization", "optimizer": type(self).__name__}

    def irun(self, fmax: float | None = None, steps: int = DEFAULT_MAX_STEPS):
        """Run as a generator, like ``Optimizer.irun``, yielding :meth:`_outcome` before the
        first step and after each; ``fmax`` is accepted and has no effect (no forces are
        computed); ``steps`` is the most steps to take now, as in ASE (0 takes none)."""
        self.max_steps = self.nsteps + steps
        if self.nsteps == 0:
            self.log()
            if self.trajectory is None or self._traj_is_empty():
                self.call_observers()
        yield self._outcome()
        while not self.converged() and self.nsteps < self.max_steps:
            self.step()
            self.nsteps += 1
            self.log()
            self.call_observers()
            yield self._outcome()

    def run(self, fmax: float | None = None, steps: int = DEFAULT_MAX_STEPS) -> bool:
        """:meth:`irun` to its end; returns its last value (:meth:`_outcome`)."""
        return list(self.irun(fmax=fmax, steps=steps))[-1]
