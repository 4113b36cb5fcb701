"""Pre-relax a crystal with DeepRelax (one shot), then finish with a real calculator through
``BFGS(FrechetCellFilter(atoms))``; the same relaxation from the raw input is run for comparison.

    .venv/bin/python examples/prerelax_then_bfgs.py                 # distorted Cu3Au, EMT
    .venv/bin/python examples/prerelax_then_bfgs.py POSCAR --calculator chgnet

For DFT, change only ``make_calculator``: ``from ase.calculators.vasp import Vasp`` and return
``Vasp(xc="PBE", encut=520, kpts=(6, 6, 6), ...)``. EMT (the default here, so the example runs
anywhere) only knows Al, Cu, Ag, Au, Ni, Pd, Pt, H, C, N and O.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS

from ase_cartnet import DeepRelax


def make_calculator(name: str):
    """The expensive calculator that finishes the relaxation (swap in Vasp here)."""
    if name == "emt":
        from ase.calculators.emt import EMT

        return EMT()
    if name == "chgnet":
        from phonon_ref.calculators import get_calculator

        return get_calculator("chgnet")
    raise SystemExit(f"unknown calculator {name!r}")


def distorted_cu3au(seed: int = 0) -> Atoms:
    """L1₂ Cu3Au, strained by a few % and rattled (a stand-in for an unrelaxed candidate)."""
    atoms = bulk("Cu", "fcc", a=3.75, cubic=True)
    atoms.symbols[0] = "Au"
    rng = np.random.default_rng(seed)
    strain = np.eye(3) + 0.04 * rng.normal(size=(3, 3))
    atoms.set_cell(atoms.cell[:] @ (strain + strain.T) / 2, scale_atoms=True)
    atoms.rattle(0.08, seed=seed)
    return atoms


def relax(atoms: Atoms, calculator: str, fmax: float) -> tuple[int, float, float]:
    """BFGS + FrechetCellFilter to ``fmax`` eV/Å: (steps, seconds, final energy in eV)."""
    atoms.calc = make_calculator(calculator)
    started = time.perf_counter()
    opt = BFGS(FrechetCellFilter(atoms), logfile=None)
    opt.run(fmax=fmax, steps=500)
    return opt.nsteps, time.perf_counter() - started, float(atoms.get_potential_energy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("structure", nargs="?", help="any ASE-readable file (default: Cu3Au)")
    parser.add_argument("--calculator", default="emt", choices=("emt", "chgnet"))
    parser.add_argument("--fmax", type=float, default=0.05, help="eV/Å")
    args = parser.parse_args()

    if args.structure:
        from ase_cartnet.io.structure import read_structure

        initial = read_structure(args.structure)
    else:
        initial = distorted_cu3au()

    direct = initial.copy()
    steps_direct, seconds_direct, e_direct = relax(direct, args.calculator, args.fmax)

    atoms = initial.copy()
    opt = DeepRelax(atoms, trajectory="prerelax.traj")  # shipped ensemble, offline
    started = time.perf_counter()
    trusted = opt.run()  # positions and cell replaced in place
    seconds_model = time.perf_counter() - started
    if not trusted:
        print("DeepRelax is unsure about this structure; the relaxation continues anyway")
    steps_pre, seconds_pre, e_pre = relax(atoms, args.calculator, args.fmax)

    print(f"{'start':<22} {'steps':>6} {'seconds':>8} {'energy (eV)':>12}")
    print(f"{'unrelaxed input':<22} {steps_direct:>6} {seconds_direct:>8.2f} {e_direct:>12.4f}")
    print(
        f"{'DeepRelax prediction':<22} {steps_pre:>6} {seconds_pre + seconds_model:>8.2f} "
        f"{e_pre:>12.4f}   (model + solver {seconds_model:.2f} s)"
    )


if __name__ == "__main__":
    main()
