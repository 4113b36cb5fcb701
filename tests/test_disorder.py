"""Disordered CIFs: mixed occupancy, alternative conformers, the read and calculator policies."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from cif_text import cif_block
from shared_paths import DATA, needs_shared

from ase_cartnet.benchmarking.models import small_checkpoint
from ase_cartnet.calculators.cartnet_adp import CartNetADP
from ase_cartnet.disorder import disorder_plan
from ase_cartnet.errors import CIFError, InputError
from ase_cartnet.io.cif import CIFWarning, read_cif

# Rutile-type (Ru,Ti)O2, P 42/m n m: the metal site is shared, Ru 0.929 / Ti 0.071.
MIXED = cif_block(
    "mixed",
    (4.49, 4.49, 3.11, 90, 90, 90),
    ["Ru1 Ru 0 0 0 0.004 0.929", "Ti1 Ti 0 0 0 0.004 0.071", "O1 O 0.306 0.306 0 0.006 1"],
    space_group="P 42/m n m",
    items=["_diffrn_ambient_temperature 293"],
    columns=("U_iso_or_equiv", "occupancy"),
)

# A P1 cell with one ordered C and a two-part conformer (group 1: 0.7, group 2: 0.3).
CONFORMER = cif_block(
    "conformer",
    (6, 6, 6, 90, 90, 90),
    [
        "C1 C 0.1 0.1 0.1 0.02 1 . .",
        "C2B C 0.36 0.1 0.1 0.03 0.3 A 2",
        "C2A C 0.35 0.15 0.1 0.03 0.7 A 1",
        "O3A O 0.5 0.3 0.1 0.03 0.7 A 1",
        "O3B O 0.52 0.2 0.1 0.03 0.3 A 2",
        "Cu1 Cu 0.6 0.6 0.6 0.02 0.7055 . .",
    ],
    items=["_diffrn_ambient_temperature 100"],
    columns=("U_iso_or_equiv", "occupancy", "disorder_assembly", "disorder_group"),
)


def _write(tmp_path: Path, text: str, name: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_mixed_occupancy_site_is_read_as_its_majority_species(tmp_path):
    path = _write(tmp_path, MIXED, "mixed.cif")
    with pytest.warns(CIFWarning, match=r"Ti1"):
        atoms = read_cif(path)
    assert atoms.get_chemical_formula() == "O4Ru2"
    assert atoms.info["disorder"]["minor_sites"] == {"Ti1": "Ru1"}
    everything = read_cif(path, disorder="all")
    assert len(everything) == 8
    with pytest.raises(CIFError, match=r"mixed\.cif.*Ti1"):
        read_cif(path, disorder="error")


def test_conformers_major_each_and_error(tmp_path):
    path = _write(tmp_path, CONFORMER, "conf.cif")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        major = read_cif(path)
    messages = " ".join(str(w.message) for w in caught)
    assert "C2B" in messages and "O3B" in messages  # the left-out sites are named
    assert "Cu1 (0.7055)" in messages  # partial, overlapping nothing: a note
    assert list(major.arrays["site_label"]) == ["C1", "C2A", "O3A", "Cu1"]
    assert major.info["disorder"]["minor_sites"] == {"C2B": "C2A", "O3B": "O3A"}
    with pytest.warns(CIFWarning):
        each = read_cif(path, disorder="each")
    assert [list(a.arrays["site_label"]) for a in each] == [
        ["C1", "C2A", "O3A", "Cu1"],
        ["C1", "C2B", "O3B", "Cu1"],
    ]
    with pytest.raises(CIFError, match=r"conf\.cif.*C2B, O3B"):
        read_cif(path, disorder="error")
    with pytest.raises(InputError, match="disorder must be one of"):
        read_cif(path, disorder="first")


def test_fully_occupied_overlap_is_a_broken_file_naming_its_sites(tmp_path):
    text = CONFORMER.replace("0.3 A 2\nC2A", "1 . .\nC2A").replace(
        "C2A C 0.35 0.15 0.1 0.03 0.7 A 1", "C2A C 0.35 0.12 0.1 0.03 1 . ."
    )
    path = _write(tmp_path, text, "broken.cif")
    with pytest.raises(CIFError, match=r"broken\.cif.*C2B, C2A"):
        read_cif(path)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return small_checkpoint(tmp_path_factory.mktemp("ckpt"))


def test_calculator_policies_on_a_disordered_structure(tmp_path, checkpoint):
    atoms = read_cif(_write(tmp_path, CONFORMER, "conf.cif"), disorder="all")
    plan = disorder_plan(atoms)
    labels = list(atoms.arrays["site_label"])
    minor, major = labels.index("C2B"), labels.index("C2A")
    calc = CartNetADP(checkpoint=checkpoint, symmetrize=False)
    with pytest.warns(UserWarning, match="C2B"):
        u_major = calc.predict_many([atoms])[0]
    alone = CartNetADP(checkpoint=checkpoint, symmetrize=False).predict_many([atoms[plan.major]])[0]
    np.testing.assert_allclose(u_major[plan.major], alone)
    np.testing.assert_array_equal(u_major[minor], u_major[major])  # EADP-like
    each = CartNetADP(checkpoint=checkpoint, symmetrize=False, disorder="each")
    with pytest.warns(UserWarning, match="2 configurations"):
        u_each = each.predict_many([atoms, atoms], temperatures=[100.0, 300.0])
    second = CartNetADP(checkpoint=checkpoint, symmetrize=False).predict_many(
        [atoms[plan.configurations[1]]]
    )[0]
    c1 = labels.index("C1")
    np.testing.assert_allclose(u_each[0][c1], 0.5 * (alone[0] + second[0]), atol=1e-7)
    np.testing.assert_allclose(u_each[0][minor], second[list(plan.configurations[1]).index(minor)])
    assert not np.allclose(u_each[0], u_each[1])  # the temperatures were kept apart
    refuse = CartNetADP(checkpoint=checkpoint, disorder="error")
    with pytest.raises(InputError, match="C2B, O3B"):
        refuse.predict_many([atoms])


@needs_shared
def test_every_real_cif_of_the_dev_set_reads_and_predicts_with_the_defaults():
    """All 46 COD/publication CIFs, 13 of them disordered, read to an ordered structure."""
    from ase_cartnet.validation import validate_structure

    files = sorted((DATA / "exp_adp_dev").rglob("*.cif"))
    assert len(files) == 46
    for path in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CIFWarning)
            validate_structure(read_cif(path))
