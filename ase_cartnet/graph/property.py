"""CartNet's graph for the scalar property head: the radius graph in the cell frame."""

from __future__ import annotations

import torch

from ase_cartnet.graph.neighbours import atoms_to_graph


def cell_frame_orientation(atoms):
    """A copy of ``atoms`` rotated into its cell's frame: a along x, b in the xy plane (the
    orientation pymatgen and CIF readers give). CartNet reads Cartesian edge directions and is
    not rotation invariant by construction; the property models see every crystal in this
    frame, so their predictions do not depend on how the crystal is oriented (but, like
    CrysToGraph's edge angles, on which cell is chosen)."""
    import numpy as np

    cell = np.asarray(atoms.cell[:], dtype=np.float64)
    x = cell[0] / np.linalg.norm(cell[0])
    z = np.cross(cell[0], cell[1])
    z /= np.linalg.norm(z)
    frame = np.stack([x, np.cross(z, x), z])  # rows: x̂, ŷ, ẑ
    out = atoms.copy()
    out.set_cell(cell @ frame.T, scale_atoms=False)
    out.positions = atoms.positions @ frame.T
    return out


def cartnet_property_graph(atoms, cutoff: float, dtype: torch.dtype = torch.float32):
    """CartNet's radius graph of ``atoms`` (cutoff in Å) for the scalar head, in the cell frame
    (:func:`cell_frame_orientation`); the temperature field CartNet's forward reads is a
    placeholder (the property models use no temperature)."""
    graph = atoms_to_graph(cell_frame_orientation(atoms), cutoff, dtype=dtype)
    graph.temperature = torch.zeros(1, dtype=dtype)
    return graph
