"""CartNetADP's scale options: chunk_size (blocked inference) and compile (with its fallback)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers_models import ethanol_crystal, small_checkpoint

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
