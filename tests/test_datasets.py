"""The one reader of the CIF-column CSVs: selection, targets, errors and the cache."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from ase.build import bulk
from ase.io import write

from ase_cartnet.errors import InputError
from ase_cartnet.io.datasets import read_cif_csv, read_mp20, sample_rows
from ase_cartnet.train.empnn_data import crystal


def cif_text(atoms) -> str:
    buffer = io.BytesIO()
    write(buffer, atoms, format="cif")
    return buffer.getvalue().decode()


@pytest.fixture
def csv_path(tmp_path):
    """Six rock-salt-like cells of growing lattice constant; row 2 has no target."""
    rows = []
    for i in range(6):
        atoms = bulk("NaCl", "rocksalt", a=5.0 + 0.1 * i)
        atoms.positions[1] += [0.05 * i, 0.0, 0.0]
        rows.append({"material_id": f"m-{i}", "cif": cif_text(atoms), "e": float(i)})
    rows[2]["e"] = np.nan
    path = tmp_path / "split.csv.gz"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_sample_rows_first_or_seeded():
    assert sample_rows(10, 3, None).tolist() == [0, 1, 2]
    assert sample_rows(4, 9, 0).tolist() == [0, 1, 2, 3]
    picked = sample_rows(100, 5, 7)
    assert len(set(picked.tolist())) == 5 and np.all(np.diff(picked) > 0)
    assert picked.tolist() == sample_rows(100, 5, 7).tolist()


def test_structures_ids_and_targets(csv_path):
    table = read_cif_csv(csv_path, target="e")
    assert table.ids == ["m-0", "m-1", "m-3", "m-4", "m-5"]  # missing target dropped
    assert table.targets.tolist() == [0.0, 1.0, 3.0, 4.0, 5.0]
    atoms = table.atoms[2]
    assert atoms.info == {"source_id": "m-3"} and all(atoms.pbc)
    assert np.allclose(atoms.cell.cellpar()[:3], 5.3 / np.sqrt(2))  # primitive fcc cell
    assert sorted(atoms.get_chemical_symbols()) == ["Cl", "Na"]


def test_ids_and_limit_select_in_order(csv_path):
    assert [a.info["source_id"] for a in read_mp20(csv_path, limit=2)] == ["m-0", "m-1"]
    picked = read_mp20(csv_path, ids=["m-4", "m-1", "m-5"], limit=2)
    assert [a.info["source_id"] for a in picked] == ["m-4", "m-1"]
    with pytest.raises(InputError, match="m-9"):
        read_mp20(csv_path, ids=["m-9"])


def test_cache_returns_the_parsed_structures(csv_path, tmp_path):
    cache = tmp_path / "cache"
    parsed = read_cif_csv(csv_path, target="e", cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 1
    cached = read_cif_csv(csv_path, target="e", cache_dir=cache)
    assert cached.ids == parsed.ids and np.array_equal(cached.targets, parsed.targets)
    for a, b in zip(parsed.atoms, cached.atoms, strict=True):
        assert np.array_equal(a.numbers, b.numbers)
        assert np.array_equal(a.positions, b.positions)
        assert np.array_equal(a.cell[:], b.cell[:]) and a.info == b.info
    # a seeded subset is cut from the cached whole file, not parsed again
    subset = read_cif_csv(csv_path, target="e", limit=2, seed=1, cache_dir=cache)
    rows = sample_rows(5, 2, 1)
    assert subset.ids == [parsed.ids[i] for i in rows]
    assert np.array_equal(subset.atoms[1].positions, parsed.atoms[rows[1]].positions)


def test_crystal_wraps_fractional_coordinates(csv_path):
    atoms = read_mp20(csv_path, limit=1)[0]
    atoms.positions[0] -= atoms.cell[0] * 0.25
    c = crystal(atoms)
    assert c.key == "m-0" and np.all((c.frac >= 0) & (c.frac < 1))
    assert np.allclose(c.frac[0], np.mod(atoms.get_scaled_positions(wrap=False)[0], 1.0))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"target": "band_gap"}, "no column 'band_gap'"), ({"id_column": "mid"}, "no column 'mid'")],
)
def test_missing_column_is_named(csv_path, kwargs, match):
    with pytest.raises(InputError, match=match):
        read_cif_csv(csv_path, **kwargs)


def test_bad_cif_names_the_row(tmp_path):
    path = tmp_path / "bad.csv"
    pd.DataFrame([{"material_id": "x-1", "cif": "data_broken\n_cell_length_a oops\n"}]).to_csv(
        path, index=False
    )
    with pytest.raises(InputError, match="bad.csv: material_id x-1: unreadable CIF"):
        read_cif_csv(path)
