"""Supercell matrices and q-meshes from what a user types: a length in Å, a triple, a matrix."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ase_cartnet.adp import reciprocal_lengths
from ase_cartnet.errors import InputError

DEFAULT_MIN_LENGTH = 10.0
"""Å. Default supercell: every perpendicular width of the supercell is at least this long."""

DEFAULT_MESH_LENGTH = 100.0
"""Å. Default q-mesh density: n_i = ceil(L |b_i|) rounded up to odd (|b_i| in Å⁻¹, no 2π):
25 per axis for a 4 Å cubic cell, 11 for a 10 Å one. U(300 K) is then within about 2–3 % of
the converged value (the error falls as 1/L; see ``phonon_ref.reference``)."""

SupercellSpec = None | float | Sequence[int] | Sequence[Sequence[int]] | NDArray[np.int64]
MeshSpec = float | int | Sequence[int] | NDArray[np.int64]


def resolve_supercell(cell: ArrayLike, supercell: SupercellSpec = None) -> NDArray[np.int64]:
    """The (3, 3) integer supercell matrix (phonopy's ``supercell_matrix``).

    ``supercell`` is ``None`` (the default length, :data:`DEFAULT_MIN_LENGTH`), a float (Å: the
    smallest diagonal supercell whose three perpendicular widths are all at least that long),
    three positive ints (a diagonal supercell) or a 3×3 integer matrix with positive
    determinant. A bare int is refused as ambiguous.
    """
    if supercell is None:
        supercell = DEFAULT_MIN_LENGTH
    if isinstance(supercell, bool):
        raise InputError(f"supercell must be a length, a triple or a 3x3 matrix, got {supercell}")
    if isinstance(supercell, int | np.integer):
        raise InputError(
            f"supercell={supercell} is ambiguous: give ({supercell}, {supercell}, {supercell}) "
            f"for a diagonal supercell or {float(supercell)} for a minimum length in Å"
        )
    if isinstance(supercell, float | np.floating):
        length = float(supercell)
        if not (math.isfinite(length) and length > 0):
            raise InputError(f"supercell length must be a positive number of Å, got {length}")
        heights = 1.0 / reciprocal_lengths(cell)  # perpendicular widths of the cell, Å
        return np.diag([max(1, math.ceil(length / h - 1e-9)) for h in heights]).astype(np.int64)
    arr = np.asarray(supercell)
    if arr.shape == (3,):
        arr = np.diag(arr)
    if arr.shape != (3, 3) or not np.all(np.isfinite(arr.astype(float))):
        raise InputError(f"supercell must be 3 ints or a 3x3 int matrix, got {supercell!r}")
    if not np.allclose(arr, np.round(arr)):
        raise InputError(f"supercell matrix must be integer, got {arr.tolist()}")
    matrix = np.round(arr).astype(np.int64)
    if round(float(np.linalg.det(matrix))) <= 0:
        raise InputError(
            f"supercell matrix must have a positive determinant, got {matrix.tolist()}"
        )
    return matrix


def resolve_mesh(cell: ArrayLike, mesh: MeshSpec = DEFAULT_MESH_LENGTH) -> NDArray[np.int64]:
    """Mesh numbers (3,) of a Γ-centred q-mesh.

    ``mesh`` is three positive ints (used as given; odd ones are recommended), one int (the
    same on every axis) or a float length L in Å (n_i = ceil(L |b_i|), rounded up to odd).
    """
    if isinstance(mesh, bool):
        raise InputError(f"mesh must be ints or a length in Å, got {mesh!r}")
    if isinstance(mesh, float | np.floating):
        length = float(mesh)
        if not (math.isfinite(length) and length > 0):
            raise InputError(f"mesh length must be a positive number of Å, got {length}")
        n = [max(1, math.ceil(length * b - 1e-9)) for b in reciprocal_lengths(cell)]
        return np.array([k if k % 2 else k + 1 for k in n], dtype=np.int64)
    arr = np.asarray(mesh)
    if arr.ndim == 0:
        arr = np.repeat(arr, 3)
    if arr.shape != (3,) or not np.allclose(arr, np.round(arr)) or np.any(arr < 1):
        raise InputError(f"mesh must be three positive ints or a length in Å, got {mesh!r}")
    return np.round(arr).astype(np.int64)
