"""CGCNN-style 92-dimensional one-hot atom descriptors, built here from pymatgen's element data.

Layout (Xie & Grossman, PRL 120, 145301 (2018), Table S2, in the 92-column form of CGCNN's
``atom_init.json``: group has a 0th category for the lanthanides and actinides, and the period
has 7 categories because those series are counted in periods 6 and 7, not as 8 and 9):

==========================  ========  ==============================================  =====
property                    unit      categories                                      width
==========================  ========  ==============================================  =====
group                       –         0 (La–Yb, Ac–No), 1, 2, …, 18                   19
period                      –         1, …, 7                                         7
electronegativity (Pauling) –         10 equal bins on [0.5, 4.0]                     10
covalent radius             pm        10 equal bins on [25, 250]                      10
valence electrons           –         1, …, 12 (12 = "12 or more")                    12
first ionisation energy     eV        10 equal bins of ln(E / eV) on [1.3, 3.3]       10
electron affinity           eV        10 equal bins on [−3, 3.7]                      10
block                       –         s, p, d, f                                      4
atomic volume               cm³/mol   10 equal bins of ln(V / cm³ mol⁻¹) on [1.5, 4.3]  10
==========================  ========  ==============================================  =====

Values outside a range fall into its first or last bin. A property that pymatgen does not know
for an element (the electronegativity of He, Ne, Ar; the molar volume of the superheavy
elements …) leaves its block of columns all zero. Sources: pymatgen ``Element`` (group, row,
``X``, ``ionization_energy``, ``electron_affinity``, ``block``, ``molar_volume``, electronic
structure) and ASE's covalent radii (Cordero et al. 2008), since pymatgen has none. CGCNN used
mendeleev, so individual bins can differ from its file; the encoding scheme is the same.
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache

import numpy as np

from ase_cartnet.errors import InputError

MAX_Z = 100
"""Elements 1–100 (H–Fm) have descriptors; heavier ones are refused (no reliable data)."""

# (name, number of categories) in column order; the widths sum to 92
BLOCKS: tuple[tuple[str, int], ...] = (
    ("group", 19),
    ("period", 7),
    ("electronegativity", 10),
    ("covalent_radius", 10),
    ("valence_electrons", 12),
    ("first_ionisation_energy", 10),
    ("electron_affinity", 10),
    ("block", 4),
    ("atomic_volume", 10),
)
NUM_FEATURES = sum(width for _, width in BLOCKS)  # 92

# continuous properties: (lower, upper) of the binned range, after the log where one is taken
RANGES = {
    "electronegativity": (0.5, 4.0),
    "covalent_radius": (25.0, 250.0),  # pm
    "first_ionisation_energy": (1.3, 3.3),  # ln(eV)
    "electron_affinity": (-3.0, 3.7),  # eV
    "atomic_volume": (1.5, 4.3),  # ln(cm³/mol)
}


def _bin(value: float | None, lower: float, upper: float, n: int) -> int | None:
    if value is None or not math.isfinite(value):
        return None
    index = int(math.floor((value - lower) / (upper - lower) * n))
    return min(max(index, 0), n - 1)


def _valence_electrons(element) -> int:
    """Electrons outside the noble-gas core that take part in bonding: ns + np for the s and p
    blocks (filled d and f shells below are core), ns + (n−1)d for the d block, and
    ns + (n−1)d + (n−2)f for the f block; at least 1, capped at 12."""
    shells = element.full_electronic_structure  # [(n, "s", occupancy), ...]
    n_max = max(n for n, _, _ in shells)
    count = 0
    for n, orbital, occupancy in shells:
        if n == n_max and orbital in ("s", "p"):
            count += occupancy
        elif element.block in ("d", "f") and n == n_max - 1 and orbital == "d":
            count += occupancy
        elif element.block == "f" and n == n_max - 2 and orbital == "f":
            count += occupancy
    return min(max(int(count), 1), 12)


def _element_columns(z: int) -> dict[str, int | None]:
    from ase.data import covalent_radii
    from pymatgen.core import Element

    el = Element.from_Z(z)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns about missing data; we handle None/NaN
        lanthanide_or_actinide = el.block == "f" and z not in (71, 103)
        ionisation = el.ionization_energy
        affinity = el.electron_affinity
        volume = el.molar_volume
        electronegativity = float(el.X)
    radius_pm = float(covalent_radii[z]) * 100.0
    return {
        "group": 0 if lanthanide_or_actinide else int(el.group),
        "period": int(el.row) - 1,
        "electronegativity": _bin(electronegativity, *RANGES["electronegativity"], 10),
        "covalent_radius": _bin(radius_pm, *RANGES["covalent_radius"], 10),
        "valence_electrons": _valence_electrons(el) - 1,
        "first_ionisation_energy": _bin(
            math.log(float(ionisation)) if ionisation else None,
            *RANGES["first_ionisation_energy"],
            10,
        ),
        "electron_affinity": _bin(
            None if affinity is None else float(affinity), *RANGES["electron_affinity"], 10
        ),
        "block": "spdf".index(el.block),
        "atomic_volume": _bin(
            math.log(float(volume)) if volume else None, *RANGES["atomic_volume"], 10
        ),
    }


@lru_cache(maxsize=1)
def atom_feature_table() -> np.ndarray:
    """(MAX_Z + 1, 92) float32 table of one-hot descriptors; row Z is element Z, row 0 is zero."""
    table = np.zeros((MAX_Z + 1, NUM_FEATURES), dtype=np.float32)
    for z in range(1, MAX_Z + 1):
        columns = _element_columns(z)
        start = 0
        for name, width in BLOCKS:
            index = columns[name]
            if index is not None:
                table[z, start + index] = 1.0
            start += width
    table.setflags(write=False)
    return table


def atom_features(numbers) -> np.ndarray:
    """(N, 92) float32 descriptors of atomic numbers ``numbers`` (N,). Raises ``InputError`` for
    numbers outside 1–100."""
    z = np.asarray(numbers)
    if z.ndim != 1 or z.dtype.kind not in "iu":
        raise InputError(f"atomic numbers must be a 1-D integer array, got {z.dtype} {z.shape}")
    bad = np.flatnonzero((z < 1) | (z > MAX_Z))
    if bad.size:
        raise InputError(
            f"no CGCNN atom descriptors for atomic number {int(z[bad[0]])} (atom {int(bad[0])}); "
            f"elements 1–{MAX_Z} are supported"
        )
    return atom_feature_table()[z]
