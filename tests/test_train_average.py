"""``ase-cartnet train average``: the weight mean of several runs as one checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk

from ase_cartnet.benchmarking.models import small_checkpoint
from ase_cartnet.calculators.cartnet_adp import CartNetADP
from ase_cartnet.errors import InputError
from ase_cartnet.train.average import average_checkpoints


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    return [small_checkpoint(folder, seed=seed) for seed in (0, 1)]


def _state(path):
    return torch.load(path, weights_only=True)["model_state"]


def test_the_mean_of_two_runs_is_their_elementwise_mean(runs, tmp_path):
    out = average_checkpoints(runs, tmp_path / "mean.pt")
    mean, a, b = _state(out), _state(runs[0]), _state(runs[1])
    assert set(mean) == set(a)
    for key, tensor in mean.items():
        assert tensor.dtype == a[key].dtype
        if tensor.is_floating_point():
            expected = ((a[key].double() + b[key].double()) / 2).to(tensor.dtype)
            torch.testing.assert_close(tensor, expected, rtol=0, atol=0)
        else:  # BatchNorm batch counters: the first run's
            assert torch.equal(tensor, a[key])
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())


def test_averaging_copies_of_one_run_predicts_as_that_run(runs, tmp_path):
    out = average_checkpoints([runs[0], runs[0], runs[0]], tmp_path / "same.pt")
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    original = CartNetADP(checkpoint=runs[0], symmetrize=False)
    averaged = CartNetADP(checkpoint=out, symmetrize=False)
    u = averaged.predict_many([atoms], temperatures=[300.0])[0]
    np.testing.assert_allclose(u, original.predict_many([atoms], temperatures=[300.0])[0],
                               rtol=1e-6, atol=1e-12)  # fmt: skip
    assert np.all(np.linalg.eigvalsh(u) > 0)


def test_the_averaged_checkpoint_records_its_runs(runs, tmp_path):
    out = average_checkpoints(runs, tmp_path / "mean.pt", command="ase-cartnet train average")
    metadata = torch.load(out, weights_only=True)["metadata"]
    assert [r["checkpoint"] for r in metadata["averaged_from"]] == [str(p) for p in runs]
    assert metadata["command"] == "ase-cartnet train average"
    assert metadata["elements"] == [1, 6, 7, 8, 11, 17, 29]
    assert "validation" not in metadata  # the runs' figures, not the mean's


def test_refuses_one_run_and_runs_of_other_architectures(runs, tmp_path):
    with pytest.raises(InputError, match="at least two"):
        average_checkpoints(runs[:1], tmp_path / "one.pt")
    before = runs[0].read_bytes()
    with pytest.raises(InputError, match="refusing to overwrite the input file"):
        average_checkpoints(runs, runs[0])
    assert runs[0].read_bytes() == before
    with pytest.raises(InputError, match="is a folder"):
        average_checkpoints(runs, tmp_path)
    wider = small_checkpoint(tmp_path, seed=2, dim=48)
    with pytest.raises(InputError, match=r"cartnet_small_2\.pt.*config \(dim"):
        average_checkpoints([runs[0], wider], tmp_path / "mixed.pt")
    assert not (tmp_path / "mixed.pt").exists()


def test_cli_writes_the_mean(runs, tmp_path, capsys):
    from ase_cartnet.cli import main

    out = tmp_path / "cli.pt"
    assert main(["train", "average", str(runs[0]), str(runs[1]), "--out", str(out)]) == 0
    assert "weight mean of 2 runs" in capsys.readouterr().out
    torch.testing.assert_close(_state(out), _state(average_checkpoints(runs, tmp_path / "m.pt")))
