"""Calculators by name: one instance per thread, stable labels, worker-process tuning."""

from __future__ import annotations

import importlib.util
import threading

import numpy as np
import pytest
from ase.calculators.emt import EMT

from ase_cartnet.errors import InputError
from phonon_ref import calculators
from phonon_ref.calculators import calculator_info, calculator_label, get_calculator


def test_names_resolve_once_per_thread():
    first = get_calculator("emt")
    assert isinstance(first, EMT) and get_calculator("EMT ") is first
    other = []
    thread = threading.Thread(target=lambda: other.append(get_calculator("emt")))
    thread.start()
    thread.join()
    assert other[0] is not first  # threads never share one calculator's state
    assert get_calculator("emt", cached=False) is not first
    obj = EMT()
    assert get_calculator(obj) is obj


def test_module_factory_and_errors():
    calc = get_calculator("ase.calculators.emt:EMT")
    assert isinstance(calc, EMT)
    with pytest.raises(InputError, match="unknown calculator"):
        get_calculator("nonsense")
    with pytest.raises(InputError, match="cannot import"):
        get_calculator("no_such_module_xyz:make")
    with pytest.raises(InputError, match="no callable"):
        get_calculator("ase.calculators.emt:nothing_here")
    with pytest.raises(InputError, match="did not return an ASE calculator"):
        get_calculator("builtins:dict")


def test_labels_and_provenance():
    assert calculator_label("EMT") == "emt"
    assert calculator_label(EMT()) == "ase.calculators.emt.EMT(asap_cutoff=False)"
    info = calculator_info("emt")
    assert info["name"] == "emt" and info["version"].startswith("ase ")


def test_malloc_thresholds_are_only_touched_when_dask_set_them(monkeypatch):
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    assert calculators.restore_malloc_thresholds() is False
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    assert calculators.restore_malloc_thresholds() is True


def test_forces_only_leaves_other_calculators_alone():
    calc = EMT()
    with calculators.forces_only(calc) as inside:
        assert inside is calc and not hasattr(calc, "compute_stress")


@pytest.mark.skipif(
    importlib.util.find_spec("chgnet") is None, reason="chgnet (teacher extra) not installed"
)
def test_chgnet_forces_only_gives_the_same_forces_without_the_stress():
    """Force-only CHGNet calls (task "ef") give the forces of full calls ("efsm"), skip the
    stress, and a later stress request on the same atoms still computes it."""
    from ase.build import bulk

    from phonon_ref.forces import compute_forces

    si = bulk("Si", "diamond", a=5.45) * (2, 1, 1)
    si.positions[0] += (0.03, -0.02, 0.01)
    calc = get_calculator("chgnet")
    full = si.copy()
    full.calc = calc
    expected = full.get_forces()
    assert "stress" in calc.results  # the default: everything in one call (cell relaxations)
    calc.reset()  # same atoms: ASE would return the cached results
    np.testing.assert_array_equal(compute_forces([si], "chgnet", progress=False)[0], expected)
    assert calc.compute_stress  # restored after the force calls
    assert "stress" not in calc.results
    calc.reset()
    probe = si.copy()
    probe.calc = calc
    with calculators.forces_only(calc):
        np.testing.assert_array_equal(probe.get_forces(), expected)
        assert "stress" not in calc.results
        stress = probe.get_stress()
    np.testing.assert_allclose(stress, full.get_stress(), atol=1e-9)
