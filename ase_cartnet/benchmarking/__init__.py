"""Helpers of the benchmark scripts: best-of-N and interleaved wall times, structures built in
code (molecular crystals)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from ase import Atoms
from ase.build import molecule


def best_time(function: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Best wall time (s) of ``repeats`` calls, and the last call's result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def interleaved_times(
    functions: dict[str, Callable[[], Any]], repeats: int
) -> dict[str, list[float]]:
    """Wall times (s) of ``repeats`` runs of each function, interleaved (A, B, A, B, …) after
    one warm-up each, so load from other processes on a noisy machine hits every variant alike."""
    for function in functions.values():
        function()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return times


def interleaved_best_times(
    functions: dict[str, Callable[[], Any]], repeats: int
) -> dict[str, float]:
    """Best-of-``repeats`` wall time of each function (:func:`interleaved_times`)."""
    return {name: min(v) for name, v in interleaved_times(functions, repeats).items()}


def molecular_crystal(
    n_molecules: int = 20, name: str = "CH3CH2OH", density: float = 0.85, seed: int = 0
) -> Atoms:
    """``n_molecules`` randomly oriented copies of an ASE molecule on a jittered cubic grid at about
    ``density`` g/cm³ (a dense organic crystal has 1.0–1.5; ethanol's is 0.79), periodic.

    20 ethanol molecules give 180 atoms, the size of the CartNet benchmark cell.
    """
    rng = np.random.default_rng(seed)
    mol = molecule(name)
    mass = mol.get_masses().sum() * n_molecules * 1.66054  # amu → 1e-24 g
    length = (mass / density) ** (1 / 3)
    per_side = int(np.ceil(n_molecules ** (1 / 3)))
    sites = np.array(
        [(i, j, k) for i in range(per_side) for j in range(per_side) for k in range(per_side)]
    )
    sites = sites[rng.choice(len(sites), n_molecules, replace=False)]
    atoms = Atoms(cell=np.eye(3) * length, pbc=True)
    for site in sites:
        m = mol.copy()
        m.rotate(rng.uniform(0, 360), rng.normal(size=3), center="COM")
        frac = (site + 0.5 + rng.uniform(-0.05, 0.05, 3)) / per_side
        m.translate(frac * length - m.get_center_of_mass())
        atoms += m
    return atoms


def rattled_fcc_crystal(k: int, seed: int) -> Atoms:
    """Prototype ``k % 4`` of rocksalt NaCl, MgO, diamond Si and zincblende GaAs (primitive fcc
    lattices, 24 proper automorphisms: the hard case for a canonical basis), doubled along c for
    ``k >= 4``, rattled by 0.05 Å with ``seed``."""
    from ase.build import bulk

    proto = [
        bulk("NaCl", "rocksalt", a=5.64),
        bulk("MgO", "rocksalt", a=4.21),
        bulk("Si", "diamond", a=5.43),
        bulk("GaAs", "zincblende", a=5.65),
    ][k % 4]
    atoms = proto.repeat((1, 1, 2)) if k >= 4 else proto.copy()
    atoms.rattle(0.05, seed=seed)
    return atoms
