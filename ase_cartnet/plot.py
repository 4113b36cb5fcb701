"""ORTEP figures of ADP ellipsoids (matplotlib, off-screen Agg rendering).

The drawing is the classic ORTEP one, in 2D: each atom is the outline of its probability
ellipsoid as seen from the viewer, with the three principal ellipses (the sections through the
principal axes, their hidden halves left out) and the octant facing the viewer shaded; bonds
from covalent radii; the asymmetric unit as whole molecules (:mod:`ase_cartnet.scene`) with
the CIF's site labels; prediction and reference side by side, drawn from the same view.

All geometry comes from :mod:`ase_cartnet.adp` (probability scale, IoU) and
:mod:`ase_cartnet.scene` (atoms and bonds); this module only draws. Figures are built with
:class:`matplotlib.figure.Figure` directly, so no pyplot state or display backend is touched,
and files are written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data.colors import jmol_colors
from numpy.typing import ArrayLike, NDArray

from ase_cartnet import adp
from ase_cartnet.io.atomic import atomic_path, ensure_not_input
from ase_cartnet.report import comparison_atoms
from ase_cartnet.scene import Scene, build_scene

HYDROGEN_RADIUS = 0.08  # Å; H (and atoms without a finite U) are drawn as small circles
OCTANT_SHADE = 0.45  # the shaded octant's colour relative to the element colour
LABEL_MAX_ATOMS = 120  # labels are drawn for up to this many labelled atoms
_CURVE = np.linspace(0.0, 2.0 * np.pi, 73)
_QUARTER = np.linspace(0.0, 0.5 * np.pi, 19)


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


def plot_format(path: str | os.PathLike) -> str:
    """The matplotlib format a figure is written in to ``path`` (its extension; png without
    one); an ``InputError`` for an extension matplotlib cannot write (checked before any work)."""
    from matplotlib.backend_bases import FigureCanvasBase

    from ase_cartnet.errors import InputError

    target = Path(path)
    fmt = target.suffix.lstrip(".").lower() or "png"
    if fmt not in FigureCanvasBase.get_supported_filetypes():
        raise InputError(f"cannot write a plot in format {fmt!r} (from {target.name!r})")
    return fmt


def view_rotation(positions: NDArray, view: tuple[float, float] | None) -> NDArray:
    """Rows: screen x, screen y, towards the viewer. ``view`` (elevation, azimuth) in degrees;
    None looks along the direction in which the drawn atoms are thinnest."""
    if view is None:
        centred = positions - positions.mean(axis=0)
        _, vectors = np.linalg.eigh(centred.T @ centred + 1e-9 * np.eye(3))
        rot = vectors[:, ::-1].T  # largest spread along screen x
        if np.linalg.det(rot) < 0:
            rot[2] *= -1
        return rot
    elev, azim = np.radians(view)
    towards = np.array([np.cos(elev) * np.cos(azim), np.cos(elev) * np.sin(azim), np.sin(elev)])
    right = np.cross([0.0, 0.0, 1.0], towards)
    if np.linalg.norm(right) < 1e-9:
        right = np.array([1.0, 0.0, 0.0])
    right /= np.linalg.norm(right)
    return np.stack([right, np.cross(towards, right), towards])


def _ellipse_artists(centre, m_rot, colour, rank):
    """Outline, shaded octant and visible principal ellipses of one ellipsoid {x: xᵀ M⁻¹ x ≤ 1}
    (``m_rot``: M in the screen frame, z towards the viewer) as matplotlib artists."""
    from matplotlib.patches import Ellipse, Polygon

    base = 3 + 3 * rank
    values, vectors = np.linalg.eigh(m_rot[:2, :2])
    angle = np.degrees(np.arctan2(vectors[1, 1], vectors[0, 1]))
    face = 0.5 + 0.5 * np.asarray(colour)
    artists = [
        Ellipse(
            centre[:2],
            2 * np.sqrt(values[1]),
            2 * np.sqrt(values[0]),
            angle=angle,
            facecolor=face,
            edgecolor="black",
            linewidth=0.9,
            zorder=base,
        )
    ]
    w, v = np.linalg.eigh(m_rot)
    semi = np.sqrt(np.maximum(w, 0.0))
    axes = v * semi  # columns: semi-axis vectors
    towards = np.where(axes[2] >= 0, 1.0, -1.0)
    facing = axes * towards
    octant = []
    for a, b in ((0, 1), (1, 2), (2, 0)):
        arc = np.outer(np.cos(_QUARTER), facing[:, a]) + np.outer(np.sin(_QUARTER), facing[:, b])
        octant.append(arc[:, :2])
    artists.append(
        Polygon(
            centre[:2] + np.concatenate(octant),
            closed=True,
            facecolor=OCTANT_SHADE * np.asarray(colour),
            edgecolor="none",
            zorder=base + 0.3,
        )
    )
    inverse = np.linalg.inv(m_rot)
    from matplotlib.lines import Line2D

    for a, b in ((0, 1), (1, 2), (2, 0)):
        curve = np.outer(np.cos(_CURVE), axes[:, a]) + np.outer(np.sin(_CURVE), axes[:, b])
        visible = (curve @ inverse)[:, 2] >= -1e-9
        xy = centre[:2] + curve[:, :2]
        xy[~visible] = np.nan
        artists.append(Line2D(xy[:, 0], xy[:, 1], color="black", linewidth=0.6, zorder=base + 0.6))
    return artists


def _draw_panel(ax, scene: Scene, atoms: Atoms, u, rot, scale, labels, show_labels, cell):
    """One ORTEP drawing of ``scene`` with the ADPs ``u`` (of the structure's atoms)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Circle

    screen = scene.positions @ rot.T
    order = np.argsort(screen[:, 2])  # far first
    rank = np.empty(len(order), dtype=int)
    rank[order] = np.arange(len(order))
    numbers = atoms.numbers[scene.index]
    for m in range(len(scene.index)):
        colour = jmol_colors[numbers[m]]
        u_m = u[scene.index[m]]
        if numbers[m] != 1 and np.isfinite(u_m).all():
            for artist in _ellipse_artists(screen[m], scale * rot @ u_m @ rot.T, colour, rank[m]):
                ax.add_artist(artist)
        else:
            ax.add_patch(
                Circle(
                    screen[m, :2],
                    HYDROGEN_RADIUS,
                    facecolor=0.5 + 0.5 * colour,
                    edgecolor="black",
                    linewidth=0.6,
                    zorder=3 + 3 * rank[m],
                )
            )
    for a, b in scene.bonds:  # drawn after the farther atom, under the nearer one
        ax.add_line(
            Line2D(
                screen[[a, b], 0],
                screen[[a, b], 1],
                color="0.25",
                linewidth=1.4,
                solid_capstyle="round",
                zorder=3 + 3 * min(rank[a], rank[b]) + 2,
            )
        )
    if show_labels:
        for m in np.flatnonzero(scene.asymmetric & (numbers != 1)):
            ax.annotate(
                labels[scene.index[m]],
                screen[m, :2],
                xytext=(5, 4),
                textcoords="offset points",
                fontsize=7,
                color="0.05",
                zorder=10_000,
                bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.7},
            )
    if cell is not None:
        corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)]) @ cell
        flat = corners @ rot.T
        for p in range(8):
            for q in range(p + 1, 8):
                if bin(p ^ q).count("1") == 1:
                    ax.plot(*flat[[p, q], :2].T, color="0.6", linewidth=0.6, zorder=1)
    ax.set_aspect("equal")
    ax.set_axis_off()
    return screen


def plot_ellipsoids(
    path: str | os.PathLike,
    atoms: Atoms,
    adps: ArrayLike,
    reference: ArrayLike | None = None,
    probability: float = 0.5,
    labels: Sequence[str] | None = None,
    title: str | None = None,
    show_cell: bool = False,
    *,
    inputs: Iterable[str | os.PathLike | None] = (),
    view: tuple[float, float] | None = None,
    names: tuple[str, str] = ("CartNet prediction", "reference"),
    dpi: int = 150,
    figsize: tuple[float, float] | None = None,
) -> Path:
    """Draw an ORTEP figure of the ``probability`` ellipsoids of a structure and save it.

    Parameters
    ----------
    path
        Output file; the format follows the suffix (``.png`` usual; no suffix → PNG).
        Written atomically (temporary file + rename): an interrupted or failed plot leaves
        nothing behind and an existing file untouched.
    atoms
        The structure (positions in Å). From :func:`ase_cartnet.io.cif.read_cif` the
        asymmetric unit is drawn as whole molecules (network solids: each asymmetric-unit atom
        with its bonded shell); otherwise every atom, molecules made whole.
    adps
        (N, 3, 3) Cartesian U in Å² in the frame of ``atoms.positions``. H atoms and rows
        containing NaN are drawn as small circles; finite rows must be positive definite.
    reference
        Optional (N, 3, 3) reference U (e.g. the file's): a second panel beside the
        first, drawn from the same view, and the mean voxel IoU (:func:`adp.iou`) over the
        atoms :func:`comparison_atoms` names (non-H asymmetric-unit atoms) in the title.
    probability
        Enclosed probability of each ellipsoid (ORTEP default 0.5).
    labels
        Per-atom text (N strings); default the CIF site labels (``arrays["site_label"]``).
        Non-H atoms of the asymmetric unit are labelled.
    title
        Figure title (default the chemical formula).
    show_cell
        Draw the unit-cell outline.
    inputs
        Paths of the files the data came from; ``path`` must not be one of them
        (raises :class:`ase_cartnet.errors.InputError`, a ValueError).
    view
        (elevation, azimuth) of the viewing direction in degrees; None looks along the
        direction in which the drawn atoms are thinnest (a molecule seen face-on).
    names
        Panel titles for the prediction and the reference.

    Returns
    -------
    pathlib.Path
        The output path.
    """
    # Validate everything before any file is touched.
    target = ensure_not_input(path, *inputs)
    fmt = plot_format(target)
    if not isinstance(atoms, Atoms):
        raise ValueError(f"atoms must be an ase.Atoms, got {type(atoms).__name__}")
    n = len(atoms)
    if n == 0:
        raise ValueError("cannot plot an empty structure")
    if not np.isfinite(atoms.positions).all():
        raise ValueError("atoms.positions contains non-finite values")
    u = _check_adps(adps, n, "adps")
    u_ref = None if reference is None else _check_adps(reference, n, "reference")
    if labels is not None and len(labels) != n:
        raise ValueError(f"labels: expected {n} strings, got {len(labels)}")
    if labels is None:
        labels = atoms.arrays.get("site_label")
    if labels is None:
        labels = [f"{s}{i + 1}" for i, s in enumerate(atoms.get_chemical_symbols())]
    scale = adp.probability_scale(probability) ** 2

    from matplotlib.figure import Figure

    scene = build_scene(atoms)
    rot = view_rotation(scene.positions, view)
    panels = [(names[0], u)] + ([] if u_ref is None else [(names[1], u_ref)])
    if figsize is None:
        figsize = (6.0 * len(panels), 6.0)
    fig = Figure(figsize=figsize, dpi=dpi)
    show_labels = int((scene.asymmetric & (atoms.numbers[scene.index] != 1)).sum()) <= (
        LABEL_MAX_ATOMS
    )
    cell = atoms.cell.array if show_cell and atoms.cell.rank == 3 else None
    screens = []
    axes = []
    for k, (name, values) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        screens.append(_draw_panel(ax, scene, atoms, values, rot, scale, labels, show_labels, cell))
        ax.set_title(name, fontsize=10)
        axes.append(ax)
    pts = np.concatenate(screens)[:, :2]
    reach = np.sqrt(scale * np.nanmax(np.linalg.eigvalsh(np.where(np.isfinite(u), u, 0.0))))
    lo, hi = pts.min(axis=0) - reach - 0.4, pts.max(axis=0) + reach + 0.4
    for ax in axes:
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
    if title is not None:
        head = title
    else:  # the formula of what is drawn as labelled: the asymmetric unit
        head = atoms[scene.index[scene.asymmetric]].get_chemical_formula(mode="hill")
    line = f"{100 * probability:g} % probability ellipsoids"
    compared = comparison_atoms(atoms, u, u_ref)
    if len(compared):
        iou = adp.iou(u[compared], u_ref[compared])
        line += (
            f"; mean IoU {np.mean(iou):.1f} % over the {len(compared)} non-H atoms of the "
            "asymmetric unit"
        )
    fig.suptitle(f"{head}\n{line}", fontsize=10)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format=fmt, bbox_inches="tight")
    return target
