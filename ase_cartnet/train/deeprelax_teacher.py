"""DeepRelax teacher pairs: prototypes with substituted elements, relaxed by a teacher.

No public unrelaxed → relaxed pairs are reachable here, so real relaxations are imitated the way
the paper's X-Mn-O set was made: take a relaxed crystal as a *prototype*, replace elements by
chemically similar ones (:func:`substitute`), and relax the result with an ML potential (CHGNet)
— positions and cell, ``BFGS(FrechetCellFilter(atoms))`` to ``fmax`` (default 0.01 eV/Å, no
symmetry constraint, as a DFT code would be run). The unrelaxed structure is the prototype's
geometry with the new elements; the relaxed one is the teacher's minimum.

Chemically similar = the same group of the periodic table, one period up or down
(lanthanides: a neighbouring lanthanide), among elements an MP-trained potential knows
(Z ≤ 83, no noble gases, no Tc or Pm); hydrogen is never substituted. Each species of the
prototype is substituted with probability ½ (at least one), every atom of a species alike,
never onto an element already present. The choice depends only on (seed, source_id).

Rows are written by the shared resumable builder (:mod:`ase_cartnet.io.row_builder`, the
pattern of :func:`phonon_ref.dataset.build_dataset`) in the layout
:func:`ase_cartnet.train.deeprelax_data.pairs_from_db` reads: the row's atoms are the relaxed
structure, ``data["initial_positions"]`` / ``data["initial_cell"]`` the unrelaxed one. Extra
keys: ``substitution`` ("Mg>Ca O>S"), ``prototype`` (formula), ``teacher_energy`` (eV);
``data``: ``relax`` (converged, steps, fmax_reached), ``timings`` (s), ``teacher_version``.
Relaxations that do not converge in ``max_steps`` are "failed" rows (not used for training).

    ase-cartnet teacher-pairs ../shared/data/mp_20/val.csv.gz \\
        -o runs/deeprelax/teacher_train.db --max-atoms 12 --limit 400 --workers 1
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from ase import Atoms

from ase_cartnet.errors import InputError
from ase_cartnet.io import row_builder
from ase_cartnet.train.deeprelax_data import seed_for_key, storable_key

DEFAULT_FMAX = 0.01
"""eV/Å: the teacher's relaxed structure (tighter than the 0.05 eV/Å of the steps-saved test)."""

DEFAULT_MAX_STEPS = 1000

EXCLUDED = frozenset({1, 43, 61} | {2, 10, 18, 36, 54, 86})
"""Never substituted, nor substituted to: H, Tc, Pm and the noble gases."""

MAX_Z = 83


@cache
def similar_elements(z: int) -> tuple[int, ...]:
    """Atomic numbers chemically similar to ``z`` (module docstring), ascending; () if none."""
    from pymatgen.core.periodic_table import Element

    if z in EXCLUDED or z > MAX_Z:
        return ()
    el = Element.from_Z(z)
    if el.is_lanthanoid:
        candidates = [z - 1, z + 1]
        return tuple(c for c in candidates if 57 <= c <= 71 and c not in EXCLUDED)
    out = []
    for other in range(3, MAX_Z + 1):
        if other == z or other in EXCLUDED:
            continue
        e = Element.from_Z(other)
        if e.is_lanthanoid or e.group != el.group:
            continue
        if abs(e.row - el.row) == 1:
            out.append(other)
    return tuple(out)


def substitute(atoms: Atoms, rng: np.random.Generator) -> tuple[Atoms, dict[int, int]]:
    """The prototype ``atoms`` with elements replaced (module docstring) and the map {old: new}.

    Raises InputError if no species of ``atoms`` has a similar element that is not present.
    ``atoms`` is not modified; positions and cell are the prototype's.
    """
    present = sorted(set(int(z) for z in atoms.numbers))
    options = {z: [c for c in similar_elements(z) if c not in present] for z in present}
    substitutable = [z for z in present if options[z]]
    if not substitutable:
        raise InputError(
            f"{atoms.get_chemical_formula()}: no element has a similar one to substitute"
        )
    chosen = [z for z in substitutable if rng.random() < 0.5]
    if not chosen:
        chosen = [substitutable[int(rng.integers(len(substitutable)))]]
    mapping: dict[int, int] = {}
    taken = set(present)
    for z in chosen:
        free = [c for c in options[z] if c not in taken]
        if not free:
            continue
        new = free[int(rng.integers(len(free)))]
        mapping[z] = new
        taken.add(new)
    numbers = np.array([mapping.get(int(z), int(z)) for z in atoms.numbers])
    out = Atoms(numbers, positions=atoms.positions, cell=atoms.cell[:], pbc=True)
    return out, mapping


def format_substitution(mapping: Mapping[int, int]) -> str:
    """ "Mg>Ca O>S" for {12: 20, 8: 16}."""
    from ase.data import chemical_symbols

    pairs = sorted(mapping.items())
    return " ".join(f"{chemical_symbols[a]}>{chemical_symbols[b]}" for a, b in pairs)


@dataclass(frozen=True)
class TeacherPairSettings:
    """Everything a worker needs for one pair (picklable)."""

    calculator: str
    seed: int
    fmax: float
    max_steps: int
    fix_symmetry: bool
    n_threads: int | None
    keep_frames: int = 0
    device: str = "cpu"


def process_pair(
    source_id: str, atoms: Atoms, settings: TeacherPairSettings, parent_pid: int
) -> dict[str, Any]:
    """Substitute, then relax with the teacher; never raises an ``Exception`` (a failure is a
    record with status "failed"). The record's ``initial`` is the *substituted* structure."""
    from phonon_ref.relax import load_and_relax

    with row_builder.task_record(source_id, atoms) as record:
        rng = np.random.default_rng(seed_for_key(source_id, settings.seed))
        initial, mapping = substitute(atoms, rng)
        record.update(substituted=initial, mapping=mapping, prototype=atoms.get_chemical_formula())
        load_and_relax(initial, settings, record, parent_pid, keep_frames=settings.keep_frames)
        record["status"] = "ok"
    return record


def _write_pair_row(db, record: dict[str, Any], settings: TeacherPairSettings, teacher: dict):
    """One row per pair in the layout of ``pairs_from_db`` (one transaction)."""
    initial = record.get("substituted")
    fallback = initial if initial is not None else record["initial"]
    atoms = record["atoms"] if record["status"] == "ok" else fallback
    atoms, kvp, data = row_builder.teacher_row(record, teacher, atoms)
    data.update(
        fmax=settings.fmax, fix_symmetry=settings.fix_symmetry, substitution_seed=settings.seed
    )
    if initial is not None:
        kvp["substitution"] = format_substitution(record["mapping"])
        kvp["prototype"] = record["prototype"]
        data["initial_positions"] = np.asarray(initial.positions)
        data["initial_cell"] = np.asarray(initial.cell[:])
    if record.get("frames"):
        # intermediate structures of the teacher's trajectory: extra (frame -> relaxed) pairs
        data["frames_positions"] = np.stack([f.positions for f in record["frames"]])
        data["frames_cells"] = np.stack([f.cell[:] for f in record["frames"]])
    with db:
        db.write(atoms, key_value_pairs=kvp, data=data)


def build_teacher_pairs(
    structures: Mapping[str, Atoms] | Iterable[Any],
    out: str | os.PathLike,
    calculator: str = "chgnet",
    executor: Executor | None = None,
    *,
    seed: int = 0,
    fmax: float = DEFAULT_FMAX,
    max_steps: int = DEFAULT_MAX_STEPS,
    fix_symmetry: bool = False,
    worker_threads: int | None = 1,
    retry_failed: bool = False,
    progress: bool = True,
    substitutions: int = 1,
    keep_frames: int = 0,
    device: str = "cpu",
) -> row_builder.BuildSummary:
    """Substitute and relax every prototype (module docstring); one row each in ``out``.

    ``substitutions`` > 1 makes that many substituted versions of each prototype (ids
    ``"<id>~s1"``, … beside ``"<id>"``; each draws its own species pattern). ``keep_frames``
    stores up to that many intermediate frames of each teacher trajectory
    (``data["frames_positions"]`` (F, N, 3) Å, ``data["frames_cells"]`` (F, 3, 3) Å).
    ``device`` is where a teacher given by name runs ("cpu", "cuda").

    ``structures`` as :func:`ase_cartnet.io.row_builder.as_items` (e.g. ``read_mp20(csv)``);
    ``executor`` any ``concurrent.futures.Executor`` (pass the calculator by name), None for
    in-process. Resumable: ids with a row are skipped. Returns a
    :class:`~ase_cartnet.io.row_builder.BuildSummary`.
    """
    from phonon_ref.relax import build_teacher_rows

    if not (np.isfinite(fmax) and fmax > 0):
        raise InputError(f"fmax must be a positive force in eV/Å, got {fmax}")
    settings = TeacherPairSettings(
        calculator=calculator,
        seed=int(seed),
        fmax=float(fmax),
        max_steps=int(max_steps),
        fix_symmetry=bool(fix_symmetry),
        n_threads=worker_threads,
        keep_frames=int(keep_frames),
        device=str(device),
    )
    # ids as the pair reader stores them (ASE databases refuse strings that read as numbers);
    # substitution rounds interleave so that every prototype gets its first pattern first
    prototypes = [(storable_key(sid), atoms) for sid, atoms in row_builder.as_items(structures)]
    items = [
        (sid if k == 0 else f"{sid}~s{k}", atoms)
        for k in range(max(1, int(substitutions)))
        for sid, atoms in prototypes
    ]
    return build_teacher_rows(
        items,
        process_pair,
        _write_pair_row,
        settings,
        out,
        executor,
        retry_failed=retry_failed,
        progress=progress,
    )


if __name__ == "__main__":  # ``python -m ase_cartnet.train.deeprelax_teacher``, as scripts call it
    import sys

    from ase_cartnet.cli import main

    raise SystemExit(main(["teacher-pairs", *sys.argv[1:]]))
