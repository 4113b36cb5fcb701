"""Hydrogen ADP policies: CartNet predicts non-H atoms only (paper section 6.1)."""

from __future__ import annotations

import numpy as np
from ase import Atoms

from ase_cartnet.adp import u_equiv, u_iso_to_u_cart

HYDROGEN_POLICIES = ("nan", "riding")
RIDING_FACTOR = 1.2
"""SHELX AFIX convention: U_iso(H) = 1.2 U_eq(parent), 1.5 for methyl and hydroxyl H."""
RIDING_FACTOR_METHYL_HYDROXYL = 1.5
BOND_SEARCH_RADIUS = 1.35
"""Å; an X–H bond is at most about 1.1 Å (C–H, N–H, O–H ≈ 0.95–1.1 Å, longer for heavy X)."""


def riding_hydrogen_adps(atoms: Atoms, adps: np.ndarray) -> np.ndarray:
    """Give each H an isotropic U = k·U_eq(parent)·I (Å²), the parent being its nearest non-H atom
    within 1.35 Å; k = 1.5 when the parent is O (hydroxyl, water) or a C carrying ≥ 3 H (methyl),
    else 1.2. H atoms without a parent get NaN. ``adps``: (N, 3, 3); non-H rows are kept.
    """
    from ase_cartnet.graph.neighbours import radius_graph

    out = np.array(adps, dtype=float, copy=True)
    numbers = atoms.numbers
    is_h = numbers == 1
    if not is_h.any():
        return out
    nl = radius_graph(atoms.positions, atoms.cell[:], atoms.pbc, BOND_SEARCH_RADIUS)
    source, target = nl.edge_index
    heavy_neighbour = ~is_h[source]
    h_count = np.bincount(target[is_h[source]], minlength=len(atoms))  # H neighbours per atom
    u_eq = u_equiv(out)
    for h in np.flatnonzero(is_h):
        cand = (target == h) & heavy_neighbour
        if not cand.any():
            out[h] = np.nan
            continue
        k = np.flatnonzero(cand)[np.argmin(nl.distances[cand])]
        parent = source[k]
        methyl = numbers[parent] == 6 and h_count[parent] >= 3
        factor = (
            RIDING_FACTOR_METHYL_HYDROXYL if (numbers[parent] == 8 or methyl) else RIDING_FACTOR
        )
        out[h] = u_iso_to_u_cart(factor * u_eq[parent])
    return out
