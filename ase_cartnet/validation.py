"""Input checks shared by every adapter: clear ``InputError``s before any tensor is built."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from ase import Atoms

from ase_cartnet.errors import InputError

MAX_ATOMIC_NUMBER = 118
MIN_INTERATOMIC_DISTANCE = 0.5
"""Å. Closer atoms are treated as overlapping (two atoms at one position, a duplicated site)."""


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
        periodic_vectors = cell[pbc]
        gram = periodic_vectors @ periodic_vectors.T
        det = float(np.linalg.det(gram)) if gram.size else 0.0
        scale = float(np.prod(np.linalg.norm(periodic_vectors, axis=1) ** 2))
        if scale <= 0.0 or det <= 1e-12 * max(scale, 1e-300):
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


def resolve_temperature(argument: float | None, atoms: Atoms) -> float:
    """Temperature in K: the argument, else ``atoms.info["temperature"]``, else an error.

    The value must be a finite number > 0 K.
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
    try:
        t = float(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{source} is not a number: {value!r}") from exc
    if not math.isfinite(t) or t <= 0.0:
        raise InputError(f"{source} must be a finite temperature > 0 K, got {value!r}")
    return t


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
