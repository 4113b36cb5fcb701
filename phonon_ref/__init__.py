"""Harmonic-approximation ADPs (CartNet paper eqns 2–3) from phonopy force constants.

* :func:`harmonic_adps` — our vectorised eqns (2)–(3) on phonon modes (equal to phonopy's
  ``run_thermal_displacement_matrices`` to ~1e-14 relative);
* :class:`PhononReference` — force constants from any ASE calculator (or phonopy files),
  cached on disk, and ADPs of every atom of the input cell;
* :func:`compare` — MAE / S12 / IoU of predicted against reference ADPs, table and plot;
* :func:`build_dataset` — teacher-relaxed structures with harmonic ADPs in an ASE database;
* :func:`get_calculator` — "emt", "chgnet" or "module:factory".
"""

from __future__ import annotations

from ase_cartnet.io.datasets import read_mp20
from phonon_ref.calculators import get_calculator
from phonon_ref.compare import ADPComparison, compare
from phonon_ref.dataset import build_dataset, read_dataset
from phonon_ref.harmonic import (
    HarmonicADPs,
    ImaginaryModesError,
    ImaginaryModesWarning,
    harmonic_adps,
)
from phonon_ref.reference import PhononReference

__all__ = [
    "ADPComparison",
    "HarmonicADPs",
    "ImaginaryModesError",
    "ImaginaryModesWarning",
    "PhononReference",
    "build_dataset",
    "compare",
    "get_calculator",
    "harmonic_adps",
    "read_dataset",
    "read_mp20",
]
