"""Throughput of CartNetADP.predict_many on the real CIFs of ../shared/data/exp_adp_dev:
one call against chunks with a progress bar, in the same process (ratio printed).

    PYTHONPATH=. python benchmarks/bench_predict_many.py [--threads 1]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import torch

from ase_cartnet.calculators.cartnet_adp import CartNetADP
from ase_cartnet.io.cif import read_cif

FOLDER = Path(__file__).resolve().parents[2] / "shared/data/exp_adp_dev"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structures = [read_cif(p) for p in sorted(FOLDER.rglob("*.cif"))]
        calc = CartNetADP()
        n_atoms = sum(len(a) for a in structures)
        start = time.perf_counter()
        calc.predict_many(structures, batch_size=args.batch_size)
        one = time.perf_counter() - start
        start = time.perf_counter()
        calc.predict_many(structures, batch_size=args.batch_size, progress=True)
        chunked = time.perf_counter() - start
    print(
        f"{len(structures)} structures, {n_atoms} atoms (major configurations), "
        f"{args.threads} thread(s)"
    )
    print(f"one call: {one:.1f} s ({n_atoms / one:.0f} atoms/s)")
    ratio = chunked / one
    print(f"chunks of {args.batch_size} with a progress bar: {chunked:.1f} s ({ratio:.2f}x)")


if __name__ == "__main__":
    main()
