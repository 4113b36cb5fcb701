"""ase-cartnet quickstart — the README's main job.

1. Read a bundled experimental CIF (L-alanine, 100 K) with its anisotropic ADPs, expand it to the
   full cell with every symmetry image's ellipsoid rotated, and write a P1 CIF (aniso loop) and an
   ORTEP-style plot of the experimental ellipsoids.
2. Predict the ADPs with CartNet when weights are available (the embedded default, or
   ``--checkpoint`` with an official or ase-cartnet checkpoint): CIF, overlay plot, MAE/S12/IoU
   against experiment.
3. Compute the harmonic-approximation reference (CartNet paper eqns 2–3) for fcc copper with ASE's
   EMT potential through phonopy, and write its ADPs as a CIF and a plot.

    .venv/bin/python examples/quickstart.py [--out quickstart_output] [--checkpoint FILE]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch


def experimental_part(out: Path):
    from ase_cartnet.adp import u_equiv
    from ase_cartnet.data import L_ALANINE_CIF
    from ase_cartnet.io.cif import read_cif, write_cif
    from ase_cartnet.plot import plot_ellipsoids

    atoms = read_cif(L_ALANINE_CIF)
    heavy = atoms.numbers != 1
    print(
        f"[1] {L_ALANINE_CIF.name}: {atoms.get_chemical_formula()} "
        f"({len(atoms)} atoms in the cell, "
        f"{atoms.info['spacegroup']}), T = {atoms.info['temperature']} K"
    )
    print(f"    mean U_eq of C, N, O = {u_equiv(atoms.arrays['adps'][heavy]).mean():.4f} Å²")
    cif = write_cif(out / "l_alanine_experimental_P1.cif", atoms)
    png = plot_ellipsoids(
        out / "l_alanine_experimental.png",
        atoms,
        atoms.arrays["adps"],
        title="L-alanine, experimental ADPs",
    )
    print(f"    wrote {cif} and {png}")
    return atoms


def cartnet_part(atoms, out: Path, checkpoint: str | None) -> None:
    from ase_cartnet.adp import adp_metrics
    from ase_cartnet.calculators.cartnet_adp import CartNetADP
    from ase_cartnet.errors import CheckpointError

    try:
        calc = CartNetADP(checkpoint=checkpoint, hydrogen="riding")
    except CheckpointError as exc:
        print(f"[2] CartNet prediction skipped: {exc}")
        return
    reference = atoms.arrays["adps"].copy()
    predicted = calc.get_property("adps", atoms)
    heavy = atoms.numbers != 1
    m = adp_metrics(predicted[heavy], reference[heavy])
    print(
        f"[2] CartNet ({calc.checkpoint_path.name}) at {atoms.info['temperature']} K vs "
        f"experiment, {m['n_atoms']} non-H atoms: MAE {m['mae']:.2e} Å², "
        f"S12 {m['s12']:.2f} %, IoU {m['iou']:.1f} %"
    )
    cif = calc.write_cif(out / "l_alanine_cartnet.cif", atoms)
    png = calc.plot_ellipsoids(
        out / "l_alanine_cartnet_vs_experiment.png", reference=reference, atoms=atoms
    )
    print(f"    wrote {cif} and {png}")


def harmonic_part(out: Path) -> None:
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from ase_cartnet.adp import u_equiv, u_to_b
    from ase_cartnet.io.cif import write_cif
    from ase_cartnet.plot import plot_ellipsoids
    from phonon_ref import PhononReference

    copper = bulk("Cu", "fcc", a=3.61, cubic=True)
    reference = PhononReference(
        copper,
        calculator=EMT(),
        supercell=(3, 3, 3),
        mesh=(15, 15, 15),
        cache_dir=out / "force_constants",
        progress=False,
    )
    print("[3] harmonic reference, fcc Cu (EMT, 3×3×3 conventional supercell, 15³ q-mesh):")
    print(f"    {'T (K)':>6} {'U_iso (Å²)':>11} {'B (Å²)':>8}")
    for temperature in (100.0, 300.0, 600.0):
        u = reference.adps(temperature)
        print(
            f"    {temperature:>6.0f} {u_equiv(u).mean():>11.5f} {u_to_b(u_equiv(u).mean()):>8.3f}"
        )
    u300 = reference.adps(300.0)
    copper.info["temperature"] = 300.0
    cif = write_cif(out / "cu_emt_harmonic_300K.cif", copper, u300)
    png = plot_ellipsoids(
        out / "cu_emt_harmonic_300K.png",
        copper,
        u300,
        title="fcc Cu, harmonic ADPs from EMT at 300 K",
    )
    print(f"    wrote {cif} and {png}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="quickstart_output", help="output folder")
    parser.add_argument("--checkpoint", default=None, help="CartNet checkpoint (default: embedded)")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    np.set_printoptions(precision=5, suppress=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atoms = experimental_part(out)
    cartnet_part(atoms, out, args.checkpoint)
    harmonic_part(out)


if __name__ == "__main__":
    main()
