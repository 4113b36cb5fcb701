"""ADP mathematics: conversions between ADP conventions, derived quantities and metrics.

Conventions (IUCr, Grosse-Kunstleve & Adams 2002; Trueblood et al. 1996):

* ``cell`` is ASE's (3, 3) matrix whose **rows** are the lattice vectors a, b, c in Å.
  ``A = cell.T`` has the lattice vectors as columns.
* ``N = diag(|a*|, |b*|, |c*|)`` with the reciprocal lengths in Å⁻¹ (no 2π).
* ``U_cart`` (Å²) is the Cartesian displacement covariance in the frame of ``atoms.positions``.
* ``U_star`` (dimensionless) is U in fractional coordinates:  U_cart = A U* Aᵀ.
* ``U_cif`` (Å²) holds the CIF's ``_atom_site_aniso_U_ij``:      U* = N U_cif N.
* ``beta`` (dimensionless) is the SHELX/ORTEP β:                 β = 2π² U*.
* ``B_cif`` (Å²) holds ``_atom_site_aniso_B_ij``:                B = 8π² U_cif.

All functions take ``(..., 3, 3)`` arrays (one matrix or a stack) and return the same shape.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

CIF_COMPONENT_ORDER = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
"""Index pairs of the CIF aniso loop order U11 U22 U33 U23 U13 U12."""

TWO_PI_SQ = 2.0 * np.pi**2
EIGHT_PI_SQ = 8.0 * np.pi**2


def _as_matrices(u: ArrayLike) -> NDArray[np.float64]:
    arr = np.asarray(u, dtype=np.float64)
    if arr.shape[-2:] != (3, 3):
        raise ValueError(f"expected ADP matrices of shape (..., 3, 3), got {arr.shape}")
    return arr


def _as_cell(cell: ArrayLike) -> NDArray[np.float64]:
    arr = np.asarray(cell, dtype=np.float64)
    if arr.shape[-2:] != (3, 3):
        raise ValueError(f"expected a (3, 3) cell, got shape {arr.shape}")
    return arr


def reciprocal_lengths(cell: ArrayLike) -> NDArray[np.float64]:
    """|a*|, |b*|, |c*| in Å⁻¹ (without 2π) for a cell with lattice vectors as rows; shape (..., 3)."""
    c = _as_cell(cell)
    # Rows of inv(cell).T are the reciprocal vectors a*, b*, c*.
    return np.linalg.norm(np.swapaxes(np.linalg.inv(c), -1, -2), axis=-1)


def u_cif_to_u_star(u_cif: ArrayLike, cell: ArrayLike) -> NDArray[np.float64]:
    """U* = N U_cif N with N = diag(a*, b*, c*)."""
    n = reciprocal_lengths(cell)
    return _as_matrices(u_cif) * n[..., :, None] * n[..., None, :]


def u_star_to_u_cif(u_star: ArrayLike, cell: ArrayLike) -> NDArray[np.float64]:
    """U_cif = N⁻¹ U* N⁻¹."""
    n = reciprocal_lengths(cell)
    return _as_matrices(u_star) / (n[..., :, None] * n[..., None, :])


def u_star_to_u_cart(u_star: ArrayLike, cell: ArrayLike) -> NDArray[np.float64]:
    """U_cart = A U* Aᵀ with A = cellᵀ (lattice vectors as columns)."""
    a = np.swapaxes(_as_cell(cell), -1, -2)
    return a @ _as_matrices(u_star) @ np.swapaxes(a, -1, -2)


def u_cart_to_u_star(u_cart: ArrayLike, cell: ArrayLike) -> NDArray[np.float64]:
    """U* = A⁻¹ U_cart A⁻ᵀ."""
    a_inv = np.linalg.inv(np.swapaxes(_as_cell(cell), -1, -2))
    return a_inv @ _as_matrices(u_cart) @ np.swapaxes(a_inv, -1, -2)


def u_cif_to_u_cart(u_cif: ArrayLike, cell: ArrayLike) -> NDArray[np.float64]:
    """CIF U^ij (Å²) to Cartesian U (Å²): U_cart = A N U_cif N Aᵀ."""
    return u_star_to_u_cart(u_cif_to_u_star(u_cif, cell), cell)


def u_cart_to_u_cif(u_cart: ArrayLike, cell: ArrayLike) -> NDArray[np.float64]:
    """Cartesian U (Å²) to CIF U^ij (Å²): U_cif = N⁻¹ A⁻¹ U_cart A⁻ᵀ N⁻¹."""
    return u_star_to_u_cif(u_cart_to_u_star(u_cart, cell), cell)


def u_star_to_beta(u_star: ArrayLike) -> NDArray[np.float64]:
    """β = 2π² U* (dimensionless anisotropic temperature-factor coefficients)."""
    return TWO_PI_SQ * _as_matrices(u_star)


def beta_to_u_star(beta: ArrayLike) -> NDArray[np.float64]:
    """U* = β / (2π²)."""
    return _as_matrices(beta) / TWO_PI_SQ


def u_to_b(u: ArrayLike) -> NDArray[np.float64]:
    """B = 8π² U (Å²); works for matrices and for isotropic scalars."""
    return EIGHT_PI_SQ * np.asarray(u, dtype=np.float64)


def b_to_u(b: ArrayLike) -> NDArray[np.float64]:
    """U = B / (8π²) (Å²); works for matrices and for isotropic scalars."""
    return np.asarray(b, dtype=np.float64) / EIGHT_PI_SQ


def u_iso_to_u_cart(u_iso: ArrayLike) -> NDArray[np.float64]:
    """Isotropic U (Å², shape (...,)) to Cartesian matrices U_iso·I, shape (..., 3, 3)."""
    u = np.asarray(u_iso, dtype=np.float64)
    return u[..., None, None] * np.eye(3)


def u_equiv(u_cart: ArrayLike) -> NDArray[np.float64]:
    """U_eq = tr(U_cart)/3 in Å², shape (...,)."""
    return np.trace(_as_matrices(u_cart), axis1=-2, axis2=-1) / 3.0


def six_to_matrix(six: ArrayLike) -> NDArray[np.float64]:
    """(..., 6) components in CIF order (11, 22, 33, 23, 13, 12) to symmetric (..., 3, 3)."""
    s = np.asarray(six, dtype=np.float64)
    if s.shape[-1] != 6:
        raise ValueError(f"expected (..., 6) ADP components, got {s.shape}")
    out = np.empty(s.shape[:-1] + (3, 3))
    for k, (i, j) in enumerate(CIF_COMPONENT_ORDER):
        out[..., i, j] = s[..., k]
        out[..., j, i] = s[..., k]
    return out


def matrix_to_six(u: ArrayLike) -> NDArray[np.float64]:
    """Symmetric (..., 3, 3) to (..., 6) components in CIF order (11, 22, 33, 23, 13, 12)."""
    m = _as_matrices(u)
    return np.stack([m[..., i, j] for i, j in CIF_COMPONENT_ORDER], axis=-1)
