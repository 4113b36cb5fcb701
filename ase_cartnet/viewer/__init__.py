"""A self-contained interactive HTML view of ADP ellipsoids (three.js, no network access).

:func:`write_view` writes one HTML file with the structure's drawn atoms
(:func:`ase_cartnet.scene.build_scene`: the asymmetric unit as whole molecules), rotatable
probability ellipsoids with their principal ellipses, bonds, site labels, a tooltip with U_eq,
the principal values and axes and the IoU against the reference, and a prediction ↔ reference
toggle. The three.js module build (``vendor/three.module.min.js``, three.js r170 from npm, MIT
licence in ``vendor/LICENSE-three.txt``) and its OrbitControls are embedded in the file as
data URLs, so the page loads nothing from the network.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data.colors import jmol_colors
from numpy.typing import ArrayLike

from ase_cartnet import adp
from ase_cartnet.io.atomic import atomic_write, ensure_not_input
from ase_cartnet.scene import build_scene

VENDOR = Path(__file__).resolve().parent / "vendor"
TEMPLATE = Path(__file__).resolve().parent / "template.html"
HYDROGEN_RADIUS = 0.07  # Å, H and atoms without a finite U


def _module_url(name: str) -> str:
    payload = base64.b64encode((VENDOR / name).read_bytes()).decode("ascii")
    return f"data:text/javascript;base64,{payload}"


def _ellipsoid(u: np.ndarray, scale: float) -> dict | None:
    """Principal values (Å²), unit axes (columns) and semi-axes (Å) of one U, for the page."""
    if not np.isfinite(u).all():
        return None
    values, axes = adp.principal_axes(u)
    return {
        "u_eq": float(np.trace(u) / 3.0),
        "values": values.tolist(),
        "axes": axes.tolist(),
        "semi": (scale * np.sqrt(np.maximum(values, 0.0))).tolist(),
    }


def write_view(
    path: str | os.PathLike,
    atoms: Atoms,
    adps: ArrayLike,
    reference: ArrayLike | None = None,
    *,
    probability: float = 0.5,
    title: str | None = None,
    names: tuple[str, str] = ("CartNet prediction", "file ADPs"),
    inputs: tuple = (),
) -> Path:
    """Write the interactive view of ``adps`` (N, 3, 3) Cartesian U in Å² of ``atoms`` (and of
    ``reference``, e.g. the file's ADPs) at ``probability`` to the HTML file ``path``."""
    target = ensure_not_input(path, *inputs)
    u = np.asarray(adps, dtype=float)
    if u.shape != (len(atoms), 3, 3):
        raise ValueError(f"adps must have shape ({len(atoms)}, 3, 3), got {u.shape}")
    ref = None if reference is None else np.asarray(reference, dtype=float)
    has_reference = ref is not None and bool(np.isfinite(ref).all(axis=(1, 2)).any())
    scale = float(adp.probability_scale(probability))
    scene = build_scene(atoms)
    labels = atoms.arrays.get("site_label", atoms.get_chemical_symbols())
    symbols = atoms.get_chemical_symbols()
    drawn = []
    for m, i in enumerate(scene.index):
        is_h = atoms.numbers[i] == 1
        pred = None if is_h else _ellipsoid(u[i], scale)
        other = None if (is_h or not has_reference) else _ellipsoid(ref[i], scale)
        iou = None
        if pred is not None and other is not None:
            iou = float(adp.iou(u[i][None], ref[i][None])[0])
        drawn.append(
            {
                "position": scene.positions[m].tolist(),
                "symbol": symbols[i],
                "label": str(labels[i]) if scene.asymmetric[m] and not is_h else "",
                "colour": [float(c) for c in jmol_colors[atoms.numbers[i]]],
                "prediction": pred,
                "reference": other,
                "iou": iou,
            }
        )
    centre = scene.positions.mean(axis=0)
    radius = float(np.linalg.norm(scene.positions - centre, axis=1).max() + 1.0)
    formula = atoms[scene.index[scene.asymmetric]].get_chemical_formula(mode="hill")
    temperature = atoms.info.get("temperature")
    subtitle = f"{100 * probability:g} % probability ellipsoids"
    if temperature is not None:
        subtitle += f" at {float(temperature):g} K"
    data = {
        "title": title or formula,
        "subtitle": subtitle,
        "atoms": drawn,
        "bonds": scene.bonds.tolist(),
        "centre": centre.tolist(),
        "radius": radius,
        "has_reference": has_reference,
        "names": {"prediction": names[0], "reference": names[1]},
        "h_radius": HYDROGEN_RADIUS,
    }
    scene_json = json.dumps(data).replace("</", "<\\/")  # safe inside a <script> element
    html = (
        TEMPLATE.read_text(encoding="utf-8")
        .replace("__TITLE__", (title or formula).replace("<", "&lt;"))
        .replace("__THREE_URL__", _module_url("three.module.min.js"))
        .replace("__ORBIT_URL__", _module_url("OrbitControls.js"))
        .replace("__SCENE__", scene_json)
    )
    with atomic_write(target, "w", encoding="utf-8") as handle:
        handle.write(html)
    return target


def find_chromium() -> str | None:
    """Path of a Chromium executable on PATH, or None."""
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(
    html: str | os.PathLike, png: str | os.PathLike, size: str = "900,600", timeout: float = 180
) -> Path:
    """Render the page ``html`` to ``png`` with headless Chromium (software WebGL, no network:
    ``--disable-background-networking`` and a fresh profile); ``size`` is "width,height" in px.

    Raises
    ------
    FileNotFoundError
        When no Chromium is installed.
    subprocess.CalledProcessError, subprocess.TimeoutExpired
        When Chromium fails or takes longer than ``timeout`` seconds.
    """
    import subprocess
    import tempfile

    chromium = find_chromium()
    if chromium is None:
        raise FileNotFoundError("no chromium on PATH (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--enable-unsafe-swiftshader",
                f"--window-size={size}",
                "--virtual-time-budget=5000",
                f"--screenshot={png}",
                Path(html).resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
    return Path(png)
