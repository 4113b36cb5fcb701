"""Time ase_cartnet.graph.neighbours.radius_graph against ase.neighborlist.neighbor_list.

Both build the full periodic neighbour list (i, j, shift) at the same cutoff on the same
structures, in the same process; the best of ``--repeats`` runs is reported. ``radius_graph``
also validates its input and sorts the edges by (target, source, shift), which ASE does not.

    python benchmarks/bench_graph.py [--cutoff 5.0] [--repeats 3] [--sizes small medium large]

(with the package installed, e.g. ``pip install -e .``, or ``PYTHONPATH=.`` from the repo root).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.neighborlist import neighbor_list

from ase_cartnet.benchmarking import best_time
from ase_cartnet.graph.neighbours import radius_graph

torch.set_num_threads(2)

# (NaCl cubic-cell repeats, ethanol-cell repeats): ~200, ~1,000 and ~8,000 atoms
REPEATS = {
    "small": ((3, 3, 3), (3, 3, 3)),
    "medium": ((5, 5, 5), (5, 5, 4)),
    "large": ((10, 10, 10), (10, 10, 9)),
}


def rattled_bulk(reps: tuple[int, int, int], seed: int = 0) -> Atoms:
    """Rock-salt NaCl (8 atoms in the cubic cell, 0.044 atoms/Å³), rattled by 0.05 Å."""
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat(reps)
    atoms.rattle(0.05, seed=seed)
    return atoms


def molecular_crystal(reps: tuple[int, int, int], seed: int = 0) -> Atoms:
    """Ethanol packed one molecule (9 atoms) per skewed 4.3 × 4.5 × 4.1 Å cell (≈0.12 atoms/Å³,
    the density of an organic crystal with hydrogens), randomly oriented, rattled."""
    rng = np.random.default_rng(seed)
    unit = molecule("CH3CH2OH")
    unit.positions -= unit.positions.mean(axis=0)
    cell = np.array([[4.3, 0.0, 0.0], [0.4, 4.5, 0.0], [0.3, -0.2, 4.1]])
    unit.set_cell(cell)
    unit.pbc = True
    crystal = unit.repeat(reps)
    # rotate each molecule about its own centre so the packing is not a perfect lattice
    for start in range(0, len(crystal), len(unit)):
        block = slice(start, start + len(unit))
        centre = crystal.positions[block].mean(axis=0)
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        crystal.positions[block] = (crystal.positions[block] - centre) @ q.T + centre
    crystal.rattle(0.02, seed=seed)
    return crystal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cutoff", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", nargs="+", default=list(REPEATS), choices=list(REPEATS))
    args = parser.parse_args()

    cases = []
    for size in args.sizes:
        bulk_reps, mol_reps = REPEATS[size]
        cases.append(("NaCl bulk, rattled", rattled_bulk(bulk_reps)))
        cases.append(("ethanol crystal", molecular_crystal(mol_reps)))

    # warm-up (library loading, first-call overheads)
    warm = rattled_bulk((2, 2, 2))
    radius_graph(warm.positions, warm.cell, warm.pbc, args.cutoff)
    neighbor_list("ijS", warm, args.cutoff)

    header = (
        f"{'structure':<20} {'atoms':>6} {'edges':>9} {'ours (ms)':>10} "
        f"{'ours+cap64':>10} {'ase (ms)':>10} {'ase/ours':>9}"
    )
    print(f"cutoff {args.cutoff} Å, best of {args.repeats}, torch threads 2")
    print(header)
    print("-" * len(header))
    for name, atoms in cases:
        print(_row(name, atoms, args.cutoff, args.repeats), flush=True)


def _row(name: str, atoms: Atoms, cutoff: float, repeats: int) -> str:
    pos, cell, pbc = atoms.positions, atoms.cell[:], atoms.pbc
    t_ours, nl = best_time(lambda: radius_graph(pos, cell, pbc, cutoff), repeats)
    t_cap, _ = best_time(lambda: radius_graph(pos, cell, pbc, cutoff, max_neighbours=64), repeats)
    t_ase, (i, _j, _s) = best_time(lambda: neighbor_list("ijS", atoms, cutoff), repeats)
    if len(i) != nl.num_edges:
        raise SystemExit(f"{name}: edge counts differ (ase {len(i)}, ours {nl.num_edges})")
    return (
        f"{name:<20} {len(atoms):>6} {nl.num_edges:>9} {1e3 * t_ours:>10.1f} "
        f"{1e3 * t_cap:>10.1f} {1e3 * t_ase:>10.1f} {t_ase / t_ours:>9.1f}"
    )


if __name__ == "__main__":
    main()
