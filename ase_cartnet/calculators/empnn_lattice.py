"""EMPNNLattice: pull a distorted lattice back toward a stable one, like an ASE optimizer."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import nn

from ase_cartnet.calculators.dynamics import ModelDynamics
from ase_cartnet.errors import InputError
from ase_cartnet.graph.empnn import crystal_graph
from ase_cartnet.graph.neighbours import batch_graphs
from ase_cartnet.io.checkpoint import load_model
from ase_cartnet.models.empnn import cell_to_lattice_params, run_model
from ase_cartnet.validation import validate_structure
from ase_cartnet.weights import shipped


class EMPNNLattice(ModelDynamics):
    """Deform ``atoms.cell`` with a trained EMPNN, keeping the fractional coordinates, as an ASE
    optimizer (``ase.optimize`` ``Dynamics``).

    The model predicts a lattice action h (ρ' = h ρ, i.e. ``cell' = cell @ hᵀ``) from the
    periodic point cloud; it is exactly equivariant: rotating or translating the crystal, or
    choosing another cell of the same lattice, gives the same physical result. Used like
    ``BFGS``: ``attach``, ``irun``, ``logfile``, ``trajectory`` (a file name or an open
    ``Trajectory``), ``with`` blocks and Filters behave as there. Each optimizer step applies
    one of the model's deformation layers (all predicted in one forward pass from the cell as
    it was before the first step); once every layer is applied the run has converged, and a
    further ``run()`` changes nothing (a new ``EMPNNLattice`` on the denoised cell would
    deform it again: the model is not idempotent). No calculator is needed.

    Parameters
    ----------
    atoms
        a crystal periodic along a, b and c (``ase.Atoms``, or a pymatgen ``Structure``,
        whose lattice is changed in place as an Atoms' would be), or an ASE Filter around one
        (unwrapped: only the cell of the Atoms is changed).
    model
        None for the shipped default weights (offline), a checkpoint path, or a model
        (:class:`~ase_cartnet.models.empnn.EMPNN` / ``LatticeFF``).
    trajectory
        a file name or an open ASE ``Trajectory``: the structure before and after
        every step.
    logfile
        "-" for stdout, a path, an open file, or None for silence.
    append_trajectory, loginterval
        as in ASE's ``Dynamics``.
    dtype
        torch dtype the model runs in (float32 default).

    After a run, ``action`` holds the total action h (3, 3) applied so far and ``cells`` the
    cell after each of the model's layers (the input first).

    Not meant for: a relaxation. The model was trained to undo random lattice strains of
    stable MP-20, Carbon-24 and Perov-5 crystals (≤ 24 atoms, strains of about 10 %); atomic
    positions are not relaxed, and structures far from that domain get unreliable actions.
    Read the model card (``ase_cartnet/weights/empnn_lattice_default.json``) for its scope.
    """

    def __init__(
        self,
        atoms: Any,
        model: nn.Module | str | os.PathLike | None = None,
        trajectory: Any = None,
        logfile: str | os.PathLike | IO | None = "-",
        append_trajectory: bool = False,
        *,
        loginterval: int = 1,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        atoms = self._take_input(atoms)  # target: the Atoms whose cell is deformed
        validate_structure(self.target, require_pbc=True)
        self.dtype = dtype
        self.metadata: dict[str, Any] = {}
        if model is None or isinstance(model, (str, os.PathLike)):
            loaded = load_model(shipped("empnn") if model is None else model, "empnn", dtype=dtype)
            self.checkpoint_path: Path | None = loaded.path
            self.model, self.metadata = loaded.model, loaded.metadata
        elif isinstance(model, nn.Module) and hasattr(model, "config"):
            self.checkpoint_path = None
            self.model = model.to(dtype=dtype).eval()
        else:
            raise InputError(
                f"model must be None, a checkpoint path or an EMPNN module, got {type(model)}"
            )
        super().__init__(atoms, trajectory, logfile, append_trajectory, loginterval)
        self.action = np.eye(3)
        self.cells: list[np.ndarray] = []
        self._actions: list[np.ndarray] = []
        self._started = time.time()

    @property
    def layers(self) -> int:
        """The model's deformation layers: the steps a run takes to converge."""
        config = self.model.config
        return 1 if config.head == "ff" else int(config.num_steps)

    def todict(self) -> dict[str, Any]:
        return {**super().todict(), "layers": self.layers}

    def _predict(self) -> None:
        """One forward pass from the current cell: the cell after every layer, and the actions."""
        atoms = self.target
        cell = np.asarray(atoms.cell[:], dtype=np.float64)
        frac = atoms.get_scaled_positions(wrap=False)
        graph = crystal_graph(
            atoms.numbers, frac @ cell, cell, self.model.config.k, dtype=self.dtype
        )
        with torch.no_grad():
            out = run_model(self.model, batch_graphs([graph]), num_steps=self.layers)
        cells = [c[0].double().numpy() for c in out.cells]
        if not all(np.all(np.isfinite(c)) for c in cells) or any(
            np.linalg.det(c) * np.linalg.det(cell) <= 0 for c in cells[1:]
        ):
            raise FloatingPointError("the model returned a degenerate cell; nothing was changed")
        self.cells = cells
        # the action of the first k layers: cells[k] = cells[0] @ h_kᵀ
        self._actions = [np.linalg.solve(cell, c).T for c in cells]

    def step(self) -> None:
        """Apply the next deformation layer (fractional coordinates kept)."""
        if not self.cells:
            self._predict()
        self.target.set_cell(self.cells[self.nsteps + 1], scale_atoms=True)
        self.action = self._actions[self.nsteps + 1]
        self._write_back()

    def converged(self) -> bool:
        """True once every deformation layer has been applied."""
        return self.nsteps >= self.layers

    def irun(self, fmax: float | None = None, steps: int | None = None):
        """Run as a generator, like ``Optimizer.irun``, yielding whether the run has converged
        (all layers applied). ``fmax`` is accepted and has no effect (no forces); ``steps`` is
        the most layers to apply now (None: all that remain)."""
        if steps is None:
            steps = self.layers
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
            raise InputError(f"steps must be a non-negative integer, got {steps!r}")
        if self.nsteps == 0:
            self._started = time.time()
        yield from super().irun(fmax, int(steps))

    def run(self, fmax: float | None = None, steps: int | None = None) -> bool:
        """Apply up to ``steps`` remaining layers (default: all); returns whether every layer
        has been applied. ``atoms.cell`` is replaced (``scale_atoms=True``: fractional
        coordinates kept); ``action`` holds the total action h, ρ' = h ρ."""
        return super().run(fmax, steps)

    def log(self, *args: Any) -> None:
        cell = np.asarray(self.target.cell[:], dtype=np.float64)
        lengths, angles = cell_to_lattice_params(torch.as_tensor(cell[None]))
        a, b, c = lengths[0].tolist()
        al, be, ga = angles[0].tolist()
        if self.nsteps == 0:
            self.logfile.write(
                f"{'':12s} {'Step':>4s} {'Time':>8s} {'a (Å)':>8s} {'b (Å)':>8s} {'c (Å)':>8s} "
                f"{'α (°)':>8s} {'β (°)':>8s} {'γ (°)':>8s} {'V (Å³)':>10s}\n"
            )
        stamp = time.strftime("%H:%M:%S", time.localtime(self._started))
        volume = abs(float(np.linalg.det(cell)))
        self.logfile.write(
            f"EMPNNLattice: {self.nsteps:4d} {stamp:>8s} {a:8.4f} {b:8.4f} {c:8.4f} "
            f"{al:8.3f} {be:8.3f} {ga:8.3f} {volume:10.3f}\n"
        )
