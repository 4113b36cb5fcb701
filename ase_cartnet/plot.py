"""ORTEP-style plots of ADP ellipsoids (matplotlib, off-screen Agg rendering).

All geometry comes from :mod:`ase_cartnet.adp` (probability scale, principal axes, IoU); this
module only draws. Figures are built with :class:`matplotlib.figure.Figure` directly, so no
pyplot state or display backend is touched, and files are written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols
from ase.data.colors import jmol_colors
from numpy.typing import ArrayLike, NDArray

from ase_cartnet import adp
from ase_cartnet.io.atomic import atomic_path, ensure_not_input

PREDICTION_RGB = (0.85, 0.12, 0.10)
REFERENCE_RGB = (0.10, 0.65, 0.20)
REFERENCE_ALPHA = 0.35
CELL_AXIS_COLOURS = ("red", "green", "blue")  # a, b, c as in the CartNet paper's figures
PLACEHOLDER_RADIUS = 0.12  # Å; sphere drawn for atoms without a (finite) U
MESH_FINE = (24, 12)  # azimuthal × polar facets per ellipsoid for small structures
MESH = (16, 8)  # ... and above MESH_FINE_MAX_ATOMS: light enough for hundreds of atoms
MESH_FINE_MAX_ATOMS = 60
ANNOTATE_MAX_ATOMS = 80  # per-atom IoU labels by default up to this size
_LIGHT = np.array([-0.4, -0.5, 0.77]) / np.linalg.norm([-0.4, -0.5, 0.77])


def _check_adps(adps: ArrayLike, n_atoms: int, name: str) -> NDArray[np.float64]:
    """(N, 3, 3) float64 array; rows with any non-finite value mean "no ADP" (drawn as a sphere).

    Finite rows must be symmetric positive definite.
    """
    arr = np.asarray(adps, dtype=np.float64)
    if arr.shape != (n_atoms, 3, 3):
        raise ValueError(
            f"{name}: expected shape ({n_atoms}, 3, 3) for {n_atoms} atoms, got {arr.shape}"
        )
    finite = np.isfinite(arr).all(axis=(1, 2))
    bad = finite & ~adp.is_positive_definite(arr)
    if bad.any():
        idx = np.flatnonzero(bad)
        raise ValueError(
            f"{name}: ADPs of atoms {idx[:10].tolist()} are not symmetric positive definite"
        )
    return arr


def _faces(x: NDArray, y: NDArray, z: NDArray) -> NDArray[np.float64]:
    """Quadrilaterals (F, 4, 3) of a (rows, cols) surface mesh."""
    p = np.stack([x, y, z], axis=-1)
    quads = np.stack([p[:-1, :-1], p[:-1, 1:], p[1:, 1:], p[1:, :-1]], axis=-2)
    return quads.reshape(-1, 4, 3)


def _shaded(
    faces: NDArray,
    centre: NDArray,
    rgb: Sequence[float],
    alpha: float,
    axes: NDArray | None = None,
) -> NDArray:
    """Per-face RGBA with simple Lambert shading from a fixed light.

    With ``axes`` (the (3, 3) principal directions as columns) the faces of the octant where
    all three principal coordinates are positive are darkened: ORTEP's octant shading, which
    makes the orientation of the principal axes readable.
    """
    rel = faces.mean(axis=1) - centre
    normals = rel / (np.linalg.norm(rel, axis=1, keepdims=True) + 1e-30)  # convex body
    light = 0.45 + 0.55 * np.clip(normals @ _LIGHT, 0.0, 1.0)
    if axes is not None:
        octant = ((rel @ axes) > 0.0).all(axis=1)
        light = np.where(octant, 0.45 * light, light)
    rgba = np.empty((faces.shape[0], 4))
    rgba[:, :3] = np.clip(np.asarray(rgb)[None, :] * light[:, None], 0.0, 1.0)
    rgba[:, 3] = alpha
    return rgba


def _dot(colour, label: str, alpha: float = 1.0):
    """Legend proxy: a filled circle."""
    from matplotlib.lines import Line2D

    return Line2D(
        [], [], marker="o", ls="", color=colour, mec="0.3", mew=0.5, alpha=alpha, label=label
    )


def _cell_edges(cell: NDArray) -> list[tuple[NDArray, NDArray, str, float]]:
    """12 edges of the cell parallelepiped: (start, end, colour, linewidth)."""
    a, b, c = cell
    origin = np.zeros(3)
    edges = [(origin, v, col, 2.0) for v, col in zip((a, b, c), CELL_AXIS_COLOURS, strict=True)]
    for s, d in (
        (a, b),
        (a, c),
        (b, a),
        (b, c),
        (c, a),
        (c, b),
        (a + b, c),
        (a + c, b),
        (b + c, a),
    ):
        edges.append((s, s + d, "0.35", 0.8))
    return edges


def plot_ellipsoids(
    path: str | os.PathLike,
    atoms: Atoms,
    adps: ArrayLike,
    reference: ArrayLike | None = None,
    probability: float = 0.5,
    labels: Sequence[str] | None = None,
    title: str | None = None,
    show_cell: bool = True,
    *,
    annotate_iou: bool | None = None,
    inputs: Iterable[str | os.PathLike | None] = (),
    view: tuple[float, float] = (20.0, -60.0),
    show_axes: bool = False,
    dpi: int = 150,
    figsize: tuple[float, float] = (7.0, 7.0),
) -> Path:
    """Draw the ``probability`` displacement ellipsoids of a structure and save the figure.

    Parameters
    ----------
    path : output file; the format follows the suffix (``.png`` usual; no suffix → PNG).
        Written atomically (temporary file + rename): an interrupted or failed plot leaves
        nothing behind and an existing file untouched.
    atoms : the structure; ``atoms.positions`` (Å) are the ellipsoid centres, ``atoms.cell``
        (rows a, b, c) is drawn when ``show_cell`` and the cell is three-dimensional.
    adps : (N, 3, 3) Cartesian U in Å² in the frame of ``atoms.positions``. Rows containing NaN
        (e.g. hydrogens without a prediction) are drawn as small spheres; finite rows must be
        symmetric positive definite.
    reference : optional (N, 3, 3) reference U (e.g. experiment). Then the predictions are red
        and the reference semi-transparent green, as in Figs. 11/17 of the CartNet paper, and
        each atom is labelled with its voxel IoU (%) from :func:`adp.iou` when ``annotate_iou``
        (default: for structures of at most 80 atoms; the mean IoU is always in the title).
    probability : enclosed probability of each ellipsoid (ORTEP default 0.5).
    labels : optional per-atom text (N strings), e.g. CIF site labels.
    title : figure title.
    show_cell : draw the unit cell, its a, b, c edges in red, green and blue.
    inputs : paths of the files the data came from; ``path`` must not be one of them
        (raises :class:`ase_cartnet.errors.InputError`, a ValueError).
    view : (elevation, azimuth) of the camera in degrees.
    show_axes : draw Cartesian axes, ticks and panes (off by default, as in ORTEP drawings).

    Returns the output path. Colours without a reference follow ASE's Jmol element colours.
    """
    # Validate everything before any file is touched.
    target = ensure_not_input(path, *inputs)
    fmt = target.suffix.lstrip(".").lower() or "png"
    from matplotlib.backend_bases import FigureCanvasBase

    if fmt not in FigureCanvasBase.get_supported_filetypes():
        raise ValueError(f"cannot write a plot in format {fmt!r} (from {target.name!r})")
    if not isinstance(atoms, Atoms):
        raise ValueError(f"atoms must be an ase.Atoms, got {type(atoms).__name__}")
    n = len(atoms)
    if n == 0:
        raise ValueError("cannot plot an empty structure")
    positions = atoms.get_positions()
    if not np.isfinite(positions).all():
        raise ValueError("atoms.positions contains non-finite values")
    u = _check_adps(adps, n, "adps")
    u_ref = None if reference is None else _check_adps(reference, n, "reference")
    if labels is not None and len(labels) != n:
        raise ValueError(f"labels: expected {n} strings, got {len(labels)}")
    c = adp.probability_scale(probability)

    from matplotlib.figure import Figure
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    has_u = np.isfinite(u).all(axis=(1, 2))
    has_ref = np.zeros(n, bool) if u_ref is None else np.isfinite(u_ref).all(axis=(1, 2))
    numbers = atoms.get_atomic_numbers()
    mesh = MESH_FINE if n <= MESH_FINE_MAX_ATOMS else MESH

    faces: list[NDArray] = []
    colours: list[NDArray] = []
    extent = np.full(n, PLACEHOLDER_RADIUS)  # Å, largest semi-axis drawn at each atom
    for i in range(n):
        centre = positions[i]
        if has_u[i]:
            rgb = PREDICTION_RGB if u_ref is not None else jmol_colors[numbers[i]]
            w, v = adp.principal_axes(u[i])
            f = _faces(*adp.ellipsoid_surface(u[i], probability, centre, *mesh))
            faces.append(f)
            colours.append(_shaded(f, centre, rgb, 1.0, axes=None if u_ref is not None else v))
            extent[i] = c * np.sqrt(w[-1])
        if has_ref[i]:
            f = _faces(*adp.ellipsoid_surface(u_ref[i], probability, centre, *mesh))
            faces.append(f)
            colours.append(_shaded(f, centre, REFERENCE_RGB, REFERENCE_ALPHA))
            extent[i] = max(extent[i], c * np.sqrt(np.linalg.eigvalsh(u_ref[i])[-1]))
        if not has_u[i] and not has_ref[i]:
            sphere = PLACEHOLDER_RADIUS**2 / c**2 * np.eye(3)
            f = _faces(*adp.ellipsoid_surface(sphere, probability, centre, 8, 4))
            faces.append(f)
            colours.append(_shaded(f, centre, jmol_colors[numbers[i]], 1.0))

    fig = Figure(figsize=figsize, dpi=dpi)
    ax = fig.add_subplot(projection="3d")
    all_pts = [positions]
    poly = np.concatenate(faces)
    ax.add_collection3d(
        Poly3DCollection(
            poly, facecolors=np.concatenate(colours), edgecolors="none", linewidths=0.0
        )
    )
    all_pts.append(poly.reshape(-1, 3))

    cell = np.asarray(atoms.cell[:], dtype=np.float64)
    if show_cell and atoms.cell.rank == 3:
        for start, end, colour, lw in _cell_edges(cell):
            ax.plot(*np.stack([start, end]).T, color=colour, linewidth=lw)
        corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
        all_pts.append(corners @ cell)

    iou_values = None
    both = has_u & has_ref
    if annotate_iou is None:
        annotate_iou = n <= ANNOTATE_MAX_ATOMS
    if u_ref is not None and both.any():
        iou_values = np.full(n, np.nan)
        iou_values[both] = adp.iou(u[both], u_ref[both])
    for i in range(n):
        text = []
        if labels is not None and labels[i]:
            text.append(str(labels[i]))
        if annotate_iou and iou_values is not None and np.isfinite(iou_values[i]):
            text.append(f"{iou_values[i]:.0f}%")
        if text:
            where = positions[i] + np.array([0.0, 0.0, extent[i] + 0.05])
            ax.text(*where, " ".join(text), fontsize=6, color="0.1", ha="center", zorder=10)

    pts = np.concatenate(all_pts)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    mid, half = 0.5 * (lo + hi), 0.5 * max((hi - lo).max(), 1.0) * 1.02
    ax.set_xlim(mid[0] - half, mid[0] + half)
    ax.set_ylim(mid[1] - half, mid[1] + half)
    ax.set_zlim(mid[2] - half, mid[2] + half)
    ax.set_box_aspect((1.0, 1.0, 1.0))
    ax.view_init(elev=view[0], azim=view[1])
    if show_axes:
        ax.set_xlabel("x (Å)")
        ax.set_ylabel("y (Å)")
        ax.set_zlabel("z (Å)")
    else:
        ax.set_axis_off()
    handles = []
    if u_ref is not None:
        handles += [_dot(PREDICTION_RGB, "prediction"), _dot(REFERENCE_RGB, "reference", 0.6)]
    else:
        handles += [_dot(jmol_colors[z], chemical_symbols[z]) for z in np.unique(numbers[has_u])]
    bare = ~has_u & ~has_ref
    handles += [
        _dot(jmol_colors[z], f"{chemical_symbols[z]} (no ADP)") for z in np.unique(numbers[bare])
    ]
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize=8, frameon=False)
    subtitle = f"{100 * probability:g}% probability ellipsoids"
    if iou_values is not None:
        subtitle += f", mean IoU {np.nanmean(iou_values):.1f}%"
    ax.set_title(subtitle if title is None else f"{title}\n{subtitle}", fontsize=10)

    with atomic_path(target) as tmp:
        fig.savefig(tmp, format=fmt, bbox_inches="tight")
    return target
