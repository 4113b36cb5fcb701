"""ASE calculator for one scalar crystal property predicted by CrysToGraph (or CartNet's scalar
head), e.g. the formation energy per atom."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from torch import nn

from ase_cartnet.errors import InputError
from ase_cartnet.graph.crystograph import crystograph_graph
from ase_cartnet.graph.neighbours import batch_graphs
from ase_cartnet.graph.property import cartnet_property_graph
from ase_cartnet.io.checkpoint import load_model
from ase_cartnet.validation import (
    as_atoms,
    as_atoms_list,
    prepare_items,
    validate_structure,
    warn_untrained_elements,
)
from ase_cartnet.weights import DEFAULT_PROPERTY, DEFAULT_PROPERTY_TARGET, shipped


@dataclass
class PropertyModel:
    """A loaded property model: ``model(batch)`` → (B,) in ``units``; ``featurise(atoms)`` builds
    the graph it reads."""

    model: nn.Module
    featurise: Callable[[Atoms], Any]
    kind: str
    target: str
    units: str
    metadata: dict[str, Any]


def load_property_model(
    path: str | os.PathLike, *, dtype: torch.dtype = torch.float32
) -> PropertyModel:
    """A property checkpoint (CrysToGraph or CartNet with the scalar head) in eval mode, with
    the featuriser that builds the graph it reads."""
    loaded = load_model(path, "property", dtype=dtype)
    c = loaded.config
    if loaded.kind == "crystograph":

        def featurise(atoms: Atoms):
            return crystograph_graph(
                atoms, k=c.k, lap_dim=c.lap_dim, rw_dim=c.rw_dim, lap_mode=c.lap_mode, dtype=dtype
            )

    else:
        cutoff = loaded.model.model.config.cutoff

        def featurise(atoms: Atoms):
            return cartnet_property_graph(atoms, cutoff, dtype)

    return PropertyModel(loaded.model, featurise, loaded.kind, c.target, c.units, loaded.metadata)


def shipped_property_checkpoint(target: str) -> Path:
    """The shipped weights for ``target``; an ``InputError`` for targets without any."""
    if target not in DEFAULT_PROPERTY:
        raise InputError(
            f"no shipped property model for target {target!r}; shipped: {sorted(DEFAULT_PROPERTY)}"
            " (pass checkpoint=... for another model)"
        )
    return shipped(f"property/{target}")


class CrysToGraphProperty(Calculator):
    """A scalar property of a periodic crystal, named by the model card.

    ``calc.target`` is the property's name and ``calc.units`` its unit; the value is available
    as ``calc.get_property(calc.target, atoms)`` and as ``"property"``. The shipped defaults
    (offline, in ``ase_cartnet/weights``) are, per target, the better of CrysToGraph and CartNet's
    scalar head in ``benchmarks/compare_property_models.py`` (the model card says which):

    * ``target="formation_energy_per_atom"`` (eV/atom), trained on 9.4 k MP-20 structures
      (1–20 atoms, Materials Project GGA(+U)), the default;
    * ``target="heat_ref"`` (eV, per 5-atom cell), trained on 3.6 k cubic ABX3 perovskites of
      Castelli et al. (Perov-5).

    Parameters
    ----------
    checkpoint
        an ase-cartnet property checkpoint (from ``ase-cartnet train crystograph``
        or the comparison benchmark); None loads the shipped model for ``target``.
    target
        which shipped model to load when ``checkpoint`` is None.
    device, dtype
        where and in which precision the model runs.

    Not meant for: structures unlike the training data (molecules are refused; large cells,
    unusual chemistries or far-from-equilibrium geometries are extrapolation), and not a
    potential: there are no energies, forces or stresses. The shipped models are small, trained
    for a few epochs on a CPU budget (see the model cards and README for their test MAEs), far
    from the paper's accuracy. Predictions are invariant to rotations, translations and atom
    order, but depend on the choice of cell: CrysToGraph through its positional encodings (a
    supercell) and its cell-frame edge angles (another basis of the same lattice), CartNet
    through the cell frame its Cartesian directions are read in (another basis). The README
    gives the measured sizes.

    Structures may be ``ase.Atoms`` or pymatgen ``Structure`` objects. Nothing is settable
    after construction (``set`` refuses every parameter: another target, checkpoint, device
    or dtype needs a new calculator), so stored results always belong to the loaded model.
    """

    implemented_properties = ["property"]
    default_parameters: dict[str, Any] = {}

    def __init__(
        self,
        checkpoint: str | os.PathLike | None = None,
        target: str | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if checkpoint is None:
            path = shipped_property_checkpoint(target or DEFAULT_PROPERTY_TARGET)
        else:
            path = Path(checkpoint)
        self.checkpoint_path = path
        self.loaded = load_property_model(path, dtype=dtype)
        if target is not None and checkpoint is not None and target != self.loaded.target:
            raise InputError(f"checkpoint {path} predicts {self.loaded.target!r}, not {target!r}")
        self.loaded.model.to(device)
        self.device = torch.device(device)
        self.dtype = dtype
        self.target = self.loaded.target
        self.units = self.loaded.units
        self.metadata = self.loaded.metadata
        self.implemented_properties = ["property", self.target]
        trained = self.metadata.get("elements")
        self.trained_elements = frozenset(int(z) for z in trained) if trained else None

    def set(self, **kwargs: Any) -> dict[str, Any]:
        """ASE's ``set``: nothing is settable; any parameter is an ``InputError`` naming it."""
        if kwargs:
            raise InputError(
                f"CrysToGraphProperty has no settable parameters (got {sorted(kwargs)}): the "
                "checkpoint, target, device and dtype need a new CrysToGraphProperty"
            )
        return {}

    def get_property(self, name: str, atoms: Any = None, allow_calculation: bool = True):
        return super().get_property(
            name, None if atoms is None else as_atoms(atoms), allow_calculation
        )

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("property",),
        system_changes: Sequence[str] = all_changes,
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        (value,) = self.predict_many([self.atoms], batch_size=1)
        self.results = {"property": float(value), self.target: float(value)}

    def predict_many(
        self, structures: Sequence[Any], *, batch_size: int = 64, errors: str = "raise"
    ) -> np.ndarray:
        """(M,) predictions in ``self.units`` for M periodic structures (``ase.Atoms`` or pymatgen
        ``Structure``), batched.

        ``errors``: a structure the model cannot use raises an ``InputError`` naming its index
        ("raise", the default), or is skipped with a ``BatchItemWarning`` naming it and NaN in
        its place ("skip": the others are predicted).
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        structures = as_atoms_list(structures)

        def prepare(k: int):
            atoms = structures[k]
            validate_structure(atoms, require_pbc=True)
            self._warn_untrained_elements(atoms)
            return self.loaded.featurise(atoms)

        def label(k: int) -> str:
            if len(structures) == 1:
                return ""
            try:
                source = structures[k].info.get("source_file")
                name = structures[k].get_chemical_formula()
                return f"structure {k} ({name}{', ' + str(source) if source else ''})"
            except AttributeError:  # not an Atoms: the error says so
                return f"structure {k}"

        ready = prepare_items(len(structures), prepare, errors, label)
        kept = sorted(ready)
        graphs = [ready[k] for k in kept]
        out = []
        with torch.no_grad():
            for start in range(0, len(graphs), batch_size):
                batch = batch_graphs(graphs[start : start + batch_size]).to(self.device)
                out.append(self.loaded.model(batch).double().cpu().numpy().reshape(-1))
        values = np.full(len(structures), np.nan)
        if out:
            values[kept] = np.concatenate(out)
        return values

    def _warn_untrained_elements(self, atoms: Atoms) -> None:
        warn_untrained_elements(
            atoms.numbers,
            self.trained_elements,
            f"elements {{names}} were not in the training data of {self.checkpoint_path.name}; "
            "the prediction is an extrapolation",
        )
