"""Copy the generation databases to data/adp_default/progress/ (a consistent SQLite backup, safe
while the generator is writing, gzip-compressed), so that a later session resumes where this one
stopped.

    .venv/bin/python scripts/default_weights/snapshot.py [--restore]

``--restore`` copies the snapshot back into runs/adp_default/ when that has no database yet.
Prints the row counts and a content hash of the stable rows (source ids and ADPs), which does not
depend on the order in which rows were written.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import sqlite3
import tempfile
from pathlib import Path

from ase_cartnet.io.datasets import content_hash

ROOT = Path(__file__).resolve().parents[2]
RUNS = ROOT / "runs" / "adp_default"
PROGRESS = ROOT / "data" / "adp_default" / "progress"


def backup(source: Path, target: Path) -> None:
    """SQLite online backup of ``source``, gzip-compressed to ``target`` (written atomically)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp_dir:
        plain = Path(tmp_dir) / "copy.db"
        with sqlite3.connect(source) as src, sqlite3.connect(plain) as dst:
            src.backup(dst)
        partial = target.with_suffix(".partial")
        with open(plain, "rb") as fin, gzip.open(partial, "wb", compresslevel=9) as fout:
            shutil.copyfileobj(fin, fout)
        partial.replace(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restore", action="store_true")
    args = parser.parse_args()
    for split in ("train", "test"):
        run_db, saved = RUNS / f"{split}.db", PROGRESS / f"{split}.db.gz"
        if args.restore:
            if saved.is_file() and not run_db.is_file():
                RUNS.mkdir(parents=True, exist_ok=True)
                with gzip.open(saved, "rb") as fin, open(run_db, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
                print(f"restored {run_db} from {saved}")
            continue
        if run_db.is_file():
            backup(run_db, saved)
            digest, counts = content_hash(run_db)
            size = saved.stat().st_size / 2**20
            print(f"{split}: {counts} -> {saved} ({size:.1f} MB), stable-row hash {digest[:16]}")


if __name__ == "__main__":
    main()
