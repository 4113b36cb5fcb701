"""Hydrogen ADP policies: CartNet predicts non-H atoms only (paper section 6.1)."""

from __future__ import annotations

import warnings

import numpy as np
from ase import Atoms

from ase_cartnet.adp import u_equiv, u_iso_to_u_cart
from ase_cartnet.errors import MissingADPWarning

HYDROGEN_POLICIES = ("nan", "riding")
RIDING_FACTOR = 1.2
"""SHELX AFIX convention: U_iso(H) = 1.2 U_eq(parent), 1.5 for methyl and hydroxyl H."""
RIDING_FACTOR_METHYL_HYDROXYL = 1.5
BOND_SEARCH_RADIUS = 1.35
"""Å; an X–H bond is at most about 1.1 Å (C–H, N–H, O–H ≈ 0.95–1.1 Å, longer for heavy X)."""
NEAREST_SEARCH_RADIUS = 4.0
"""Å; how far an error looks for the non-H atom nearest to an H without a parent."""


def check_riding_parents(atoms: Atoms, name: str = "structure") -> None:
    """Warn (:class:`~ase_cartnet.errors.MissingADPWarning`) naming every H with no non-H atom
    within :data:`BOND_SEARCH_RADIUS` (a hydride's H⁻, H₂, a misplaced H): the riding model has
    no parent to take its U from and CartNet predicts no H itself, so those H get NaN rows. A
    warning, not an error, so that screening a dataset with hydrides keeps every other atom."""
    from ase_cartnet.graph.neighbours import radius_graph

    is_h = atoms.numbers == 1
    if not is_h.any():
        return
    nl = radius_graph(atoms.positions, atoms.cell[:], atoms.pbc, NEAREST_SEARCH_RADIUS)
    source, target = nl.edge_index
    symbols = atoms.get_chemical_symbols()
    lonely = []
    for h in np.flatnonzero(is_h):
        cand = (target == h) & ~is_h[source]
        nearest = np.min(nl.distances[cand], initial=np.inf)
        if nearest > BOND_SEARCH_RADIUS:
            if np.isfinite(nearest):
                k = np.flatnonzero(cand)[np.argmin(nl.distances[cand])]
                what = f"nearest {symbols[source[k]]} {int(source[k])} at {nearest:.2f} Å"
            else:
                what = f"none within {NEAREST_SEARCH_RADIUS:g} Å"
            lonely.append(f"H {int(h)} ({what})")
    if lonely:
        shown = ", ".join(lonely[:5]) + (f" and {len(lonely) - 5} more" if len(lonely) > 5 else "")
        warnings.warn(
            f"{name}: hydrogen='riding' needs each H bonded to a non-H atom within "
            f"{BOND_SEARCH_RADIUS} Å; {len(lonely)} {'has' if len(lonely) == 1 else 'have'} "
            f"none: {shown} (a hydride, H2 or a misplaced H?); CartNet predicts no H, so their "
            "U is unknown and left NaN (hydrogen='nan', CLI --hydrogen nan, does this for every "
            "H)",
            MissingADPWarning,
            stacklevel=3,
        )


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
