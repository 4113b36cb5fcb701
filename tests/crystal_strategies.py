"""Hypothesis strategies of the property-based tests: random small crystals and changes of
basis."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from hypothesis import strategies as st

ELEMENTS = [3, 8, 11, 12, 14, 17, 26, 29]
BASES = [  # unimodular changes of basis
    [[1, 1, 0], [0, 1, 0], [0, 0, 1]],
    [[0, 1, 0], [1, 0, 1], [1, 0, 0]],
    [[1, 0, 2], [0, -1, 0], [1, 1, 3]],
]


@st.composite
def crystals(
    draw, volume_per_atom: tuple[float, float] = (10, 20), min_distance: float = 1.5
) -> Atoms:
    """2–6 atoms of :data:`ELEMENTS`, a skewed cell of ``volume_per_atom`` (low, high) Å³ per
    atom, atoms at least ``min_distance`` Å apart."""
    n = draw(st.integers(2, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    for _ in range(50):
        cell = np.eye(3) + rng.normal(scale=0.15, size=(3, 3))
        cell *= (n * rng.uniform(*volume_per_atom) / abs(np.linalg.det(cell))) ** (1 / 3)
        atoms = Atoms(
            rng.choice(ELEMENTS, size=n), scaled_positions=rng.random((n, 3)), cell=cell, pbc=True
        )
        if atoms.get_all_distances(mic=True)[np.triu_indices(n, 1)].min() > min_distance:
            return atoms
    raise AssertionError("no crystal drawn")
