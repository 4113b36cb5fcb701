"""The phonopy example force sets of ../shared/data/phonopy_examples (real DFT data), loaded by
the recipes of their INDEX.json — used by the tests and the evaluation benchmarks."""

from __future__ import annotations

import json
import os
import warnings
from functools import lru_cache
from pathlib import Path

EXAMPLES = Path(
    os.environ.get(
        "ASE_CARTNET_PHONOPY_EXAMPLES",
        Path(__file__).resolve().parents[1].parent / "shared" / "data" / "phonopy_examples",
    )
)


@lru_cache(maxsize=1)
def _index() -> dict:
    return json.loads((EXAMPLES / "INDEX.json").read_text())["materials"]


def example_names(stable: bool = True) -> list[str]:
    """Materials of INDEX.json; ``stable=True``: without the imaginary-mode flag."""
    if not EXAMPLES.is_dir():
        return []
    return [n for n, v in _index().items() if bool(v.get("dynamically_unstable")) != stable]


def load_example(name: str, primitive_matrix=None):
    """A phonopy object with force constants, loaded by the INDEX.json recipe.

    Special cases (INDEX notes): NaCl-rd needs the symfc solver; LiF-nosym is loaded without
    symmetry and NAC, BORN parsed afterwards; Al-ABACUS (lengths in bohr) makes phonopy's
    symfc symmetrisation in ``load`` fail, so its force constants are symmetrised the
    traditional way instead.
    """
    import phonopy
    from phonopy.file_IO import parse_BORN

    recipe = _index()[name]["load"]
    d = EXAMPLES / name
    kw: dict = {"log_level": 0}
    if recipe.get("force_sets"):
        kw["force_sets_filename"] = d / recipe["force_sets"]
    if recipe.get("force_constants"):
        kw["force_constants_filename"] = d / recipe["force_constants"]
    if recipe.get("born") and recipe.get("is_symmetry", True):
        kw["born_filename"] = d / recipe["born"]
    if "supercell_matrix" in recipe:
        kw["supercell_matrix"] = recipe["supercell_matrix"]
    if primitive_matrix is not None:
        kw["primitive_matrix"] = primitive_matrix
    elif "primitive_matrix" in recipe:
        kw["primitive_matrix"] = recipe["primitive_matrix"]
    if name == "NaCl-rd":
        kw["fc_calculator"] = "symfc"
    if recipe.get("is_symmetry") is False:
        kw.update(is_symmetry=False, is_nac=False)
    if name == "Al-ABACUS":
        kw["symmetrize_fc"] = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # phonopy v4's primitive_matrix='auto' notice etc.
        if "phonopy_yaml" in recipe:
            phonon = phonopy.load(d / recipe["phonopy_yaml"], **kw)
        else:
            phonon = phonopy.load(unitcell_filename=d / recipe["unitcell"], **kw)
    if name == "Al-ABACUS":
        phonon.symmetrize_force_constants(show_drift=False)
    if recipe.get("is_symmetry") is False and recipe.get("born"):
        phonon.nac_params = parse_BORN(
            phonon.primitive, filename=d / recipe["born"], is_symmetry=False
        )
    return phonon
