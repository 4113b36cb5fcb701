"""DeepRelax as a one-shot pre-relaxer shaped like an ASE optimizer (DeepRelax paper, section 4).

>>> opt = DeepRelax(atoms, trajectory="prerelax.traj")
>>> trusted = opt.run()        # positions and cell replaced in place, one shot
>>> opt.uncertainty.global_uncertainty, opt.uncertainty.bond_uncertainty

The ensemble predicts the relaxed interatomic distances (periodic edges), the distances from
each atom's initial position to every atom's relaxed position (displacement edges) and the
relaxed lattice, each distance with a Laplace scale; the Euclidean distance-geometry solver
(:mod:`ase_cartnet.models.deeprelax_solver`) turns them into positions. No energies or forces
are computed: the result is a starting point for a real relaxation (VASP, an ML potential), not
a relaxed structure. The adapter (:class:`DeepRelax`, ``relax_many``, ``ase-cartnet relax``)
imposes the input's space group on the prediction by default (``symmetrize=True``; the paper's
raw output with ``symmetrize=False``): a relaxation keeps the symmetry it starts from, and the
unsymmetrized prediction costs a follow-up BFGS more force calls than the unrelaxed input
(README, "DeepRelax"). The shipped weights were trained on synthetic distortions
of MP-20 structures and fine-tuned on CHGNet relaxations of element-substituted MP-20 prototypes
(see their model card), not on DFT relaxation trajectories; they are out of their depth for
molecules, surfaces, amorphous or very large cells and elements not in MP-20.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from ase import Atoms

from ase_cartnet.errors import InputError
from ase_cartnet.graph.neighbours import batch_graphs
from ase_cartnet.models.deeprelax import (
    DeepRelaxEnsemble,
    DeepRelaxModel,
    EnsembleOutput,
)
from ase_cartnet.models.deeprelax_solver import (
    DEFAULT_LR,
    DEFAULT_STEPS,
    affine_start,
    solve_positions,
)
from ase_cartnet.symmetry import symmetrize_like
from ase_cartnet.validation import validate_structure, warn_untrained_elements

MIN_VOLUME_RATIO = 0.2
"""A predicted cell with det(L̂) below this fraction of the input volume (or not right-handed)
is rejected: the input cell is kept, with a warning, and the prediction is marked untrusted."""


@dataclass
class DeepRelaxUncertainty:
    """Uncertainties of one prediction (DeepRelax eqns 21–24).

    Attributes:
        global_uncertainty: Û = Û_a + Û_e, Å² (eqn 24).
        aleatoric, epistemic: Û_a (eqn 21), Û_e (eqn 23), Å².
        bond_index: (E, 2) int, (i, j) of every periodic edge: atom i and the image of atom j at
            ``r_j + bond_shift @ cell``.
        bond_shift: (E, 3) int cell offsets.
        bond_length: (E,) predicted relaxed distance d̄, Å.
        bond_aleatoric: (E,) mean_t exp(û_t), the local Laplace scale, Å.
        bond_epistemic: (E,) std of the members' d̂_t, Å.
        bond_uncertainty: (E,) sqrt(aleatoric² + epistemic²), Å.
        threshold: Û below which the prediction counts as trusted (None: no threshold).
        trusted: whether ``global_uncertainty < threshold`` (True without a threshold) and the
            predicted cell was accepted.
    """

    global_uncertainty: float
    aleatoric: float
    epistemic: float
    bond_index: np.ndarray
    bond_shift: np.ndarray
    bond_length: np.ndarray
    bond_aleatoric: np.ndarray
    bond_epistemic: np.ndarray
    bond_uncertainty: np.ndarray
    threshold: float | None
    trusted: bool


@dataclass
class DeepRelaxResult:
    """A pre-relaxed copy of an input structure and its uncertainty."""

    atoms: Atoms
    uncertainty: DeepRelaxUncertainty


# --------------------------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------------------------


def load_deeprelax(
    path: str | os.PathLike | None = None, *, dtype: torch.dtype = torch.float32
) -> tuple[DeepRelaxEnsemble, dict[str, Any]]:
    """A DeepRelax ensemble from an ase-cartnet checkpoint (an exported ensemble, or one trained
    replicate, which becomes an ensemble of one), in eval mode; None loads the shipped default.
    Returns the ensemble and the checkpoint metadata."""
    from ase_cartnet.io.checkpoint import load_model
    from ase_cartnet.weights import shipped

    loaded = load_model(shipped("deeprelax") if path is None else path, "deeprelax", dtype=dtype)
    model = loaded.model
    if isinstance(model, DeepRelaxModel):
        model = DeepRelaxEnsemble.from_members([model]).to(dtype=dtype).eval()
    return model, loaded.metadata


def _resolve_model(model, dtype: torch.dtype) -> tuple[DeepRelaxEnsemble, dict[str, Any]]:
    if model is None or isinstance(model, (str, os.PathLike)):
        return load_deeprelax(model, dtype=dtype)
    if isinstance(model, DeepRelaxEnsemble):
        return model.to(dtype=dtype).eval(), {}
    if isinstance(model, DeepRelaxModel):
        return DeepRelaxEnsemble.from_members([model]).to(dtype=dtype).eval(), {}
    raise InputError(
        "model must be None (shipped weights), a checkpoint path, a DeepRelaxEnsemble or a "
        f"DeepRelaxModel; got {type(model).__name__}"
    )


# --------------------------------------------------------------------------------------------
# prediction (shared by DeepRelax.run, relax_many, the CLI and the benchmark)
# --------------------------------------------------------------------------------------------


def _unwrap(atoms: Any) -> Atoms:
    """The Atoms behind an ASE Filter (FrechetCellFilter, UnitCellFilter, …) or Atoms itself."""
    if isinstance(atoms, Atoms):
        return atoms
    inner = getattr(atoms, "atoms", None)
    if isinstance(inner, Atoms):
        return inner
    raise InputError(
        f"expected an ase.Atoms or an ASE Filter around one, got {type(atoms).__name__}"
    )


def _check(atoms: Atoms, index: int | None = None) -> None:
    where = "" if index is None else f"structure {index}: "
    if not np.asarray(atoms.pbc, dtype=bool).all():
        raise InputError(
            f"{where}DeepRelax needs a 3D crystal (periodic along a, b and c); got "
            f"pbc={np.asarray(atoms.pbc).tolist()} (molecules and slabs are not supported)"
        )
    try:
        validate_structure(atoms, require_pbc=True)
    except InputError as exc:
        raise InputError(f"{where}{exc}") from None


def predict(
    ensemble: DeepRelaxEnsemble,
    structures: Sequence[Atoms],
    *,
    batch_size: int = 16,
    steps: int = DEFAULT_STEPS,
    lr: float = DEFAULT_LR,
    threshold: float | None = None,
    elements: Sequence[int] | None = None,
    decay: bool = False,
    affine: bool = True,
    recentre: bool = True,
    symmetrize: bool = False,
) -> list[DeepRelaxResult]:
    """Pre-relaxed copies of ``structures`` (inputs untouched), in batches of ``batch_size``:
    ensemble forward pass, then the EDG solver on d̄ ± mean exp(û) with the mean lattice,
    started (``affine``) from the input's fractional coordinates in the predicted lattice
    (:func:`~ase_cartnet.models.deeprelax_solver.affine_start`), else from the input positions.

    ``recentre``: subtract each structure's mean displacement of the solve (solved − start).
    The hinge loss leaves the common translation free within the bounds exp(û) of the
    displacement edges, and Adam's constant steps let it drift by about the learning rate; on
    held-out pairs the drift, not the change of internal coordinates, made coordinates worse.

    ``symmetrize``: impose each input's space group on its prediction
    (:func:`ase_cartnet.symmetry.symmetrize_like`; a relaxation keeps the symmetry it starts
    with, the solver's small errors do not). Not in the paper: off here (the model's raw
    output), on by default in the :class:`DeepRelax` adapter and ``relax_many``."""
    from ase_cartnet.graph.deeprelax import deeprelax_graph

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    structures = [_unwrap(a) for a in structures]
    for k, atoms in enumerate(structures):
        _check(atoms, k if len(structures) > 1 else None)
    warn_untrained_elements(
        [z for a in structures for z in a.numbers],
        elements,
        "elements not in the DeepRelax training data: {names}; expect a poor prediction",
    )
    dtype = next(ensemble.parameters()).dtype
    results: list[DeepRelaxResult] = []
    for start in range(0, len(structures), batch_size):
        chunk = structures[start : start + batch_size]
        graphs = [deeprelax_graph(a, ensemble.config, dtype) for a in chunk]
        batch = batch_graphs(graphs)
        with torch.no_grad():
            out = ensemble(batch)
        start = affine_start(batch.pos, batch.cell, out.lattice, batch.batch) if affine else None
        solved = solve_positions(
            batch.pos,
            out.lattice,
            batch.edge_index,
            batch.cell_shift,
            out.distance,
            out.scale,
            batch.disp_index,
            out.disp_distance,
            out.disp_scale,
            batch.batch,
            start=start,
            steps=steps,
            lr=lr,
            decay=decay,
        )
        positions = solved.positions
        if recentre:  # remove the solve's net drift (weakly anchored, see the docstring)
            origin = batch.pos if start is None else start
            drift = positions.new_zeros((len(chunk), 3)).index_add_(
                0, batch.batch, positions - origin
            ) / torch.bincount(batch.batch).unsqueeze(-1).to(positions.dtype)
            positions = positions - drift.index_select(0, batch.batch)
        chunk_results = _split(chunk, batch, out, positions, threshold)
        if symmetrize:
            for result, atoms in zip(chunk_results, chunk, strict=True):
                result.atoms = symmetrize_like(result.atoms, atoms)[0]
        results.extend(chunk_results)
    return results


def _split(chunk, batch, out: EnsembleOutput, positions, threshold) -> list[DeepRelaxResult]:
    results = []
    edge_graph = batch.batch[batch.edge_index[1]].numpy()
    ptr = batch.ptr.numpy()
    pos = positions.double().numpy()
    lattices = out.lattice.double().numpy()
    for g, atoms in enumerate(chunk):
        sel = edge_graph == g
        cell = lattices[g]
        old_volume = abs(float(np.linalg.det(atoms.cell[:])))
        cell_ok = float(np.linalg.det(cell)) > MIN_VOLUME_RATIO * old_volume
        new = atoms.copy()
        new.calc = None
        if cell_ok:
            new.set_cell(cell, scale_atoms=False)
        else:
            warnings.warn(
                f"DeepRelax predicted a degenerate or left-handed cell for "
                f"{atoms.get_chemical_formula()}; the input cell is kept",
                stacklevel=4,
            )
        new.set_positions(pos[ptr[g] : ptr[g + 1]])
        aleatoric = float(out.aleatoric[g])
        epistemic = float(out.epistemic[g])
        total = float(out.global_[g])
        b_alea = out.scale[torch.as_tensor(sel)].double().numpy()
        b_epi = np.sqrt(out.variance[torch.as_tensor(sel)].double().numpy())
        index = batch.edge_index[:, torch.as_tensor(sel)].numpy() - ptr[g]
        trusted = cell_ok and (threshold is None or total < threshold)
        uncertainty = DeepRelaxUncertainty(
            global_uncertainty=total,
            aleatoric=aleatoric,
            epistemic=epistemic,
            bond_index=np.stack([index[1], index[0]], axis=1),
            bond_shift=np.rint(batch.cell_shift[torch.as_tensor(sel)].numpy()).astype(np.int64),
            bond_length=out.distance[torch.as_tensor(sel)].double().numpy(),
            bond_aleatoric=b_alea,
            bond_epistemic=b_epi,
            bond_uncertainty=np.sqrt(b_alea**2 + b_epi**2),
            threshold=threshold,
            trusted=bool(trusted),
        )
        results.append(DeepRelaxResult(new, uncertainty))
    return results


def _relax_chunk(structures, model, settings) -> list[DeepRelaxResult]:
    """Worker body of :meth:`DeepRelax.relax_many` with an executor (module level: picklable)."""
    torch.set_num_threads(1)
    ensemble, metadata = _resolve_model(model, settings.pop("dtype"))
    if settings.get("threshold") is None:
        settings["threshold"] = metadata.get("uncertainty_threshold")
    settings.setdefault("elements", metadata.get("elements"))
    return predict(ensemble, structures, **settings)


# --------------------------------------------------------------------------------------------
# the optimizer-like adapter
# --------------------------------------------------------------------------------------------


class DeepRelax:
    """One-shot pre-relaxation of a crystal, used like an ASE optimizer.

    Parameters:
        atoms: an ``ase.Atoms`` (3D periodic) or an ASE Filter around one (``FrechetCellFilter``,
            ``UnitCellFilter``, …), which is unwrapped: positions *and* cell are always predicted.
        model: None (the shipped ensemble, offline), a checkpoint path (an exported ensemble or
            one replicate from ``ase-cartnet train deeprelax``), or a ``DeepRelaxEnsemble``.
        trajectory: a file name: an ASE trajectory with the initial and the predicted frame.
        logfile: "-" (stdout), None (silent), a file name (appended) or an open text stream.
        threshold: Å²; ``run()`` returns ``global_uncertainty < threshold``. None takes the
            checkpoint's value (the shipped card's: a percentile of the held-out uncertainty).
        steps, lr: EDG-solver settings (official: 100 Adam steps at 0.1 Å).
        symmetrize: impose the input's space group on the prediction (default; see
            :func:`predict`).
        dtype: torch dtype of the model and solver (float32 default).

    After :meth:`run`, ``uncertainty`` holds a :class:`DeepRelaxUncertainty`.
    """

    def __init__(
        self,
        atoms: Any,
        model: Any = None,
        trajectory: str | os.PathLike | None = None,
        logfile: str | os.PathLike | IO | None = "-",
        *,
        threshold: float | None = None,
        steps: int = DEFAULT_STEPS,
        lr: float = DEFAULT_LR,
        symmetrize: bool = True,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.atoms = _unwrap(atoms)
        _check(self.atoms)
        self.ensemble, self.metadata = _resolve_model(model, dtype)
        self.threshold = (
            threshold if threshold is not None else self.metadata.get("uncertainty_threshold")
        )
        self.trajectory = None if trajectory is None else Path(trajectory)
        self.logfile = logfile
        self.steps, self.lr = steps, lr
        self.symmetrize = bool(symmetrize)
        self.uncertainty: DeepRelaxUncertainty | None = None
        self.nsteps = 0

    def _log(self, message: str) -> None:
        if self.logfile is None:
            return
        if self.logfile == "-":
            print(message, file=sys.stdout, flush=True)
        elif hasattr(self.logfile, "write"):
            self.logfile.write(message + "\n")
            self.logfile.flush()
        else:
            with open(self.logfile, "a") as handle:
                handle.write(message + "\n")

    def run(self, fmax: float | None = None, steps: int | None = None) -> bool:
        """Predict and apply the relaxed structure (positions and cell, in place, constraints
        applied by ASE as usual). ``fmax`` and ``steps`` are accepted for drop-in
        compatibility with ASE optimizers and ignored (there is one step and no force).
        Returns whether the global uncertainty is below the threshold."""
        started = time.perf_counter()
        initial = self.atoms.copy()
        (result,) = predict(
            self.ensemble,
            [self.atoms],
            steps=self.steps,
            lr=self.lr,
            threshold=self.threshold,
            elements=self.metadata.get("elements"),
            symmetrize=self.symmetrize,
        )
        self.atoms.set_cell(result.atoms.cell[:], scale_atoms=False)
        self.atoms.set_positions(result.atoms.positions)
        self.uncertainty = result.uncertainty
        self.nsteps = 1
        if self.trajectory is not None:
            from ase.io import Trajectory

            with Trajectory(self.trajectory, "w") as traj:
                initial.calc = None
                traj.write(initial)
                frame = self.atoms.copy()
                frame.calc = None
                traj.write(frame)
        u = self.uncertainty
        shown = "none" if u.threshold is None else f"{u.threshold:.3g}"
        self._log(
            f"DeepRelax: {self.atoms.get_chemical_formula()} ({len(self.atoms)} atoms), "
            f"U {u.global_uncertainty:.3g} Å² (aleatoric {u.aleatoric:.3g}, epistemic "
            f"{u.epistemic:.3g}), threshold {shown}: {'trusted' if u.trusted else 'NOT trusted'}"
            f", {time.perf_counter() - started:.2f} s"
        )
        return u.trusted

    @classmethod
    def relax_many(
        cls,
        atoms_list: Sequence[Any],
        batch_size: int = 16,
        executor: Executor | None = None,
        *,
        model: Any = None,
        threshold: float | None = None,
        steps: int = DEFAULT_STEPS,
        lr: float = DEFAULT_LR,
        symmetrize: bool = True,
        dtype: torch.dtype = torch.float32,
    ) -> list[DeepRelaxResult]:
        """Pre-relax many structures for screening: returns one :class:`DeepRelaxResult` (a
        relaxed *copy*, the inputs are untouched) per input, in order. Structures go through
        the model and solver ``batch_size`` at a time; with an ``executor``
        (``concurrent.futures`` or dask's ``client.get_executor()``) each batch is one task,
        and each worker loads ``model`` (pass a checkpoint path or None there)."""
        structures = [_unwrap(a) for a in atoms_list]
        settings = {
            "batch_size": batch_size,
            "steps": steps,
            "lr": lr,
            "threshold": threshold,
            "symmetrize": symmetrize,
        }
        if executor is None:
            ensemble, metadata = _resolve_model(model, dtype)
            if threshold is None:
                settings["threshold"] = metadata.get("uncertainty_threshold")
            return predict(ensemble, structures, elements=metadata.get("elements"), **settings)
        for k, atoms in enumerate(structures):  # fail early, in the caller
            _check(atoms, k)
        futures = [
            executor.submit(
                _relax_chunk, structures[s : s + batch_size], model, {**settings, "dtype": dtype}
            )
            for s in range(0, len(structures), batch_size)
        ]
        return [r for f in futures for r in f.result()]
