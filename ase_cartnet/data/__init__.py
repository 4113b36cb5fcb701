"""Example structures shipped with the package (see README.md beside this file)."""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
L_ALANINE_CIF = DATA_DIR / "l_alanine_100K.cif"
