"""DeepRelax teacher pairs (prototype substitution + teacher relaxation), the
space-group projection of predictions, and fine-tuning an ensemble from another."""

from __future__ import annotations

import numpy as np
import pytest
import spglib
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.data import chemical_symbols
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS

from ase_cartnet.errors import InputError
from ase_cartnet.symmetry import symmetrize_like
from ase_cartnet.train.deeprelax_data import pairs_from_db, synthetic_pairs
from ase_cartnet.train.deeprelax_teacher import (
    build_teacher_pairs,
    format_substitution,
    similar_elements,
    substitute,
)


def _symbols(numbers) -> list[str]:
    return [chemical_symbols[z] for z in numbers]


def test_similar_elements_are_group_neighbours():
    assert _symbols(similar_elements(8)) == ["S"]  # O
    assert _symbols(similar_elements(12)) == ["Be", "Ca"]  # Mg
    assert _symbols(similar_elements(29)) == ["Ag"]  # Cu
    assert _symbols(similar_elements(58)) == ["La", "Pr"]  # Ce: neighbouring lanthanides
    assert similar_elements(1) == () and similar_elements(18) == ()  # H, Ar: never
    assert 43 not in similar_elements(25) and 43 not in similar_elements(75)  # no Tc


def test_substitute_is_deterministic_keeps_geometry_and_never_merges_species():
    atoms = bulk("MgO", "rocksalt", a=4.2) * (2, 1, 1)
    for seed in range(20):
        a, mapping = substitute(atoms, np.random.default_rng(seed))
        b, again = substitute(atoms, np.random.default_rng(seed))
        assert mapping == again and np.array_equal(a.numbers, b.numbers)
        assert mapping and set(mapping) <= {8, 12}
        assert not set(mapping.values()) & {8, 12}  # onto an element not present
        assert len(set(a.numbers)) == 2  # species stay distinct
        np.testing.assert_array_equal(a.positions, atoms.positions)
        np.testing.assert_array_equal(a.cell[:], atoms.cell[:])
    assert format_substitution({12: 20, 8: 16}) == "O>S Mg>Ca"
    with pytest.raises(InputError, match="no element"):
        substitute(Atoms("Ar", cell=np.eye(3) * 4, pbc=True), np.random.default_rng(0))


def test_teacher_pairs_with_emt_resume_and_record_failures(tmp_path):
    """Cu → Ag prototypes relaxed with EMT reach EMT's Ag lattice; reruns skip finished ids;
    a prototype with nothing to substitute becomes a failed row."""
    cu = bulk("Cu", "fcc", a=3.61)
    ar = Atoms("Ar", cell=np.eye(3) * 4.0, pbc=True)
    items = [("cu-1", cu), ("cu-2", cu * (1, 1, 2)), ("ar", ar)]
    out = tmp_path / "pairs.db"
    summary = build_teacher_pairs(items, out, calculator="emt", progress=False, fmax=1e-3)
    assert sorted(summary.ok) == ["cu-1", "cu-2"] and summary.failed == ["ar"]
    pairs = {p.key: p for p in pairs_from_db(out)}
    assert set(pairs) == {"cu-1", "cu-2"}
    reference = bulk("Ag", "fcc", a=4.06)
    reference.calc = EMT()
    BFGS(FrechetCellFilter(reference), logfile=None).run(fmax=1e-4)
    volume_per_atom = reference.get_volume()
    for pair in pairs.values():
        assert set(pair.initial.numbers) == {47}  # Ag on the Cu prototype
        assert abs(pair.initial.get_volume() / len(pair.initial) - cu.get_volume()) < 1e-9
        assert pair.relaxed.get_volume() / len(pair.relaxed) == pytest.approx(
            volume_per_atom, rel=2e-3
        )
    again = build_teacher_pairs(items, out, calculator="emt", progress=False, fmax=1e-3)
    assert sorted(again.skipped) == ["ar", "cu-1", "cu-2"] and not again.ok


def _spacegroup(atoms: Atoms, symprec: float) -> int:
    cell = (atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers)
    return spglib.get_symmetry_dataset(cell, symprec=symprec).number


def test_symmetrize_like_restores_the_space_group_and_keeps_symmetric_changes():
    reference = bulk("NaCl", "rocksalt", a=5.6, cubic=True)
    rng = np.random.default_rng(0)
    noisy = reference.copy()
    noisy.set_cell(reference.cell[:] @ (1.03 * np.eye(3) + 0.01 * rng.normal(size=(3, 3))),
                   scale_atoms=True)  # fmt: skip
    noisy.positions += 0.03 * rng.normal(size=noisy.positions.shape)
    assert _spacegroup(noisy, 1e-4) != 225
    fixed, n_ops = symmetrize_like(noisy, reference)
    assert n_ops == 192 and _spacegroup(fixed, 1e-6) == 225
    # the symmetric part survives: the volume change of the 3 % strain, and the result is a
    # fixed point of the projection
    assert fixed.get_volume() / reference.get_volume() == pytest.approx(
        np.linalg.det(noisy.cell[:]) / np.linalg.det(reference.cell[:]), rel=2e-3
    )
    twice, _ = symmetrize_like(fixed, reference)
    np.testing.assert_allclose(twice.cell[:], fixed.cell[:], atol=1e-12)
    np.testing.assert_allclose(twice.positions, fixed.positions, atol=1e-12)
    # an already symmetric change (isotropic scaling) is returned exactly
    scaled = reference.copy()
    scaled.set_cell(reference.cell[:] * 1.02, scale_atoms=True)
    same, _ = symmetrize_like(scaled, reference)
    np.testing.assert_allclose(same.positions, scaled.positions, atol=1e-12)
    np.testing.assert_allclose(same.cell[:], scaled.cell[:], atol=1e-12)


def test_symmetrize_like_leaves_p1_alone_and_checks_atoms():
    rng = np.random.default_rng(1)
    cell = np.diag([4.0, 5.0, 6.0]) + 0.3 * rng.random((3, 3))
    reference = Atoms("NaClKBr", scaled_positions=rng.random((4, 3)), cell=cell, pbc=True)
    moved = reference.copy()
    moved.positions += 0.05 * rng.normal(size=(4, 3))
    out, n_ops = symmetrize_like(moved, reference)
    assert n_ops == 1
    np.testing.assert_array_equal(out.positions, moved.positions)
    with pytest.raises(InputError, match="same atoms"):
        symmetrize_like(moved[:3], reference)


def test_fine_tuning_starts_from_the_given_members(tmp_path):
    """train_deeprelax(init=ensemble) with 0 optimisation steps' worth of learning rate leaves
    every replicate equal to its member of the initial ensemble."""
    from ase_cartnet.io.checkpoint import load_model
    from ase_cartnet.models.deeprelax import DeepRelaxConfig, DeepRelaxEnsemble
    from ase_cartnet.train.deeprelax import train_deeprelax
    from ase_cartnet.train.loop import TrainConfig

    torch.set_num_threads(1)
    config = DeepRelaxConfig(hidden=8, num_layers=1, num_rbf=4, pcoe_dim=4, max_neighbours=8)
    torch.manual_seed(3)
    init = DeepRelaxEnsemble(config, size=2)
    with torch.no_grad():
        for p in init.parameters():
            p.add_(0.1 * torch.randn_like(p))
    structures = []
    for k in range(6):
        s = bulk("Cu", "fcc", a=3.6)
        s.info["source_id"] = f"s{k}"
        structures.append(s)
    pairs = synthetic_pairs(structures, seed=0)
    train_deeprelax(
        pairs, tmp_path / "run", train_config=TrainConfig(epochs=1, lr=1e-30), replicates=2,
        val_fraction=0.34, batch_size=2, progress=False, init=init, init_source="init.pt",
    )  # fmt: skip
    for t in range(2):
        loaded = load_model(tmp_path / "run" / f"replicate_{t}" / "best.pt", "deeprelax")
        member, meta = loaded.model, loaded.metadata
        assert meta["fine_tuned_from"] == "init.pt"
        for a, b in zip(member.parameters(), init.members[t].parameters(), strict=True):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_pairs_from_several_databases_keep_distinct_keys(tmp_path):
    from ase_cartnet.train.deeprelax_data import pairs_from_dbs, write_pairs_db

    cu = bulk("Cu", "fcc", a=3.6)
    cu.info["source_id"] = "mp-30"
    pairs = synthetic_pairs([cu], seed=0)
    write_pairs_db(pairs, tmp_path / "synthetic.db")
    write_pairs_db(pairs, tmp_path / "teacher.db")
    assert [p.key for p in pairs_from_dbs([tmp_path / "synthetic.db"])] == ["mp-30"]
    both = pairs_from_dbs([tmp_path / "synthetic.db", tmp_path / "teacher.db"])
    assert [p.key for p in both] == ["synthetic:mp-30", "teacher:mp-30"]
    with pytest.raises(InputError, match="no pair database"):
        pairs_from_dbs([])
