"""DeepRelax data: the multi-graph of a structure, unrelaxed → relaxed pairs, synthetic pairs.

Pairs live in ASE databases in the layout of ``phonon_ref.build_dataset`` rows: the row's atoms
are the *relaxed* structure, ``data["initial_positions"]`` (N, 3) and ``data["initial_cell"]``
(3, 3) the unrelaxed one, same atom order, positions continuous (not re-wrapped) between the
two. So a teacher database from ``phonon_ref`` (CHGNet relaxations) and a synthetic one from
:func:`build_synthetic_db` are read by the same :func:`pairs_from_db`.

Synthetic pairs: a DFT-relaxed structure ρ is distorted into
ρ̃ = exp(A) ρ — the lattice (and with it every fractional position) strained by exp(A), A a
random symmetric 3 × 3 matrix with independent N(0, σ_A²) entries — plus Gaussian rattling of
every Cartesian coordinate, N(0, σ_r²). The relaxed target is ρ itself.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from scipy.linalg import expm

from ase_cartnet.errors import InputError
from ase_cartnet.graph.neighbours import closest_pairs

DEFAULT_STRAIN_STD = 0.04
"""σ_A of the symmetric strain generator A (dimensionless): lattice lengths change by ≈ 4 %."""

DEFAULT_RATTLE_STD = 0.05
"""σ_r, Å per Cartesian component (≈ 0.08 Å per atom)."""

MIN_INITIAL_DISTANCE = 0.7
"""Å. A synthetic unrelaxed structure with two atoms closer than this is drawn again."""


@dataclass
class RelaxPair:
    """An unrelaxed structure and its relaxed counterpart (same atoms, same order), and
    optionally intermediate ``frames`` of the teacher's trajectory between the two."""

    key: str
    initial: Atoms
    relaxed: Atoms
    frames: tuple[Atoms, ...] = ()

    def __post_init__(self) -> None:
        if len(self.initial) != len(self.relaxed) or not np.array_equal(
            self.initial.numbers, self.relaxed.numbers
        ):
            raise InputError(f"pair {self.key}: initial and relaxed atoms differ")


def seed_for_key(key: str, seed: int) -> int:
    """A 64-bit random seed that depends only on (seed, key): reproducible per-structure noise."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def distort(
    atoms: Atoms,
    strain_std: float = DEFAULT_STRAIN_STD,
    rattle_std: float = DEFAULT_RATTLE_STD,
    rng: np.random.Generator | None = None,
    max_tries: int = 20,
) -> Atoms:
    """ρ̃ = exp(A) ρ plus rattling (module docstring). ``atoms`` is not modified; the returned
    positions follow the same atoms without wrapping. Redraws if atoms come closer than 0.7 Å."""
    rng = rng or np.random.default_rng()
    scaled = atoms.get_scaled_positions(wrap=False)
    cell = np.asarray(atoms.cell[:], dtype=float)
    for _ in range(max_tries):
        upper = np.triu(rng.normal(0.0, strain_std, size=(3, 3)))
        a = upper + np.triu(upper, 1).T  # symmetric, 6 independent N(0, σ_A²) entries
        new_cell = cell @ expm(a)  # rows l_k → l_k exp(A) (A symmetric: exp(A)ᵀ = exp(A))
        positions = scaled @ new_cell + rng.normal(0.0, rattle_std, size=(len(atoms), 3))
        out = Atoms(atoms.numbers, positions=positions, cell=new_cell, pbc=True)
        if not len(closest_pairs(out.positions, out.cell[:], True, MIN_INITIAL_DISTANCE)):
            return out
    raise InputError("could not draw a distortion without overlapping atoms")


def synthetic_pairs(
    structures: Iterable[Atoms],
    strain_std: float = DEFAULT_STRAIN_STD,
    rattle_std: float = DEFAULT_RATTLE_STD,
    seed: int = 0,
) -> list[RelaxPair]:
    """One synthetic pair per relaxed structure (key ``info["source_id"]``); the noise of each
    depends only on (seed, key), so the pairs are reproducible."""
    out = []
    for k, atoms in enumerate(structures):
        key = str(atoms.info.get("source_id", f"structure-{k}"))
        relaxed = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell[:], pbc=True)
        rng = np.random.default_rng(seed_for_key(key, seed))
        out.append(RelaxPair(key, distort(relaxed, strain_std, rattle_std, rng), relaxed))
    return out


def storable_key(key: str) -> str:
    """ASE databases refuse strings that read as numbers (Perov-5 ids are integers)."""
    try:
        float(key)
    except ValueError:
        return key
    return f"id-{key}"


def write_pairs_db(pairs: Sequence[RelaxPair], out: str | os.PathLike, **extra) -> Path:
    """Write pairs as rows (relaxed atoms; initial in ``data``) with ``source_id``; ``extra``
    goes into every row's ``data`` (e.g. noise levels). Existing ids are skipped (resumable)."""
    from ase.db import connect

    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with connect(path) as db:
        done = {str(row.source_id) for row in db.select(include_data=False) if "source_id" in row}
        for pair in pairs:
            key = storable_key(pair.key)
            if key in done:
                continue
            db.write(
                pair.relaxed,
                source_id=key,
                status="ok",
                data={
                    "initial_positions": pair.initial.positions,
                    "initial_cell": np.asarray(pair.initial.cell[:]),
                    **extra,
                },
            )
    return path


def pairs_from_db(
    path: str | os.PathLike,
    limit: int | None = None,
    status: str | None = "ok",
    frames: bool = False,
) -> list[RelaxPair]:
    """Pairs of an ASE database in the layout above (rows without initial data are skipped);
    with ``frames``, each pair also holds the stored trajectory frames
    (``data["frames_positions"]`` (F, N, 3) Å, ``data["frames_cells"]`` (F, 3, 3) Å)."""
    from ase.db import connect

    p = Path(path)
    if not p.is_file():
        raise InputError(f"pair database not found: {p}")
    out: list[RelaxPair] = []
    selection = {} if status is None else {"status": status}
    with connect(p) as db:
        for row in db.select(**selection):
            if "initial_positions" not in row.data or "initial_cell" not in row.data:
                continue
            relaxed = row.toatoms()
            relaxed.calc = None
            initial = Atoms(
                relaxed.numbers,
                positions=np.asarray(row.data["initial_positions"], dtype=float),
                cell=np.asarray(row.data["initial_cell"], dtype=float),
                pbc=True,
            )
            stored = []
            if frames and "frames_positions" in row.data:
                for pos, cell in zip(
                    row.data["frames_positions"], row.data["frames_cells"], strict=True
                ):
                    stored.append(Atoms(relaxed.numbers, positions=pos, cell=cell, pbc=True))
            key = str(row.get("source_id", row.id))
            out.append(RelaxPair(key, initial, relaxed, tuple(stored)))
            if limit is not None and len(out) >= limit:
                break
    if not out:
        raise InputError(f"{p} holds no unrelaxed → relaxed pairs")
    return out


def pairs_from_dbs(
    paths: Sequence[str | os.PathLike], limit: int | None = None, frames: bool = False
) -> list[RelaxPair]:
    """The pairs of several databases (``limit`` per database). With more than one, every key
    is prefixed with its database's stem ("teacher_train:mp-1234"), so that pairs made from the
    same prototype in different databases (synthetic and teacher) stay distinct."""
    if not paths:
        raise InputError("no pair database given")
    out = []
    for path in paths:
        pairs = pairs_from_db(path, limit=limit, frames=frames)
        if len(paths) > 1:
            stem = Path(path).stem
            pairs = [RelaxPair(f"{stem}:{p.key}", p.initial, p.relaxed, p.frames) for p in pairs]
        out.extend(pairs)
    return out


def frame_pairs(pairs: Sequence[RelaxPair], per_pair: int) -> list[RelaxPair]:
    """Extra (frame → relaxed) pairs: up to ``per_pair`` frames of each pair, evenly spaced
    along its trajectory, keyed ``"<key>#f<i>"``."""
    out = []
    for pair in pairs:
        n = len(pair.frames)
        if n == 0 or per_pair <= 0:
            continue
        picks = np.unique(np.linspace(0, n - 1, min(per_pair, n)).round().astype(int))
        out.extend(RelaxPair(f"{pair.key}#f{i}", pair.frames[i], pair.relaxed) for i in picks)
    return out


def canonical_pair(pair: RelaxPair) -> RelaxPair:
    """``pair`` in the canonical listing of its unrelaxed structure
    (:mod:`ase_cartnet.canonical_cell`), the listing the calculator feeds the model, so that
    training and prediction see crystals written the same way."""
    from ase_cartnet.canonical_cell import canonical_listing

    listing = canonical_listing(pair.initial)
    return RelaxPair(pair.key, listing.atoms, listing.carry(pair.relaxed))


def build_synthetic_db(
    csv: str | os.PathLike,
    out: str | os.PathLike,
    *,
    strain_std: float = DEFAULT_STRAIN_STD,
    rattle_std: float = DEFAULT_RATTLE_STD,
    seed: int = 0,
    limit: int | None = None,
) -> Path:
    """Synthetic pairs of the structures of an MP-20 style CSV (read with
    :func:`ase_cartnet.io.datasets.read_mp20`) written with :func:`write_pairs_db`; the noise
    levels are stored in every row."""
    from ase_cartnet.io.datasets import read_mp20

    structures = read_mp20(csv, limit=limit)
    pairs = synthetic_pairs(structures, strain_std, rattle_std, seed)
    return write_pairs_db(
        pairs,
        out,
        strain_std=float(strain_std),
        rattle_std=float(rattle_std),
        noise_seed=int(seed),
        source_csv=Path(csv).name,
    )
