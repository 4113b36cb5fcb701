"""Impose the space group of one structure on a deformed copy of it (same atoms, same order).

A relaxation that starts from a symmetric structure keeps its symmetry (forces and stress are
symmetric), so the relaxed crystal has the space group of the unrelaxed one. A one-shot
prediction (DeepRelax's distance-geometry solve) carries small symmetry-breaking errors instead;
a symmetry-breaking start costs an optimizer many extra steps on modes that should be zero.
:func:`symmetrize_like` projects the prediction back onto the symmetric subspace of the
reference, the way ``ase.constraints.FixSymmetry`` projects forces and stress:

* the cell deformation ε, with L̂ = L₀ (I + ε) (lattice vectors as rows), is averaged over the
  point group as a rank-2 Cartesian tensor;
* every atom's displacement u_i = (x̂_i − x₀_i) L₀ (fractional coordinates x in their own
  cell) is averaged over the space-group operations, which map atom i to atom g(i).

The result is L_sym = L₀ (I + ε_sym) and r_i = (x₀_i + u_sym,i L₀⁻¹) L_sym. With only the
identity (P1) the prediction is returned unchanged.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from ase_cartnet.errors import InputError

DEFAULT_SYMPREC = 1e-3
"""Å: the tolerance spglib uses to find the reference's symmetry (as phonon_ref's relaxation)."""


def symmetrize_like(
    predicted: Atoms, reference: Atoms, symprec: float = DEFAULT_SYMPREC
) -> tuple[Atoms, int]:
    """``predicted`` with the space group of ``reference`` imposed (module docstring).

    Both have the same atoms in the same order; ``predicted`` positions continue the
    reference's (not re-wrapped). Returns the symmetrized copy and the number of
    symmetry operations found in ``reference`` (1: nothing to impose, the copy is unchanged).
    """
    from ase.spacegroup.symmetrize import prep_symmetry, symmetrize_rank1, symmetrize_rank2

    if len(predicted) != len(reference) or not np.array_equal(predicted.numbers, reference.numbers):
        raise InputError("symmetrize_like needs the same atoms in the same order")
    out = predicted.copy()
    rotations, translations, symm_map = prep_symmetry(reference, symprec=symprec)
    if len(rotations) <= 1:
        return out, len(rotations)
    cell0 = np.asarray(reference.cell[:], dtype=float)
    inv0 = np.linalg.inv(cell0)
    cell1 = np.asarray(predicted.cell[:], dtype=float)
    strain = inv0 @ cell1 - np.eye(3)  # L̂ = L₀ (I + ε)
    strain_sym = symmetrize_rank2(cell0, inv0, strain, rotations)
    cell_sym = cell0 @ (np.eye(3) + strain_sym)
    frac0 = reference.get_scaled_positions(wrap=False)
    frac1 = predicted.get_scaled_positions(wrap=False)
    shift = np.round(frac1 - frac0)  # keep atoms that crossed a cell face with their image
    disp = (frac1 - shift - frac0) @ cell0
    disp_sym = symmetrize_rank1(cell0, inv0, disp, rotations, translations, symm_map)
    frac_sym = frac0 + shift + disp_sym @ inv0
    out.set_cell(cell_sym, scale_atoms=False)
    out.set_positions(frac_sym @ cell_sym)
    return out, len(rotations)


def symmetrize_adps(
    atoms: Atoms, adps: np.ndarray, symprec: float = DEFAULT_SYMPREC
) -> tuple[np.ndarray, int]:
    """Cartesian U (..., N, 3, 3), Å², averaged over the space group of ``atoms`` (leading axes,
    e.g. a temperature sweep, share one symmetry search).

    A space-group operation (R, t) (fractional, x' = R x + t) maps atom j onto atom g(j) and
    carries its displacement tensor with it: U_g(j) = R_c U_j R_cᵀ with the Cartesian rotation
    R_c = Lᵀ R L⁻ᵀ (L: lattice vectors as rows). Harmonic ADPs obey this exactly (site symmetry
    and the equality of symmetry-equivalent atoms, the constraints refinement programs impose);
    the average (1/|G|) Σ_g R_c U_g⁻¹(i) R_cᵀ is the projection of a prediction onto them. A
    mean of positive-definite matrices stays positive definite; NaN rows (unpredicted H) spread
    only to the atoms they are equivalent to. Returns the symmetrized U and |G| (1: P1, the
    input returned as a copy).
    """
    from ase.spacegroup.symmetrize import prep_symmetry

    adps = np.asarray(adps, dtype=float)
    if adps.shape[-3:] != (len(atoms), 3, 3):
        raise InputError(f"adps must have shape (..., {len(atoms)}, 3, 3), got {adps.shape}")
    rotations, _, symm_map = prep_symmetry(atoms, symprec=symprec)
    if len(rotations) <= 1:
        return adps.copy(), len(rotations)
    lattice = np.asarray(atoms.cell[:], dtype=float)
    to_cart = lattice.T @ np.asarray(rotations, dtype=float) @ np.linalg.inv(lattice).T
    total = np.zeros_like(adps)
    for r_cart, images in zip(to_cart, symm_map, strict=True):
        total[..., np.asarray(images), :, :] += r_cart @ adps @ r_cart.T
    return total / len(rotations), len(rotations)
