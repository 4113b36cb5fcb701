"""DeepRelax as a one-shot pre-relaxer and ASE optimizer (an ``ase.optimize`` ``Dynamics``;
DeepRelax paper, section 4).

>>> with DeepRelax(atoms, trajectory="prerelax.traj") as opt:
...     trusted = opt.run()    # positions and cell replaced in place, one step
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
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, fields
from typing import IO, Any

import numpy as np
import torch
from ase import Atoms

from ase_cartnet.calculators.dynamics import ModelDynamics, unwrap_atoms
from ase_cartnet.canonical_cell import canonical_listing
from ase_cartnet.errors import InputError
from ase_cartnet.graph.neighbours import batch_graphs, closest_pairs
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
from ase_cartnet.validation import (
    MIN_INTERATOMIC_DISTANCE,
    as_atoms,
    like_input,
    prepare_items,
    validate_structure,
    warn_untrained_elements,
)

MIN_VOLUME_RATIO = 0.2
"""A predicted cell with det(L̂) below this fraction of the input volume (or not right-handed)
is rejected: the input cell is kept, with a warning, and the prediction is marked untrusted."""


@dataclass
class DeepRelaxUncertainty:
    """Uncertainties of one prediction (DeepRelax eqns 21–24).

    Attributes
    ----------
    global_uncertainty
        Û = Û_a + Û_e, Å² (eqn 24).
    aleatoric, epistemic
        Û_a (eqn 21), Û_e (eqn 23), Å².
    bond_index
        (E, 2) int, (i, j) of every periodic edge: atom i and the image of atom j at
        ``r_j + bond_shift @ cell``.
    bond_shift
        (E, 3) int cell offsets.
    bond_length
        (E,) predicted relaxed distance d̄, Å.
    bond_aleatoric
        (E,) mean_t exp(û_t), the local Laplace scale, Å.
    bond_epistemic
        (E,) std of the members' d̂_t, Å.
    bond_uncertainty
        (E,) sqrt(aleatoric² + epistemic²), Å.
    threshold
        Û below which the prediction counts as trusted (None: no threshold).
    trusted
        whether ``global_uncertainty < threshold`` (True without a threshold) and the
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
# prediction (shared by DeepRelax.run, relax_many, the CLI and the benchmarks)
# --------------------------------------------------------------------------------------------


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
    canonical: bool = True,
    progress: bool = False,
) -> list[DeepRelaxResult]:
    """Pre-relaxed copies of ``structures`` (inputs untouched; ``ase.Atoms``, ASE Filters or
    pymatgen Structures, each result in its input's type, Filters giving Atoms), in batches of
    ``batch_size``:
    ensemble forward pass, then the EDG solver on d̄ ± mean exp(û) with the mean lattice,
    started (``affine``) from the input's fractional coordinates in the predicted lattice
    (:func:`~ase_cartnet.models.deeprelax_solver.affine_start`), else from the input positions.

    ``canonical``: the model sees each crystal in its canonical listing
    (:mod:`ase_cartnet.canonical_cell`: Niggli basis, standard orientation, an origin that moves
    with the atoms, wrapped images, sorted atoms) and the prediction is carried back to the
    input's listing. The model's cell-offset encoding reads the listing, so without it another
    origin, periodic image or cell basis of the same crystal changes the answer (listing one
    atom of a rattled crystal at another image changed the predicted volume by up to 11 %).
    With it, permuting or rotating the input, listing other images or choosing another basis
    re-expresses the same prediction (to round-off), and translating the input by t gives the
    same relaxed crystal moved by t L⁻¹L̂: the cell deforms about the Cartesian origin, as in
    ASE's cell filters and the teacher relaxations the coordinates are scored against.

    Each structure goes through the model alone (the solver is batched): a batched matrix
    product rounds a structure's features differently with other rows beside it, and the
    solver's constant-step Adam amplifies a 1e-7 difference into several 0.01 Å; so a
    structure's answer never depends on its neighbours in a batch.

    ``recentre``: subtract each structure's mean displacement of the solve (solved − start).
    The hinge loss leaves the common translation free within the bounds exp(û) of the
    displacement edges, and Adam's constant steps let it drift by about the learning rate; on
    held-out pairs the drift, not the change of internal coordinates, made coordinates worse.

    ``symmetrize``: impose each input's space group on its prediction
    (:func:`ase_cartnet.symmetry.symmetrize_like`; a relaxation keeps the symmetry it starts
    with, the solver's small errors do not). Not in the paper: off here (the model's raw
    output), on by default in the :class:`DeepRelax` adapter and ``relax_many``.

    ``progress``: a tqdm progress bar over the structures (stderr).

    A prediction with two atoms closer than ``MIN_INTERATOMIC_DISTANCE`` (0.5 Å) is refused
    with a warning: the result is the unchanged input, marked untrusted."""
    from ase_cartnet.graph.deeprelax import deeprelax_graph

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    inputs = list(structures)
    structures = [unwrap_atoms(a) for a in inputs]
    for k, atoms in enumerate(structures):
        _check(atoms, k if len(structures) > 1 else None)
    warn_untrained_elements(
        [z for a in structures for z in a.numbers],
        elements,
        "elements not in the DeepRelax training data: {names}; expect a poor prediction",
    )
    from tqdm.auto import tqdm

    dtype = next(ensemble.parameters()).dtype
    results: list[DeepRelaxResult] = []
    bar = tqdm(total=len(structures), unit="structure", desc="DeepRelax", disable=not progress)
    for first in range(0, len(structures), batch_size):
        chunk = structures[first : first + batch_size]
        listings = [canonical_listing(a) if canonical else None for a in chunk]
        seen = [a if c is None else c.atoms for a, c in zip(chunk, listings, strict=True)]
        graphs = [deeprelax_graph(a, ensemble.config, dtype) for a in seen]
        with torch.no_grad():
            out = _concatenate([ensemble(batch_graphs([g])) for g in graphs])
        batch = batch_graphs(graphs)
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
        for g, result in enumerate(_split(chunk, seen, listings, batch, out, positions, threshold)):
            if symmetrize:
                result.atoms = symmetrize_like(result.atoms, chunk[g])[0]
            _refuse_overlaps(result, chunk[g], first + g)
            result.atoms = like_input(result.atoms, inputs[first + g])
            results.append(result)
        bar.update(len(chunk))
    bar.close()
    return results


def _concatenate(outputs: list[EnsembleOutput]) -> EnsembleOutput:
    """The outputs of structures run one at a time, as if they had been one batch."""
    return EnsembleOutput(
        **{f.name: torch.cat([getattr(o, f.name) for o in outputs]) for f in fields(EnsembleOutput)}
    )


def _refuse_overlaps(result: DeepRelaxResult, atoms: Atoms, index: int) -> None:
    """Replace a prediction that puts atoms on top of each other by the input (untrusted)."""
    new = result.atoms
    close = closest_pairs(new.positions, new.cell[:], True, MIN_INTERATOMIC_DISTANCE)
    if not len(close):
        return
    i, j, d = close[0]
    warnings.warn(
        f"DeepRelax put atoms {int(i)} and {int(j)} of structure {index} "
        f"({atoms.get_chemical_formula()}) {d:.2f} Å apart (< {MIN_INTERATOMIC_DISTANCE} Å); "
        "the input structure is kept and the prediction is not trusted",
        stacklevel=4,
    )
    kept = atoms.copy()
    kept.calc = None
    result.atoms = kept
    result.uncertainty.trusted = False


def _split(chunk, seen, listings, batch, out: EnsembleOutput, positions, threshold):
    """One :class:`DeepRelaxResult` per structure, in the input's listing."""
    results = []
    edge_graph = batch.batch[batch.edge_index[1]].numpy()
    ptr = batch.ptr.numpy()
    pos = positions.double().numpy()
    lattices = out.lattice.double().numpy()
    for g, (atoms, model_atoms, listing) in enumerate(zip(chunk, seen, listings, strict=True)):
        sel = torch.as_tensor(edge_graph == g)
        cell = lattices[g]
        old_volume = abs(float(np.linalg.det(model_atoms.cell[:])))
        cell_ok = float(np.linalg.det(cell)) > MIN_VOLUME_RATIO * old_volume
        if not cell_ok:
            warnings.warn(
                f"DeepRelax predicted a degenerate or left-handed cell for "
                f"{atoms.get_chemical_formula()}; the input cell is kept",
                stacklevel=4,
            )
            cell = np.asarray(model_atoms.cell[:], dtype=np.float64)
        solved = pos[ptr[g] : ptr[g + 1]]
        index = batch.edge_index[:, sel].numpy().T[:, ::-1] - ptr[g]  # (i, j) rows
        shift = np.rint(batch.cell_shift[sel].numpy()).astype(np.int64)
        new = atoms.copy()
        new.calc = None
        if listing is None:
            new.set_cell(cell, scale_atoms=False)
            new.set_positions(solved)
        else:
            new.set_cell(listing.cell_to_input(cell), scale_atoms=False)
            new.set_positions(listing.positions_to_input(solved, cell))
            index, shift = listing.edges_to_input(index, shift)
        total = float(out.global_[g])
        b_alea = out.scale[sel].double().numpy()
        b_epi = np.sqrt(out.variance[sel].double().numpy())
        uncertainty = DeepRelaxUncertainty(
            global_uncertainty=total,
            aleatoric=float(out.aleatoric[g]),
            epistemic=float(out.epistemic[g]),
            bond_index=np.ascontiguousarray(index),
            bond_shift=shift,
            bond_length=out.distance[sel].double().numpy(),
            bond_aleatoric=b_alea,
            bond_epistemic=b_epi,
            bond_uncertainty=np.sqrt(b_alea**2 + b_epi**2),
            threshold=threshold,
            trusted=bool(cell_ok and (threshold is None or total < threshold)),
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
# the ASE optimizer
# --------------------------------------------------------------------------------------------


class DeepRelax(ModelDynamics):
    """One-shot pre-relaxation of a crystal as an ASE optimizer (``ase.optimize`` ``Dynamics``).

    Used like ``BFGS``: ``with DeepRelax(atoms, trajectory="pre.traj") as opt: opt.run()``;
    ``attach``, ``irun``, ``logfile``, ``trajectory`` (a file name or an open ``Trajectory``)
    and Filters behave as there. There are no forces: the one step predicts the relaxed
    structure and the run has converged; a second ``run()`` changes nothing.

    Parameters
    ----------
    atoms
        an ``ase.Atoms`` (3D periodic), a pymatgen ``Structure`` (changed in place like an
        Atoms) or an ASE Filter around one (``FrechetCellFilter``, ``UnitCellFilter``, …):
        positions *and* cell of the Atoms are always predicted.
    model
        None (the shipped ensemble, offline), a checkpoint path (an exported ensemble or
        one replicate from ``ase-cartnet train deeprelax``), or a ``DeepRelaxEnsemble``.
    trajectory
        a file name or an open ASE ``Trajectory``: the initial and predicted frames.
    logfile
        "-" (stdout), None (silent), a file name (appended) or an open text stream.
    append_trajectory, loginterval
        as in ASE's ``Dynamics``.
    threshold
        Å²; the prediction is trusted when ``global_uncertainty < threshold``. None
        takes the checkpoint's value (the shipped card's: a percentile of the held-out
        uncertainty).
    steps, lr
        EDG-solver settings (official: 100 Adam steps at 0.1 Å), not optimizer
        steps.
    symmetrize
        impose the input's space group on the prediction (default; see
        :func:`predict`).
    dtype
        torch dtype of the model and solver (float32 default).

    After the step, ``uncertainty`` holds a :class:`DeepRelaxUncertainty` and ``trusted`` says
    whether to use the prediction.
    """

    def __init__(
        self,
        atoms: Any,
        model: Any = None,
        trajectory: Any = None,
        logfile: str | os.PathLike | IO | None = "-",
        append_trajectory: bool = False,
        *,
        loginterval: int = 1,
        threshold: float | None = None,
        steps: int = DEFAULT_STEPS,
        lr: float = DEFAULT_LR,
        symmetrize: bool = True,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        atoms = self._take_input(atoms)  # target: the Atoms whose positions and cell are predicted
        _check(self.target)
        self.ensemble, self.metadata = _resolve_model(model, dtype)
        super().__init__(atoms, trajectory, logfile, append_trajectory, loginterval)
        self.threshold = (
            threshold if threshold is not None else self.metadata.get("uncertainty_threshold")
        )
        self.solver_steps, self.solver_lr = steps, lr
        self.symmetrize = bool(symmetrize)
        self.uncertainty: DeepRelaxUncertainty | None = None

    @property
    def trusted(self) -> bool:
        """Whether the step has been taken and its prediction is trusted."""
        return self.uncertainty is not None and self.uncertainty.trusted

    def todict(self) -> dict[str, Any]:
        return {
            **super().todict(),
            "threshold": self.threshold,
            "solver_steps": self.solver_steps,
            "solver_lr": self.solver_lr,
            "symmetrize": self.symmetrize,
        }

    def step(self) -> None:
        """Predict and apply the relaxed structure (positions and cell, in place; constraints
        applied by ASE as usual)."""
        (result,) = predict(
            self.ensemble,
            [self.target],
            steps=self.solver_steps,
            lr=self.solver_lr,
            threshold=self.threshold,
            elements=self.metadata.get("elements"),
            symmetrize=self.symmetrize,
        )
        self.target.set_cell(result.atoms.cell[:], scale_atoms=False)
        self.target.set_positions(result.atoms.positions)
        self.uncertainty = result.uncertainty
        self._write_back()

    def converged(self) -> bool:
        """True once the one step has been taken (there is nothing to iterate)."""
        return self.nsteps >= 1

    def _outcome(self) -> bool:
        """What ``irun`` yields before the step (False) and after it, and ``run`` returns:
        ``trusted`` (the global uncertainty is below the threshold and the predicted cell was
        accepted). The run has converged after its one step; a second ``run()`` changes
        nothing."""
        return self.trusted

    def log(self, *args: Any) -> None:
        atoms = self.target
        stamp = time.strftime("%H:%M:%S", time.localtime())
        if self.nsteps == 0:
            self.logfile.write(
                f"{' ' * 11} {'Step':>4} {'Time':>8} {'V (Å³)':>10} {'U (Å²)':>10}  "
                f"{atoms.get_chemical_formula()} ({len(atoms)} atoms)\n"
            )
            self.logfile.write(f"DeepRelax: {0:4d} {stamp:>8} {atoms.get_volume():10.3f}\n")
            return
        u = self.uncertainty
        shown = "none" if u.threshold is None else f"{u.threshold:.3g}"
        self.logfile.write(
            f"DeepRelax: {self.nsteps:4d} {stamp:>8} {atoms.get_volume():10.3f} "
            f"{u.global_uncertainty:10.3g}  (aleatoric {u.aleatoric:.3g}, epistemic "
            f"{u.epistemic:.3g}; threshold {shown}): {'trusted' if u.trusted else 'NOT trusted'}"
            "\n"
        )

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
        errors: str = "raise",
        progress: bool = False,
    ) -> list[DeepRelaxResult | None]:
        """Pre-relax many structures for screening: one :class:`DeepRelaxResult` per input, in
        order, whose ``atoms`` is a relaxed *copy* in the input's type (``ase.Atoms``, or a
        pymatgen ``Structure`` for a Structure; Filters give Atoms); the inputs are untouched.
        A structure's result does not depend on the others. Structures go through the solver
        ``batch_size`` at a time; with an ``executor`` (``concurrent.futures`` or dask's
        ``client.get_executor()``) each batch is one task, and each worker loads ``model``
        (pass a checkpoint path or None there). ``errors``: a structure DeepRelax cannot use
        raises an ``InputError`` naming its index ("raise"), or is skipped with a
        ``BatchItemWarning`` naming it and None in its place ("skip"). ``progress``: a tqdm
        bar (without an executor)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        inputs = list(atoms_list)

        def prepare(k: int) -> Atoms:
            item = inputs[k]
            atoms = as_atoms(item) if _is_structure(item) else unwrap_atoms(item)
            _check(atoms)
            return atoms

        ready = prepare_items(
            len(inputs), prepare, errors, lambda k: f"structure {k}" if len(inputs) > 1 else ""
        )
        order = sorted(ready)
        structures = [ready[k] for k in order]
        settings = {
            "batch_size": batch_size,
            "steps": steps,
            "lr": lr,
            "threshold": threshold,
            "symmetrize": symmetrize,
        }
        if not structures:
            predicted = []
        elif executor is None:
            ensemble, metadata = _resolve_model(model, dtype)
            if threshold is None:
                settings["threshold"] = metadata.get("uncertainty_threshold")
            predicted = predict(ensemble, structures, elements=metadata.get("elements"), **settings)
        else:
            futures = [
                executor.submit(
                    _relax_chunk,
                    structures[s : s + batch_size],
                    model,
                    {**settings, "dtype": dtype},
                )
                for s in range(0, len(structures), batch_size)
            ]
            predicted = [r for f in futures for r in f.result()]
        out: list[DeepRelaxResult | None] = [None] * len(inputs)
        for k, result in zip(order, predicted, strict=True):
            result.atoms = like_input(result.atoms, inputs[k])
            out[k] = result
        return out


def _is_structure(item: Any) -> bool:
    """A pymatgen object (converted by ``as_atoms``) rather than Atoms or an ASE Filter."""
    return (type(item).__module__ or "").startswith("pymatgen.")
