"""Time our eqn-(2) sum (phonon_ref.harmonic) against phonopy's run_thermal_displacement_matrices.

Both start from the same phonopy mesh (frequencies and eigenvectors already computed, without
mesh symmetry), in the same process; the best of ``--repeats`` runs of each is reported, for
one temperature and for ten. Materials are phonopy's DFT examples in ../shared (skipped when
absent) plus EMT copper, which needs nothing.

    python benchmarks/bench_phonon_ref.py [--repeats 3] [--quick]

(with the package installed, e.g. ``pip install -e .``, or ``PYTHONPATH=.`` from the repo root).
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

import numpy as np

from ase_cartnet.benchmarking import best_time
from phonon_ref.harmonic import harmonic_adps

SHARED = Path(os.environ.get("ASE_CARTNET_SHARED", Path(__file__).resolve().parents[2] / "shared"))
EXAMPLES = SHARED / "data" / "phonopy_examples"

# name, phonopy.load keywords (paths relative to the example directory), mesh
_DISP = {"phonopy_yaml": "phonopy_disp.yaml", "force_sets_filename": "FORCE_SETS"}
_NAC = {**_DISP, "born_filename": "BORN"}
_UNIT = {"unitcell_filename": "POSCAR-unitcell", "force_sets_filename": "FORCE_SETS"}
CASES = [
    ("NaCl", _NAC, 15),
    ("SnO2", _NAC, 11),
    ("Al2O3", _NAC, 7),
    ("spg-P4_332", {**_UNIT, "supercell_matrix": [1, 1, 1], "primitive_matrix": None}, 3),
]


def load(name: str, spec: dict):
    import phonopy

    d = EXAMPLES / name
    kw = {k: (d / v if k.endswith(("filename", "yaml")) else v) for k, v in spec.items()}
    yaml = kw.pop("phonopy_yaml", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return phonopy.load(yaml, log_level=0, **kw) if yaml else phonopy.load(log_level=0, **kw)


def emt_copper():
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from phonopy import Phonopy

    from phonon_ref.reference import atoms_to_phonopy, phonopy_to_atoms

    phonon = Phonopy(
        atoms_to_phonopy(bulk("Cu", "fcc", a=3.5898)),
        supercell_matrix=np.diag([4, 4, 4]),
        primitive_matrix="P",
    )
    phonon.generate_displacements(distance=0.01)
    forces = []
    for cell in phonon.supercells_with_displacements:
        atoms = phonopy_to_atoms(cell)
        atoms.calc = EMT()
        forces.append(atoms.get_forces())
    phonon.forces = np.array(forces)
    phonon.produce_force_constants()
    return phonon


def bench(label: str, phonon, mesh: int, repeats: int) -> None:
    phonon.run_mesh([mesh] * 3, with_eigenvectors=True, is_mesh_symmetry=False)
    m = phonon.mesh
    for temps in ([300.0], list(np.linspace(0.0, 900.0, 10))):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t_ph, tdm = best_time(
                lambda t=temps: phonon.run_thermal_displacement_matrices(
                    temperatures=t, freq_min=0.01
                ),
                repeats,
            )
            t_us, ours = best_time(
                lambda t=temps: harmonic_adps(
                    m.frequencies, m.eigenvectors, phonon.primitive.masses, t
                ),
                repeats,
            )
        ref = np.asarray(tdm.thermal_displacement_matrices)
        dev = np.max(
            np.linalg.norm(ours.u_cart - ref, axis=(-2, -1)) / np.linalg.norm(ref, axis=(-2, -1))
        )
        print(
            f"{label:<12} {len(phonon.primitive):>3} atoms  mesh {mesh:>2}^3  T×{len(temps):<2}  "
            f"phonopy {t_ph * 1e3:9.1f} ms   ours {t_us * 1e3:8.2f} ms   "
            f"phonopy/ours {t_ph / t_us:7.1f}×   max rel. dev {dev:.1e}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small meshes only (a smoke test)")
    args = parser.parse_args()
    bench("Cu (EMT)", emt_copper(), 9 if args.quick else 21, args.repeats)
    if not EXAMPLES.is_dir():
        print(f"({EXAMPLES} absent: the DFT examples are skipped)")
        return
    for name, spec, mesh in CASES:
        bench(name, load(name, spec), min(mesh, 5) if args.quick else mesh, args.repeats)


if __name__ == "__main__":
    main()
