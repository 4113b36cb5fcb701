"""Per-site ADP tables and the comparison with a file's own ADPs, as the CLI prints them.

A CIF's structure is described by its asymmetric unit; tables list one row per site (the first
symmetry image) and metrics compare the non-H sites (riding H are constrained by refinement
programs, not predicted). The ORTEP figure's title uses the same set (:func:`comparison_atoms`).
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from numpy.typing import ArrayLike, NDArray

from ase_cartnet.adp import adp_metrics, principal_axes, u_equiv
from ase_cartnet.scene import asymmetric_unit


def comparison_atoms(atoms: Atoms, adps: ArrayLike, reference: ArrayLike | None) -> NDArray:
    """Indices of the atoms a figure or table compares: the non-H asymmetric-unit atoms with a
    finite U in both ``adps`` and ``reference`` (empty without a reference)."""
    if reference is None:
        return np.zeros(0, dtype=np.intp)
    both = np.isfinite(np.asarray(adps)).all(axis=(1, 2)) & np.isfinite(np.asarray(reference)).all(
        axis=(1, 2)
    )
    unit = asymmetric_unit(atoms)
    return unit[(atoms.numbers[unit] != 1) & both[unit]]


def compare_with_reference(
    atoms: Atoms, adps: ArrayLike, reference: ArrayLike | None
) -> dict[str, float] | None:
    """MAE (Å²), S12 (%) and IoU (%) over :func:`comparison_atoms`; None when none compare."""
    compared = comparison_atoms(atoms, adps, reference)
    if not len(compared):
        return None
    return adp_metrics(np.asarray(adps)[compared], np.asarray(reference)[compared])


def format_adp_table(atoms: Atoms, adps: np.ndarray, reference: np.ndarray | None) -> str:
    """One row per asymmetric-unit site: label, U_eq, smallest and largest principal U (Å²),
    and the reference U_eq when given."""
    labels = atoms.arrays.get("site_label", atoms.get_chemical_symbols())
    header = f"{'#':>4} {'site':<8} {'U_eq (Å²)':>11} {'λ_min':>9} {'λ_max':>9}"
    if reference is not None:
        header += f" {'U_eq ref':>10}"
    lines = [header]
    u_eq = u_equiv(adps)
    ref_eq = u_equiv(reference) if reference is not None else None
    for i in asymmetric_unit(atoms):
        if not np.isfinite(adps[i]).all():
            continue
        values, _ = principal_axes(adps[i])
        line = f"{i:>4} {str(labels[i]):<8} {u_eq[i]:>11.5f} {values[0]:>9.5f} {values[2]:>9.5f}"
        if ref_eq is not None:
            line += f" {ref_eq[i]:>10.5f}" if np.isfinite(ref_eq[i]) else f" {'-':>10}"
        lines.append(line)
    return "\n".join(lines)
