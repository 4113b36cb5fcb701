"""Example structures shipped with the package (see README.md beside this file)."""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
L_ALANINE_CIF = DATA_DIR / "l_alanine_100K.cif"
MGAL2SI2_CIF = DATA_DIR / "mgal2si2_mp-3833.cif"
