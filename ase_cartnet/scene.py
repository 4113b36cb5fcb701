"""What a structure figure shows: the asymmetric unit, whole molecules, bonds.

A crystal read from a CIF is the full cell with molecules cut at the cell faces. A chemist's
figure shows the asymmetric unit as whole molecules (or, for a network solid, the asymmetric
unit with its coordination shell) with bonds. :func:`build_scene` makes that selection once, for
the ORTEP plot (:mod:`ase_cartnet.plot`) and the interactive view (:mod:`ase_cartnet.viewer`).

Bonds join atoms closer than the sum of their covalent radii (``ase.data.covalent_radii``)
plus ``BOND_TOLERANCE``; H–H contacts are never bonds, nor metal–metal contacts in a structure
that holds non-metals (Ca–Ca in fluorite is a contact, not a bond).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.data import covalent_radii
from ase.neighborlist import neighbor_list
from numpy.typing import NDArray

BOND_TOLERANCE = 0.45
"""Å added to the sum of covalent radii (the usual 0.4–0.45 Å of structure viewers)."""

NON_METALS = frozenset(
    [1, 2, 5, 6, 7, 8, 9, 10, 14, 15, 16, 17, 18, 32, 33, 34, 35, 36, 51, 52, 53, 54]
)

MAX_FRAGMENT_ATOMS = 2000
"""A finite component larger than this is treated like a network (coordination shell only)."""


@dataclass
class Scene:
    """Atoms to draw: ``index`` (M,) into the structure, their Cartesian ``positions`` (M, 3) Å
    (molecules made whole across the cell faces), ``bonds`` (B, 2) into the drawn atoms and
    ``asymmetric`` (M,) True for the drawn copy of an asymmetric-unit atom (these are labelled
    and compared)."""

    index: NDArray[np.intp]
    positions: NDArray[np.float64]
    bonds: NDArray[np.intp]
    asymmetric: NDArray[np.bool_]


def asymmetric_unit(atoms: Atoms) -> NDArray[np.intp]:
    """Indices of one atom per asymmetric-unit site (the first image: ``arrays["asym_index"]``
    from :func:`ase_cartnet.io.cif.read_cif`), or every atom when the structure has no sites."""
    if "asym_index" not in atoms.arrays:
        return np.arange(len(atoms))
    _, first = np.unique(atoms.arrays["asym_index"], return_index=True)
    return np.sort(first)


def bond_graph(atoms: Atoms) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]:
    """Bonded pairs as ASE neighbour-list arrays (i, j, S): atom j in cell image S is bonded to
    atom i (both directions listed)."""
    radii = covalent_radii[atoms.numbers] + 0.5 * BOND_TOLERANCE
    i, j, shift = neighbor_list("ijS", atoms, radii.tolist(), self_interaction=False)
    z = atoms.numbers
    keep = ~((z[i] == 1) & (z[j] == 1))
    metal = ~np.isin(z, list(NON_METALS))
    if not metal.all():
        keep &= ~(metal[i] & metal[j])
    return i[keep], j[keep], shift[keep]


def build_scene(atoms: Atoms) -> Scene:
    """Whole molecules holding the asymmetric unit; for atoms in a periodic network (a
    component that bonds to its own image), the asymmetric-unit atom and its bonded shell."""
    i, j, shift = bond_graph(atoms)
    order = np.argsort(i, kind="stable")
    i, j, shift = i[order], j[order], shift[order]
    starts = np.searchsorted(i, np.arange(len(atoms) + 1))
    seeds = asymmetric_unit(atoms)
    nodes: dict[tuple[int, tuple[int, int, int]], int] = {}
    asymmetric: list[bool] = []
    placed: set[int] = set()

    def add(atom: int, image: tuple[int, int, int], is_seed: bool) -> None:
        key = (atom, image)
        if key not in nodes:
            nodes[key] = len(nodes)
            asymmetric.append(is_seed)
        elif is_seed:
            asymmetric[nodes[key]] = True

    seed_set = set(int(s) for s in seeds)
    for seed in seeds:
        seed = int(seed)
        if seed in placed:
            continue
        component, periodic = _component(seed, starts, j, shift)
        if not periodic and len(component) <= MAX_FRAGMENT_ATOMS:
            for atom, image in component.items():
                add(atom, image, atom in seed_set)
            placed.update(component)
            continue
        members = seed_set - placed  # the network may hold any of the remaining sites
        for atom, image, is_seed in _connected_copies(seed, members, starts, j, shift):
            add(atom, image, is_seed)
            if is_seed:
                placed.add(atom)
                for k in range(starts[atom], starts[atom + 1]):
                    near = tuple(int(a + b) for a, b in zip(image, shift[k], strict=True))
                    add(int(j[k]), near, False)
    keys = list(nodes)
    index = np.array([a for a, _ in keys], dtype=np.intp)
    images = np.array([s for _, s in keys], dtype=float).reshape(-1, 3)
    positions = atoms.positions[index] + images @ atoms.cell.array
    bonds = []
    for (atom, image), m in nodes.items():
        for k in range(starts[atom], starts[atom + 1]):
            other = (int(j[k]), tuple(int(a + b) for a, b in zip(image, shift[k], strict=True)))
            n = nodes.get(other)
            if n is not None and m < n:
                bonds.append((m, n))
    return Scene(
        index=index,
        positions=positions,
        bonds=np.array(bonds, dtype=np.intp).reshape(-1, 2),
        asymmetric=np.array(asymmetric, dtype=bool),
    )


def _connected_copies(seed: int, members: set[int], starts, j, shift):
    """In a periodic network: one copy of each atom of ``members`` and the bonded path joining
    them to ``seed``'s copy (breadth-first, so the paths are shortest). Yields (atom, image,
    is_member_copy)."""
    root = (seed, (0, 0, 0))
    parent: dict[tuple[int, tuple[int, int, int]], tuple | None] = {root: None}
    copies = {seed: root}
    queue = deque([root])
    while queue and len(copies) < len(members) and len(parent) <= MAX_FRAGMENT_ATOMS:
        node = queue.popleft()
        atom, image = node
        for k in range(starts[atom], starts[atom + 1]):
            nxt = (int(j[k]), tuple(int(a + b) for a, b in zip(image, shift[k], strict=True)))
            if nxt in parent:
                continue
            parent[nxt] = node
            queue.append(nxt)
            if nxt[0] in members and nxt[0] not in copies:
                copies[nxt[0]] = nxt
    keep: dict[tuple[int, tuple[int, int, int]], bool] = {}
    for copy in copies.values():
        node = copy
        while node is not None and node not in keep:
            keep[node] = False
            node = parent[node]
        keep[copy] = True
    for (atom, image), is_copy in keep.items():
        yield atom, image, is_copy


def _component(seed: int, starts, j, shift) -> tuple[dict[int, tuple[int, int, int]], bool]:
    """Breadth-first walk of the bond graph from ``seed`` with cell images: {atom: image} and
    whether the component is periodic (an atom reached again in another image)."""
    found: dict[int, tuple[int, int, int]] = {seed: (0, 0, 0)}
    queue = deque([seed])
    while queue:
        atom = queue.popleft()
        here = found[atom]
        for k in range(starts[atom], starts[atom + 1]):
            other = int(j[k])
            image = tuple(int(a + b) for a, b in zip(here, shift[k], strict=True))
            if other not in found:
                if len(found) > MAX_FRAGMENT_ATOMS:
                    return found, True
                found[other] = image
                queue.append(other)
            elif found[other] != image:
                return found, True
    return found, False
