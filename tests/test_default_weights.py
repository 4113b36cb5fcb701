"""The embedded default CartNet weights: they load offline, match their model card (hash, size,
elements), and the card's held-out metrics are reproduced from the committed test snapshot."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from ase_cartnet.weights import DEFAULT_CARTNET

ROOT = Path(__file__).resolve().parents[1]
CARD = DEFAULT_CARTNET.with_suffix(".json")
TEST_SNAPSHOT = ROOT / "data" / "adp_v7" / "progress" / "test.db.gz"

pytestmark = pytest.mark.skipif(not DEFAULT_CARTNET.is_file(), reason="no default weights")


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads(CARD.read_text())


def test_card_describes_the_shipped_file(card):
    data = DEFAULT_CARTNET.read_bytes()
    assert hashlib.sha256(data).hexdigest() == card["sha256"]
    assert len(data) == card["size_bytes"] <= 20 * 2**20
    assert card["teacher"]["name"] in card["description"]
    assert "NOT the official" in card["description"]
    for key in ("training_command", "held_out_metrics", "licence", "teacher", "data"):
        assert card[key], key
    assert card["data"]["train_db"]["rows_by_status"]["ok"] >= 100


def test_default_calculator_loads_offline_and_warns_outside_its_elements(card):
    from ase_cartnet.calculators.cartnet_adp import CartNetADP

    calc = CartNetADP(temperature=300.0)
    assert calc.checkpoint_path == DEFAULT_CARTNET
    from ase.data import atomic_numbers

    assert calc.trained_elements == {atomic_numbers[s] for s in card["elements"]}
    atoms = bulk("Si", "diamond", a=5.43)
    u = calc.get_property("adps", atoms)
    assert u.shape == (2, 3, 3) and (np.linalg.eigvalsh(u) > 0).all()
    missing = [z for z in range(3, 95) if z not in calc.trained_elements]
    if missing:
        from ase.data import chemical_symbols

        other = bulk(chemical_symbols[missing[0]], "fcc", a=5.0)
        with pytest.warns(UserWarning, match="outside the model's training set"):
            calc.get_property("adps", other)


@pytest.mark.skipif(not TEST_SNAPSHOT.is_file(), reason="no committed test snapshot")
def test_card_metrics_reproduce_on_the_committed_held_out_set(card, tmp_path):
    """benchmarks/eval_cartnet_default.py's CartNet figures, recomputed on the card's test ids."""
    from ase.db import connect

    from ase_cartnet.adp import adp_metrics
    from ase_cartnet.calculators.cartnet_adp import CartNetADP
    from ase_cartnet.train.adp_data import structures_from_db
    from ase_cartnet.train.cartnet import cartnet_predictions

    full = tmp_path / "snapshot.db"
    with gzip.open(TEST_SNAPSHOT, "rb") as fin, open(full, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    wanted = set(card["data"]["test_ids"])
    subset = tmp_path / "test.db"
    with connect(full) as src, connect(subset) as dst:
        for row in src.select(status="ok"):
            if str(row.source_id) in wanted:
                dst.write(row.toatoms(), key_value_pairs=row.key_value_pairs, data=row.data)
    test = structures_from_db(subset)
    assert {s.key for s in test} == wanted
    calc = CartNetADP(max_neighbours=None, symmetrize=False)  # the card reports the raw model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # test elements outside the training set
        pred, target, _, _ = cartnet_predictions(calc, test)
    got = adp_metrics(pred, target)
    expected = card["held_out_metrics"]["cartnet"]
    for key in ("mae", "s12", "iou"):
        assert got[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-9), key
