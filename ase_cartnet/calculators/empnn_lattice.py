"""EMPNNLattice: pull a distorted lattice back toward a stable one, like an ASE optimizer."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from ase import Atoms
from torch import nn

from ase_cartnet.errors import InputError
from ase_cartnet.graph.empnn import crystal_graph
from ase_cartnet.graph.neighbours import batch_graphs
from ase_cartnet.io.checkpoint import load_model
from ase_cartnet.models.empnn import cell_to_lattice_params, run_model
from ase_cartnet.validation import validate_structure
from ase_cartnet.weights import shipped


class EMPNNLattice:
    """Deform ``atoms.cell`` with a trained EMPNN, keeping the fractional coordinates.

    The model predicts a lattice action h (ρ' = h ρ, i.e. ``cell' = cell @ hᵀ``) from the
    periodic point cloud; it is exactly equivariant: rotating or translating the crystal, or
    choosing another cell of the same lattice, gives the same physical result. Like an ASE
    optimizer it mutates ``atoms``, logs one line per step and can write a trajectory; unlike
    one, it needs no calculator and takes a fixed number of steps (the model's deformation
    layers), in one forward pass.

    Parameters:
        atoms: a crystal periodic along a, b and c.
        model: None for the shipped default weights (offline), a checkpoint path, or a model
            (:class:`~ase_cartnet.models.empnn.EMPNN` / ``LatticeFF``).
        trajectory: path of an ASE trajectory written with the structure before and after
            every step.
        logfile: "-" for stdout, a path, an open file, or None for silence.
        dtype: torch dtype the model runs in (float32 default).

    Not meant for: a relaxation. The model was trained to undo random lattice strains of
    stable MP-20, Carbon-24 and Perov-5 crystals (≤ 24 atoms, strains of about 10 %); atomic
    positions are not relaxed, and structures far from that domain get unreliable actions.
    Read the model card (``ase_cartnet/weights/empnn_lattice_default.json``) for its scope.
    """

    def __init__(
        self,
        atoms: Atoms,
        model: nn.Module | str | os.PathLike | None = None,
        trajectory: str | os.PathLike | None = None,
        logfile: str | os.PathLike | IO | None = "-",
        *,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        validate_structure(atoms, require_pbc=True)
        self.atoms = atoms
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
        self.trajectory = trajectory
        self.logfile = logfile
        self.action: np.ndarray | None = None
        self.cells: list[np.ndarray] = []
        self.nsteps = 0

    @property
    def max_steps(self) -> int:
        config = self.model.config
        return 1 if config.head == "ff" else int(config.num_steps)

    def _log(self, handle: IO | None, step: int, cell: np.ndarray, started: float) -> None:
        if handle is None:
            return
        lengths, angles = cell_to_lattice_params(torch.as_tensor(cell[None]))
        a, b, c = lengths[0].tolist()
        al, be, ga = angles[0].tolist()
        if step == 0:
            handle.write(
                f"{'':12s} {'Step':>4s} {'Time':>8s} {'a (Å)':>8s} {'b (Å)':>8s} {'c (Å)':>8s} "
                f"{'α (°)':>8s} {'β (°)':>8s} {'γ (°)':>8s} {'V (Å³)':>10s}\n"
            )
        stamp = time.strftime("%H:%M:%S", time.localtime(started))
        volume = abs(float(np.linalg.det(cell)))
        handle.write(
            f"EMPNNLattice: {step:4d} {stamp:>8s} {a:8.4f} {b:8.4f} {c:8.4f} "
            f"{al:8.3f} {be:8.3f} {ga:8.3f} {volume:10.3f}\n"
        )
        handle.flush()

    def run(self, steps: int | None = None) -> np.ndarray:
        """Apply ``steps`` deformation steps (default: all of the model's) and return the total
        action h (3, 3), ρ' = h ρ. ``atoms.cell`` is replaced (``scale_atoms=True``: fractional
        coordinates kept); ``self.cells`` holds the cell after each step (the input first)."""
        if steps is None:
            steps = self.max_steps
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
            raise InputError(f"steps must be an integer, got {steps!r}")
        if not 0 <= steps <= self.max_steps:
            raise InputError(f"steps must be in 0..{self.max_steps} for this model, got {steps}")
        atoms = self.atoms
        cell = np.asarray(atoms.cell[:], dtype=np.float64)
        frac = atoms.get_scaled_positions(wrap=False)
        graph = crystal_graph(
            atoms.numbers, frac @ cell, cell, self.model.config.k, dtype=self.dtype
        )
        started = time.time()
        cells, action = [cell], np.eye(3)
        if steps > 0:
            with torch.no_grad():
                out = run_model(self.model, batch_graphs([graph]), num_steps=steps)
            cells = [c[0].double().numpy() for c in out.cells]
            action = out.action[0].double().numpy()
        if not np.all(np.isfinite(action)) or np.linalg.det(cells[-1]) * np.linalg.det(cell) <= 0:
            raise FloatingPointError("the model returned a degenerate cell; nothing was changed")

        handle, close = self._open_log()
        writer = None
        if self.trajectory is not None:
            from ase.io.trajectory import Trajectory

            writer = Trajectory(str(self.trajectory), "w")
        try:
            for step, new_cell in enumerate(cells):
                if step > 0:
                    atoms.set_cell(new_cell, scale_atoms=True)
                self._log(handle, step, new_cell, started)
                if writer is not None:
                    writer.write(atoms)
        finally:
            if writer is not None:
                writer.close()
            if close:
                handle.close()
        self.cells = cells
        self.action = action
        self.nsteps = steps
        return action

    def _open_log(self) -> tuple[IO | None, bool]:
        if self.logfile is None:
            return None, False
        if self.logfile == "-":
            return sys.stdout, False
        if hasattr(self.logfile, "write"):
            return self.logfile, False
        return open(self.logfile, "a", encoding="utf-8"), True
