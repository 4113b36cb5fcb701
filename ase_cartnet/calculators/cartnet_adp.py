"""ASE calculator for CartNet anisotropic displacement parameters (thermal ellipsoids)."""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import Executor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from ase_cartnet.adp import u_cart_to_u_cif, u_equiv
from ase_cartnet.disorder import DisorderPlan, check_policy, disorder_plan, overlap_message
from ase_cartnet.errors import ExtrapolationWarning, InputError
from ase_cartnet.graph.neighbours import atoms_to_graph, batch_graphs
from ase_cartnet.hydrogen import (
    HYDROGEN_POLICIES,
    check_riding_parents,
    riding_hydrogen_adps,
)
from ase_cartnet.io.checkpoint import load_model, trained_temperatures
from ase_cartnet.models.cartnet import CartNet, compile_blocks
from ase_cartnet.models.so3 import averaging_rotations
from ase_cartnet.plausibility import warn_outside_domain
from ase_cartnet.symmetry import symmetrize_adps
from ase_cartnet.validation import (
    as_atoms,
    as_atoms_list,
    check_temperature,
    prepare_items,
    resolve_temperature,
    validate_structure,
    warn_temperature_range,
    warn_untrained_elements,
)
from ase_cartnet.weights import shipped

FROM_CHECKPOINT = "checkpoint"
SETTABLE = (
    "temperature",
    "hydrogen",
    "max_neighbours",
    "rotations",
    "symmetrize",
    "disorder",
    "store_in_arrays",
    "chunk_size",
)
"""Parameters ``CartNetADP.set`` changes (all but ``chunk_size`` discard the results); the
checkpoint, device, dtype and compilation need a new calculator."""


def size_sorted_batches(sizes: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices of items grouped into batches of similar size (``sizes``: edges per graph):
    sorted by size, then cut into runs of at most ``batch_size`` items whose total size stays
    within ``batch_size`` times the run's median item, so that one large cell is not batched
    with many small ones (a batch's cost and memory follow its edges)."""
    order = sorted(range(len(sizes)), key=lambda i: sizes[i])
    batches: list[list[int]] = []
    current: list[int] = []
    total = 0
    for i in order:
        budget = batch_size * max(sizes[current[len(current) // 2]], 1) if current else 0
        if current and (len(current) >= batch_size or total + sizes[i] > budget):
            batches.append(current)
            current, total = [], 0
        current.append(i)
        total += sizes[i]
    if current:
        batches.append(current)
    return batches


class CartNetADP(Calculator):
    """Anisotropic displacement parameters U (Å²) of every atom of a structure at a temperature.

    Properties: ``"adps"`` (N, 3, 3) Cartesian U in the frame of ``atoms.positions``;
    ``"u_cif"`` (N, 3, 3) the crystallographic U^ij (IUCr, N = diag(a*, b*, c*)); ``"u_equiv"``
    (N,) U_eq = tr(U)/3. The model predicts non-hydrogen atoms; H rows follow ``hydrogen``:
    "nan" (NaN rows) or "riding" (isotropic 1.2 × U_eq of the bonded atom, 1.5 for methyl and
    hydroxyl H, as refinement programs constrain them; an H with no non-H atom within 1.35 Å,
    as in a hydride, is refused with an ``InputError`` naming it).

    Parameters
    ----------
    checkpoint
        an official CartNet checkpoint (``model_state``) or an ase-cartnet one; None
        loads the embedded default weights.
    temperature
        K. None takes ``atoms.info["temperature"]``; without either, an error.
        Changing ``atoms.info["temperature"]`` triggers a new calculation.
    device, dtype
        where and in which precision the model runs (float32 default; float64 for
        reference-quality numbers).
    hydrogen
        "nan" or "riding" (an H without a bonded non-H atom: ``InputError``, use "nan").
    max_neighbours
        neighbour cap per atom: "checkpoint" uses the checkpoint's own setting (64
        for official checkpoints, like the official app; none for ase-cartnet checkpoints,
        like training), an int caps, None keeps every neighbour within the cutoff.
    rotations
        test-time rotation averaging: U = (1/K) Σ_k R_kᵀ f(R_k·x) R_k over K fixed
        rotations (identity first). CartNet is only approximately rotation-equivariant (it
        learns equivariance from SO(3) augmentation, paper section 4.2); K > 1 reduces the
        equivariance error at K times the cost.
    store_in_arrays
        also put the results in ``atoms.arrays`` ("adps", "u_equiv") so that
        writers that drop calculator results keep them.
    symmetrize
        average the predicted U over the structure's space group (spglib, tolerance
        1e-3 Å; :func:`ase_cartnet.symmetry.symmetrize_adps`), so that every ellipsoid obeys
        its site symmetry and symmetry-equivalent atoms get identical ellipsoids, as refined
        and harmonic ADPs do (the default; the model alone obeys them only approximately).
    disorder
        a structure whose atoms overlap as alternatives (``arrays["occupancy"]`` < 1,
        ``arrays["disorder_group"]``, e.g. ``read_cif(path, disorder="all")``;
        :mod:`ase_cartnet.disorder`): "major" predicts the major configuration and gives
        every minor-part atom the ADP of its major counterpart (as SHELX's EADP), "each"
        predicts every configuration and gives each atom the mean over the configurations
        it belongs to, "error" refuses naming the sites. ``last_disorder`` holds the plans
        of the last call (None for ordered structures).
    chunk_size
        edges per block in inference (default
        :data:`ase_cartnet.models.cartnet.DEFAULT_CHUNK_SIZE`). Memory holds the edge features
        of the whole cell (E × d) plus one block's temporaries (about 4 · d numbers per edge
        of the block); smaller blocks lower the peak, the results do not depend on it.
    compile
        run the CartLayers' per-block edge work through ``torch.compile`` (the first
        prediction of each new size pattern compiles, tens of seconds on CPU); falls back to
        the uncompiled model with a warning where compiling is unavailable.

    ``calc.set(temperature=900, symmetrize=False, ...)`` changes any of the parameters above
    but ``checkpoint``, ``device``, ``dtype`` and ``compile``; as in ASE, a change that alters
    the numbers discards the stored results, so the next ``get_property`` recomputes.
    Structures may be ``ase.Atoms`` or pymatgen ``Structure``/``Molecule`` objects.

    Not meant for: structures far from the training domain. The model card of the checkpoint
    states the domain; a warning is raised for elements the checkpoint was not trained on and,
    with the default (inorganic, harmonic) weights, for molecular crystals
    (:mod:`ase_cartnet.plausibility`); an :class:`~ase_cartnet.errors.ExtrapolationWarning`
    for temperatures outside the checkpoint's training range
    (:func:`~ase_cartnet.io.checkpoint.trained_temperatures`) and for atoms with no neighbour
    within the cutoff (the model sees nothing around them, yet returns a confident U).
    Temperatures above :data:`~ase_cartnet.validation.MAX_TEMPERATURE` are refused.
    """

    implemented_properties = ["adps", "u_cif", "u_equiv"]
    default_parameters: dict[str, Any] = {}

    def __init__(
        self,
        checkpoint: str | os.PathLike | None = None,
        temperature: float | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        hydrogen: Literal["nan", "riding"] = "riding",
        max_neighbours: int | None | Literal["checkpoint"] = FROM_CHECKPOINT,
        rotations: int = 1,
        store_in_arrays: bool = False,
        symmetrize: bool = True,
        disorder: Literal["major", "each", "error"] = "major",
        chunk_size: int | None = None,
        compile: bool = False,
        **kwargs: Any,
    ) -> None:
        options = {
            "temperature": temperature,
            "hydrogen": hydrogen,
            "max_neighbours": max_neighbours,
            "rotations": rotations,
            "symmetrize": symmetrize,
            "disorder": disorder,
            "store_in_arrays": store_in_arrays,
            "chunk_size": chunk_size,
        }
        options = {key: _checked_option(key, value) for key, value in options.items()}
        super().__init__(**kwargs)
        self.checkpoint_path = Path(checkpoint) if checkpoint is not None else shipped("cartnet")
        loaded = load_model(self.checkpoint_path, "cartnet", dtype=dtype, device=device)
        self.model, self.metadata = loaded.model, loaded.metadata
        self.temperature_range = trained_temperatures(loaded)
        self.device = torch.device(device)
        self.dtype = dtype
        self.last_disorder: list[DisorderPlan | None] = []
        # What the model was trained on, for the out-of-domain warning: the default weights
        # are harmonic ADPs of ordered inorganic crystals; other checkpoints may say.
        self.domain = self.metadata.get("domain") or ("inorganic" if checkpoint is None else None)
        self.set(**options)
        if compile:
            compile_blocks(self.model)
        trained = self.metadata.get("elements")
        self.trained_elements = frozenset(int(z) for z in trained) if trained else None

    # -- ASE calculator protocol -------------------------------------------------------------

    def set(self, **kwargs: Any) -> dict[str, Any]:
        """Change parameters (:data:`SETTABLE`), ASE style: returns the changed ones; a change
        of any but ``chunk_size`` discards the stored results. Values are checked as in the
        constructor (``InputError``)."""
        fixed = sorted(set(kwargs) - set(SETTABLE))
        if fixed:
            raise InputError(
                f"CartNetADP cannot set {fixed}: settable are {list(SETTABLE)}; the checkpoint, "
                "device, dtype and compilation need a new CartNetADP"
            )
        checked = {key: _checked_option(key, value) for key, value in kwargs.items()}
        changed = super().set(**checked)
        for key, value in changed.items():
            self._apply(key, value)
        if set(changed) - {"chunk_size"}:
            self.reset()
        return changed

    def _apply(self, key: str, value: Any) -> None:
        """Carry a checked parameter over to the attributes the prediction reads."""
        if key == "max_neighbours":
            self.max_neighbours = (
                self.model.config.max_neighbours if value == FROM_CHECKPOINT else value
            )
        elif key == "rotations":
            self.rotations = averaging_rotations(value, dtype=self.dtype).to(self.device)
        elif key == "chunk_size":
            if value is not None:
                for module in self.model.modules():
                    if isinstance(module, CartNet):
                        module.chunk_size = value
        elif key != "temperature":  # the temperature is read from the parameters
            setattr(self, key, value)

    def check_state(self, atoms: Atoms, tol: float = 1e-15) -> list[str]:
        """ASE's checks plus the temperature in ``atoms.info`` (state outside positions)."""
        changes = super().check_state(atoms, tol)
        if self.atoms is not None and atoms.info.get("temperature") != self.atoms.info.get(
            "temperature"
        ):
            changes.append("temperature")
        return changes

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("adps",),
        system_changes: Sequence[str] = all_changes,
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        temperature = resolve_temperature(self.parameters.get("temperature"), self.atoms)
        (adps,) = self.predict_many([self.atoms], temperatures=[temperature], batch_size=1)
        self.results = self._results_for(self.atoms, adps)
        plan = self.last_disorder[0]
        if plan is not None:  # whose prediction each atom carries (itself, or a counterpart)
            self.results["adp_counterpart"] = plan.counterpart.copy()
        if self.store_in_arrays and atoms is not None:
            atoms.arrays["adps"] = adps.copy()
            atoms.arrays["u_equiv"] = self.results["u_equiv"].copy()

    def _results_for(self, atoms: Atoms, adps: np.ndarray) -> dict[str, np.ndarray]:
        results = {"adps": adps, "u_equiv": u_equiv(adps)}
        if atoms.pbc.all():
            results["u_cif"] = u_cart_to_u_cif(adps, atoms.cell[:])
        return results

    def get_property(self, name: str, atoms: Any = None, allow_calculation: bool = True):
        if atoms is not None:
            atoms = as_atoms(atoms)
        if name == "u_cif":
            target = atoms if atoms is not None else self.atoms
            if target is not None and not np.asarray(target.pbc).all():
                raise InputError(
                    "u_cif needs a crystal periodic along a, b and c (it is defined by the cell)"
                )
        return super().get_property(name, atoms, allow_calculation)

    # -- batch prediction --------------------------------------------------------------------

    def predict_many(
        self,
        structures: Sequence[Atoms],
        *,
        temperatures: Sequence[float] | float | None = None,
        batch_size: int = 16,
        progress: bool = False,
        executor: Executor | None = None,
        errors: str = "raise",
    ) -> list[np.ndarray | None]:
        """ADPs (N_k, 3, 3) in Å² for each structure, batched through the model.

        ``temperatures`` (K): one per structure, one for all, or None (this calculator's
        temperature parameter, else each structure's ``atoms.info["temperature"]``). A temperature
        sweep is the same Atoms object listed once per temperature; with a harmonic-head model
        the whole sweep costs one forward pass. ``progress`` shows a progress bar (tqdm) over
        chunks of ``batch_size`` distinct structures; with an ``executor``
        (``concurrent.futures`` or dask's ``client.get_executor()``) each chunk is one task and
        each worker loads this calculator's checkpoint with its settings. Errors name the
        structure (index, formula and source file). ``errors``: a structure or temperature the
        calculator refuses raises that ``InputError`` ("raise", the default: nothing is
        predicted), or is skipped with a ``BatchItemWarning`` naming it and None in its place
        ("skip": the good structures are kept).
        """
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        structures = as_atoms_list(structures)
        if temperatures is None or np.isscalar(temperatures):
            given = self.parameters.get("temperature") if temperatures is None else temperatures
            temperatures = [given] * len(structures)
        elif len(temperatures) != len(structures):
            raise InputError(f"{len(temperatures)} temperatures for {len(structures)} structures")
        checked: set[int] = set()

        def prepare(k: int) -> float:
            atoms = structures[k]
            with _naming(k, atoms):
                t = resolve_temperature(temperatures[k], atoms)
                if errors == "skip" and id(atoms) not in checked:  # "raise" checks it below
                    validate_structure(atoms)
                    checked.add(id(atoms))
            return t

        ready = prepare_items(len(structures), prepare, errors, lambda k: "")
        if len(ready) < len(structures):  # "skip": predict the others, None in the gaps
            kept = sorted(ready)
            done = self.predict_many(
                [structures[k] for k in kept],
                temperatures=[ready[k] for k in kept],
                batch_size=batch_size,
                progress=progress,
                executor=executor,
            )
            out: list[np.ndarray | None] = [None] * len(structures)
            plans: list = [None] * len(structures)
            for j, k in enumerate(kept):
                out[k] = done[j]
                if j < len(self.last_disorder):
                    plans[k] = self.last_disorder[j]
            self.last_disorder = plans if executor is None else []
            return out
        temps = [ready[k] for k in range(len(structures))]
        for t in sorted(set(temps)):
            warn_temperature_range(t, self.temperature_range, self.checkpoint_path.name)
        if progress or executor is not None:
            return self._predict_in_chunks(structures, temps, batch_size, progress, executor)
        names = {id(a): (k, a) for k, a in reversed(list(enumerate(structures)))}
        structures, temps, assemble = self._configurations(structures, temps)
        # The same Atoms object listed several times (a temperature sweep) is validated and
        # turned into a graph once per call.
        unique_graphs: dict[int, object] = {}
        for atoms in structures:
            if id(atoms) not in unique_graphs:
                with _naming(*names.get(id(atoms), (None, atoms))):
                    validate_structure(atoms)
                self._warn_untrained_elements(atoms)
                name = atoms.info.get("source_file") or atoms.get_chemical_formula()
                if self.hydrogen == "riding":
                    check_riding_parents(atoms, name)
                warn_outside_domain(atoms, self.domain, name, stacklevel=3)
                unique_graphs[id(atoms)] = atoms_to_graph(
                    atoms,
                    self.model.config.cutoff,
                    max_neighbours=self.max_neighbours,
                    dtype=self.dtype,
                )
                self._warn_isolated(atoms, unique_graphs[id(atoms)], name)
        sweeps: dict[int, list[int]] = {}  # structure id -> its positions in the output
        for position, atoms in enumerate(structures):
            sweeps.setdefault(id(atoms), []).append(position)
        if self.model.config.head == "harmonic":
            raw = self._predict_sweeps(structures, temps, unique_graphs, sweeps, batch_size)
        else:
            raw = self._predict_samples(structures, temps, unique_graphs, batch_size)
        return assemble(self._finish(structures, raw, sweeps))

    def _predict_in_chunks(
        self,
        structures: list[Atoms],
        temps: list[float],
        batch_size: int,
        progress: bool,
        executor: Executor | None,
    ) -> list[np.ndarray]:
        """:meth:`predict_many` chunk by chunk (``batch_size`` distinct structures, sweeps kept
        together), in this process or as ``executor`` tasks, with a progress bar."""
        from tqdm.auto import tqdm

        groups: dict[int, list[int]] = {}
        for position, atoms in enumerate(structures):
            groups.setdefault(id(atoms), []).append(position)
        ids = list(groups)
        chunks = [
            sorted(p for key in ids[s : s + batch_size] for p in groups[key])
            for s in range(0, len(ids), batch_size)
        ]
        out: list[np.ndarray | None] = [None] * len(structures)
        bar = tqdm(total=len(structures), desc="CartNet", unit="structure", disable=not progress)
        if executor is None:
            plans: list = [None] * len(structures)
            for chunk in chunks:
                done = self.predict_many(
                    [structures[p] for p in chunk],
                    temperatures=[temps[p] for p in chunk],
                    batch_size=batch_size,
                )
                for p, u, plan in zip(chunk, done, self.last_disorder, strict=True):
                    out[p], plans[p] = u, plan
                bar.update(len(chunk))
            self.last_disorder = plans
        else:
            settings = self._worker_settings()
            futures = [
                executor.submit(
                    _predict_chunk,
                    settings,
                    [structures[p] for p in chunk],
                    [temps[p] for p in chunk],
                    batch_size,
                )
                for chunk in chunks
            ]
            for chunk, future in zip(chunks, futures, strict=True):
                for p, u in zip(chunk, future.result(), strict=True):
                    out[p] = u
                bar.update(len(chunk))
            self.last_disorder = []  # the plans stayed with the workers
        bar.close()
        return out

    def _worker_settings(self) -> dict[str, Any]:
        """Everything a worker needs to rebuild this calculator (its checkpoint is loaded there)."""
        return {
            "checkpoint": str(self.checkpoint_path),
            "dtype": self.dtype,
            "hydrogen": self.hydrogen,
            "max_neighbours": self.max_neighbours,
            "rotations": len(self.rotations),
            "symmetrize": self.symmetrize,
            "disorder": self.disorder,
        }

    def _configurations(self, structures: list[Atoms], temps: list[float]):
        """The ordered configurations to predict for each structure (``disorder`` policy) and a
        function putting their ADPs back together: (structures, temperatures, assemble)."""
        plans: dict[int, DisorderPlan | None] = {}
        parts: dict[int, list[Atoms]] = {}
        for atoms in structures:
            if id(atoms) in plans:
                continue
            plan = self._plan(atoms)
            plans[id(atoms)] = plan
            if plan is None:
                parts[id(atoms)] = [atoms]
            else:
                chosen = plan.configurations if self.disorder == "each" else [plan.major]
                parts[id(atoms)] = [atoms[indices] for indices in chosen]
        self.last_disorder = [plans[id(a)] for a in structures]
        flat = [(part, t) for a, t in zip(structures, temps, strict=True) for part in parts[id(a)]]

        def assemble(adps: list[np.ndarray]) -> list[np.ndarray]:
            out, cursor = [], 0
            for atoms in structures:
                plan, n_parts = plans[id(atoms)], len(parts[id(atoms)])
                pieces, cursor = adps[cursor : cursor + n_parts], cursor + n_parts
                out.append(pieces[0] if plan is None else _combine(plan, pieces, len(atoms)))
            return out

        return [p for p, _ in flat], [t for _, t in flat], assemble

    def _plan(self, atoms: Atoms) -> DisorderPlan | None:
        """The disorder plan of ``atoms`` (None when ordered), warnings naming the sites."""
        if "occupancy" not in atoms.arrays and "disorder_group" not in atoms.arrays:
            return None
        name = atoms.info.get("source_file") or atoms.get_chemical_formula()
        try:
            plan = disorder_plan(atoms)
        except InputError as exc:
            raise InputError(f"{name}: {exc}") from exc
        if plan is None or not plan.minor:
            return None
        if self.disorder == "error":
            raise InputError(overlap_message(atoms, plan))
        what = (
            f"{len(plan.configurations)} configurations predicted separately; each atom takes "
            "the mean over the configurations it belongs to"
            if self.disorder == "each"
            else plan.describe()
        )
        warnings.warn(f"{name}: disordered: {what}", stacklevel=4)
        return plan

    def _predict_samples(
        self, structures: list[Atoms], temps: list[float], unique_graphs: dict, batch_size: int
    ) -> list[np.ndarray]:
        """Models that take T in the trunk: one (structure, T) sample per graph of a batch."""
        out: list[np.ndarray | None] = [None] * len(structures)
        sizes = [unique_graphs[id(a)].edge_index.shape[1] for a in structures]
        for batch in size_sorted_batches(sizes, batch_size):
            graphs = []
            for i in batch:
                g = unique_graphs[id(structures[i])].clone()
                g.temperature = torch.tensor([temps[i]], dtype=self.dtype)
                graphs.append(g)
            u = self._predict_graphs(graphs)
            offsets = np.cumsum([0] + [len(structures[i]) for i in batch])
            for k, i in enumerate(batch):
                out[i] = u[offsets[k] : offsets[k + 1]]
        return out

    def _predict_sweeps(
        self,
        structures: list[Atoms],
        temps: list[float],
        unique_graphs: dict,
        requests: dict[int, list[int]],
        batch_size: int,
    ) -> list[np.ndarray]:
        """Models whose trunk does not see T (the harmonic head): one forward pass per distinct
        structure gives U at all the temperatures asked of it (``requests``: structure id → its
        positions in the output); ``batch_size`` structures a call."""
        firsts = [structures[positions[0]] for positions in requests.values()]
        out: list[np.ndarray | None] = [None] * len(structures)
        sizes = [unique_graphs[id(a)].edge_index.shape[1] for a in firsts]
        for batch in size_sorted_batches(sizes, batch_size):
            chunk = [firsts[i] for i in batch]
            width = max(len(requests[id(a)]) for a in chunk)
            graphs = []
            for atoms in chunk:
                sweep = [temps[i] for i in requests[id(atoms)]]
                sweep += [sweep[-1]] * (width - len(sweep))  # padding, not returned
                g = unique_graphs[id(atoms)].clone()
                g.temperature = torch.tensor([sweep], dtype=self.dtype)  # (1, width)
                graphs.append(g)
            u = self._predict_graphs(graphs)  # (N, width, 3, 3)
            offsets = np.cumsum([0] + [len(a) for a in chunk])
            for k, atoms in enumerate(chunk):
                rows = u[offsets[k] : offsets[k + 1]]
                for j, position in enumerate(requests[id(atoms)]):
                    out[position] = rows[:, j]
        return out

    def _predict_graphs(self, graphs: list) -> np.ndarray:
        """U (N, ..., 3, 3) Å² for the atoms of the batched ``graphs``; NaN rows for H."""
        batch = batch_graphs(graphs).to(self.device)
        heavy = batch.numbers != 1  # the model predicts non-H atoms (paper section 6.1)
        predicted = self._predict_batch(batch, heavy).cpu().double().numpy()
        u = np.full((len(heavy), *predicted.shape[1:]), np.nan)
        u[heavy.cpu().numpy()] = predicted
        return u

    @torch.inference_mode()
    def _predict_batch(self, batch, heavy: torch.Tensor) -> torch.Tensor:
        """Rotation-averaged model output U (n_heavy, [T,] 3, 3) for the atoms where ``heavy`` is
        True: (1/K) Σ Rᵀ f(R·x) R, positions and cells rotated together so every edge vector
        rotates (the identity alone for K = 1)."""
        total = None
        for rotation in self.rotations:
            rotated = batch.clone()
            rotated.pos = batch.pos @ rotation.T
            rotated.cell = batch.cell @ rotation.T
            u = self.model(rotated, output_mask=heavy)
            back = rotation.to(u.dtype)
            u = back.T @ u @ back
            total = u if total is None else total + u
        return total / len(self.rotations)

    def _finish(
        self, structures: list[Atoms], raw: list[np.ndarray], sweeps: dict[int, list[int]]
    ) -> list[np.ndarray]:
        """The space-group average (if ``symmetrize``; one symmetry search per distinct
        structure, whatever the number of its temperatures), then the hydrogen policy."""
        out = list(raw)
        if self.symmetrize:
            for group in sweeps.values():
                if not structures[group[0]].pbc.all():
                    continue  # a molecule has no space group
                stacked, _ = symmetrize_adps(
                    structures[group[0]], np.stack([raw[i] for i in group])
                )
                for i, u in zip(group, stacked, strict=True):
                    out[i] = u
        return [self._apply_hydrogen_policy(a, u) for a, u in zip(structures, out, strict=True)]

    def _apply_hydrogen_policy(self, atoms: Atoms, adps: np.ndarray) -> np.ndarray:
        adps = adps.copy()
        if self.hydrogen == "riding":
            adps = riding_hydrogen_adps(atoms, adps)
        return adps

    def _warn_isolated(self, atoms: Atoms, graph, name: str) -> None:
        """An ``ExtrapolationWarning`` naming the non-H atoms with no neighbour within the
        cutoff: the model sees only the element there, and its U says nothing about the site."""
        degree = np.bincount(graph.edge_index.reshape(-1).numpy(), minlength=len(atoms))
        lonely = np.flatnonzero((degree == 0) & (atoms.numbers != 1))
        if not lonely.size:
            return
        labels = atoms.arrays.get("site_label")
        sites = [
            f"{i} ({atoms[i].symbol}{', ' + str(labels[i]) if labels is not None else ''})"
            for i in lonely[:10]
        ]
        more = f" and {lonely.size - 10} more" if lonely.size > 10 else ""
        warnings.warn(
            f"{name}: atom(s) {', '.join(sites)}{more} have no neighbour within the "
            f"{self.model.config.cutoff:g} Å cutoff (an isolated atom, a vacuum-sparse cell); "
            "their U is an extrapolation",
            ExtrapolationWarning,
            stacklevel=4,
        )

    def _warn_untrained_elements(self, atoms: Atoms) -> None:
        warn_untrained_elements(
            atoms.numbers,
            self.trained_elements,
            "structure contains elements outside the model's training set: {names}; "
            "predictions for them are extrapolations",
            ignore=(1,),
        )

    # -- outputs -----------------------------------------------------------------------------

    def write_cif(
        self, path: str | os.PathLike, atoms: Atoms | None = None, *, p1: bool = False
    ) -> Path:
        """Write ``atoms`` (default: the last calculated structure) with predicted ADPs to a CIF,
        atomically and never over the structure's source file: a structure read from a CIF as
        that file's own data block (space group, site labels; asymmetric-unit ADPs, riding H as
        Uiso), else — or with ``p1`` — the expanded cell in P1. Provenance items name the
        software, model card, checkpoint sha256, temperature and options."""
        from ase_cartnet.io.cif import write_cif

        atoms = self._atoms_with_results(atoms)
        temperature = resolve_temperature(self.parameters.get("temperature"), atoms)
        return write_cif(
            path,
            atoms,
            self.results["adps"],
            temperature=temperature,
            p1=p1,
            provenance=self.provenance(temperature),
            eadp=self._eadp_labels(atoms),
        )

    def _eadp_labels(self, atoms: Atoms) -> dict[str, str] | None:
        """Site label → counterpart site label for atoms whose U is their counterpart's (the
        disorder policy "major"), from the last calculation."""
        counterpart = self.results.get("adp_counterpart")
        if counterpart is None or "site_label" not in atoms.arrays:
            return None
        labels = atoms.arrays["site_label"]
        return {
            str(labels[i]): str(labels[c])
            for i, c in enumerate(counterpart)
            if c >= 0 and c != i and labels[i] != labels[c]
        }

    def provenance(self, temperature: float) -> dict[str, str]:
        """What produced a prediction, as written into CIFs: software, model card name,
        checkpoint sha256, temperature (K) and the options that change the numbers."""
        import hashlib
        import json

        from ase_cartnet import __version__

        card = self.checkpoint_path.with_suffix(".json")
        name = self.checkpoint_path.name
        if card.is_file():
            try:
                name = json.loads(card.read_text(encoding="utf-8")).get("name", name)
            except (OSError, ValueError):
                pass
        digest = hashlib.sha256(self.checkpoint_path.read_bytes()).hexdigest()
        return {
            "software": f"ase-cartnet {__version__} CartNetADP",
            "model_card": name,
            "checkpoint_sha256": digest,
            "prediction_temperature": f"{temperature:g}",
            "symmetrized": "yes" if self.symmetrize else "no",
            "hydrogen": self.hydrogen,
            "disorder": self.disorder,
        }

    def plot_ellipsoids(
        self,
        path: str | os.PathLike,
        reference: np.ndarray | None = None,
        atoms: Atoms | None = None,
        probability: float = 0.5,
    ) -> Path:
        """ORTEP-style PNG of the predicted ellipsoids at ``probability`` (default 50 %), overlaid
        on ``reference`` (N, 3, 3) Cartesian U, e.g. experimental ADPs, when given."""
        from ase_cartnet.plot import plot_ellipsoids

        atoms = self._atoms_with_results(atoms)
        return plot_ellipsoids(
            path, atoms, self.results["adps"], reference=reference, probability=probability
        )

    def _atoms_with_results(self, atoms: Any) -> Atoms:
        if atoms is not None:
            atoms = as_atoms(atoms)
            self.get_property("adps", atoms)
            return atoms
        if self.atoms is None or "adps" not in self.results:
            raise InputError(
                "nothing calculated yet: attach the calculator to atoms or pass atoms=..."
            )
        return self.atoms


def _checked_option(key: str, value: Any) -> Any:
    """A :data:`SETTABLE` parameter's value, checked (an ``InputError`` naming it)."""
    if key == "temperature":
        return None if value is None else check_temperature(value, "temperature")
    if key == "hydrogen" and value not in HYDROGEN_POLICIES:
        raise InputError(f"hydrogen must be one of {HYDROGEN_POLICIES}, got {value!r}")
    if key == "rotations" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InputError(f"rotations must be an integer >= 1, got {value!r}")
    if (
        key == "max_neighbours"
        and value not in (FROM_CHECKPOINT, None)
        and (isinstance(value, bool) or not isinstance(value, int) or value < 1)
    ):
        raise InputError(f"max_neighbours must be 'checkpoint', None or an int >= 1, got {value!r}")
    if (
        key == "chunk_size"
        and value is not None
        and (isinstance(value, bool) or not isinstance(value, int) or value < 1)
    ):
        raise InputError(f"chunk_size must be an integer >= 1, got {value!r}")
    if key in ("symmetrize", "store_in_arrays"):
        return bool(value)
    if key == "disorder":
        return check_policy(value)
    return value


_WORKER_CALCULATORS: dict[tuple[int, str], CartNetADP] = {}
"""Calculators rebuilt in this worker, by (thread, settings): a worker loads a checkpoint once,
not once per chunk."""


def _predict_chunk(settings: dict[str, Any], structures, temperatures, batch_size: int):
    """Worker body of :meth:`CartNetADP.predict_many` with an executor (module level:
    picklable): a calculator rebuilt from ``settings`` (once per worker thread) predicts one
    chunk."""
    key = (threading.get_ident(), repr(sorted(settings.items())))
    calc = _WORKER_CALCULATORS.get(key)
    if calc is None:
        torch.set_num_threads(1)
        calc = _WORKER_CALCULATORS[key] = CartNetADP(**settings)
    return calc.predict_many(structures, temperatures=temperatures, batch_size=batch_size)


@contextmanager
def _naming(index: int | None, atoms: Atoms):
    """Re-raise an ``InputError`` about one structure with its index, formula and source."""
    try:
        yield
    except InputError as exc:
        where = f"structure {index}" if index is not None else "structure"
        try:
            where += f" ({atoms.get_chemical_formula()}"
            source = atoms.info.get("source_file")
            where += f", {source})" if source else ")"
        except Exception:  # not an Atoms: the error itself says so
            pass
        raise InputError(f"{where}: {exc}") from exc


def _combine(plan: DisorderPlan, pieces: list[np.ndarray], n_atoms: int) -> np.ndarray:
    """ADPs (n_atoms, 3, 3) of a disordered structure from those of its predicted configurations
    (``pieces``, in ``plan.configurations`` order): the mean over the configurations holding an
    atom; atoms in none take their counterpart's U (NaN without one)."""
    total = np.zeros((n_atoms, 3, 3))
    count = np.zeros(n_atoms)
    for indices, u in zip(plan.configurations, pieces, strict=False):
        total[indices] += u
        count[indices] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        out = total / count[:, None, None]
    missing = np.flatnonzero(count == 0)
    source = plan.counterpart[missing]
    out[missing] = np.where((source >= 0)[:, None, None], out[np.maximum(source, 0)], np.nan)
    return out
