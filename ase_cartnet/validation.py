"""Input checks shared by every adapter: clear ``InputError``s before any tensor is built."""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from ase import Atoms

from ase_cartnet.errors import AseCartnetError, BatchItemWarning, ExtrapolationWarning, InputError

MAX_ATOMIC_NUMBER = 118
MIN_INTERATOMIC_DISTANCE = 0.5
"""Å. Closer atoms are treated as overlapping (two atoms at one position, a duplicated site)."""
MAX_TEMPERATURE = 5000.0
"""K. Above every melting point at ambient pressure (the highest, carbon and tungsten, are below
4,000 K): a larger temperature is a typo or a unit error, and is refused rather than predicted."""


def as_atoms(structure: Any, what: str = "structure") -> Atoms:
    """``structure`` as an ``ase.Atoms``: Atoms pass through (the same object), a pymatgen
    ``Structure``/``Molecule`` is converted with pymatgen's ``AseAtomsAdaptor``; anything else
    is an ``InputError`` naming ``what``."""
    if isinstance(structure, Atoms):
        return structure
    if _is_pymatgen(structure):
        from pymatgen.io.ase import AseAtomsAdaptor

        return AseAtomsAdaptor.get_atoms(structure)
    raise InputError(
        f"{what}: expected an ase.Atoms or a pymatgen Structure, got {type(structure).__name__}"
    )


def as_atoms_list(structures: Sequence[Any], what: str = "structure") -> list[Atoms]:
    """Each item of ``structures`` through :func:`as_atoms` (named ``"<what> <k>"``); an object
    listed several times (a temperature sweep) becomes one ``Atoms`` listed as often."""
    converted: dict[int, Atoms] = {}
    out = []
    for k, item in enumerate(structures):
        if id(item) not in converted:
            converted[id(item)] = as_atoms(item, f"{what} {k}")
        out.append(converted[id(item)])
    return out


def is_pymatgen(obj: Any) -> bool:
    """Whether ``obj`` is a pymatgen ``Structure`` or ``Molecule`` (:func:`as_atoms` converts
    it)."""
    return _is_pymatgen(obj)


def write_back(structure: Any, atoms: Atoms) -> None:
    """Give the pymatgen ``Structure`` ``structure`` the cell and positions of ``atoms`` (the
    same atoms in the same order), in place: how an optimizer that moves ``Atoms`` moves a
    Structure. An immutable ``IStructure`` is an ``InputError``."""
    from pymatgen.core import Lattice, Structure

    if not isinstance(structure, Structure):
        raise InputError(
            f"cannot change a {type(structure).__name__} in place; pass a pymatgen Structure "
            "or an ase.Atoms"
        )
    structure.lattice = Lattice(np.asarray(atoms.cell[:], dtype=float))
    for site, frac in zip(structure, atoms.get_scaled_positions(wrap=False), strict=True):
        site.frac_coords = frac


def _is_pymatgen(obj: Any) -> bool:
    """A pymatgen Structure or Molecule, without importing pymatgen for other objects."""
    module = type(obj).__module__ or ""
    if not module.startswith("pymatgen."):
        return False
    from pymatgen.core import IStructure, Molecule

    return isinstance(obj, IStructure | Molecule)


def like_input(atoms: Atoms, original: Any) -> Any:
    """``atoms`` returned in the type of ``original`` (a pymatgen Structure for a Structure)."""
    if isinstance(original, Atoms) or not _is_pymatgen(original):
        return atoms
    from pymatgen.io.ase import AseAtomsAdaptor

    if atoms.pbc.any():
        return AseAtomsAdaptor.get_structure(atoms, cls=type(original))
    return AseAtomsAdaptor.get_molecule(atoms, cls=type(original))


def validate_structure(atoms: Any, *, require_pbc: bool = False) -> None:
    """Raise ``InputError`` naming the first problem found with ``atoms``.

    Checks: an ``ase.Atoms`` object; at least one atom; finite positions and cell; atomic numbers
    1–118; a non-degenerate cell along every periodic axis (and all three axes periodic when
    ``require_pbc``); no two atoms (or an atom and a periodic image) closer than 0.5 Å.
    """
    from ase_cartnet.graph.neighbours import closest_pairs

    if not isinstance(atoms, Atoms):
        raise InputError(f"expected an ase.Atoms object, got {type(atoms).__name__}")
    if len(atoms) == 0:
        raise InputError("the structure is empty (no atoms)")
    positions = atoms.positions
    if not np.all(np.isfinite(positions)):
        bad = np.flatnonzero(~np.isfinite(positions).all(axis=1))
        raise InputError(f"non-finite positions (NaN or inf) for atom indices {bad[:10].tolist()}")
    numbers = atoms.numbers
    unknown = np.flatnonzero((numbers < 1) | (numbers > MAX_ATOMIC_NUMBER))
    if unknown.size:
        raise InputError(
            f"unknown element (atomic number {numbers[unknown[0]]}) at atom indices "
            f"{unknown[:10].tolist()}; only Z = 1–{MAX_ATOMIC_NUMBER} are supported"
        )
    pbc = np.asarray(atoms.pbc, dtype=bool)
    cell = np.asarray(atoms.cell[:], dtype=float)
    if require_pbc and not pbc.all():
        raise InputError(
            f"this method needs a crystal periodic along a, b and c; got pbc={pbc.tolist()}"
        )
    if pbc.any():
        if not np.all(np.isfinite(cell)):
            raise InputError("the cell contains non-finite values")
        if _degenerate(cell, pbc):
            raise InputError(
                "the cell is missing or has zero volume along its periodic axes "
                f"(pbc={pbc.tolist()}, cell={np.round(cell, 4).tolist()})"
            )
    pairs = closest_pairs(positions, cell, pbc, MIN_INTERATOMIC_DISTANCE)
    if len(pairs):
        i, j, d = pairs[0]
        raise InputError(
            f"atoms {int(i)} and {int(j)} overlap (distance {d:.3g} Å < "
            f"{MIN_INTERATOMIC_DISTANCE} Å): two atoms at one position?"
        )


def _degenerate(cell: np.ndarray, pbc: np.ndarray) -> bool:
    """Whether the periodic vectors of ``cell`` (3, 3) Å span no volume (area, length).

    Judged on the Minkowski-reduced basis of the lattice: another basis of the same lattice
    (a valid but very skewed cell, vectors of 1,000 Å for a 12 Å³ cell) has the same reduced
    cell and passes; a cell whose reduced vectors are (nearly) dependent is degenerate."""
    from ase.geometry import minkowski_reduce

    periodic = cell[pbc]
    if not np.all(np.linalg.norm(periodic, axis=1) > 0.0):
        return True
    try:
        with np.errstate(all="ignore"):
            reduced, _ = minkowski_reduce(cell, pbc)
    except (ValueError, ArithmeticError, RuntimeError):  # dependent vectors never reduce
        return True
    periodic = np.asarray(reduced, dtype=float)[pbc]
    gram = periodic @ periodic.T
    scale = float(np.prod(np.linalg.norm(periodic, axis=1) ** 2))
    return not (scale > 0.0 and float(np.linalg.det(gram)) > 1e-12 * scale)


def check_temperature(value: Any, source: str = "the temperature") -> float:
    """``value`` as a temperature in K: a real number (not a bool, string or complex), finite,
    > 0 K and at most :data:`MAX_TEMPERATURE`; else an ``InputError`` naming ``source`` and
    the value."""
    if (
        isinstance(value, bool | np.bool_)
        or not isinstance(value, numbers.Real)
        and not (isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf")
    ):
        raise InputError(
            f"{source} is not a number: {value!r} ({type(value).__name__}); pass a real number in K"
        )
    t = float(value)
    if not math.isfinite(t) or t <= 0.0:
        raise InputError(f"{source} must be a finite temperature > 0 K, got {value!r}")
    if t > MAX_TEMPERATURE:
        raise InputError(
            f"{source} {value!r} K is above {MAX_TEMPERATURE:g} K, where no crystal exists: "
            "a unit error (°C, mK)?"
        )
    return t


def warn_temperature_range(
    temperature: float, trained: Sequence[float] | None, name: str, stacklevel: int = 3
) -> None:
    """An ``ExtrapolationWarning`` when ``temperature`` (K) lies outside ``trained`` (low,
    high) K, the range the model named by ``name`` was trained on (None: unknown, no warning)."""
    if trained is None:
        return
    low, high = (float(x) for x in trained)
    if not low <= temperature <= high:
        warnings.warn(
            f"{temperature:g} K is outside the {low:g}–{high:g} K that {name} was trained on; "
            "the prediction is an extrapolation",
            ExtrapolationWarning,
            stacklevel=stacklevel,
        )


def resolve_temperature(argument: float | None, atoms: Atoms) -> float:
    """Temperature in K: the argument, else ``atoms.info["temperature"]``, else an error.

    The value is checked by :func:`check_temperature`.
    """
    source = "the temperature argument"
    value = argument
    if value is None:
        value = atoms.info.get("temperature")
        source = 'atoms.info["temperature"]'
    if value is None:
        raise InputError(
            "no temperature: pass temperature=... (K) or set atoms.info['temperature']; "
            "ADPs depend on temperature and it is never guessed"
        )
    return check_temperature(value, source)


def warn_untrained_elements(
    numbers, trained, template: str, ignore: tuple[int, ...] = (), stacklevel: int = 4
) -> None:
    """A ``UserWarning`` when ``numbers`` (atomic numbers) hold elements outside ``trained``
    (None: nothing is known, no warning); ``template`` words it, with ``{names}`` for the
    symbols. ``ignore`` lists elements that never warn (e.g. 1, H, where a model does not
    predict them)."""
    if trained is None:
        return
    unseen = sorted({int(z) for z in numbers} - {int(z) for z in trained} - set(ignore))
    if unseen:
        import warnings

        from ase.data import chemical_symbols

        names = ", ".join(chemical_symbols[z] for z in unseen)
        warnings.warn(template.format(names=names), stacklevel=stacklevel)


ERROR_POLICIES = ("raise", "skip")


def prepare_items(
    count: int,
    prepare: Callable[[int], Any],
    errors: str,
    label: Callable[[int], str],
) -> dict[int, Any]:
    """``{k: prepare(k)}`` for the ``count`` items of a batch that the package can use.

    An item whose ``prepare`` raises one of the package's own errors (``AseCartnetError``: bad
    structure, temperature, file …) is named by ``label(k)`` (its index or file): with
    ``errors="raise"`` the error is raised again with that name in front; with ``"skip"`` it is
    left out and a ``BatchItemWarning`` names it, so the good items are kept. Other exceptions
    (bugs) propagate unchanged.
    """
    if errors not in ERROR_POLICIES:
        raise InputError(f"errors must be one of {ERROR_POLICIES}, got {errors!r}")
    prepared: dict[int, Any] = {}
    for k in range(count):
        try:
            prepared[k] = prepare(k)
        except AseCartnetError as exc:
            report_item_error(exc, label(k), errors)
    return prepared


def report_item_error(exc: AseCartnetError, name: str, errors: str) -> None:
    """Raise ``exc`` again as ``"<name>: <message>"`` (``errors="raise"``; unchanged when
    ``name`` is empty, a batch of one) or warn that the item was skipped (``"skip"``)."""
    message = f"{name}: {exc}" if name else str(exc)
    if errors == "raise":
        if not name:
            raise exc
        raise type(exc)(message) from exc
    warnings.warn(f"skipped {message}", BatchItemWarning, stacklevel=4)
