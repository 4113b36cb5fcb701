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

Both averages cost time linear in the number of atoms: :class:`SpaceGroupAction` finds the
operations with spglib once, splits the group into its pure translations T (a supercell of an
n-atom cell has |T| = N/n of them) and one representative per distinct rotation (at most 48),
and averages over T through spglib's translation orbits (``mapping_to_primitive``) before the
representatives act, since Σ_{g ∈ G} = Σ_k Σ_{t ∈ T} for g = g_k t. Each representative's
atom mapping is a nearest-image search in a periodic k-d tree on fractional coordinates (the
metric of ASE's ``prep_symmetry``, whose per-atom loops made this quadratic).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from ase_cartnet.errors import InputError

DEFAULT_SYMPREC = 1e-3
"""Å: the tolerance spglib uses to find the reference's symmetry (as phonon_ref's relaxation)."""


@dataclass(frozen=True)
class SpaceGroupAction:
    """How the space group of one structure permutes and rotates its atoms.

    ``rotations`` (K, 3, 3) int: the fractional rotation of one representative operation per
    distinct rotation; ``images`` (K, N) int: atom i goes to atom images[k, i] under
    representative k; ``orbits`` (N,) int: label of each atom's orbit under the pure
    translations (atoms with one label are lattice translations of each other); ``n_ops``: |G|,
    all operations, pure translations included.
    """

    rotations: np.ndarray
    images: np.ndarray
    orbits: np.ndarray
    n_ops: int

    @property
    def n_translations(self) -> int:
        """|T|, the pure translations (1 for a primitive cell)."""
        return self.n_ops // len(self.rotations)

    def translation_mean(self, values: np.ndarray) -> np.ndarray:
        """Per-atom ``values`` (N, ...) averaged over each atom's translation orbit."""
        if self.n_translations == 1:
            return values
        flat = values.reshape(len(values), -1)
        sums = np.zeros((int(self.orbits.max()) + 1, flat.shape[1]), dtype=flat.dtype)
        np.add.at(sums, self.orbits, flat)
        return (sums[self.orbits] / self.n_translations).reshape(values.shape)

    def average(self, values: np.ndarray, transformed: np.ndarray) -> np.ndarray:
        """(1/|G|) Σ_g g·values, where ``transformed`` (K, N, ...) holds each representative's
        action on the translation-averaged ``values`` at the source atom; it is scattered to
        the image atoms and summed over the representatives."""
        total = np.zeros_like(values)
        for k, images in enumerate(self.images):  # K ≤ 48 operations, not atoms
            total[images] += transformed[k]
        return total / len(self.images)


def space_group_action(atoms: Atoms, symprec: float = DEFAULT_SYMPREC) -> SpaceGroupAction:
    """The :class:`SpaceGroupAction` of ``atoms`` (one spglib search; time linear in N).

    spglib searches the Minkowski-reduced basis of the lattice (it crashes on very skewed
    bases, and its tolerance is meant for reduced cells); the rotations are returned in the
    basis of ``atoms.cell``."""
    import spglib
    from ase.geometry import minkowski_reduce
    from scipy.spatial import cKDTree

    lattice = np.asarray(atoms.cell[:], dtype=float)
    reduced, op = minkowski_reduce(lattice, True)
    op = np.rint(op).astype(int)  # reduced = op @ lattice
    frac = _wrap(atoms.positions @ np.linalg.inv(np.asarray(reduced, dtype=float)))
    cell = (np.asarray(reduced, dtype=float), frac, atoms.numbers)
    dataset = spglib.get_symmetry_dataset(cell, symprec=symprec)
    n = len(atoms)
    if dataset is None:  # spglib found no symmetry at all (degenerate input): identity only
        return SpaceGroupAction(np.eye(3, dtype=int)[None], np.arange(n)[None], np.arange(n), 1)
    all_rotations = np.asarray(dataset.rotations)
    all_translations = np.asarray(dataset.translations)
    _, first = np.unique(all_rotations.reshape(len(all_rotations), 9), axis=0, return_index=True)
    first = np.sort(first)  # spglib's order: the identity first
    rotations, translations = all_rotations[first], all_translations[first]
    orbits = np.asarray(dataset.mapping_to_primitive)
    n_translations = len(all_rotations) // len(rotations)
    counts = np.bincount(orbits)
    if len(all_rotations) % len(rotations) or not np.all(counts[counts > 0] == n_translations):
        raise RuntimeError(  # spglib's primitive cell disagrees with its operations
            f"inconsistent spglib symmetry for {atoms.get_chemical_formula()}: "
            f"{len(all_rotations)} operations, {len(rotations)} rotations, "
            f"translation orbits of sizes {sorted(set(counts[counts > 0].tolist()))}"
        )
    # Nearest image of R x + t among the atoms, fractional metric with periodic wrap.
    tree = cKDTree(_wrap(frac), boxsize=1.0)
    moved = np.einsum("kab,nb->kna", rotations, frac) + translations[:, None, :]
    _, images = tree.query(_wrap(moved.reshape(-1, 3)))
    images = images.reshape(len(rotations), n)
    # x = opᵀ x_r (fractional columns), so R = opᵀ R_r op⁻ᵀ in the basis of atoms.cell
    rotations = np.rint(op.T @ rotations @ np.linalg.inv(op).T).astype(int)
    return SpaceGroupAction(rotations, images, orbits, len(all_rotations))


def _wrap(frac: np.ndarray) -> np.ndarray:
    """Fractional coordinates in [0, 1) exactly (np.mod of −1e-17 rounds to 1.0)."""
    wrapped = np.mod(frac, 1.0)
    wrapped[wrapped >= 1.0] = 0.0
    return wrapped


def _cartesian_rotations(atoms: Atoms, rotations: np.ndarray) -> np.ndarray:
    """R_c = Lᵀ R L⁻ᵀ (K, 3, 3) for fractional rotations R (L: lattice vectors as rows)."""
    lattice = np.asarray(atoms.cell[:], dtype=float)
    return lattice.T @ np.asarray(rotations, dtype=float) @ np.linalg.inv(lattice).T


def _is_permutation(images: np.ndarray) -> bool:
    ordered = np.sort(images, axis=1)
    return bool(np.all(ordered == np.arange(images.shape[1])))


def symmetrize_like(
    predicted: Atoms, reference: Atoms, symprec: float = DEFAULT_SYMPREC
) -> tuple[Atoms, int]:
    """``predicted`` with the space group of ``reference`` imposed (module docstring).

    Both have the same atoms in the same order; ``predicted`` positions continue the
    reference's (not re-wrapped). Returns the symmetrized copy and the number of
    symmetry operations found in ``reference`` (1: nothing to impose, the copy is unchanged).
    """
    if len(predicted) != len(reference) or not np.array_equal(predicted.numbers, reference.numbers):
        raise InputError("symmetrize_like needs the same atoms in the same order")
    out = predicted.copy()
    action = space_group_action(reference, symprec)
    if action.n_ops <= 1:
        return out, action.n_ops
    if not _is_permutation(action.images):
        warnings.warn(_NOT_A_PERMUTATION.format(reference.get_chemical_formula()), stacklevel=2)
        return out, 1
    cell0 = np.asarray(reference.cell[:], dtype=float)
    inv0 = np.linalg.inv(cell0)
    cell1 = np.asarray(predicted.cell[:], dtype=float)
    strain = inv0 @ cell1 - np.eye(3)  # L̂ = L₀ (I + ε)
    # Rank 2 in the lattice frame: ε ↦ L⁻¹ (Rᵀ (L ε Lᵀ) R) L⁻ᵀ, averaged over the rotations
    # (each appears |T| times in G, so the distinct ones give the same mean).
    rot = action.rotations.astype(float)
    scaled = cell0 @ strain @ cell0.T
    strain_sym = inv0 @ np.mean(np.swapaxes(rot, 1, 2) @ scaled @ rot, axis=0) @ inv0.T
    cell_sym = cell0 @ (np.eye(3) + strain_sym)
    frac0 = reference.get_scaled_positions(wrap=False)
    frac1 = predicted.get_scaled_positions(wrap=False)
    shift = np.round(frac1 - frac0)  # keep atoms that crossed a cell face with their image
    disp = action.translation_mean((frac1 - shift - frac0) @ cell0)
    # Rank 1: a displacement rotates as a vector, fractional components R (u L⁻¹).
    moved = np.einsum("kab,nb->kna", rot, disp @ inv0) @ cell0
    disp_sym = action.average(disp, moved)
    frac_sym = frac0 + shift + disp_sym @ inv0
    out.set_cell(cell_sym, scale_atoms=False)
    out.set_positions(frac_sym @ cell_sym)
    return out, action.n_ops


_NOT_A_PERMUTATION = (
    "{}: the symmetry operations spglib found do not map the atoms one-to-one at this "
    "tolerance; returned without symmetrization"
)


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
    input returned as a copy). Time linear in N (module docstring).
    """
    adps = np.asarray(adps, dtype=float)
    if adps.shape[-3:] != (len(atoms), 3, 3):
        raise InputError(f"adps must have shape (..., {len(atoms)}, 3, 3), got {adps.shape}")
    action = space_group_action(atoms, symprec)
    if action.n_ops <= 1:
        return adps.copy(), action.n_ops
    if not _is_permutation(action.images):
        warnings.warn(_NOT_A_PERMUTATION.format(atoms.get_chemical_formula()), stacklevel=2)
        return adps.copy(), 1
    per_atom = np.moveaxis(adps, -3, 0)  # (N, ..., 3, 3): atoms first for the scatter
    per_atom = action.translation_mean(per_atom)
    r_cart = _cartesian_rotations(atoms, action.rotations)
    turned = np.einsum("kab,n...bc,kdc->kn...ad", r_cart, per_atom, r_cart, optimize=True)
    return np.moveaxis(action.average(per_atom, turned), 0, -3), action.n_ops
