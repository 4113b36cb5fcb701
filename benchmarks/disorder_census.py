"""How many real CIFs of each kind read into a valid structure, without and with the disorder
policy: ``python benchmarks/disorder_census.py [folder]`` (default ../shared/data/exp_adp_dev).

Kinds: "groups" (any _atom_site_disorder_group), "partial" (an occupancy below 0.99 and no
groups), "ordered". "before" reads every site (``disorder="all"``, what read_cif returned before
the policy existed) and validates the structure as the calculator does; "after" uses the default
``disorder="major"``.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from ase_cartnet.io.cif import read_cif
from ase_cartnet.validation import validate_structure

FOLDER = Path(__file__).resolve().parents[2] / "shared/data/exp_adp_dev"


def passes(path: Path, policy: str) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            validate_structure(read_cif(path, disorder=policy))
    except ValueError:
        return False
    return True


def kind(atoms) -> str:
    groups = [g for g in atoms.arrays["disorder_group"] if g not in ("", ".", "?", "0")]
    if groups:
        return "groups"
    return "partial" if (atoms.arrays["occupancy"] < 0.99).any() else "ordered"


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else FOLDER
    counts: dict[str, list[int]] = {}
    for path in sorted(folder.rglob("*.cif")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            k = kind(read_cif(path, disorder="all"))
        row = counts.setdefault(k, [0, 0, 0])
        row[0] += 1
        row[1] += passes(path, "all")
        row[2] += passes(path, "major")
    print(f"{'kind':<10} {'files':>5} {'before':>6} {'after':>6}")
    for k, (n, before, after) in sorted(counts.items()):
        print(f"{k:<10} {n:>5} {before:>6} {after:>6}")


if __name__ == "__main__":
    main()
