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

The conversion functions take ``(..., 3, 3)`` arrays (one matrix or a stack) and return the
same shape.

Derived quantities: :func:`principal_axes`, :func:`is_positive_definite`,
:func:`probability_scale`, :func:`ellipsoid_volume`, :func:`ellipsoid_surface`.

Metrics, exactly as in the CartNet paper (§5.2.3) and its ESI (S3), the one implementation
used by the calculator, training validation and ``phonon_ref``: :func:`mae` (Å², pooled over
the 9 elements of all atoms), :func:`s12` (Whitten & Spackman 2006, %), :func:`iou` (voxel
IoU, %), and the bundles :func:`per_atom_metrics` / :func:`adp_metrics`. Per-atom metrics
return shape ``(...,)``. They accept numpy arrays or torch tensors and raise ``ValueError``
on mismatched shapes, non-finite values, asymmetric or non-positive-definite matrices.
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
    """|a*|, |b*|, |c*| in Å⁻¹ (no 2π), shape (..., 3), for a cell with lattice vectors as rows."""
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


# ---------------------------------------------------------------------------------------------
# Validation helpers for the derived quantities and metrics
# ---------------------------------------------------------------------------------------------

_SYMMETRY_RTOL = 1e-5
"""Largest |U - Uᵀ| accepted, relative to the largest |U_ij| of the same matrix (float32-safe)."""


def _to_array(u: ArrayLike, name: str) -> NDArray[np.float64]:
    """(..., 3, 3) float64 array from an array-like or a (CPU/GPU, grad-tracking) torch tensor."""
    if hasattr(u, "detach") and hasattr(u, "cpu"):  # torch.Tensor without importing torch
        u = u.detach().cpu().numpy()
    arr = np.asarray(u, dtype=np.float64)
    if arr.ndim < 2 or arr.shape[-2:] != (3, 3):
        raise ValueError(f"{name}: expected ADP matrices of shape (..., 3, 3), got {arr.shape}")
    return arr


def _first_bad(mask: NDArray[np.bool_]) -> str:
    """Human-readable index of the first True entry of a (...,) mask ('' for a single matrix)."""
    if mask.ndim == 0:
        return ""
    idx = tuple(int(i) for i in np.argwhere(mask)[0])
    return f" (first at index {idx[0] if len(idx) == 1 else idx}, {int(mask.sum())} in all)"


def _check_finite(arr: NDArray[np.float64], name: str) -> None:
    bad = ~np.isfinite(arr).all(axis=(-2, -1))
    if bad.any():
        raise ValueError(f"{name}: non-finite (NaN or inf) ADP values{_first_bad(bad)}")


def _asymmetry(arr: NDArray[np.float64]) -> NDArray[np.float64]:
    """max |U - Uᵀ| / max |U| per matrix, shape (...,); 0 for an all-zero matrix."""
    scale = np.abs(arr).max(axis=(-2, -1))
    diff = np.abs(arr - np.swapaxes(arr, -1, -2)).max(axis=(-2, -1))
    return np.divide(diff, scale, out=np.zeros_like(diff), where=scale > 0)


def _symmetric(arr: NDArray[np.float64], name: str) -> NDArray[np.float64]:
    """Check near-symmetry (relative tolerance 1e-5) and return the exactly symmetrised matrices."""
    bad = _asymmetry(arr) > _SYMMETRY_RTOL
    if bad.any():
        raise ValueError(f"{name}: ADP matrices must be symmetric{_first_bad(bad)}")
    return 0.5 * (arr + np.swapaxes(arr, -1, -2))


def _spd(u: ArrayLike, name: str) -> NDArray[np.float64]:
    """Validated symmetric positive-definite (..., 3, 3) float64 matrices."""
    arr = _to_array(u, name)
    _check_finite(arr, name)
    sym = _symmetric(arr, name)
    bad = ~(np.linalg.eigvalsh(sym)[..., 0] > 0.0)
    if bad.any():
        raise ValueError(f"{name}: ADP matrices must be positive definite{_first_bad(bad)}")
    return sym


def _pair(u_a: ArrayLike, u_b: ArrayLike, names: tuple[str, str], spd: bool):
    if spd:
        a, b = _spd(u_a, names[0]), _spd(u_b, names[1])
    else:
        a, b = _to_array(u_a, names[0]), _to_array(u_b, names[1])
        _check_finite(a, names[0])
        _check_finite(b, names[1])
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {names[0]} has shape {a.shape}, {names[1]} {b.shape}")
    return a, b


# ---------------------------------------------------------------------------------------------
# Derived quantities: principal axes, probability ellipsoids
# ---------------------------------------------------------------------------------------------


def principal_axes(u_cart: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Principal mean-square displacements and directions of Cartesian U.

    Parameters
    ----------
    u_cart
        (..., 3, 3) symmetric matrices in Å².

    Returns
    -------
    eigenvalues
        (..., 3) in Å², ascending (the mean-square displacements along each axis;
        negative values are returned as they are, see :func:`is_positive_definite`).
    eigenvectors
        (..., 3, 3); column ``k`` is the unit axis of ``eigenvalues[..., k]``,
        signs chosen so that each eigenvector matrix is a proper rotation (det = +1).
        ``U = V diag(λ) Vᵀ``.
    """
    arr = _to_array(u_cart, "u_cart")
    _check_finite(arr, "u_cart")
    w, v = np.linalg.eigh(_symmetric(arr, "u_cart"))
    v[..., :, 2] *= np.sign(np.linalg.det(v))[..., None]
    return w, v


def is_positive_definite(u: ArrayLike, tol: float = 0.0) -> NDArray[np.bool_]:
    """Whether each matrix is a valid ADP: finite, symmetric and smallest eigenvalue > ``tol``.

    ``u`` has shape (..., 3, 3); ``tol`` is in the units of ``u`` (Å² for U_cart/U_cif).
    Returns a bool array of shape (...,) (a 0-d array for a single matrix). Never raises on
    bad values (NaN, asymmetric) — those are simply ``False``; a wrong shape raises ValueError.
    """
    arr = _to_array(u, "u")
    ok = np.isfinite(arr).all(axis=(-2, -1))
    safe = np.where(ok[..., None, None], arr, np.eye(3))
    ok &= _asymmetry(safe) <= _SYMMETRY_RTOL
    sym = 0.5 * (safe + np.swapaxes(safe, -1, -2))
    return ok & (np.linalg.eigvalsh(sym)[..., 0] > tol)


def probability_scale(p: ArrayLike) -> float | NDArray[np.float64]:
    """Mahalanobis radius c of the ellipsoid that encloses probability ``p`` of a 3D Gaussian.

    The ellipsoid ``xᵀ U⁻¹ x ≤ c²`` contains the atom with probability ``p``; c is the ``p``
    quantile of the chi distribution with 3 degrees of freedom (dimensionless). ORTEP's usual
    50 % ellipsoids have c = 1.5382. ``p`` must lie in (0, 1); a scalar gives a float.
    """
    from scipy.stats import chi

    arr = np.asarray(p, dtype=np.float64)
    if not np.all((arr > 0.0) & (arr < 1.0)):
        raise ValueError(f"probability must lie strictly between 0 and 1, got {p!r}")
    c = chi.ppf(arr, 3)
    return float(c) if np.ndim(c) == 0 else c


def ellipsoid_volume(u_cart: ArrayLike, probability: float | None = None) -> NDArray[np.float64]:
    """Volume of the displacement ellipsoid, (4/3)π c³ sqrt(det U), in Å³; shape (...,).

    With ``probability=None`` (the default) c = 1: the 1-sigma ellipsoid ``xᵀU⁻¹x ≤ 1``, whose
    semi-axes are the r.m.s. displacements sqrt(λ_k). This is the "ADP volume" of the CartNet
    paper (Fig. 4, ESI Table S4). With a probability p, c = :func:`probability_scale` (p) and
    the volume is that of the ORTEP ellipsoid drawn at that probability (p = 0.5: c³ ≈ 3.64).
    ``u_cart`` (..., 3, 3) in Å² must be symmetric positive definite.
    """
    u = _spd(u_cart, "u_cart")
    c = 1.0 if probability is None else probability_scale(probability)
    return 4.0 / 3.0 * np.pi * c**3 * np.sqrt(np.linalg.det(u))


def ellipsoid_surface(
    u_cart: ArrayLike,
    probability: float = 0.5,
    center: ArrayLike = (0.0, 0.0, 0.0),
    n_azimuth: int = 16,
    n_polar: int = 8,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Mesh of the ``probability`` ellipsoid of one (3, 3) U in Å², for surface plots.

    Points are ``center + c V diag(sqrt λ) s`` for unit-sphere points ``s`` on an
    ``(n_polar + 1) × (n_azimuth + 1)`` latitude/longitude grid (poles and seam included,
    so the mesh is closed). Returns x, y, z arrays of that shape in Å, ready for
    ``Axes3D.plot_surface``.
    """
    u = _spd(u_cart, "u_cart")
    if u.shape != (3, 3):
        raise ValueError(f"ellipsoid_surface takes one (3, 3) matrix, got {u.shape}")
    if n_azimuth < 3 or n_polar < 2:
        raise ValueError("need n_azimuth >= 3 and n_polar >= 2")
    centre = np.asarray(center, dtype=np.float64)
    if centre.shape != (3,) or not np.isfinite(centre).all():
        raise ValueError(f"center must be 3 finite numbers, got {center!r}")
    w, v = np.linalg.eigh(u)
    c = probability_scale(probability)
    phi = np.linspace(0.0, 2.0 * np.pi, n_azimuth + 1)
    theta = np.linspace(0.0, np.pi, n_polar + 1)
    sphere = np.stack(
        [
            np.outer(np.sin(theta), np.cos(phi)),
            np.outer(np.sin(theta), np.sin(phi)),
            np.outer(np.cos(theta), np.ones_like(phi)),
        ],
        axis=-1,
    )
    pts = centre + c * (sphere * np.sqrt(w)) @ v.T
    return pts[..., 0], pts[..., 1], pts[..., 2]


# ---------------------------------------------------------------------------------------------
# Metrics of the CartNet paper (§5.2.3 and ESI S3): MAE, S12, voxel IoU
# ---------------------------------------------------------------------------------------------


def mae(u_pred: ArrayLike, u_true: ArrayLike) -> float:
    """Mean absolute error over all 9 elements of U_cart, pooled over atoms, in Å².

    ``u_pred`` and ``u_true``: (..., 3, 3) in Å², same shape, finite (no PD requirement).
    As in the CartNet paper, callers pass non-hydrogen atoms only.
    """
    a, b = _pair(u_pred, u_true, ("u_pred", "u_true"), spd=False)
    if a.size == 0:
        raise ValueError("mae: no atoms given")
    return float(np.mean(np.abs(a - b)))


def s12(u_a: ArrayLike, u_b: ArrayLike) -> NDArray[np.float64]:
    """Similarity index S12 of Whitten & Spackman (2006) in percent; shape (...,).

    S12 = 100 (1 − R12) with R12 = 2^{3/2} det(U_a⁻¹U_b⁻¹)^{1/4} / det(U_a⁻¹ + U_b⁻¹)^{1/2},
    the overlap (Bhattacharyya coefficient) of the two displacement Gaussians: 0 for identical
    ADPs, growing with difference; it does not depend on the overall frame. Evaluated in the
    equivalent inverse-free form R12 = (det U_a det U_b)^{1/4} / det((U_a + U_b)/2)^{1/2} with
    log-determinants, so it is accurate for the small values (< 1 %) typical of good ADPs.
    Both inputs (..., 3, 3) in Å² (any common unit), symmetric positive definite, same shape.
    """
    a, b = _pair(u_a, u_b, ("u_a", "u_b"), spd=True)
    _, lda = np.linalg.slogdet(a)
    _, ldb = np.linalg.slogdet(b)
    _, ldm = np.linalg.slogdet(0.5 * (a + b))
    log_r = 0.25 * (lda + ldb) - 0.5 * ldm
    return -100.0 * np.expm1(log_r)


IOU_GRID = 64
"""Voxels per axis of the CartNet IoU (ESI S3)."""


def _iou_counts(m_a: NDArray[np.float64], m_b: NDArray[np.float64], t: NDArray[np.float64]):
    """Exact voxel counts |A|, |B|, |A∩B| on the grid t×t×t for inverse matrices m (n, 3, 3).

    The grid is summed analytically along z: for fixed (x, y) the inside condition
    c z² + 2 b z + a < 1 holds on an open interval of z, so the voxels inside are the grid
    points of that interval. This counts exactly the voxels a dense evaluation finds (up to
    rounding for points lying on the surface) at O(grid²) instead of O(grid³) cost.
    """
    g = t.size
    x = t[:, None]
    y = t[None, :]
    scale = (g - 1) / 2.0  # z -> fractional grid index (z + 1) * scale

    def interval(m):
        mm = m[:, None, None]  # (n, 1, 1, 3, 3)
        c = mm[..., 2, 2]
        b = mm[..., 0, 2] * x + mm[..., 1, 2] * y
        a = mm[..., 0, 0] * x * x + mm[..., 1, 1] * y * y + 2.0 * mm[..., 0, 1] * x * y
        disc = b * b - c * (a - 1.0)
        root = np.sqrt(np.maximum(disc, 0.0))
        lo = np.where(disc > 0.0, (-b - root) / c, np.inf)
        hi = np.where(disc > 0.0, (-b + root) / c, -np.inf)
        return (lo + 1.0) * scale, (hi + 1.0) * scale

    def count(lo, hi):
        k_min = np.clip(np.floor(lo) + 1.0, 0.0, g)
        k_max = np.clip(np.ceil(hi) - 1.0, -1.0, g - 1.0)
        return np.maximum(k_max - k_min + 1.0, 0.0).sum(axis=(1, 2))

    lo_a, hi_a = interval(m_a)
    lo_b, hi_b = interval(m_b)
    n_a = count(lo_a, hi_a)
    n_b = count(lo_b, hi_b)
    n_ab = count(np.maximum(lo_a, lo_b), np.minimum(hi_a, hi_b))
    return n_a, n_b, n_ab


def _normalised_inverses(a: NDArray[np.float64], b: NDArray[np.float64]):
    """Inverses of U/max(‖U_a‖_F, ‖U_b‖_F) for both stacks (ESI S3 normalisation)."""
    norm = np.maximum(np.linalg.norm(a, axis=(-2, -1)), np.linalg.norm(b, axis=(-2, -1)))
    return np.linalg.inv(a / norm[..., None, None]), np.linalg.inv(b / norm[..., None, None])


def iou(u_pred: ArrayLike, u_true: ArrayLike, grid: int = IOU_GRID) -> NDArray[np.float64]:
    """Voxel Intersection over Union of two ADP ellipsoids (CartNet ESI S3), in percent.

    Both matrices of a pair are divided by the larger of their two Frobenius norms; the cube
    [−1, 1]³ is sampled at ``grid``³ points ``np.linspace(-1, 1, grid)`` per axis (endpoints
    included); a point is inside an ellipsoid where ``xᵀ U_norm⁻¹ x < 1`` (strict, as the
    official implementation); IoU = 100 |A∩B| / |A∪B|. When neither ellipsoid contains a grid
    point (needle-thin ADPs) the IoU is 100, as the official smoothed ratio gives.

    The count along one axis is done analytically (exact, O(grid²) per atom), so thousands of
    atoms take milliseconds. Inputs (..., 3, 3) symmetric positive definite, same shape, any
    common unit (the result is scale-free). Returns shape (...,).
    """
    a, b = _pair(u_pred, u_true, ("u_pred", "u_true"), spd=True)
    grid = int(grid)
    if grid < 2:
        raise ValueError(f"grid must be >= 2, got {grid}")
    shape = a.shape[:-2]
    a = a.reshape(-1, 3, 3)
    b = b.reshape(-1, 3, 3)
    t = np.linspace(-1.0, 1.0, grid)
    out = np.empty(a.shape[0])
    chunk = max(1, 2_000_000 // (grid * grid))
    for start in range(0, a.shape[0], chunk):
        sl = slice(start, start + chunk)
        m_a, m_b = _normalised_inverses(a[sl], b[sl])
        n_a, n_b, n_ab = _iou_counts(m_a, m_b, t)
        union = n_a + n_b - n_ab
        out[sl] = np.divide(100.0 * n_ab, union, out=np.full_like(union, 100.0), where=union > 0)
    return out.reshape(shape)


def _iou_dense(u_pred: ArrayLike, u_true: ArrayLike, grid: int = IOU_GRID) -> NDArray[np.float64]:
    """Reference IoU by brute force on all grid³ voxels (float32), for testing :func:`iou`."""
    a, b = _pair(u_pred, u_true, ("u_pred", "u_true"), spd=True)
    shape = a.shape[:-2]
    a = a.reshape(-1, 3, 3)
    b = b.reshape(-1, 3, 3)
    t = np.linspace(-1.0, 1.0, grid, dtype=np.float32)
    pts = np.stack(np.meshgrid(t, t, t, indexing="ij"), axis=-1).reshape(-1, 3)
    m_a, m_b = _normalised_inverses(a, b)
    out = np.empty(a.shape[0])
    for i in range(a.shape[0]):
        in_a = np.einsum("pi,ij,pj->p", pts, m_a[i].astype(np.float32), pts) < 1.0
        in_b = np.einsum("pi,ij,pj->p", pts, m_b[i].astype(np.float32), pts) < 1.0
        union = np.count_nonzero(in_a | in_b)
        out[i] = 100.0 * np.count_nonzero(in_a & in_b) / union if union else 100.0
    return out.reshape(shape)


def per_atom_metrics(
    u_pred: ArrayLike, u_true: ArrayLike, grid: int = IOU_GRID
) -> dict[str, NDArray[np.float64]]:
    """Per-atom ADP errors: dict of (...,) arrays.

    ``mae`` — mean |ΔU_ij| over the 9 elements (Å²); ``s12`` — :func:`s12` (%);
    ``iou`` — :func:`iou` (%). Inputs (..., 3, 3) Cartesian U in Å², same shape, symmetric
    positive definite. Callers pass non-hydrogen atoms only (the paper's protocol).
    """
    a, b = _pair(u_pred, u_true, ("u_pred", "u_true"), spd=True)
    return {
        "mae": np.mean(np.abs(a - b), axis=(-2, -1)),
        "s12": s12(a, b),
        "iou": iou(a, b, grid=grid),
    }


def adp_metrics(u_pred: ArrayLike, u_true: ArrayLike, grid: int = IOU_GRID) -> dict[str, float]:
    """The CartNet paper's ADP metrics over a set of atoms.

    Returns ``{"mae": Å², "s12": %, "iou": %, "n_atoms": int}``: ``mae`` pooled over all
    elements of all atoms (:func:`mae`), ``s12`` and ``iou`` the means of the per-atom values.
    Inputs (N, 3, 3) (or any (..., 3, 3)) Cartesian U in Å², same shape, SPD, at least one atom.
    """
    per_atom = per_atom_metrics(u_pred, u_true, grid=grid)
    n_atoms = int(per_atom["mae"].size)
    if n_atoms == 0:
        raise ValueError("adp_metrics: no atoms given")
    return {
        "mae": float(np.mean(per_atom["mae"])),
        "s12": float(np.mean(per_atom["s12"])),
        "iou": float(np.mean(per_atom["iou"])),
        "n_atoms": n_atoms,
    }


def symmetry_image_u_star(rotations: ArrayLike, u_star: ArrayLike) -> NDArray[np.float64]:
    """Fractional ADPs of symmetry images: the image x' = R x + t of a site has U*' = R U* Rᵀ.

    ``rotations``: (M, 3, 3) integer-valued rotation parts of the operations (acting on
    fractional coordinates); ``u_star``: (n, 3, 3). Returns (M, n, 3, 3).
    """
    r = np.asarray(rotations, dtype=np.float64)
    return np.einsum("mij,njk,mlk->mnil", r, _as_matrices(u_star), r)
