"""Warnings for inputs a prediction or comparison should not be trusted on.

* A structure outside the loaded model's domain: the default weights predict harmonic ADPs of
  ordered inorganic crystals; a molecular (organic or metal-organic) crystal, recognised by its
  C–H bonds, gets a warning saying what to expect and what to use instead.
* Implausible ADPs in the file itself: U_eq larger than an ordered atom can have at the stated
  temperature (``implausible_u_eq_limit``) points to disorder, a misassigned atom or a wrong
  temperature, and makes any comparison with the file meaningless for those sites.
"""

from __future__ import annotations

import warnings

import numpy as np
from ase import Atoms

from ase_cartnet.adp import u_equiv

CH_BOND = 1.2
"""Å: a C–H pair closer than this is a bond (C–H is 0.95–1.10 Å)."""

DOMAINS = {
    "inorganic": "harmonic ADPs of ordered inorganic crystals",
}


def implausible_u_eq_limit(temperature: float) -> float:
    """Å²: the largest U_eq taken as plausible for an ordered non-H atom at ``temperature`` K:
    0.1 Å² plus 0.1 Å² per 300 K (0.11 Å² at 23 K, 0.2 Å² at room temperature; refined organic
    crystals at 100 K stay below about 0.06 Å², disordered solvent goes beyond 0.3 Å²)."""
    return 0.1 + 0.1 * float(temperature) / 300.0


def is_molecular(atoms: Atoms) -> bool:
    """Whether ``atoms`` holds C–H bonds (an organic or metal-organic molecular crystal)."""
    from ase_cartnet.graph.neighbours import closest_pairs

    if not ((atoms.numbers == 6).any() and (atoms.numbers == 1).any()):
        return False
    pairs = closest_pairs(atoms.positions, atoms.cell[:], atoms.pbc, CH_BOND)
    i, j = pairs[:, 0].astype(int), pairs[:, 1].astype(int)
    kinds = np.sort(np.stack([atoms.numbers[i], atoms.numbers[j]], axis=1), axis=1)
    return bool(((kinds[:, 0] == 1) & (kinds[:, 1] == 6)).any())


def warn_outside_domain(atoms: Atoms, domain: str | None, name: str, stacklevel: int = 3) -> None:
    """Warn when ``atoms`` lies outside the model's ``domain`` (None: no claim, no warning)."""
    if domain == "inorganic" and is_molecular(atoms):
        warnings.warn(
            f"{name}: a molecular crystal (C–H bonds) lies outside the loaded model's domain "
            f"({DOMAINS[domain]}): expect it to miss molecular libration and disorder; for "
            "experimental organic ADPs use an official CartNet checkpoint (--checkpoint)",
            stacklevel=stacklevel,
        )


def check_reference_adps(atoms: Atoms, reference: np.ndarray, temperature: float) -> list[str]:
    """Site labels whose file U_eq exceeds :func:`implausible_u_eq_limit` (non-H atoms); a
    warning names them. ``reference``: (N, 3, 3) Å² from the file."""
    limit = implausible_u_eq_limit(temperature)
    u_eq = u_equiv(np.where(np.isfinite(reference), reference, 0.0))
    bad = (atoms.numbers != 1) & (u_eq > limit)
    labels = atoms.arrays.get("site_label", np.array(atoms.get_chemical_symbols()))
    sites = list(dict.fromkeys(f"{labels[i]} ({u_eq[i]:.3f})" for i in np.flatnonzero(bad)))
    if sites:
        source = atoms.info.get("source_file", atoms.get_chemical_formula())
        warnings.warn(
            f"{source}: the file's ADPs are implausible at {temperature:g} K for "
            f"{', '.join(sites[:12])}{' …' if len(sites) > 12 else ''}: U_eq above "
            f"{limit:.3f} Å² (a disordered or misassigned atom, or a wrong temperature); "
            "comparisons at these sites mean little",
            stacklevel=3,
        )
    return sites
