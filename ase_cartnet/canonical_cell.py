"""A canonical listing of a periodic crystal, and the map of a prediction back to the input's.

A model that reads how a crystal is *written* — which periodic image of each atom is listed,
which basis of the lattice, where the origin lies, in what order the atoms come — answers
differently for the same crystal written two ways (DeepRelax's cell-offset encoding, eqns 2–3,
names every edge by its lattice offset k, which depends on all four). Feeding it one canonical
listing per crystal makes its answer covariant by construction; :class:`CanonicalListing`
carries the prediction back to the input's listing. The canonical listing:

* **basis**: the Niggli-reduced cell (``ase.build.tools.niggli_reduce_cell``), made
  right-handed, in the standard orientation (a along x, b in the xy plane; Q from a QR
  factorisation), so that rotating the input leaves it unchanged. A lattice with more
  symmetry than ±I (cubic, rhombohedral, …) has several reduced bases with one metric, and
  which one the reduction returns depends on the basis it starts from; they map into each
  other by the lattice's proper automorphisms A (A G Aᵀ = G, det A = 1, entries in {−1, 0, 1}
  for a reduced basis), so the listing is made in every A-rotated basis and the one whose
  sorted atoms come first (lexicographically; then its cell) is kept;
* **origin** f₀: the point where three Fourier components S(G) = Σ_j Z_j exp(2πi G·f_j) of the
  Z-weighted atom density (G from a unimodular triple of small reciprocal vectors with
  |S(G)| ≥ 1 % of Σ Z) are real and positive. S(G) picks up exp(2πi G·t) under a translation t
  and does not see which image is listed, so f₀ moves with the crystal;
* **images**: fractional coordinates relative to f₀ wrapped into [−δ, 1 − δ), δ = 0.0731 (not 0:
  the origin often sits on an atom, whose coordinate would otherwise flip between 0 and 1);
* **order**: sorted by atomic number, then by coordinates;
* numbers rounded to 1e-9 (Å, fractions): two listings of one crystal that differ only by
  round-off become bitwise equal, so even a model or solver that amplifies round-off (the EDG
  solver's constant-step Adam does) gives the same answer.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from ase import Atoms

WRAP_SHIFT = 0.0731
"""δ: canonical fractional coordinates lie in [−δ, 1 − δ)."""

DECIMALS = 9
"""Rounding of the canonical cell (Å) and fractional coordinates."""

MIN_PHASE_WEIGHT = 0.01
"""|S(G)| / Σ Z below which a Fourier component's phase is not used to place the origin."""

METRIC_TOLERANCE = 1e-4
"""Relative tolerance (of the largest diagonal metric entry, Å²) under which two bases of a
lattice count as having the same metric: above the reduction's own tolerance, so that bases it
may return for one lattice written two ways are all considered."""


@dataclass
class CanonicalListing:
    """The canonical listing of an input crystal and what maps back to the input.

    Attributes
    ----------
    atoms
        the canonical crystal (canonical order, cell and frame).
    order
        (N,) input index of each canonical atom.
    rotation
        (3, 3) orthogonal Q: canonical Cartesian = input Cartesian @ Q.
    basis
        (3, 3) integer unimodular B: canonical cell = B @ input cell (rotated by Q).
    origin
        (3,) f₀, fractional in the reduced basis (canonical basis).
    images
        (N, 3) integers n_k (canonical order): input atom ``order[k]`` lies at the
        canonical fractional position + f₀ + n_k.
    """

    atoms: Atoms
    order: np.ndarray
    rotation: np.ndarray
    basis: np.ndarray
    origin: np.ndarray
    images: np.ndarray

    def positions_to_input(self, positions: np.ndarray, cell: np.ndarray) -> np.ndarray:
        """(N, 3) positions predicted for the canonical atoms with a predicted canonical
        ``cell`` (3, 3), as positions of the input's atoms in the input's frame: the origin
        shift and each atom's image n_k are undone *in the predicted cell*, so that a cell
        deformation acts about the input's Cartesian origin, as ASE's cell filters (and the
        teacher relaxations) have it: listing another image moves the atom by a predicted
        lattice vector, and translating the input by t moves the result by t L⁻¹ L̂."""
        moved = positions + (self.images + self.origin) @ cell
        out = np.empty_like(moved)
        out[self.order] = moved
        return out @ self.rotation.T

    def carry(self, partner: Atoms) -> Atoms:
        """``partner`` — the same atoms in the same order, positions continuous with the input
        (e.g. a relaxed structure of a training pair) — in this listing: the inverse of
        :meth:`positions_to_input` and :meth:`cell_to_input`, so that a model trained on
        (``atoms``, ``carry(relaxed)``) sees pairs as it sees inputs at prediction time."""
        if len(partner) != len(self.order):
            raise ValueError(f"{len(partner)} atoms against the listing's {len(self.order)}")
        cell = self.basis @ np.asarray(partner.cell[:], dtype=np.float64) @ self.rotation
        positions = partner.positions[self.order] @ self.rotation
        positions = positions - (self.images + self.origin) @ cell
        return Atoms(self.atoms.numbers, positions=positions, cell=cell, pbc=True)

    def cell_to_input(self, cell: np.ndarray) -> np.ndarray:
        """A predicted canonical ``cell`` (3, 3) expressed in the input's basis and frame."""
        return np.linalg.solve(self.basis, cell) @ self.rotation.T

    def edges_to_input(self, index: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Periodic edges of the canonical atoms — ``index`` (E, 2) pairs (i, j), the image of j
        at offset ``shift`` (E, 3) — as input atom indices and input-basis offsets."""
        k = shift - self.images[index[:, 1]] + self.images[index[:, 0]]
        return self.order[index], np.rint(k @ self.basis).astype(np.int64)


def canonical_listing(atoms: Atoms) -> CanonicalListing:
    """The canonical listing of a 3D-periodic ``atoms`` (module docstring)."""
    cell = np.asarray(atoms.cell[:], dtype=np.float64)
    basis = _reducing_basis(cell)
    if np.linalg.det(basis @ cell) < 0:  # −I is a lattice automorphism: keep right-handed
        basis = -basis
    reduced = basis @ cell
    frac = np.linalg.solve(reduced.T, atoms.positions.T).T  # in the reduced basis
    numbers = np.asarray(atoms.numbers)
    best = None
    for auto in _proper_automorphisms(reduced):
        # basis A @ reduced: fractional coordinates become frac @ A⁻¹ (an integer matrix)
        inverse = np.rint(np.linalg.inv(auto))
        candidate = _listing(frac @ inverse, numbers, auto @ reduced)
        key = (tuple(candidate[2].ravel()), tuple(candidate[0].ravel()))
        if best is None or key < best[0]:
            best = key, auto, candidate
    _, auto, (standard, q, wrapped, f0, images, order) = best
    canonical = Atoms(numbers[order], positions=wrapped @ standard, cell=standard, pbc=True)
    return CanonicalListing(
        atoms=canonical,
        order=order,
        rotation=q,
        basis=auto @ basis,
        origin=f0,
        images=images,
    )


def _listing(frac: np.ndarray, numbers: np.ndarray, reduced: np.ndarray):
    """The listing in one right-handed reduced basis ``reduced`` (3, 3) of atoms at ``frac``
    (N, 3): standard cell (3, 3), Q (3, 3), wrapped fractional coordinates (N, 3), f₀ (3,),
    images (N, 3) and the input index of each row (N,), all in canonical order."""
    q, r = np.linalg.qr(reduced.T)
    q = q * np.where(np.diag(r) < 0, -1.0, 1.0)  # R with a positive diagonal: Q unique
    standard = np.round(reduced @ q, DECIMALS)  # lower-triangular rows
    f0 = _phase_origin(frac, numbers, standard)
    shifted = frac - f0
    images = np.floor(shifted + WRAP_SHIFT).astype(np.int64)
    wrapped = np.round(shifted - images, DECIMALS)
    order = np.lexsort((wrapped[:, 2], wrapped[:, 1], wrapped[:, 0], numbers))
    return standard, q, wrapped[order], f0, images[order], order


def _proper_automorphisms(reduced: np.ndarray) -> list[np.ndarray]:
    """Integer A (3, 3), det A = 1, with A @ ``reduced`` of the same metric as ``reduced``
    (within :data:`METRIC_TOLERANCE`), the identity first. In a reduced basis the vectors as
    short as a basis vector have coefficients in {−1, 0, 1}, so the search is over those."""
    metric = reduced @ reduced.T
    tol = METRIC_TOLERANCE * float(np.max(np.diag(metric)))
    vectors = np.array(
        [v for v in itertools.product((-1, 0, 1), repeat=3) if any(v)], dtype=np.int64
    )
    lengths = np.einsum("ij,jk,ik->i", vectors, metric, vectors)
    rows = [vectors[np.abs(lengths - metric[i, i]) <= tol] for i in range(3)]
    found = [np.eye(3, dtype=np.int64)]
    for a, b, c in itertools.product(*rows):
        auto = np.array([a, b, c])
        if round(np.linalg.det(auto)) != 1 or np.array_equal(auto, found[0]):
            continue
        if np.abs(auto @ metric @ auto.T - metric).max() <= tol:
            found.append(auto)
    return found


def _reducing_basis(cell: np.ndarray) -> np.ndarray:
    """(3, 3) integer unimodular B with B @ cell Niggli-reduced. ASE's reduction can cycle on
    cells whose metric sits on a boundary to within its tolerance (seen on relaxation frames);
    a coarser tolerance is tried next, and a Minkowski reduction (always terminates) last."""
    from ase.build.tools import niggli_reduce_cell
    from ase.geometry import minkowski_reduce

    for epsfactor in (1e-5, 1e-3):
        try:
            _, op = niggli_reduce_cell(cell, epsfactor=epsfactor)
        except RuntimeError:
            continue
        return np.rint(op).astype(np.int64).T  # ASE's reduced cell is opᵀ @ cell
    _, op = minkowski_reduce(cell)
    return np.rint(op).astype(np.int64)


def _reciprocal_candidates(cell: np.ndarray) -> np.ndarray:
    """Integer G ∈ {−2..2}³ (one of ±G), shortest first in the reciprocal metric of ``cell``,
    ties by the tuple (deterministic for a given canonical cell)."""
    grid = np.array(
        [g for g in itertools.product(range(-2, 3), repeat=3) if g > (0, 0, 0)], dtype=np.int64
    )
    recip = np.linalg.inv(cell).T
    lengths = np.round(np.linalg.norm(grid @ recip.T, axis=1), 6)
    keys = np.lexsort((grid[:, 2], grid[:, 1], grid[:, 0], lengths))
    return grid[keys]


def _phase_origin(frac: np.ndarray, numbers: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """f₀ (3,) fractional: the point where S(G) of the first usable unimodular triple of
    reciprocal vectors is real and positive; 0 when the density has no such triple."""
    weights = numbers.astype(np.float64)
    candidates = _reciprocal_candidates(cell)
    s = (weights[:, None] * np.exp(2j * np.pi * frac @ candidates.T)).sum(axis=0)
    strong = np.flatnonzero(np.abs(s) >= MIN_PHASE_WEIGHT * weights.sum())
    fallback = None
    for i, j, k in itertools.combinations(strong[:24], 3):
        g = candidates[[i, j, k]].astype(np.float64)
        det = round(float(np.linalg.det(g)))
        if det == 0:
            continue
        phases = np.angle(s[[i, j, k]]) / (2 * np.pi)
        if abs(det) == 1:
            return np.linalg.solve(g, phases)
        if fallback is None:  # a translational (pseudo)symmetry: any solution is as good
            fallback = np.linalg.solve(g, phases)
    return np.zeros(3) if fallback is None else fallback
