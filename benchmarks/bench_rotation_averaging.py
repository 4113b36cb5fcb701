"""Equivariance error of CartNet against test-time rotation averaging K.

err(K) = max over non-H atoms of |U_K(R·x) − R U_K(x) Rᵀ| (Å²), where U_K averages
Rₖᵀ f(Rₖ·x) Rₖ over K fixed rotations. Uses the upstream fixture's full-size checkpoint (random
weights, direction columns amplified) and its rotated pair s0/s1 when ../shared is present,
otherwise a random full-size model on a built molecular crystal. Also prints the time per call.

    .venv/bin/python benchmarks/bench_rotation_averaging.py [--ks 1 2 4 8 16 32 64]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ase_cartnet.calculators.cartnet_adp import CartNetADP

ROOT = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = ROOT.parent / "shared" / "fixtures" / "cartnet_upstream"


def inputs():
    """(checkpoint, atoms, rotated atoms, R) — the fixture pair, or a built fallback."""
    if SHARED_FIXTURES.is_dir():
        from ase.io import read

        s0, s1 = read(SHARED_FIXTURES / "inputs.extxyz", ":2")
        rotation = np.load(SHARED_FIXTURES / "expected_full.npz")["s1_rotation_from_s0"]
        return SHARED_FIXTURES / "cartnet_full_random.ckpt", s0, s1, rotation, "fixture full model"
    from ase_cartnet.benchmarking.models import ethanol_crystal, small_checkpoint
    from ase_cartnet.models.so3 import random_rotations

    ckpt = small_checkpoint(Path(tempfile.mkdtemp()), dim=256, dim_rbf=64, num_layers=4)
    atoms = ethanol_crystal()
    rotation = random_rotations(1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    rotation = rotation[0].numpy()
    rotated = atoms.copy()
    rotated.set_cell(atoms.cell[:] @ rotation.T)
    rotated.positions = atoms.positions @ rotation.T
    return ckpt, atoms, rotated, rotation, "random full-size model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    args = parser.parse_args()
    torch.set_num_threads(2)
    checkpoint, atoms, rotated, rotation, label = inputs()
    heavy = atoms.numbers != 1
    print(f"{label}: {len(atoms)} atoms ({heavy.sum()} non-H), T = 100 K, float64")
    print(f"{'K':>4} {'max err (Å²)':>14} {'mean err (Å²)':>14} {'rel. to K=1':>12} {'s/call':>8}")
    base = None
    for k in args.ks:
        calc = CartNetADP(
            checkpoint=checkpoint,
            temperature=100.0,
            rotations=k,
            dtype=torch.float64,
            symmetrize=False,  # the raw model's equivariance error is measured
        )
        start = time.perf_counter()
        u0 = calc.get_property("adps", atoms.copy())[heavy]
        elapsed = time.perf_counter() - start
        u1 = calc.get_property("adps", rotated.copy())[heavy]
        diff = np.abs(u1 - rotation @ u0 @ rotation.T)
        base = base or diff.max()
        print(
            f"{k:>4} {diff.max():>14.3e} {diff.mean():>14.3e} "
            f"{diff.max() / base:>12.3f} {elapsed:>8.2f}"
        )


if __name__ == "__main__":
    main()
