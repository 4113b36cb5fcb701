"""CIF reading and writing with anisotropic displacement parameters (ADPs).

ASE and pymatgen read CIF positions but drop the ADPs, and gemmi keeps them but does not rotate
them with the symmetry operations.  :func:`read_cif` expands the asymmetric unit to the full
cell and rotates every image's ADP tensor; :func:`write_cif` writes a P1 CIF with an
``_atom_site_aniso_U_*`` loop that ASE, pymatgen and PyCifRW all read.

Frames and units
----------------
* The cell is ASE's standard orientation (``ase.geometry.cellpar_to_cell``: a along x, b in the
  xy plane), the frame the CartNet app uses.  Positions are in Å.
* ``atoms.arrays["adps"]`` has shape ``(N, 3, 3)``: Cartesian U in Å² in the frame of
  ``atoms.positions`` (NaN where the file has no displacement parameter for that atom).
* For a symmetry operation x' = R x + t in fractional coordinates, the fractional ADP rotates as
  U*' = R U* Rᵀ; all conversions (U_cif, B, β, U* and U_cart) come from :mod:`ase_cartnet.adp`.

The CIF text is parsed by gemmi (``gemmi.cif``); PyCifRW is used when gemmi is not installed
(it lower-cases block names, so ``info["cif_block"]`` is then lower case).
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols
from ase.geometry import cellpar_to_cell
from ase.neighborlist import primitive_neighbor_list
from numpy.typing import ArrayLike, NDArray

from ase_cartnet import adp
from ase_cartnet.disorder import component_roots
from ase_cartnet.errors import CIFError, CIFWarning, InputError
from ase_cartnet.io.atomic import atomic_write, ensure_not_input

try:  # gemmi is the preferred parser: fast, strict and robust on large files
    from gemmi import cif as _gemmi_cif

    _HAVE_GEMMI = True
except ImportError:  # pragma: no cover - exercised by monkeypatching in the tests
    _gemmi_cif = None
    _HAVE_GEMMI = False

__all__ = ["CIFWarning", "read_cif", "write_cif"]

MERGE_TOLERANCE = 0.05
"""Å: symmetry images of one site closer than this are one atom (a special position)."""

COINCIDENCE_TOLERANCE = 0.01
"""Å: atoms of the same element from *different* asymmetric-unit sites closer than this after
expansion are one atom with summed occupancy (e.g. riding methyl H on a 3-fold axis)."""

ADP_MISMATCH_TOLERANCE = 2e-3
"""Å²: merged images of a special position whose Cartesian U differ by more than this (largest
element) violate the site-symmetry constraint, and a :class:`CIFWarning` says so."""

_ELEMENTS = frozenset(chemical_symbols[1:])  # no dummy "X"
_NUMBER = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?:\(\d*\))?$")
_SYMOP_TERM = re.compile(r"([+-]?)([^+-]+)")

_ANISO_KINDS = (
    # (kind, tag stem, component names in CIF order 11 22 33 23 13 12)
    ("U", "U", ("11", "22", "33", "23", "13", "12")),
    ("B", "B", ("11", "22", "33", "23", "13", "12")),
    ("beta", "beta", ("11", "22", "33", "23", "13", "12")),
)


# --------------------------------------------------------------------------------------------
# Parser back ends: both give blocks with the same small interface over *unquoted* strings.
# --------------------------------------------------------------------------------------------


def _alternatives(tag: str) -> tuple[str, ...]:
    """A CIF1 tag and its DDLm (CIF2) spelling: _atom_site_aniso_U_11, _atom_site_aniso.U_11."""
    tag = tag.lower()
    for category in (  # longest first
        "_atom_site_aniso",
        "_atom_site",
        "_cell_measurement",
        "_cell",
        "_diffrn",
        "_space_group_symop",
        "_space_group",
    ):
        prefix = category + "_"
        if tag.startswith(prefix):
            return (tag, category + "." + tag[len(prefix) :])
    return (tag,)


class _Block:
    """A data block: look-ups by tag (case-insensitive) returning unquoted strings."""

    name: str

    def _pair(self, tag: str) -> str | None:  # pragma: no cover - interface
        raise NotImplementedError

    def _loop(self, tag: str) -> dict[str, list[str]] | None:  # pragma: no cover - interface
        raise NotImplementedError

    def value(self, *tags: str) -> str | None:
        """The first present single value among ``tags`` (or the first row of a loop)."""
        for tag in tags:
            for alt in _alternatives(tag):
                val = self._pair(alt)
                if val is not None:
                    return val
                loop = self._loop(alt)
                if loop is not None and loop[alt]:
                    return loop[alt][0]
        return None

    def table(self, key: str, *optional: str) -> dict[str, list[str]] | None:
        """Columns (lower-case tag → strings) of the loop holding ``key``, or None if absent.

        ``optional`` tags are included when they belong to the same loop; a key given as a
        pair (a one-row loop) collects the optional tags that are pairs too.  Tags are returned
        in their CIF1 spelling whichever spelling the file uses.
        """
        for alt in _alternatives(key):
            loop = self._loop(alt)
            if loop is not None:
                out = {key.lower(): loop[alt]}
                for tag in optional:
                    for opt_alt in _alternatives(tag):
                        if opt_alt in loop:
                            out[tag.lower()] = loop[opt_alt]
                            break
                return out
            val = self._pair(alt)
            if val is not None:
                out = {key.lower(): [val]}
                for tag in optional:
                    for opt_alt in _alternatives(tag):
                        opt = self._pair(opt_alt)
                        if opt is not None:
                            out[tag.lower()] = [opt]
                            break
                return out
        return None

    def has(self, *tags: str) -> bool:
        """Whether any of ``tags`` is present (as a pair or a loop column)."""
        return any(self.value(tag) is not None for tag in tags)


class _GemmiBlock(_Block):
    def __init__(self, doc: Any, block: Any) -> None:
        self._doc = doc  # keeps the gemmi objects alive
        self.name = block.name
        self._pairs: dict[str, str] = {}
        self._loop_objs: list[Any] = []
        self._loop_of: dict[str, int] = {}
        self._tables: dict[int, dict[str, list[str]]] = {}
        for item in block:
            if item.pair is not None:
                self._pairs.setdefault(item.pair[0].lower(), item.pair[1])
            elif item.loop is not None:
                for tag in item.loop.tags:
                    self._loop_of.setdefault(tag.lower(), len(self._loop_objs))
                self._loop_objs.append(item.loop)

    def _pair(self, tag: str) -> str | None:
        raw = self._pairs.get(tag)
        return None if raw is None else _gemmi_cif.as_string(raw)

    def _loop(self, tag: str) -> dict[str, list[str]] | None:
        idx = self._loop_of.get(tag)
        if idx is None:
            return None
        if idx not in self._tables:  # converted on first use: reflection loops stay untouched
            loop = self._loop_objs[idx]
            width = loop.width()
            flat = [_gemmi_cif.as_string(v) for v in loop.values]
            self._tables[idx] = {t.lower(): flat[i::width] for i, t in enumerate(loop.tags)}
        return self._tables[idx]


class _PyCifRWBlock(_Block):
    def __init__(self, block: Any, name: str) -> None:
        self._block = block
        self.name = name

    def _raw(self, tag: str) -> Any:
        try:
            return self._block[tag]
        except KeyError:
            return None

    def _pair(self, tag: str) -> str | None:
        val = self._raw(tag)
        return val if isinstance(val, str) else None

    def _loop(self, tag: str) -> dict[str, list[str]] | None:
        val = self._raw(tag)
        if val is None or isinstance(val, str):
            return None
        names = self._block.GetLoopNames(tag)
        return {n.lower(): [str(v) for v in self._block[n]] for n in names}


UTF8_BOM = b"\xef\xbb\xbf"


def _without_bom(path: Path) -> str | None:
    """The text of ``path`` without its UTF-8 byte-order mark (Windows editors write one), or
    None when the file has none (the parsers read it from the path)."""
    try:
        with open(path, "rb") as handle:
            if handle.read(len(UTF8_BOM)) != UTF8_BOM:
                return None
            data = handle.read()
    except OSError as exc:
        raise CIFError(f"{path}: cannot read the file ({exc})") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CIFError(f"{path}: not UTF-8 text after its byte-order mark ({exc})") from exc


def _parse_blocks(path: Path) -> list[_Block]:
    """All data blocks of the CIF at ``path`` (a leading UTF-8 byte-order mark ignored);
    CIFError when it is not a parsable CIF."""
    text = _without_bom(path)
    if _HAVE_GEMMI:
        try:
            if text is None:
                doc = _gemmi_cif.read(str(path))
            else:
                doc = _gemmi_cif.read_string(text)
        except (ValueError, RuntimeError, UnicodeDecodeError, OSError) as exc:
            raise CIFError(f"{path}: not a CIF file or unparsable ({exc})") from exc
        return [_GemmiBlock(doc, b) for b in doc]
    import io

    import CifFile  # PyCifRW

    try:
        doc = CifFile.ReadCif(str(path) if text is None else io.StringIO(text))
    except Exception as exc:  # PyCifRW raises assorted exception types on syntax errors
        raise CIFError(f"{path}: not a CIF file or unparsable ({exc})") from exc
    return [_PyCifRWBlock(doc[name], name) for name in doc.keys()]


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


def _is_null(text: str | None) -> bool:
    return text is None or text.strip() in ("", "?", ".")


def _number(text: str | None, what: str, path: Path) -> float:
    """A CIF number with an optional standard uncertainty, "0.0123(4)" → 0.0123; '?'/'.' → NaN."""
    if _is_null(text):
        return math.nan
    match = _NUMBER.match(text.strip())
    if match is None:
        raise CIFError(f"{path}: {what} is not a number: {text!r}")
    return float(match.group(1))


def _numbers(texts: Sequence[str], what: str, path: Path) -> NDArray[np.float64]:
    return np.array([_number(t, what, path) for t in texts], dtype=np.float64)


def _element(symbol: str, *, from_label: bool) -> tuple[str | None, bool]:
    """Element symbol read from a type symbol ("Fe3+", "O2-", "Cl") or an atom label ("Cl2",
    "CL1", "C1A", "H1'").  Returns (element or None, ambiguous); ambiguous is True for an
    all-capital label such as "CA1" that could be Ca or C."""
    match = re.match(r"[A-Za-z]+", symbol.strip())
    if match is None:
        return None, False
    letters = match.group(0)
    one = letters[0].upper()
    two = one + letters[1].lower() if len(letters) >= 2 else None
    one_ok = one in _ELEMENTS
    two_ok = two is not None and two in _ELEMENTS
    if two_ok:
        if letters[1].islower():  # "Cl", "Fe3+", "Ca1"; "Hc1" is not an element, so H below
            return two, False
        # Upper-case second letter: "CL1", "CA1", "NA" — the two-letter element unless the
        # label goes on with more letters ("CAB") where the single letter is more likely.
        if len(letters) == 2 or not one_ok:
            ambiguous = from_label and one_ok and two not in ("Cl", "Br")
            return two, ambiguous
    if one_ok:
        return one, False
    if one == "D":  # deuterium is hydrogen for ADP purposes
        return "H", False
    return None, False


def _strip_quotes(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


# --------------------------------------------------------------------------------------------
# Symmetry
# --------------------------------------------------------------------------------------------


def _parse_symop(text: str, path: Path) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """A Jones-faithful triplet such as "-x+1/2, y, -z+1/2" → (R (3, 3), t (3,)), fractional."""
    clean = re.sub(r"\s+", "", _strip_quotes(text)).lower()
    parts = clean.split(",")
    if len(parts) != 3:
        raise CIFError(f"{path}: cannot parse the symmetry operation {text!r}")
    rot = np.zeros((3, 3))
    tra = np.zeros(3)
    for row, part in enumerate(parts):
        if not part or _SYMOP_TERM.sub("", part):
            raise CIFError(f"{path}: cannot parse the symmetry operation {text!r}")
        for sign, body in _SYMOP_TERM.findall(part):
            factor = -1.0 if sign == "-" else 1.0
            var = [c for c in body if c in "xyz"]
            try:
                if var:
                    if len(var) != 1:
                        raise ValueError(body)
                    coeff = body.replace(var[0], "").replace("*", "")
                    rot[row, "xyz".index(var[0])] += factor * (_fraction(coeff) if coeff else 1.0)
                else:
                    tra[row] += factor * _fraction(body)
            except (ValueError, ZeroDivisionError) as exc:
                raise CIFError(f"{path}: cannot parse the symmetry operation {text!r}") from exc
    return rot, tra


def _fraction(text: str) -> float:
    if "/" in text:
        num, den = text.split("/")
        return float(num) / float(den)
    return float(text)


def _symops_from_name(
    hall: str | None, hm: str | None, cellpar: NDArray[np.float64]
) -> list[tuple[NDArray[np.float64], NDArray[np.float64]]] | None:
    """Symmetry operations from a Hall or Hermann–Mauguin symbol (gemmi, else spglib)."""
    triplets: list[str] | None = None
    hm_clean = re.sub(r"(\d)\((\d)\)", r"\1\2", hm).strip() if hm else None  # P2(1)/c → P21/c
    if _HAVE_GEMMI:
        import gemmi

        if hall:
            try:
                triplets = [op.triplet() for op in gemmi.symops_from_hall(hall)]
            except (RuntimeError, ValueError):
                triplets = None
        if triplets is None and hm_clean:
            sg = gemmi.find_spacegroup_by_name(hm_clean, cellpar[3], cellpar[5])
            if sg is not None:
                triplets = [op.triplet() for op in sg.operations()]
        if triplets is None:
            return None
        return [_parse_symop(t, Path("<symbol>")) for t in triplets]
    import spglib

    def norm(s: str) -> str:
        return re.sub(r"[\s_]", "", s).lower()

    wanted_hall = norm(hall) if hall else None
    wanted_hm = norm(hm_clean) if hm_clean else None
    types = [spglib.get_spacegroup_type(number) for number in range(1, 531)]
    match = None
    if wanted_hall:
        match = next((i for i, t in enumerate(types) if norm(t.hall_symbol) == wanted_hall), None)
    if match is None and wanted_hm:
        match = next(
            (
                i
                for i, t in enumerate(types)
                if wanted_hm in (norm(t.international_short), norm(t.international_full))
            ),
            None,
        )
    if match is not None:
        sym = spglib.get_symmetry_from_database(match + 1)
        return [
            (np.asarray(r, float), np.asarray(t, float))
            for r, t in zip(sym["rotations"], sym["translations"], strict=True)
        ]
    return None


def _unique_ops(
    ops: list[tuple[NDArray[np.float64], NDArray[np.float64]]],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Deduplicate operations (t modulo 1), identity first; returns R (M, 3, 3), t (M, 3)."""
    rots: list[NDArray[np.float64]] = []
    tras: list[NDArray[np.float64]] = []
    for r, t in ops:
        t = t - np.floor(t + 1e-9)
        if any(
            np.allclose(r, r2) and np.allclose((t - t2 + 0.5) % 1.0 - 0.5, 0.0, atol=1e-6)
            for r2, t2 in zip(rots, tras, strict=True)
        ):
            continue
        rots.append(r)
        tras.append(t)
    ident = [
        i
        for i, (r, t) in enumerate(zip(rots, tras, strict=True))
        if np.allclose(r, np.eye(3)) and np.allclose(t, 0.0, atol=1e-6)
    ]
    if ident:
        i = ident[0]
        rots.insert(0, rots.pop(i))
        tras.insert(0, tras.pop(i))
    else:
        rots.insert(0, np.eye(3))
        tras.insert(0, np.zeros(3))
    return np.array(rots), np.array(tras)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


@dataclass
class _Sites:
    """The asymmetric unit as read from the block; arrays have length n_asym."""

    labels: list[str]
    symbols: list[str]
    frac: NDArray[np.float64]  # (n, 3)
    occupancy: NDArray[np.float64]  # (n,)
    u_star: NDArray[np.float64]  # (n, 3, 3) fractional U*, NaN where unknown or isotropic
    u_iso: NDArray[np.float64]  # (n,) Å², NaN unless the atom is isotropic
    adp_type: list[str]
    assembly: list[str]  # _atom_site_disorder_assembly ("." when ordered or absent)
    group: list[str]  # _atom_site_disorder_group ("." when ordered or absent)


def _select_block(blocks: list[_Block], index: int | str, path: Path) -> _Block:
    if not blocks:
        raise CIFError(f"{path}: not a CIF file or no data block (data_...) in it")
    if isinstance(index, str):
        for block in blocks:
            if block.name.lower() == index.lower():
                return block
        names = ", ".join(b.name for b in blocks)
        raise CIFError(f"{path}: no data block named {index!r} (blocks: {names})")
    structures = [b for b in blocks if b.has("_atom_site_fract_x", "_atom_site_label")]
    if not structures:
        # Report what the (first) block lacks, so the message is specific.
        _require_cell_and_sites(blocks[0], path)
        raise CIFError(f"{path}: no data block with atom sites")
    try:
        return structures[index]
    except (IndexError, TypeError) as exc:
        raise CIFError(
            f"{path}: block index {index!r} out of range; {len(structures)} block(s) with atom "
            f"sites: {', '.join(b.name for b in structures)}"
        ) from exc


def _require_cell_and_sites(block: _Block, path: Path) -> None:
    if block.value("_cell_length_a") is None:
        raise CIFError(f"{path}: block {block.name!r} has no cell (_cell_length_a missing)")
    if block.table("_atom_site_fract_x") is None:
        if block.table("_atom_site_cartn_x") is not None:
            raise CIFError(
                f"{path}: block {block.name!r} gives only Cartesian atom sites; fractional "
                "coordinates (_atom_site_fract_x) are required"
            )
        raise CIFError(f"{path}: block {block.name!r} has no atom sites (_atom_site_fract_x)")


def _read_cellpar(block: _Block, path: Path) -> NDArray[np.float64]:
    par = []
    for tag, default in (
        ("_cell_length_a", None),
        ("_cell_length_b", None),
        ("_cell_length_c", None),
        ("_cell_angle_alpha", 90.0),
        ("_cell_angle_beta", 90.0),
        ("_cell_angle_gamma", 90.0),
    ):
        val = _number(block.value(tag), tag, path)
        if math.isnan(val):
            if default is None:
                raise CIFError(f"{path}: block {block.name!r} has no cell ({tag} missing)")
            warnings.warn(f"{path}: {tag} missing; assuming {default}", CIFWarning, stacklevel=4)
            val = default
        par.append(val)
    cellpar = np.array(par)
    if np.any(cellpar[:3] <= 0) or np.any(cellpar[3:] <= 0) or np.any(cellpar[3:] >= 180):
        raise CIFError(f"{path}: impossible cell parameters {cellpar.tolist()}")
    return cellpar


def _read_sites(block: _Block, cell: NDArray[np.float64], path: Path) -> _Sites:
    site_tags = (
        "_atom_site_label",
        "_atom_site_type_symbol",
        "_atom_site_fract_y",
        "_atom_site_fract_z",
        "_atom_site_occupancy",
        "_atom_site_u_iso_or_equiv",
        "_atom_site_b_iso_or_equiv",
        "_atom_site_adp_type",
        "_atom_site_thermal_displace_type",
        "_atom_site_calc_flag",
        "_atom_site_disorder_assembly",
        "_atom_site_disorder_group",
    )
    table = block.table("_atom_site_fract_x", *site_tags)
    if table is None or not table["_atom_site_fract_x"]:
        raise CIFError(f"{path}: block {block.name!r} has no atom sites (_atom_site_fract_x)")
    n_rows = len(table["_atom_site_fract_x"])
    for tag in ("_atom_site_fract_y", "_atom_site_fract_z"):
        if tag not in table:
            raise CIFError(f"{path}: atom-site loop lacks {tag}")
    types = table.get("_atom_site_type_symbol")
    labels = table.get("_atom_site_label")
    if labels is None and types is None:
        raise CIFError(
            f"{path}: atom sites have neither _atom_site_label nor _atom_site_type_symbol"
        )
    if labels is None:
        labels = [f"{t}{i + 1}" for i, t in enumerate(types)]

    calc_flag = table.get("_atom_site_calc_flag", ["."] * n_rows)
    keep = [i for i in range(n_rows) if calc_flag[i].lower() != "dum"]  # dummy atoms are no atoms
    frac = np.stack(
        [_numbers(table[f"_atom_site_fract_{ax}"], f"_atom_site_fract_{ax}", path) for ax in "xyz"],
        axis=1,
    )
    bad = [labels[i] for i in keep if not np.all(np.isfinite(frac[i]))]
    if bad:
        raise CIFError(f"{path}: atom site(s) without fractional coordinates: {', '.join(bad)}")

    symbols: list[str] = []
    ambiguous: list[str] = []
    for i in keep:
        source = types[i] if types is not None and not _is_null(types[i]) else None
        sym, amb = _element(source if source else labels[i], from_label=source is None)
        if sym is None:
            what = f"type symbol {source!r}" if source else "label"
            raise CIFError(
                f"{path}: unknown element for atom site {labels[i]!r} ({what}); "
                "give a valid _atom_site_type_symbol"
            )
        if amb:
            ambiguous.append(f"{labels[i]}→{sym}")
        symbols.append(sym)
    if ambiguous:
        warnings.warn(
            f"{path}: element read from all-capital labels (ambiguous; add "
            f"_atom_site_type_symbol): {', '.join(ambiguous)}",
            CIFWarning,
            stacklevel=4,
        )

    occ = _numbers(table.get("_atom_site_occupancy", ["?"] * n_rows), "_atom_site_occupancy", path)
    occ = np.where(np.isfinite(occ), occ, 1.0)
    u_col = table.get("_atom_site_u_iso_or_equiv")
    b_col = table.get("_atom_site_b_iso_or_equiv")
    u_iso_file = _numbers(u_col, "_atom_site_U_iso_or_equiv", path) if u_col else None
    b_iso_file = _numbers(b_col, "_atom_site_B_iso_or_equiv", path) if b_col else None
    types_col = table.get("_atom_site_adp_type") or table.get("_atom_site_thermal_displace_type")
    declared = [t.strip() if not _is_null(t) else "" for t in types_col] if types_col else None

    kept_labels = [labels[i] for i in keep]
    dummies = frozenset(labels[i] for i in range(n_rows) if calc_flag[i].lower() == "dum")
    aniso = _read_aniso(block, kept_labels, cell, path, ignore=dummies)

    n = len(keep)
    u_star = np.full((n, 3, 3), np.nan)
    u_iso = np.full(n, np.nan)
    adp_type = ["none"] * n
    fell_back: list[str] = []
    for k, i in enumerate(keep):
        decl = declared[i].lower() if declared else ""
        if k in aniso:
            u_star[k], adp_type[k] = aniso[k]
            continue
        u_val = u_iso_file[i] if u_iso_file is not None else math.nan
        b_val = b_iso_file[i] if b_iso_file is not None else math.nan
        if decl.startswith("b") and np.isfinite(b_val):
            u_iso[k], adp_type[k] = float(adp.b_to_u(b_val)), "Biso"
        elif np.isfinite(u_val):
            u_iso[k], adp_type[k] = u_val, "Uiso"
        elif np.isfinite(b_val):
            u_iso[k], adp_type[k] = float(adp.b_to_u(b_val)), "Biso"
        if decl.endswith("ani") and adp_type[k] != "none":
            fell_back.append(kept_labels[k])
    if fell_back:
        warnings.warn(
            f"{path}: atoms declared anisotropic have no aniso row; their U_iso_or_equiv is used "
            f"as isotropic U: {', '.join(fell_back)}",
            CIFWarning,
            stacklevel=4,
        )
    _warn_non_positive_definite(u_star, u_iso, kept_labels, cell, path)
    return _Sites(
        labels=kept_labels,
        symbols=symbols,
        frac=frac[keep],
        occupancy=occ[keep],
        u_star=u_star,
        u_iso=u_iso,
        adp_type=adp_type,
        assembly=[table.get("_atom_site_disorder_assembly", ["."] * n_rows)[i] for i in keep],
        group=[table.get("_atom_site_disorder_group", ["."] * n_rows)[i] for i in keep],
    )


def _warn_non_positive_definite(
    u_star: NDArray[np.float64],
    u_iso: NDArray[np.float64],
    labels: list[str],
    cell: NDArray[np.float64],
    path: Path,
) -> None:
    """A ``CIFWarning`` naming the sites whose own ADPs are not positive definite ("NPD" in a
    refinement: an ellipsoid with a zero or negative axis, which describes no thermal motion),
    with their smallest principal U (Å²); the values are kept as the file gives them."""
    aniso = np.isfinite(u_star).all(axis=(1, 2))
    smallest = np.full(len(labels), np.inf)
    if aniso.any():
        u_cart = adp.u_star_to_u_cart(u_star[aniso], cell)
        smallest[aniso] = np.linalg.eigvalsh(0.5 * (u_cart + np.swapaxes(u_cart, -1, -2)))[:, 0]
    iso = np.isfinite(u_iso)
    smallest[iso] = u_iso[iso]
    bad = np.flatnonzero(smallest <= 0.0)
    if bad.size:
        sites = ", ".join(f"{labels[k]} ({smallest[k]:.3g} Å²)" for k in bad[:20])
        more = f" and {bad.size - 20} more" if bad.size > 20 else ""
        warnings.warn(
            f"{path}: ADPs not positive definite (NPD; smallest principal U): {sites}{more}; "
            "they describe no thermal motion and are kept as the file gives them",
            CIFWarning,
            stacklevel=4,
        )


def _read_aniso(
    block: _Block,
    site_labels: list[str],
    cell: NDArray[np.float64],
    path: Path,
    ignore: frozenset[str] = frozenset(),
) -> dict[int, tuple[NDArray[np.float64], str]]:
    """Aniso rows matched to sites by label: {site index: (U* (3, 3), adp_type)}.

    Rows whose label is in ``ignore`` (dummy atoms) are skipped; any other label that matches no
    site is an error.

    Columns are looked up by tag (any order); U_ij, B_ij and β_ij are all accepted, and a row
    may mix kinds only if every kind is complete for it.
    """
    stems = [f"_atom_site_aniso_{stem}_{c}" for _, stem, comps in _ANISO_KINDS for c in comps]
    table = block.table("_atom_site_aniso_label", *stems)
    if table is None:
        present = [s for s in stems if block.value(s) is not None]
        if present:
            raise CIFError(f"{path}: aniso ADP columns without _atom_site_aniso_label")
        return {}
    rows = table["_atom_site_aniso_label"]
    index: dict[str, int] = {}
    duplicated: set[str] = set()
    for i, lab in enumerate(site_labels):
        if lab in index:
            duplicated.add(lab)
        index.setdefault(lab, i)
    folded: dict[str, list[int]] = {}
    for i, lab in enumerate(site_labels):
        folded.setdefault(lab.casefold(), []).append(i)

    per_kind: dict[str, NDArray[np.float64]] = {}
    for kind, stem, comps in _ANISO_KINDS:
        cols = [table.get(f"_atom_site_aniso_{stem}_{c}".lower()) for c in comps]
        if all(c is None for c in cols):
            continue
        if any(c is None for c in cols):
            missing = [
                f"_atom_site_aniso_{stem}_{c}"
                for c, col in zip(comps, cols, strict=True)
                if col is None
            ]
            raise CIFError(f"{path}: incomplete aniso loop, missing {', '.join(missing)}")
        per_kind[kind] = np.stack(
            [
                _numbers(col, f"_atom_site_aniso_{stem}_{c}", path)
                for c, col in zip(comps, cols, strict=True)
            ],
            axis=1,
        )
    if not per_kind:
        return {}

    out: dict[int, tuple[NDArray[np.float64], str]] = {}
    unmatched: list[str] = []
    for r, lab in enumerate(rows):
        site = index.get(lab)
        if site is None:
            candidates = folded.get(lab.casefold(), [])
            site = candidates[0] if len(candidates) == 1 else None
        if site is None:
            if lab not in ignore:
                unmatched.append(lab)
            continue
        if lab in duplicated:
            raise CIFError(f"{path}: duplicate atom-site label {lab!r}; cannot match its aniso row")
        if site in out:
            raise CIFError(f"{path}: atom {lab!r} has more than one aniso row")
        for kind, six in per_kind.items():
            if not np.all(np.isfinite(six[r])):
                continue
            mat = adp.six_to_matrix(six[r])
            if kind == "U":
                out[site] = (adp.u_cif_to_u_star(mat, cell), "Uani")
            elif kind == "B":
                out[site] = (adp.u_cif_to_u_star(adp.b_to_u(mat), cell), "Bani")
            else:
                out[site] = (adp.beta_to_u_star(mat), "Uani")
            break
    if unmatched:
        raise CIFError(
            f"{path}: aniso label(s) match no atom site (_atom_site_label): {', '.join(unmatched)}"
        )
    return out


def _read_symops(
    block: _Block, cellpar: NDArray[np.float64], cell: NDArray[np.float64], path: Path
) -> tuple[NDArray[np.float64], NDArray[np.float64], str]:
    """Symmetry operations R (M, 3, 3), t (M, 3) and a space-group name for ``info``."""
    hm = block.value(
        "_space_group_name_h-m_alt", "_symmetry_space_group_name_h-m", "_space_group.name_h-m_full"
    )
    hall = block.value("_space_group_name_hall", "_symmetry_space_group_name_hall")
    hm = None if _is_null(hm) else hm.strip()
    hall = None if _is_null(hall) else hall.strip()
    ops = None
    for tag in ("_space_group_symop_operation_xyz", "_symmetry_equiv_pos_as_xyz"):
        table = block.table(tag)
        if table is not None:
            ops = [_parse_symop(t, path) for t in table[tag] if not _is_null(t)]
            break
    if not ops:
        ops = _symops_from_name(hall, hm, cellpar) if (hall or hm) else None
        if ops is None and (hall or hm):
            raise CIFError(
                f"{path}: no symmetry operations and the space group {hall or hm!r} is unknown"
            )
        if ops is None:
            warnings.warn(
                f"{path}: no symmetry operations or space-group symbol; assuming P 1",
                CIFWarning,
                stacklevel=4,
            )
            ops = [(np.eye(3), np.zeros(3))]
    rots, tras = _unique_ops(ops)
    name = hm
    if name is None:  # e.g. only a Hall symbol, or only the operations
        name = "P 1" if len(rots) == 1 else (_name_from_ops(rots, tras, cell) or hall or "")
    return rots, tras, name


def _format_triplet(rot: NDArray[np.float64], tra: NDArray[np.float64]) -> str:
    """(R, t) → "x,-y,z+1/2" (coefficients rounded to integers, t to twelfths)."""
    rows = []
    for i in range(3):
        terms = ""
        for j, var in enumerate("xyz"):
            coeff = int(round(rot[i, j]))
            if coeff:
                terms += ("+" if coeff > 0 else "-") + (str(abs(coeff)) if abs(coeff) != 1 else "")
                terms += var
        frac = Fraction(float(tra[i])).limit_denominator(12)
        if frac:
            terms += f"{'+' if frac > 0 else '-'}{abs(frac)}"
        rows.append(terms.lstrip("+") or "0")
    return ",".join(rows)


def _name_from_ops(
    rots: NDArray[np.float64], tras: NDArray[np.float64], cell: NDArray[np.float64]
) -> str:
    """Hermann–Mauguin symbol for a list of operations when the file names none ("" if unknown)."""
    if _HAVE_GEMMI:
        import gemmi

        try:
            triplets = [_format_triplet(r, t) for r, t in zip(rots, tras, strict=True)]
            sg = gemmi.find_spacegroup_by_ops(gemmi.GroupOps([gemmi.Op(t) for t in triplets]))
        except (RuntimeError, ValueError):
            return ""
        return sg.hm if sg is not None else ""
    import spglib

    try:
        sgt = spglib.get_spacegroup_type_from_symmetry(
            np.rint(rots).astype(int), tras, lattice=cell
        )
    except Exception:  # spglib signals failure in version-dependent ways
        return ""
    return sgt.international_full.replace("_", "") if sgt is not None else ""


def _read_temperature(block: _Block, path: Path) -> float | None:
    for tag in ("_diffrn_ambient_temperature", "_cell_measurement_temperature"):
        val = _number(block.value(tag), tag, path)
        if math.isfinite(val):
            if val <= 0:
                warnings.warn(
                    f"{path}: ignoring non-positive {tag} {val}", CIFWarning, stacklevel=3
                )
                continue
            return val
    return None


def _expand(
    sites: _Sites,
    rots: NDArray[np.float64],
    tras: NDArray[np.float64],
    cell: NDArray[np.float64],
    path: Path,
    merge_tol: float,
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64], NDArray[np.float64]]:
    """Apply every operation to every site, wrap into [0, 1) and merge images within
    ``merge_tol`` Å.  Returns (asym index (N,), op index (N,), fractional (N, 3), U_cart (N, 3, 3))
    ordered operation-major: the identity images (the asymmetric unit) come first.
    """
    n_ops, n_sites = len(rots), len(sites.labels)
    frac = np.einsum("mij,nj->mni", rots, sites.frac) + tras[:, None, :]  # (M, n, 3)
    frac -= np.floor(frac)
    frac[frac >= 1.0] -= 1.0  # x - floor(x) is 1.0 for tiny negative x
    u_star = adp.symmetry_image_u_star(rots, sites.u_star)  # (M, n, 3, 3)
    u_cart = adp.u_star_to_u_cart(u_star, cell)  # (M, n, 3, 3)
    iso = np.isfinite(sites.u_iso)
    u_cart[:, iso] = adp.u_iso_to_u_cart(sites.u_iso[iso])

    keep = np.ones((n_ops, n_sites), dtype=bool)
    broken: list[str] = []
    overlapping: list[str] = []
    for n in range(n_sites):
        diff = frac[:, None, n, :] - frac[None, :, n, :]
        diff -= np.round(diff)
        dist = np.linalg.norm(diff @ cell, axis=-1)  # (M, M) Å
        max_dev, max_dist = 0.0, 0.0
        for m in range(1, n_ops):
            close = np.flatnonzero(keep[:m, n] & (dist[m, :m] < merge_tol))
            if close.size:
                keep[m, n] = False
                max_dist = max(max_dist, float(dist[m, close[0]]))
                dev = np.abs(u_cart[m, n] - u_cart[close[0], n])
                if np.all(np.isfinite(dev)):
                    max_dev = max(max_dev, float(dev.max()))
        if max_dev > ADP_MISMATCH_TOLERANCE:
            broken.append(
                f"{sites.labels[n]} (|ΔU| {max_dev:.2g} Å², images {max_dist:.2g} Å apart)"
            )
        others = dist[keep[:, n]][:, keep[:, n]]
        np.fill_diagonal(others, np.inf)
        if others.size and others.min() < 0.5 and sites.occupancy[n] > 0.99:
            overlapping.append(f"{sites.labels[n]} ({others.min():.2f} Å)")
    if broken:
        warnings.warn(
            f"{path}: ADPs of atoms on special positions break the site symmetry: "
            f"{', '.join(broken)}; merged into one atom with the first image's U (an atom "
            "disordered across a symmetry element, e.g. SHELX PART -1, looks like this)",
            CIFWarning,
            stacklevel=3,
        )
    if overlapping:
        warnings.warn(
            f"{path}: fully occupied sites overlap their own symmetry images: "
            f"{', '.join(overlapping)}",
            CIFWarning,
            stacklevel=3,
        )
    op_idx, site_idx = np.nonzero(keep)  # row-major: operation-major order
    return site_idx, op_idx, frac[op_idx, site_idx], u_cart[op_idx, site_idx]


def _merge_coincident(
    frac: NDArray[np.float64],
    cell: NDArray[np.float64],
    symbols: list[str],
    occupancy: NDArray[np.float64],
    merge_tol: float,
) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """Merge atoms of *different* asymmetric-unit sites that coincide after expansion.

    This happens for riding H atoms of a methyl group on a 3-fold axis (SHELX writes H1A, H1B,
    H1C with occupancy 1/3 each and the axis maps them onto each other) and for disorder
    components that share a position.  Atoms of the same element closer than ``merge_tol`` Å
    become one: the first keeps its label and ADP, and the occupancies are summed (capped at
    1).  Different elements on one site (mixed occupancy) are left alone.

    Returns the indices of the atoms to keep (sorted) and their occupancies, shape (n_keep,).
    """
    n = len(frac)
    if n < 2:
        return np.arange(n), occupancy.copy()
    i, j, d = primitive_neighbor_list(
        "ijd", (True, True, True), cell, frac @ cell, merge_tol, self_interaction=False
    )
    sym = np.asarray(symbols)
    pairs = (i < j) & (sym[i] == sym[j]) & (d < merge_tol)
    roots = component_roots(n, np.stack([i[pairs], j[pairs]], axis=1))
    occ = np.zeros(n)
    np.add.at(occ, roots, occupancy)
    keep = np.flatnonzero(roots == np.arange(n))
    return keep, np.minimum(occ[keep], 1.0)


def read_cif(
    path: str | os.PathLike,
    *,
    index: int | str = 0,
    require_adps: bool = False,
    merge_tol: float = MERGE_TOLERANCE,
    disorder: str = "major",
) -> Atoms | list[Atoms]:
    """Read one structure from a CIF, expanded to the full unit cell, with its ADPs.

    Parameters
    ----------
    path
        The CIF file.
    index
        Which structure: an integer counts the data blocks that have atom sites (negative
        from the end); a string is a block name (case-insensitive).
    require_adps
        Raise :class:`CIFError` when no atom has any displacement parameter.
    merge_tol
        Symmetry images of one site closer than this (Å, with periodic boundaries) are one atom
        (a special position): it keeps the first image's U and the file's occupancy, and a
        :class:`CIFWarning` is issued when the merged images' U disagree by more than
        ``ADP_MISMATCH_TOLERANCE`` (an atom disordered across a symmetry element).  Atoms of
        the same element from *different* sites closer than ``COINCIDENCE_TOLERANCE`` (0.01 Å)
        are also one atom, with summed occupancy (riding methyl H on a 3-fold axis, disorder
        components that share a position); different elements on one site are kept.
    disorder
        What to do with a disordered structure (alternative conformers, split positions, mixed
        occupancy, disorder across a symmetry element; :mod:`ase_cartnet.disorder`): "major"
        returns the major configuration, recording in ``info["disorder"]`` each left-out site
        and the major site whose ADP it would take; "each" returns a list with every
        configuration (major first); "all" returns every atom of the file, overlapping ones
        included (for ``CartNetADP(disorder=...)``, which resolves them itself); "error" raises
        :class:`CIFError` naming the sites.  A :class:`CIFWarning` names the sites and says
        what was done, also for partially occupied sites that overlap nothing (read as full
        atoms).

    Returns
    -------
    ase.Atoms
        ``pbc=True``, cell in ASE's standard orientation (a along x, b in the xy plane), atoms
        ordered by symmetry operation (the asymmetric unit first, in file order), with

        * ``arrays["adps"]`` (N, 3, 3): Cartesian U in Å²; U_iso·I for isotropic atoms and NaN
          for atoms without any ADP.  Each image's tensor is rotated: U*' = R U* Rᵀ.
        * ``arrays["site_label"]`` (N,) str, ``arrays["asym_index"]`` (N,) int: the
          asymmetric-unit site each atom comes from.
        * ``arrays["adp_type"]`` (N,) str: "Uani", "Bani", "Uiso", "Biso" or "none" — the kind
          of data the file gave (β_ij input is reported as "Uani").
        * ``arrays["occupancy"]`` (N,) float (1 where the file gives none);
          ``arrays["disorder_assembly"]``, ``arrays["disorder_group"]`` (N,) str ("." when
          ordered).
        * ``info["temperature"]`` (K, from ``_diffrn_ambient_temperature``, else
          ``_cell_measurement_temperature``; absent when neither is given),
          ``info["cif_block"]``, ``info["spacegroup"]`` (symbol as written, or derived from the
          operations) and ``info["source_file"]`` (absolute path).

    Raises
    ------
    CIFError
        Missing file, not a CIF, no cell, no atom sites, unknown element, aniso labels that
        match no site, unparsable numbers or symmetry operations, or no ADPs when
        ``require_adps`` is set.
    """
    path = Path(path)
    if not merge_tol >= 0:
        raise InputError(f"merge_tol must be a non-negative distance in Å, got {merge_tol}")
    if not path.exists():
        raise CIFError(f"{path}: file not found")
    if not path.is_file():
        raise CIFError(f"{path}: not a file")
    blocks = _parse_blocks(path)
    block = _select_block(blocks, index, path)
    _require_cell_and_sites(block, path)

    cellpar = _read_cellpar(block, path)
    cell = cellpar_to_cell(cellpar)
    if not np.isfinite(np.linalg.det(cell)) or abs(np.linalg.det(cell)) < 1e-6:
        raise CIFError(f"{path}: degenerate cell {cellpar.tolist()}")
    sites = _read_sites(block, cell, path)
    if not sites.labels:
        raise CIFError(f"{path}: block {block.name!r} has no atom sites")
    if (
        require_adps
        and not (np.isfinite(sites.u_star).all(axis=(1, 2)) | np.isfinite(sites.u_iso)).any()
    ):
        raise CIFError(
            f"{path}: no ADPs (no _atom_site_aniso_U/B/beta loop and no U/B_iso_or_equiv values) "
            "but require_adps=True"
        )
    rots, tras, sg_name = _read_symops(block, cellpar, cell, path)
    asym, _, frac, u_cart = _expand(sites, rots, tras, cell, path, merge_tol)
    keep, occupancy = _merge_coincident(
        frac,
        cell,
        [sites.symbols[i] for i in asym],
        sites.occupancy[asym],
        min(merge_tol, COINCIDENCE_TOLERANCE),
    )
    asym, frac, u_cart = asym[keep], frac[keep], u_cart[keep]

    atoms = Atoms(
        symbols=[sites.symbols[i] for i in asym],
        scaled_positions=frac,
        cell=cell,
        pbc=True,
    )
    atoms.new_array("adps", u_cart.astype(np.float64))
    atoms.new_array("site_label", np.array([sites.labels[i] for i in asym], dtype=str))
    atoms.new_array("asym_index", asym.astype(int))
    atoms.new_array("adp_type", np.array([sites.adp_type[i] for i in asym], dtype=str))
    atoms.new_array("occupancy", occupancy.astype(np.float64))
    temperature = _read_temperature(block, path)
    if temperature is not None:
        atoms.info["temperature"] = temperature
    atoms.info["cif_block"] = block.name
    atoms.info["spacegroup"] = sg_name
    atoms.info["source_file"] = str(path.resolve())
    atoms.new_array("disorder_assembly", np.array([sites.assembly[i] for i in asym], dtype=str))
    atoms.new_array("disorder_group", np.array([sites.group[i] for i in asym], dtype=str))
    return _resolve_disorder(atoms, disorder, path)


_READ_DISORDER = ("major", "each", "all", "error")


def _resolve_disorder(atoms: Atoms, policy: str, path: Path) -> Atoms | list[Atoms]:
    """Apply ``read_cif``'s ``disorder`` policy to the expanded structure (see there)."""
    from ase_cartnet.disorder import disorder_plan, overlap_message

    if policy not in _READ_DISORDER:
        raise InputError(f"disorder must be one of {_READ_DISORDER}, got {policy!r}")
    try:
        plan = disorder_plan(atoms)
    except InputError as exc:
        raise CIFError(f"{path}: {exc}") from exc
    if plan is None:
        return [atoms] if policy == "each" else atoms
    if plan.partial:
        warnings.warn(
            f"{path}: partially occupied site(s) that overlap no other atom, read as full atoms "
            f"(vacancies are not modelled): {', '.join(plan.partial)}",
            CIFWarning,
            stacklevel=3,
        )
    if not plan.minor or policy == "all":
        return [atoms] if policy == "each" else atoms
    if policy == "error":
        raise CIFError(overlap_message(atoms, plan))
    labels = atoms.arrays["site_label"]
    if policy == "each":
        warnings.warn(
            f"{path}: disordered; returning its {len(plan.configurations)} configurations "
            f"(minor-part sites: {', '.join(plan.minor)})",
            CIFWarning,
            stacklevel=3,
        )
        configurations = []
        for k, indices in enumerate(plan.configurations):
            part = atoms[indices]
            part.info["disorder"] = {
                "configuration": k,
                "n_configurations": len(plan.configurations),
            }
            configurations.append(part)
        return configurations
    warnings.warn(f"{path}: disordered: {plan.describe()}", CIFWarning, stacklevel=3)
    minor = np.setdiff1d(np.arange(len(atoms)), plan.major)
    major = atoms[plan.major]
    major.info["disorder"] = {
        "policy": "major",
        "minor_sites": {
            str(labels[i]): (str(labels[plan.counterpart[i]]) if plan.counterpart[i] >= 0 else "")
            for i in minor
        },
    }
    return major


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

_CIF_SPECIAL_START = ("_", "#", "$", "'", '"', "[", "]", ";")
_CIF_RESERVED = ("data_", "save_", "loop_", "global_", "stop_")


def _cif_value(text: str) -> str:
    """Quote a string for CIF 1.1 when needed (whitespace, reserved words, special start)."""
    if text == "":
        return "''"
    needs = (
        any(c.isspace() for c in text)
        or text.startswith(_CIF_SPECIAL_START)
        or text.lower().startswith(_CIF_RESERVED)
        or text in ("?", ".")
    )
    if not needs:
        return text
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    raise InputError(f"cannot write {text!r} as a CIF value (contains both quote characters)")


def _unique_labels(atoms: Atoms, labels: Sequence[str] | None) -> list[str]:
    """``labels`` validated, or unique labels made from ``arrays["site_label"]`` (the first atom
    of a site keeps the label, later images get ``_2``, ``_3`` …) or from element + counter."""
    n = len(atoms)
    if labels is not None:
        out = [str(x) for x in labels]
        if len(out) != n:
            raise InputError(f"labels has {len(out)} entries for {n} atoms")
        if len(set(out)) != n:
            raise InputError("labels must be unique")
        if any(not lab or any(c.isspace() for c in lab) for lab in out):
            raise InputError("labels must be non-empty and contain no whitespace")
        return out
    if "site_label" in atoms.arrays:
        base = [str(x) for x in atoms.arrays["site_label"]]
    else:
        counts: dict[str, int] = {}
        base = []
        for sym in atoms.get_chemical_symbols():
            counts[sym] = counts.get(sym, 0) + 1
            base.append(f"{sym}{counts[sym]}")
    base = [re.sub(r"\s+", "_", b) or "X" for b in base]
    seen: dict[str, int] = {}
    out = []
    taken = set(base)
    for b in base:
        k = seen.get(b, 0) + 1
        seen[b] = k
        label = b if k == 1 else f"{b}_{k}"
        while k > 1 and label in taken:  # a suffixed label that clashes with a file label
            k += 1
            seen[b] = k
            label = f"{b}_{k}"
        taken.add(label)
        out.append(label)
    return out


def write_cif(
    path: str | os.PathLike,
    atoms: Atoms,
    adps: ArrayLike | None = None,
    *,
    temperature: float | None = None,
    labels: Sequence[str] | None = None,
    overwrite_input: bool = False,
    p1: bool = False,
    provenance: dict[str, str] | None = None,
    eadp: dict[str, str] | None = None,
) -> Path:
    """Write ``atoms`` with anisotropic displacement parameters: by default in the terms of the
    CIF it was read from, else as a P1 CIF.

    A structure read by :func:`read_cif` whose source file still exists (and whose cell is
    still the file's) is written as the file's own data block — cell, space group, symmetry
    operations, every site with its label, all other items — with the ADP columns and the aniso
    loop replaced by the asymmetric-unit ADPs of ``adps`` (each site's images averaged in its
    own frame, riding H as ``Uiso``/``calc``, minor disorder sites EADP-like;
    :mod:`ase_cartnet.io.cif_source`). Otherwise, or with ``p1=True`` or ``labels``, every atom
    is written in P1, no symmetry reduction.

    Parameters
    ----------
    path
        Output file; written atomically (a temporary file renamed over it).
    atoms
        The structure (periodic, non-degenerate cell).  All atoms are written, no symmetry
        reduction; fractional coordinates are ``atoms.get_scaled_positions(wrap=False)``.
    adps
        (N, 3, 3) Cartesian U in Å² in the frame of ``atoms.positions``; default
        ``atoms.arrays["adps"]``.  Atoms whose U is not finite get ``?`` for
        ``_atom_site_U_iso_or_equiv`` and no aniso row.
    temperature
        K for ``_diffrn_ambient_temperature``; default ``atoms.info["temperature"]``; omitted
        when neither is given.
    labels
        Unique atom labels; default ``arrays["site_label"]`` (suffixed ``_2``, ``_3`` … for
        symmetry images) or element + running number.
    overwrite_input
        Allow ``path`` to be ``atoms.info["source_file"]`` (refused by default).
    p1
        Write the expanded cell in P1 even when the source block could be written back.
    provenance
        Items written as ``_ase_cartnet_<key> value`` (software, model, temperature …).
    eadp
        Site label → label of the site whose predicted U it carries (minor disorder parts),
        written as the ``_ase_cartnet_eadp`` loop of a source block.

    Returns
    -------
    pathlib.Path
        The written file.  U_cif = N⁻¹ A⁻¹ U_cart A⁻ᵀ N⁻¹ (IUCr) is written with 10 decimals, so
        reading the file back reproduces U to ~1e-10 Å² when the cell is in ASE's standard
        orientation (as from :func:`read_cif`).
    """
    source = atoms.info.get("source_file")
    out = Path(path) if overwrite_input else ensure_not_input(path, source)
    n = len(atoms)
    if n == 0:
        raise InputError("cannot write a CIF for an empty structure")
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    if not np.all(atoms.pbc) or abs(np.linalg.det(cell)) < 1e-6:
        raise InputError("write_cif needs a periodic structure with a non-degenerate 3D cell")
    if adps is None:
        adps = atoms.arrays.get("adps")
    if adps is None:
        u_cart = np.full((n, 3, 3), np.nan)
    else:
        u_cart = np.asarray(adps, dtype=np.float64)
        if u_cart.shape != (n, 3, 3):
            raise InputError(f"adps must have shape ({n}, 3, 3), got {u_cart.shape}")
    known = np.isfinite(u_cart).all(axis=(1, 2))
    asym_part = np.abs(u_cart - np.swapaxes(u_cart, 1, 2)).max(axis=(1, 2), initial=0.0)
    scale = np.abs(np.where(known[:, None, None], u_cart, 0.0)).max(axis=(1, 2), initial=0.0)
    if np.any(asym_part[known] > 1e-5 * scale[known] + 1e-12):
        raise InputError("adps must be symmetric 3x3 matrices")
    u_cart = 0.5 * (u_cart + np.swapaxes(u_cart, 1, 2))  # float32 round-off from models
    if temperature is None:
        temperature = atoms.info.get("temperature")
    if temperature is not None:
        temperature = float(temperature)
        if not math.isfinite(temperature) or temperature <= 0:
            raise InputError(f"temperature must be a positive number of kelvin, got {temperature}")
    if not p1 and labels is None:
        from ase_cartnet.io.cif_source import source_block_available, write_source_block

        if source_block_available(atoms):
            try:
                return write_source_block(
                    out, atoms, u_cart, temperature=temperature, provenance=provenance, eadp=eadp
                )
            except InputError as exc:
                warnings.warn(f"{exc}; writing P1 instead", CIFWarning, stacklevel=2)
    names = _unique_labels(atoms, labels)
    symbols = atoms.get_chemical_symbols()
    frac = atoms.get_scaled_positions(wrap=False)
    occupancy = atoms.arrays.get("occupancy", np.ones(n))
    u_cif = np.full((n, 3, 3), np.nan)
    if known.any():
        u_cif[known] = adp.u_cart_to_u_cif(u_cart[known], cell)
    u_eq = adp.u_equiv(np.where(known[:, None, None], u_cart, 0.0))

    block = re.sub(r"[^\w.\-]+", "_", str(atoms.info.get("cif_block", ""))) or "ase_cartnet"
    lines_provenance = [
        f"_ase_cartnet_{key} {_cif_value(str(value))}" for key, value in (provenance or {}).items()
    ]
    a, b, c, alpha, beta, gamma = atoms.cell.cellpar()
    lines = [
        f"data_{block}",
        "_audit_creation_method 'ase-cartnet write_cif'",
        f"_cell_length_a {a:.10f}",
        f"_cell_length_b {b:.10f}",
        f"_cell_length_c {c:.10f}",
        f"_cell_angle_alpha {alpha:.10f}",
        f"_cell_angle_beta {beta:.10f}",
        f"_cell_angle_gamma {gamma:.10f}",
        f"_cell_volume {atoms.cell.volume:.6f}",
        "_symmetry_space_group_name_H-M 'P 1'",
        "_space_group_IT_number 1",
    ]
    if temperature is not None:
        lines.append(f"_diffrn_ambient_temperature {temperature:.10g}")
    lines += lines_provenance
    lines += [
        "",
        "loop_",
        "_space_group_symop_id",
        "_space_group_symop_operation_xyz",
        "1 'x, y, z'",
        "",
        "loop_",
        "_atom_site_label",
        "_atom_site_type_symbol",
        "_atom_site_fract_x",
        "_atom_site_fract_y",
        "_atom_site_fract_z",
        "_atom_site_U_iso_or_equiv",
        "_atom_site_adp_type",
        "_atom_site_occupancy",
    ]
    disorder = [atoms.arrays.get(f"disorder_{k}") for k in ("assembly", "group")]
    disordered = disorder[1] is not None and any(
        str(g) not in ("", ".", "?", "0") for g in disorder[1]
    )
    if disordered:  # the alternatives stay marked, so that reading back resolves them
        lines += ["_atom_site_disorder_assembly", "_atom_site_disorder_group"]
    for i in range(n):
        ueq = f"{u_eq[i]:.10f}" if known[i] else "?"
        occ = f"{float(occupancy[i]):.6g}" if np.isfinite(occupancy[i]) else "?"
        row = (
            f"{_cif_value(names[i])} {symbols[i]} {frac[i, 0]:.12f} {frac[i, 1]:.12f} "
            f"{frac[i, 2]:.12f} {ueq} {'Uani' if known[i] else '?'} {occ}"
        )
        if disordered:
            values = [str(d[i]) if d is not None else "" for d in disorder]
            row += " " + " ".join("." if v in ("", ".", "?") else _cif_value(v) for v in values)
        lines.append(row)
    if known.any():
        lines += [
            "",
            "loop_",
            "_atom_site_aniso_label",
            *(f"_atom_site_aniso_U_{ij}" for ij in ("11", "22", "33", "23", "13", "12")),
        ]
        six = adp.matrix_to_six(u_cif)
        for i in np.flatnonzero(known):
            lines.append(_cif_value(names[i]) + " " + " ".join(f"{v:.10f}" for v in six[i]))
    lines.append("")
    with atomic_write(out, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    return out
