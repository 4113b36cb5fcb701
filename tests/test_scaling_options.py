"""CartNetADP's scale options: chunk_size (blocked inference) and compile (with its fallback)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ase_cartnet.benchmarking.models import ethanol_crystal, small_checkpoint
from ase_cartnet.calculators.cartnet_adp import CartNetADP
from ase_cartnet.errors import InputError


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return small_checkpoint(tmp_path_factory.mktemp("ckpt"))


def test_chunk_size_does_not_change_the_prediction(checkpoint):
    atoms = ethanol_crystal(3) * (2, 1, 1)
    kwargs = dict(checkpoint=checkpoint, temperature=250.0, dtype=torch.float64)
    default = CartNetADP(**kwargs).get_property("adps", atoms)
    small_blocks = CartNetADP(chunk_size=13, **kwargs)
    assert small_blocks.model.chunk_size == 13
    np.testing.assert_allclose(
        small_blocks.get_property("adps", atoms), default, rtol=0, atol=1e-12, equal_nan=True
    )


@pytest.mark.parametrize("bad", [0, -5, 2.5, "big"])
def test_bad_chunk_size_is_a_clear_error(checkpoint, bad):
    with pytest.raises(InputError, match="chunk_size"):
        CartNetADP(checkpoint=checkpoint, chunk_size=bad)


def test_compile_option_without_a_compiler_warns_and_predicts_the_same(checkpoint, monkeypatch):
    atoms = ethanol_crystal(4)
    expected = CartNetADP(checkpoint=checkpoint, temperature=80.0).get_property("adps", atoms)

    def no_compiler(*args, **kwargs):
        raise RuntimeError("torch.compile is not supported on this platform")

    monkeypatch.setattr(torch, "compile", no_compiler)
    with pytest.warns(RuntimeWarning, match="uncompiled"):
        calc = CartNetADP(checkpoint=checkpoint, temperature=80.0, compile=True)
    np.testing.assert_array_equal(calc.get_property("adps", atoms), expected)


def test_size_sorted_batches_cover_every_item_once_and_keep_sizes_together():
    from ase_cartnet.calculators.cartnet_adp import size_sorted_batches

    sizes = [300, 20, 25, 5000, 22, 310, 24, 21, 290, 23]
    batches = size_sorted_batches(sizes, batch_size=4)
    assert sorted(i for b in batches for i in b) == list(range(len(sizes)))
    assert all(1 <= len(b) <= 4 for b in batches)
    assert [5000] in [[sizes[i] for i in b] for b in batches]  # the big cell alone
    for batch in batches:  # no batch mixes the ~20-edge and the ~300-edge graphs
        values = [sizes[i] for i in batch]
        assert max(values) <= 4 * min(values)
    assert size_sorted_batches([], 8) == []


def test_predict_many_in_size_order_returns_results_in_input_order(checkpoint):
    from ase.build import bulk

    structures = [ethanol_crystal(5), bulk("Cu", "fcc", a=3.6), ethanol_crystal(6) * (1, 2, 1)]
    calc = CartNetADP(checkpoint=checkpoint, temperature=150.0, dtype=torch.float64)
    batched = calc.predict_many(structures, batch_size=2)
    for atoms, u in zip(structures, batched, strict=True):
        single = CartNetADP(checkpoint=checkpoint, temperature=150.0, dtype=torch.float64)
        expected = single.get_property("adps", atoms)
        assert u.shape == (len(atoms), 3, 3)
        np.testing.assert_allclose(u, expected, rtol=0, atol=1e-12, equal_nan=True)
