"""Copy the generation databases to data/adp_default/progress/ (a consistent SQLite backup, safe
while the generator is writing, gzip-compressed), so that a later session resumes where this one
stopped.

    .venv/bin/python scripts/default_weights/snapshot.py [--restore] [--name adp_v7]

``--restore`` copies the snapshot back into runs/<name>/ when that has no database yet;
``--name`` picks the generation (default adp_default; v7's SevenNet-0 labels are adp_v7).
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
    parser.add_argument("--name", default="adp_default", help="runs/<name>, data/<name>/progress")
    args = parser.parse_args()
    runs, progress = ROOT / "runs" / args.name, ROOT / "data" / args.name / "progress"
    for split in ("train", "test"):
        run_db, saved = runs / f"{split}.db", progress / f"{split}.db.gz"
        if args.restore:
            if saved.is_file() and not run_db.is_file():
                runs.mkdir(parents=True, exist_ok=True)
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
