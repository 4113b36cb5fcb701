"""A predicted CIF in the input's own terms: the source data block written back with new ADPs.

:func:`write_source_block` takes a structure read by :func:`ase_cartnet.io.cif.read_cif` and its
full-cell Cartesian U and writes the file's own data block again — cell, space group, symmetry
operations, every site with its label and in its order, every other item — with the atom-site
ADP columns and the aniso loop replaced:

* the U of an asymmetric-unit site is the mean over its symmetry images found in the structure,
  each rotated back into the site's frame, U*_s = R⁻¹ U*_image R⁻ᵀ (the space-group average: a
  symmetrized prediction gives it exactly, a raw one its projection);
* a site with no image in the structure (a minor disorder part left out by
  ``read_cif(disorder="major")``) takes the U of the nearest atom of its element (SHELX EADP) and
  is listed in an ``_ase_cartnet_eadp`` loop;
* H sites whose U is isotropic (riding, ``hydrogen="riding"``) are written as ``Uiso`` with
  ``_atom_site_calc_flag calc``, every other site with a U as ``Uani`` with an aniso row;
  ``_atom_site_U_iso_or_equiv`` is U_eq.

The block is edited through gemmi's CIF document API, so items this module does not touch are
written back as the file had them.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from ase import Atoms
from numpy.typing import NDArray

from ase_cartnet import adp
from ase_cartnet.disorder import COUNTERPART_RADIUS
from ase_cartnet.errors import InputError
from ase_cartnet.io.atomic import atomic_write

IMAGE_TOLERANCE = 0.06
"""Å: a symmetry image of a file site and an atom of the structure closer than this are one atom
(images of a special position merged by ``read_cif`` lie within its 0.05 Å merge tolerance)."""

_ANISO = ("U_11", "U_22", "U_33", "U_23", "U_13", "U_12")


def source_block_available(atoms: Atoms) -> bool:
    """Whether ``atoms`` came from a CIF data block that still exists and gemmi can edit."""
    try:
        import gemmi  # noqa: F401
    except ImportError:  # pragma: no cover - gemmi is a dependency
        return False
    source = atoms.info.get("source_file")
    return bool(source) and "cif_block" in atoms.info and Path(source).is_file()


def _site_u_star(
    atoms: Atoms,
    u_cart: NDArray[np.float64],
    site_frac: NDArray[np.float64],
    symbol: str,
    rots: NDArray[np.float64],
    tras: NDArray[np.float64],
    frac_all: NDArray[np.float64],
    symbols: NDArray[np.str_],
) -> tuple[NDArray[np.float64] | None, int]:
    """U* (3, 3) of one file site: mean of its images' U* rotated back (None when no image is in
    ``atoms``), and the number of images used. ``frac_all``, ``symbols``: of ``atoms``."""
    cell = atoms.cell.array
    mine = np.flatnonzero(symbols == symbol)
    if not len(mine):
        return None, 0
    frac = frac_all[mine]
    images = np.einsum("mij,j->mi", rots, site_frac) + tras  # (M, 3)
    diff = images[:, None, :] - frac[None, :, :]
    diff -= np.round(diff)
    dist = np.linalg.norm(diff @ cell, axis=-1)  # (M, K) Å
    total, used = np.zeros((3, 3)), 0
    for m in range(len(rots)):
        k = int(np.argmin(dist[m]))
        if dist[m, k] > IMAGE_TOLERANCE or not np.isfinite(u_cart[mine[k]]).all():
            continue
        u_star = adp.u_cart_to_u_star(u_cart[mine[k]], cell)
        back = np.linalg.inv(rots[m])
        total += back @ u_star @ back.T
        used += 1
    return (total / used if used else None), used


def _counterpart(
    atoms: Atoms, u_cart: NDArray[np.float64], site_frac: NDArray[np.float64], symbol: str
) -> tuple[NDArray[np.float64] | None, int]:
    """U* of the nearest atom (its element first) to a site left out of ``atoms`` (EADP), and
    that atom's index (-1 when none lies within ``COUNTERPART_RADIUS``)."""
    cell = atoms.cell.array
    diff = site_frac - atoms.get_scaled_positions(wrap=False)
    diff -= np.round(diff)
    dist = np.linalg.norm(diff @ cell, axis=-1)
    dist = dist + np.where(np.asarray(atoms.get_chemical_symbols()) == symbol, 0.0, 10.0)
    k = int(np.argmin(dist))
    if dist[k] > COUNTERPART_RADIUS + 10.0 or not np.isfinite(u_cart[k]).all():
        return None, -1
    return adp.u_cart_to_u_star(u_cart[k], cell), k


def _fmt(value: float, digits: int = 10) -> str:
    return "?" if not math.isfinite(value) else f"{value:.{digits}f}"


def write_source_block(
    path: str | os.PathLike,
    atoms: Atoms,
    u_cart: NDArray[np.float64],
    *,
    temperature: float | None = None,
    provenance: dict[str, str] | None = None,
    eadp: dict[str, str] | None = None,
) -> Path:
    """Write ``atoms.info["source_file"]``'s block ``atoms.info["cif_block"]`` to ``path`` with
    the ADPs ``u_cart`` (N, 3, 3) Å² of ``atoms`` (module docstring). ``provenance`` items are
    added as ``_ase_cartnet_<key>`` pairs; ``eadp`` (site label → counterpart label, from the
    calculator) joins the ``_ase_cartnet_eadp`` loop. A ``temperature`` (K) other than the
    file's replaces its temperature items, as the ADPs written are for that temperature. Raises
    ``InputError`` when ``atoms`` no longer has the file's cell or the block has no
    ``_atom_site_label`` loop.
    """
    from gemmi import cif as gcif

    from ase_cartnet.io import cif as reader

    source = Path(atoms.info["source_file"])
    blocks = reader._parse_blocks(source)
    parsed = reader._select_block(blocks, str(atoms.info["cif_block"]), source)
    cellpar = reader._read_cellpar(parsed, source)
    if not np.allclose(cellpar, atoms.cell.cellpar(), rtol=1e-6, atol=1e-6):
        raise InputError(
            f"the structure's cell {np.round(atoms.cell.cellpar(), 5).tolist()} is not the one "
            f"of {source} ({cellpar.tolist()}): write it with p1=True"
        )
    cell = atoms.cell.array
    sites = reader._read_sites(parsed, cell, source)
    rots, tras, _ = reader._read_symops(parsed, cellpar, cell, source)

    u_cif: list[NDArray[np.float64] | None] = []
    eadp_rows: list[tuple[str, str]] = []
    labels_of = np.asarray(atoms.arrays.get("site_label", atoms.get_chemical_symbols()), dtype=str)
    frac_all = atoms.get_scaled_positions(wrap=False)
    symbols = np.asarray(atoms.get_chemical_symbols())
    for label, symbol, frac in zip(sites.labels, sites.symbols, sites.frac, strict=True):
        u_star, used = _site_u_star(atoms, u_cart, frac, symbol, rots, tras, frac_all, symbols)
        if u_star is None:
            u_star, k = _counterpart(atoms, u_cart, frac, symbol)
            if k >= 0:
                eadp_rows.append((label, str(labels_of[k])))
        u_cif.append(None if u_star is None else adp.u_star_to_u_cif(u_star, cell))

    known = {minor for minor, _ in eadp_rows}
    eadp_rows += [(m, c) for m, c in (eadp or {}).items() if m not in known and m in sites.labels]
    doc = gcif.read(str(source))
    block = doc.find_block(str(atoms.info["cif_block"]))
    label_item = None if block is None else block.find_loop_item("_atom_site_label")
    if label_item is None:
        raise InputError(f"{source}: no _atom_site_label loop to write back (use p1=True)")
    loop = label_item.loop
    wanted = ["_atom_site_U_iso_or_equiv", "_atom_site_adp_type"]
    riding = [  # isotropic H: the riding-hydrogen policy
        u is not None and sym == "H" and _isotropic(adp.u_cif_to_u_cart(u, cell))
        for u, sym in zip(u_cif, sites.symbols, strict=True)
    ]
    if any(riding):
        wanted.append("_atom_site_calc_flag")
    present = {t.lower() for t in loop.tags}
    for tag in wanted:
        if tag.lower() not in present:
            loop.add_columns([tag], "?")
    table = block.find("_atom_site_", ["label", "U_iso_or_equiv", "adp_type", "?calc_flag"])
    b_iso = block.find("_atom_site_", ["label", "B_iso_or_equiv"])
    index = {label: i for i, label in enumerate(sites.labels)}
    aniso_rows: list[list[str]] = []
    for row in table:
        site = index.get(gcif.as_string(row[0]))
        if site is None:  # dummy atoms: left as they were
            continue
        u = u_cif[site]
        if u is None:
            row[1], row[2] = "?", "?"
            continue
        u_eq = float(adp.u_equiv(adp.u_cif_to_u_cart(u, cell)))
        row[1] = _fmt(u_eq)
        if riding[site]:
            row[2] = "Uiso"
            row[3] = "calc"
        else:
            row[2] = "Uani"
            aniso_rows.append(
                [gcif.quote(sites.labels[site]), *(_fmt(v) for v in adp.matrix_to_six(u))]
            )
    for row in b_iso:
        site = index.get(gcif.as_string(row[0]))
        if site is not None:
            u = u_cif[site]
            row[1] = "?" if u is None else _fmt(float(adp.u_to_b(adp.u_equiv(u))))
    for prefix in ("_atom_site_aniso_", "_atom_site_aniso."):  # the old loop, any ADP kind
        old = block.find_mmcif_category(prefix)
        if old.width():
            old.erase()
    if aniso_rows:
        new = block.init_loop("_atom_site_aniso_", ["label", *_ANISO])
        for aniso_row in aniso_rows:
            new.add_row(aniso_row)
    if eadp_rows:
        link = block.init_loop("_ase_cartnet_eadp_", ["label", "counterpart_label"])
        for minor, major in eadp_rows:
            link.add_row([gcif.quote(minor), gcif.quote(major)])
    if temperature is not None:
        for tag in ("_diffrn_ambient_temperature", "_cell_measurement_temperature"):
            old = block.find_value(tag)
            if old is not None and reader._number(old, tag, source) != temperature:
                block.set_pair(tag, f"{temperature:.10g}")
        if block.find_value("_diffrn_ambient_temperature") is None:
            block.set_pair("_diffrn_ambient_temperature", f"{temperature:.10g}")
    for key, value in (provenance or {}).items():
        block.set_pair(f"_ase_cartnet_{key}", gcif.quote(str(value)))
    out = gcif.Document()
    out.add_copied_block(block)
    with atomic_write(Path(path), "w", encoding="utf-8") as handle:
        handle.write(out.as_string())
    return Path(path)


def _isotropic(u_cart: NDArray[np.float64]) -> bool:
    return bool(np.abs(u_cart - np.trace(u_cart) / 3 * np.eye(3)).max() <= 1e-9)
