"""Speed of the voxel IoU (CartNet ESI S3): the per-column interval count used by
``ase_cartnet.adp.iou`` against the brute-force test of all 64³ grid points, same process.

    .venv/bin/python benchmarks/bench_iou.py [--atoms 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ase_cartnet import adp


def random_spd(rng: np.random.Generator, n: int) -> np.ndarray:
    m = rng.normal(size=(n, 3, 3)) * 0.1
    return m @ np.swapaxes(m, 1, 2) + 0.005 * np.eye(3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atoms", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    a, b = random_spd(rng, args.atoms), random_spd(rng, args.atoms)
    n_dense = min(args.atoms, 50)
    start = time.perf_counter()
    fast = adp.iou(a, b)
    t_fast = (time.perf_counter() - start) / args.atoms
    start = time.perf_counter()
    dense = adp._iou_dense(a[:n_dense], b[:n_dense])
    t_dense = (time.perf_counter() - start) / n_dense
    print(
        f"IoU per atom: interval count {t_fast * 1e3:.2f} ms, "
        f"brute force {t_dense * 1e3:.2f} ms, "
        f"ratio {t_dense / t_fast:.0f}x; max |Δ| on {n_dense} atoms "
        f"{np.abs(fast[:n_dense] - dense).max():.3f} %"
    )


if __name__ == "__main__":
    main()
