"""Disordered crystals: which atoms form one configuration, and whose ADP a left-out atom takes.

A refined structure with disorder lists every alternative: parts of a molecule in two or more
conformations (``_atom_site_disorder_assembly`` / ``_atom_site_disorder_group``, SHELX PART),
split positions, sites shared by two elements (mixed occupancy) and atoms disordered across a
symmetry element (SHELX PART -n, whose symmetry images overlap). Such a list is not one
physical structure: atoms sit 0–0.5 Å apart. CartNet needs one ordered configuration.

:func:`disorder_plan` finds the configurations of an expanded structure (``ase.Atoms`` with
``arrays["occupancy"]`` and, from a CIF, ``arrays["disorder_assembly"]``,
``arrays["disorder_group"]``, ``arrays["site_label"]``):

* within each assembly, the groups are ranked by occupancy (ties: file order); configuration k
  takes the k-th group of every assembly (the last one where an assembly has fewer), so
  configuration 0 is the *major* one;
* atoms of the chosen groups and the ordered atoms that still overlap (closer than
  ``overlap`` Å: mixed-occupancy sites, split positions, symmetry-generated disorder) are ranked
  by occupancy within each overlapping cluster, and configuration k keeps the k-th of each;
* every atom outside the major configuration gets a *counterpart*: the nearest major atom of the
  same element within ``COUNTERPART_RADIUS`` (else of any element), whose ADP it takes, as
  SHELX's EADP constraint ties the ADPs of alternative positions.

Two fully occupied atoms that overlap are not disorder but a broken file: no plan resolves them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ase import Atoms
from ase.neighborlist import primitive_neighbor_list
from numpy.typing import NDArray

from ase_cartnet.errors import InputError

DISORDER_POLICIES = ("major", "each", "error")
"""How a disordered structure is predicted: the major configuration (minor atoms take their
counterpart's ADP), every configuration separately, or a refusal naming the sites."""

OVERLAP_DISTANCE = 0.5
"""Å: atoms closer than this cannot coexist (the same limit as the structure validation)."""

COUNTERPART_RADIUS = 2.0
"""Å: how far a minor-part atom looks for the major atom whose ADP it takes."""

FULL_OCCUPANCY = 0.99
_NULL = ("", ".", "?", "0")


@dataclass
class DisorderPlan:
    """Configurations of one structure (atom indices, the major one first) and, per atom, the
    index of the major-configuration atom whose ADP it carries (itself for major atoms, -1 when
    none lies within ``COUNTERPART_RADIUS``)."""

    configurations: list[NDArray[np.intp]]
    counterpart: NDArray[np.intp]
    minor: list[str] = field(default_factory=list)  # site labels outside the major configuration
    partial: list[str] = field(default_factory=list)  # partially occupied sites overlapping nothing

    @property
    def major(self) -> NDArray[np.intp]:
        return self.configurations[0]

    def describe(self) -> str:
        """One line for a warning: what was left out and which ADP it was given."""
        return (
            f"{len(self.configurations)} configuration(s); predicted on the major one; "
            f"{len(self.minor)} minor-part site(s) take the ADP of their major counterpart "
            f"(EADP-like): {_short(self.minor)}"
        )


def _labels(atoms: Atoms) -> NDArray[np.str_]:
    if "site_label" in atoms.arrays:
        return np.asarray(atoms.arrays["site_label"], dtype=str)
    return np.array([f"{s}{i}" for i, s in enumerate(atoms.get_chemical_symbols())])


def _short(names: list[str], limit: int = 12) -> str:
    unique = list(dict.fromkeys(names))
    more = f" … (+{len(unique) - limit})" if len(unique) > limit else ""
    return ", ".join(unique[:limit]) + more


def _pairs(atoms: Atoms, subset: NDArray[np.intp], cutoff: float) -> NDArray[np.intp]:
    """Index pairs (P, 2) into ``atoms`` of atoms of ``subset`` closer than ``cutoff`` Å."""
    if len(subset) < 2:
        return np.zeros((0, 2), dtype=np.intp)
    i, j = primitive_neighbor_list(
        "ij",
        atoms.pbc,
        atoms.cell[:],
        atoms.positions[subset],
        cutoff,
        self_interaction=False,
    )
    keep = i < j
    return np.stack([subset[i[keep]], subset[j[keep]]], axis=1)


def component_roots(n: int, pairs: NDArray[np.intp]) -> NDArray[np.intp]:
    """Connected components of the graph on ``n`` nodes with edges ``pairs`` (M, 2): per node
    (n,), the smallest node index of its component (union–find with path halving)."""
    parent = np.arange(n)

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = int(parent[k])
        return k

    for a, b in pairs:
        ra, rb = root(int(a)), root(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([root(k) for k in range(n)], dtype=np.intp)


def _clusters(n: int, pairs: NDArray[np.intp]) -> list[list[int]]:
    """Connected components (size ≥ 2) of the overlap graph on ``n`` atoms."""
    roots = component_roots(n, pairs)
    members: dict[int, list[int]] = {}
    for k in np.unique(pairs):
        members.setdefault(int(roots[k]), []).append(int(k))
    return [sorted(m) for m in members.values() if len(m) > 1]


def _group_ranks(atoms: Atoms, occupancy: NDArray[np.float64]):
    """Per atom: (assembly key, rank of its group within the assembly) or None when ordered.

    Negative groups (SHELX PART -n, disorder across a symmetry element) are left to the overlap
    clusters: their alternatives are the atom's own symmetry images."""
    groups = atoms.arrays.get("disorder_group")
    if groups is None:
        return [None] * len(atoms), {}
    assemblies = atoms.arrays.get("disorder_assembly", np.full(len(atoms), "."))
    occ_of: dict[tuple[str, str], tuple[float, int]] = {}
    keys: list[tuple[str, str] | None] = []
    for i, (asm, grp) in enumerate(zip(assemblies, groups, strict=True)):
        grp, asm = str(grp).strip(), str(asm).strip()
        if grp in _NULL or grp.startswith("-"):
            keys.append(None)
            continue
        key = ("" if asm in _NULL else asm, grp)
        best, first = occ_of.get(key, (0.0, i))
        occ_of[key] = (max(best, float(occupancy[i])), min(first, i))
        keys.append(key)
    ranking: dict[str, list[str]] = {}
    for asm, grp in sorted(occ_of, key=lambda key: (-occ_of[key][0], occ_of[key][1])):
        ranking.setdefault(asm, []).append(grp)
    ranks = [None if key is None else (key[0], ranking[key[0]].index(key[1])) for key in keys]
    return ranks, {asm: len(g) for asm, g in ranking.items()}


def disorder_plan(atoms: Atoms, overlap: float = OVERLAP_DISTANCE) -> DisorderPlan | None:
    """The configurations of ``atoms`` (module docstring), or None for an ordered structure.

    Raises ``InputError`` naming the sites when fully occupied atoms overlap (no disorder can
    explain them)."""
    n = len(atoms)
    occupancy = np.asarray(atoms.arrays.get("occupancy", np.ones(n)), dtype=float)
    labels = _labels(atoms)
    ranks, n_groups = _group_ranks(atoms, occupancy)
    grouped = np.array([r is not None for r in ranks])
    partial = (occupancy < FULL_OCCUPANCY) & ~grouped
    if not grouped.any() and not partial.any():
        return None
    configurations: list[NDArray[np.intp]] = []
    in_cluster = np.zeros(n, dtype=bool)
    k, n_configs = 0, max(n_groups.values(), default=1)
    while k < n_configs:
        chosen = np.array(
            [r is None or r[1] == min(k, n_groups[r[0]] - 1) for r in ranks], dtype=bool
        )
        subset = np.flatnonzero(chosen)
        for cluster in _clusters(n, _pairs(atoms, subset, overlap)):
            in_cluster[cluster] = True
            full = [c for c in cluster if occupancy[c] >= FULL_OCCUPANCY]
            if len(full) > 1:
                raise InputError(
                    "fully occupied atoms overlap (closer than "
                    f"{overlap} Å), not a disorder the file declares: sites "
                    f"{_short([str(labels[c]) for c in full])}"
                )
            order = sorted(cluster, key=lambda c: (-occupancy[c], c))
            n_configs = max(n_configs, len(order))
            chosen[order] = False
            chosen[order[min(k, len(order) - 1)]] = True
        configurations.append(np.flatnonzero(chosen))
        k += 1
    if len(configurations) == 1 and not grouped.any():
        # Nothing to choose between: partially occupied atoms that overlap nothing.
        return DisorderPlan(
            configurations=configurations,
            counterpart=np.arange(n),
            partial=_partial_notes(labels, occupancy, partial & ~in_cluster),
        )
    major = configurations[0]
    counterpart = _counterparts(atoms, major)
    minor = [str(labels[i]) for i in np.setdiff1d(np.arange(n), major)]
    return DisorderPlan(
        configurations=configurations,
        counterpart=counterpart,
        minor=list(dict.fromkeys(minor)),
        partial=_partial_notes(labels, occupancy, partial & ~in_cluster),
    )


def _partial_notes(labels: NDArray[np.str_], occupancy: NDArray[np.float64], mask) -> list[str]:
    """ "label (occupancy)" once per site for the atoms where ``mask`` is True."""
    return list(dict.fromkeys(f"{labels[i]} ({occupancy[i]:.4g})" for i in np.flatnonzero(mask)))


def _counterparts(atoms: Atoms, major: NDArray[np.intp]) -> NDArray[np.intp]:
    """Per atom: itself when in ``major``, else the nearest major atom of its element within
    ``COUNTERPART_RADIUS`` Å (else the nearest major atom of any element; -1 when none)."""
    n = len(atoms)
    counterpart = np.full(n, -1, dtype=np.intp)
    counterpart[major] = major
    i, j, d = primitive_neighbor_list(
        "ijd", atoms.pbc, atoms.cell[:], atoms.positions, COUNTERPART_RADIUS, self_interaction=True
    )
    is_major = np.zeros(n, dtype=bool)
    is_major[major] = True
    numbers = atoms.numbers
    useful = ~is_major[i] & is_major[j]
    i, j, d = i[useful], j[useful], d[useful]
    # Same element first (a penalty larger than the search radius), then distance.
    score = d + np.where(numbers[i] == numbers[j], 0.0, 2 * COUNTERPART_RADIUS)
    order = np.lexsort((score, i))
    first = np.ones(len(order), dtype=bool)
    first[1:] = i[order][1:] != i[order][:-1]
    counterpart[i[order][first]] = j[order][first]
    return counterpart


def check_policy(policy: str) -> str:
    if policy not in DISORDER_POLICIES:
        raise InputError(f"disorder must be one of {DISORDER_POLICIES}, got {policy!r}")
    return policy


def overlap_message(atoms: Atoms, plan: DisorderPlan) -> str:
    """Why ``disorder="error"`` refuses ``atoms``: the overlapping / alternative sites."""
    source = atoms.info.get("source_file")
    where = f"{source}: " if source else ""
    return (
        f"{where}disordered structure ({len(plan.configurations)} configurations; alternative "
        f"sites {_short(plan.minor)}); the disorder policy 'major' predicts the major "
        "configuration (minor sites take their counterpart's ADP), 'each' every configuration"
    )
