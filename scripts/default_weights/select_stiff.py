"""Choose extra training candidates where the label set is thin: stiff crystals.

The cost-ordered candidates of ``select_structures.py`` (MP-20 val, ≤ 10 atoms) are mostly soft
intermetallics and halides: of the 1,219 stable SevenNet-0 labels, 2.7 % have a mean U_eq below
0.006 Å² at 300 K, while the oxides, borides and metals of the DFT benchmark lie at 0.002–0.005 Å²
— CartNet then shrinks them toward the training range (predicts them too soft). This script ranks
further MP-20 candidates (val and train_subset, never test; not yet listed) by the U_eq at 300 K
that the current default model predicts, keeps those predicted stiffer than ``--below`` (the model
overestimates stiff cells, so a low prediction means a stiff cell), and lists them cheapest first
for the teacher (``select_structures.teacher_cost``).

Compositions of the phonopy DFT examples (any polymorph) are left out, so the DFT benchmark
stays unseen in composition as well as in structure.

Writes ``<out>/<name>_ids.txt`` (committed) and ``<csv-dir>/<name>.csv.gz`` (``material_id``,
``cif``) for ``python -m phonon_ref.dataset``. The first list (``stiff``, 625 ids) and its
extension (``stiff2``: every id listed so far excluded, a looser bound and larger cells):

    .venv/bin/python scripts/default_weights/select_stiff.py --out data/adp_v7 \
        --csv-dir runs/adp_v7
    .venv/bin/python scripts/default_weights/select_stiff.py --out data/adp_v7 \
        --csv-dir runs/adp_v7 --name stiff2 --below 0.010 --max-atoms 16 \
        --listed data/adp_default/train_ids.txt data/adp_v7/stiff_ids.txt
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from select_structures import SHARED_DATA, teacher_cost  # noqa: E402

SOURCES = ("val", "train_subset_847")


def dft_example_formulas() -> set[str]:
    """Reduced formulas of every phonopy example (stable or not)."""
    from pymatgen.core import Composition

    from phonon_ref.phonopy_examples import example_names, load_example

    formulas = set()
    for name in example_names(stable=True) + example_names(stable=False):
        try:
            unit = load_example(name).unitcell
        except Exception as exc:  # noqa: BLE001 - one unreadable example must not stop the list
            warnings.warn(f"phonopy example {name}: {exc}", stacklevel=2)
            continue
        formulas.add(Composition("".join(unit.symbols)).reduced_formula)
    return formulas


def candidates(listed: set[str], max_atoms: int, excluded: set[str]) -> pd.DataFrame:
    """MP-20 val and train_subset rows (id ``mp_20:<id>``, cif, atoms) not yet listed, with at
    most ``max_atoms`` atoms and a composition outside ``excluded``."""
    from pymatgen.core import Composition

    from ase_cartnet.io.datasets import read_cif_csv

    rows = []
    for source in SOURCES:
        path = SHARED_DATA / "mp_20" / f"{source}.csv.gz"
        table = read_cif_csv(path)
        cifs = pd.read_csv(path, usecols=["cif"])["cif"]
        for mid, cif, atoms in zip(table.ids, cifs, table.atoms, strict=True):
            key = f"mp_20:{mid}"
            if key in listed or len(atoms) > max_atoms:
                continue
            formula = Composition(atoms.get_chemical_formula()).reduced_formula
            if formula in excluded:
                continue
            rows.append({"material_id": key, "cif": cif, "atoms": atoms, "formula": formula})
            listed.add(key)
    return pd.DataFrame(rows)


def predicted_stiffness(atoms_list, temperature: float = 300.0) -> np.ndarray:
    """Mean predicted U_eq (Å²) per structure at ``temperature`` K, the default CartNet."""
    from ase_cartnet.calculators.cartnet_adp import CartNetADP

    calc = CartNetADP(symmetrize=False, max_neighbours=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adps = calc.predict_many(
            list(atoms_list), temperatures=temperature, batch_size=32, progress=True, errors="skip"
        )
    return np.array(
        [np.nan if u is None else float(np.trace(u, axis1=1, axis2=2).mean() / 3) for u in adps]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/adp_v7", help="folder for <name>_ids.txt")
    parser.add_argument("--csv-dir", default="runs/adp_v7", help="folder for <name>.csv.gz")
    parser.add_argument(
        "--listed", nargs="+", default=["data/adp_default/train_ids.txt"], help="ids already listed"
    )
    parser.add_argument("--name", default="stiff", help="output name: <name>_ids.txt, .csv.gz")
    parser.add_argument("--below", type=float, default=0.008, help="predicted U_eq at 300 K, Å²")
    parser.add_argument("--max-atoms", type=int, default=12)
    args = parser.parse_args()

    listed = {key for path in args.listed for key in Path(path).read_text().split()}
    excluded = dft_example_formulas()
    table = candidates(listed, args.max_atoms, excluded)
    table["u_eq_300"] = predicted_stiffness(table["atoms"])
    chosen = table[table["u_eq_300"] < args.below].copy()
    chosen["cost"] = [teacher_cost(atoms) for atoms in chosen["atoms"]]
    chosen = chosen.sort_values("cost", kind="stable").reset_index(drop=True)
    out, csv_dir = Path(args.out), Path(args.csv_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_dir.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}_ids.txt").write_text("\n".join(chosen["material_id"]) + "\n")
    chosen[["material_id", "cif"]].to_csv(csv_dir / f"{args.name}.csv.gz", index=False)
    print(
        f"{len(chosen)} of {len(table)} unlisted MP-20 candidates (≤ {args.max_atoms} atoms, "
        f"{len(excluded)} DFT-example compositions excluded) predicted below {args.below} Å² at "
        f"300 K; median predicted U_eq {chosen['u_eq_300'].median():.4f} Å²"
    )


if __name__ == "__main__":
    main()
