"""Batches that survive one bad item: ``errors="raise" | "skip"`` of the predictors, the
``property`` command, and the dataset builder's ids for a plain list of structures."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.io import write

from ase_cartnet.errors import BatchItemWarning, InputError


def flat_cell_cu() -> Atoms:
    """A structure every model refuses (zero-volume cell)."""
    return Atoms("Cu", positions=[[0, 0, 0]], cell=np.zeros((3, 3)), pbc=True)


@pytest.fixture(scope="module")
def cartnet():
    from ase_cartnet.calculators.cartnet_adp import CartNetADP

    return CartNetADP(temperature=300.0)


@pytest.fixture(scope="module")
def crystograph():
    from ase_cartnet.calculators.crystograph_property import CrysToGraphProperty

    return CrysToGraphProperty()


def test_cartnet_predict_many_raise_names_the_item(cartnet):
    with pytest.raises(InputError, match=r"^structure 1 \(Cu\): the cell"):
        cartnet.predict_many([bulk("Al"), flat_cell_cu(), bulk("Ni")])


@pytest.mark.parametrize("progress", [False, True])
def test_cartnet_predict_many_skip_keeps_the_good_results(cartnet, progress):
    good = [bulk("Al"), bulk("Ni")]
    expected = cartnet.predict_many(good)
    with pytest.warns(BatchItemWarning, match=r"skipped structure 1 \(Cu\)"):
        out = cartnet.predict_many(
            [good[0], flat_cell_cu(), good[1]], errors="skip", progress=progress, batch_size=1
        )
    assert out[1] is None
    np.testing.assert_allclose(out[0], expected[0], rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(out[2], expected[1], rtol=1e-5, atol=1e-9)
    assert np.all(np.linalg.eigvalsh(out[0]) > 0)
    with pytest.raises(InputError, match="errors must be one of"):
        cartnet.predict_many(good, errors="ignore")


def test_cartnet_skips_a_bad_temperature_and_keeps_the_sweep(cartnet):
    al = bulk("Al")
    with pytest.warns(BatchItemWarning, match="structure 1"):
        out = cartnet.predict_many([al, al, al], temperatures=[100.0, -5.0, 300.0], errors="skip")
    assert out[1] is None and np.trace(out[2][0]) > np.trace(out[0][0]) > 0


def test_property_predict_many_raise_and_skip(crystograph):
    good = [bulk("Cu"), bulk("Al")]
    expected = crystograph.predict_many(good)
    with pytest.raises(InputError, match=r"^structure 1 \(Cu\): the cell"):
        crystograph.predict_many([good[0], flat_cell_cu(), good[1]])
    with pytest.warns(BatchItemWarning, match=r"skipped structure 1 \(Cu\)"):
        out = crystograph.predict_many([good[0], flat_cell_cu(), good[1]], errors="skip")
    assert np.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2]], expected, rtol=1e-6)
    # a single structure keeps the plain message (the calculator's own calls)
    with pytest.raises(InputError, match="^the cell"):
        crystograph.predict_many([flat_cell_cu()])


def test_property_command_keeps_the_good_files(tmp_path, capsys):
    from ase_cartnet.cli import main

    good_a, good_b = tmp_path / "cu.cif", tmp_path / "al.cif"
    write(good_a, bulk("Cu", "fcc", a=3.61))
    write(good_b, bulk("Al", "fcc", a=4.05))
    broken = tmp_path / "broken.cif"
    broken.write_text("not a cif\n")
    argv = ["property", str(good_a), str(broken), str(tmp_path / "missing.cif"), str(good_b)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(argv) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.out.splitlines() if line.startswith(str(tmp_path))]
    assert [line.split()[0] for line in lines] == [str(good_a), str(good_b)]
    assert all(np.isfinite(float(line.split()[-1])) for line in lines)
    assert "2 of 4 inputs failed" in captured.out
    assert "broken.cif" in captured.err and "missing.cif" in captured.err


def test_build_dataset_takes_a_plain_list_of_atoms(tmp_path):
    from ase.db import connect

    from phonon_ref import build_dataset

    out = tmp_path / "adp.db"
    fast = dict(calculator="emt", temperatures=[300.0], supercell=6.0, mesh=5, progress=False)
    summary = build_dataset([bulk("Cu", "fcc", a=3.65), bulk("Al", "fcc", a=4.0)], out=out, **fast)
    assert sorted(summary.ok) == ["structure-0", "structure-1"]
    with connect(out) as db:
        rows = {row.source_id: row for row in db.select()}
    assert rows["structure-0"].formula == "Cu" and rows["structure-1"].formula == "Al"
    again = build_dataset([bulk("Cu", "fcc", a=3.65), bulk("Al", "fcc", a=4.0)], out=out, **fast)
    assert sorted(again.skipped) == ["structure-0", "structure-1"] and not again.ok


@pytest.mark.parametrize("sid", ["0", "12", "1e3", "True", "3.5"])
def test_ids_ase_db_cannot_store_as_text_are_refused(sid):
    from ase_cartnet.io.row_builder import as_items

    with pytest.raises(InputError, match=f"source id '{sid}' .* reads as a number"):
        as_items({sid: bulk("Cu")})
    assert as_items({"mp-12": bulk("Cu")})[0][0] == "mp-12"
