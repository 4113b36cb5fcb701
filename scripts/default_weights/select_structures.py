"""Choose the structures of the default CartNet training and test sets.

Training candidates come from the validation splits of MP-20, Perov-5 and Carbon-24
(../shared/data),
test candidates from their test splits, so the held-out set never overlaps the training data.
Within each split the choice is deterministic (seed) and covers:

* elements — every element present among the candidates gets at least ``--per-element``
  structures that contain it (rarest elements first);
* symmetry — the rest is drawn evenly over the seven crystal systems;
* size — at most ``--max-atoms`` atoms per cell (the phonon cost grows steeply with size).

The output lists structures from the cheapest to the dearest for the teacher (ties in random
order), so that a generation run that is interrupted has spent its time on the most structures
per CPU-second. The estimated cost (:func:`teacher_cost`) is displacements × supercell atoms ×
neighbours within 6 Å (CHGNet's graph cutoff) per atom; on 150 finished MP-20 structures its
Spearman correlation with the measured force-constant time is 0.82 (0.76 for the supercell size
alone). Dense carbon cells cost about 20 times an MP-20 cell of the same atom count.
About a third of the candidates turn out dynamically unstable under the CHGNet teacher, hence
about three candidates per wanted structure.

Writes ``<out>/<name>_ids.txt`` (committed: the exact list) and ``<out>/<name>.csv.gz`` with the
``material_id`` and ``cif`` columns the dataset command reads (regenerated, not committed).

    .venv/bin/python scripts/default_weights/select_structures.py --out data/adp_default \
        --csv-dir runs/adp_default
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CRYSTAL_SYSTEM_BOUNDS = (2, 15, 74, 142, 167, 194, 230)  # last space-group number of each system


def crystal_system(spacegroup: int) -> int:
    return int(np.searchsorted(CRYSTAL_SYSTEM_BOUNDS, spacegroup))


def teacher_cost(atoms) -> float:
    """Estimated teacher cost of one structure, in arbitrary units: phonopy's displacements
    (site symmetry of the cell, as on the supercell) × atoms of the default ≥ 10 Å supercell ×
    neighbours within 6 Å per atom (the size of CHGNet's graph)."""
    from ase.neighborlist import neighbor_list
    from phonopy import Phonopy

    from phonon_ref.grids import resolve_supercell
    from phonon_ref.reference import atoms_to_phonopy

    supercell = resolve_supercell(atoms.cell[:], None)
    supercell_atoms = len(atoms) * round(abs(np.linalg.det(supercell)))
    phonon = Phonopy(atoms_to_phonopy(atoms), supercell_matrix=np.eye(3, dtype=int), symprec=1e-3)
    phonon.generate_displacements(distance=0.01)
    neighbours = len(neighbor_list("i", atoms, 6.0)) / len(atoms)
    return float(len(phonon.displacements) * supercell_atoms * neighbours)


def describe(path: Path, prefix: str) -> pd.DataFrame:
    """The CIF text, parsed ``atoms``, atoms per cell, elements and space group of every row of
    the CSV at ``path``."""
    import spglib

    from ase_cartnet.io.datasets import read_cif_csv

    table = read_cif_csv(path)
    cifs = pd.read_csv(path, usecols=["cif"])["cif"]  # passed through to the output CSV
    rows = []
    for mid, cif, atoms in zip(table.ids, cifs, table.atoms, strict=True):
        cell = (atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers)
        dataset = spglib.get_symmetry_dataset(cell, symprec=1e-3)
        rows.append(
            {
                "material_id": f"{prefix}:{mid}",
                "cif": cif,
                "atoms": atoms,
                "n_atoms": len(atoms),
                "elements": tuple(sorted(set(atoms.get_chemical_symbols()))),
                "system": crystal_system(dataset.number if dataset else 1),
            }
        )
    return pd.DataFrame(rows)


def choose(candidates: pd.DataFrame, n: int, per_element: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    candidates = candidates.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    chosen: list[int] = []
    counts = pd.Series([e for els in candidates["elements"] for e in els]).value_counts()
    for element in counts.sort_values().index:
        have = sum(element in candidates.at[i, "elements"] for i in chosen)
        pool = [
            i
            for i in candidates.index
            if element in candidates.at[i, "elements"] and i not in chosen
        ]
        for i in pool[: max(0, per_element - have)]:
            chosen.append(i)
    remaining = [i for i in candidates.index if i not in set(chosen)]
    by_system = {s: [i for i in remaining if candidates.at[i, "system"] == s] for s in range(7)}
    while len(chosen) < n and any(by_system.values()):
        for s in rng.permutation(7):
            if by_system[s] and len(chosen) < n:
                chosen.append(by_system[s].pop(0))
    return candidates.loc[chosen]


def select(
    split: str, counts: dict[str, int], max_atoms: int, per_element: int, seed: int
) -> pd.DataFrame:
    parts = []
    for source, n in counts.items():
        if n <= 0:
            continue
        described = describe(SHARED_DATA / source / f"{split}.csv.gz", source)
        described = described[described["n_atoms"] <= max_atoms]
        parts.append(choose(described, n, per_element if source == "mp_20" else 0, seed))
    return pd.concat(parts, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", default="data/adp_default", help="folder for the committed id lists"
    )
    parser.add_argument("--csv-dir", default="runs/adp_default", help="folder for the CSVs")
    parser.add_argument("--train-mp20", type=int, default=3000)
    parser.add_argument("--train-perov5", type=int, default=300)
    parser.add_argument("--train-carbon24", type=int, default=200)
    parser.add_argument("--test-mp20", type=int, default=800)
    parser.add_argument("--test-perov5", type=int, default=50)
    parser.add_argument("--test-carbon24", type=int, default=50)
    parser.add_argument("--max-atoms", type=int, default=10)
    parser.add_argument("--per-element", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out, csv_dir = Path(args.out), Path(args.csv_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_dir.mkdir(parents=True, exist_ok=True)
    plans = {
        "train": {
            "mp_20": args.train_mp20,
            "perov_5": args.train_perov5,
            "carbon_24": args.train_carbon24,
        },
        "test": {
            "mp_20": args.test_mp20,
            "perov_5": args.test_perov5,
            "carbon_24": args.test_carbon24,
        },
    }
    for name, counts in plans.items():
        split = "val" if name == "train" else "test"
        chosen = select(split, counts, args.max_atoms, args.per_element, args.seed)
        chosen = chosen.sample(frac=1.0, random_state=args.seed)
        chosen["cost"] = [teacher_cost(atoms) for atoms in chosen["atoms"]]
        chosen = chosen.sort_values("cost", kind="stable").reset_index(drop=True)
        (out / f"{name}_ids.txt").write_text("\n".join(chosen["material_id"]) + "\n")
        chosen[["material_id", "cif"]].to_csv(csv_dir / f"{name}.csv.gz", index=False)
        elements = sorted({e for els in chosen["elements"] for e in els})
        print(
            f"{name}: {len(chosen)} structures from the {split} splits, {len(elements)} elements, "
            f"atoms per cell {chosen['n_atoms'].min()}–{chosen['n_atoms'].max()} "
            f"(mean {chosen['n_atoms'].mean():.1f}), crystal systems "
            f"{np.bincount(chosen['system'], minlength=7).tolist()}"
        )


if __name__ == "__main__":
    main()
