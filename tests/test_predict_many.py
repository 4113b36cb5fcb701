"""predict_many for many structures: chunks with a progress bar, executors (dask), errors that
name the structure."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from ase_cartnet.benchmarking.models import small_checkpoint
from ase_cartnet.calculators.cartnet_adp import CartNetADP
from ase_cartnet.errors import InputError


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return small_checkpoint(tmp_path_factory.mktemp("ckpt"))


def _structures():
    out = [bulk("NaCl", "rocksalt", a=5.64), bulk("Si", "diamond", a=5.43)]
    out += [bulk("Cu", "fcc", a=3.6 + 0.05 * k) for k in range(3)]
    return out


def test_chunks_with_a_progress_bar_give_the_one_call_result(checkpoint, capsys):
    calc = CartNetADP(checkpoint=checkpoint)
    structures = _structures()
    sweep = [*structures, structures[0], structures[0]]  # a sweep spread over the list
    temps = [300.0] * 5 + [100.0, 600.0]
    whole = calc.predict_many(sweep, temperatures=temps)
    chunked = calc.predict_many(sweep, temperatures=temps, batch_size=2, progress=True)
    for a, b in zip(whole, chunked, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert "CartNet" in capsys.readouterr().err  # the tqdm bar


def test_dask_executor_gives_the_in_process_result(checkpoint):
    distributed = pytest.importorskip("dask.distributed")
    calc = CartNetADP(checkpoint=checkpoint, hydrogen="nan")
    structures = _structures()
    here = calc.predict_many(structures, temperatures=250.0)
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2) as client:
        there = calc.predict_many(
            structures, temperatures=250.0, batch_size=2, executor=client.get_executor()
        )
    for a, b in zip(here, there, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_errors_name_the_structure(checkpoint):
    calc = CartNetADP(checkpoint=checkpoint)
    structures = _structures()
    broken = structures[3].repeat((2, 1, 1))
    broken.positions[1] = broken.positions[0] + 0.1
    broken.info["source_file"] = "/data/cu_broken.cif"
    with pytest.raises(InputError, match=r"structure 3 \(Cu2, /data/cu_broken.cif\): .*overlap"):
        calc.predict_many([*structures[:3], broken], temperatures=300.0)
    with pytest.raises(InputError, match=r"structure 1 \(Si2\): .*temperature"):
        calc.predict_many(structures[:2], temperatures=[300.0, -4.0])
