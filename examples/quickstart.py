"""ase-cartnet quickstart — the README's main job.

1. Predict the ADPs of a bundled inorganic crystal (MgAl2Si2, Materials Project mp-3833, a
   structure of the held-out test split) at the temperature its CIF states, with the embedded
   default CartNet weights (or ``--checkpoint``): a CIF with the aniso loop and an ORTEP-style
   plot.
2. Compute the harmonic reference for the same structure with ``phonon_ref`` (CartNet paper
   eqns 2–3) and the SevenNet-0 teacher that labelled the default model's training data — relaxed,
   force constants through phonopy, the same settings as the training labels — and print the
   comparison (per-atom U_eq, MAE, S12, IoU) and the two run times; write an overlay plot.
3. Read a bundled experimental CIF (L-alanine, 100 K), expand it to the full cell with every
   symmetry image's ellipsoid rotated, write it in P1 and compare CartNet with experiment — a
   molecular crystal, outside the default model's domain (inorganic harmonic ADPs), shown so
   that the gap is visible.

    .venv/bin/python examples/quickstart.py [--out quickstart_output] [--checkpoint FILE]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch

TEACHER = "sevennet"
"""The teacher of the default weights' training labels (SevenNet-0, in the teacher extra)."""


def cartnet_part(out: Path, checkpoint: str | None):
    from ase_cartnet.adp import u_equiv
    from ase_cartnet.calculators.cartnet_adp import CartNetADP
    from ase_cartnet.data import MGAL2SI2_CIF
    from ase_cartnet.io.cif import read_cif

    atoms = read_cif(MGAL2SI2_CIF)
    temperature = atoms.info["temperature"]
    calc = CartNetADP(checkpoint=checkpoint)
    u_pred = calc.get_property("adps", atoms)
    start = time.perf_counter()  # a second, warm call: graph, model and checks, no loading
    calc.predict_many([atoms], temperatures=[temperature])
    seconds = time.perf_counter() - start
    print(
        f"[1] CartNet ({calc.checkpoint_path.name}) on {MGAL2SI2_CIF.name}: "
        f"{atoms.get_chemical_formula()}, {len(atoms)} atoms, T = {temperature:g} K "
        f"({seconds * 1e3:.0f} ms per prediction)"
    )
    for label, ueq in zip(atoms.arrays["site_label"], u_equiv(u_pred), strict=True):
        print(f"    {label:<5} U_eq = {ueq:.5f} Å²")
    cif = calc.write_cif(out / "mgal2si2_cartnet.cif", atoms)
    png = calc.plot_ellipsoids(out / "mgal2si2_cartnet.png", atoms=atoms)
    print(f"    wrote {cif} (aniso loop) and {png}")
    return atoms, u_pred, seconds


def reference_part(atoms, u_pred, cartnet_seconds: float, out: Path) -> None:
    from phonon_ref import PhononReference, compare
    from phonon_ref.relax import relax

    temperature = atoms.info["temperature"]
    try:
        start = time.perf_counter()
        relaxed = relax(atoms, TEACHER).atoms
        reference = PhononReference(relaxed, calculator=TEACHER, progress=False)
        u_ref = reference.adps(temperature)
        seconds = time.perf_counter() - start
    except ValueError as exc:  # the teacher extra is not installed
        print(f"[2] phonon_ref reference skipped: {exc}")
        return
    print(
        f"[2] phonon_ref (SevenNet-0 teacher: relaxed, {len(reference.phonopy.supercell)}-atom "
        f"supercell, {reference.n_force_calls} force calls) at {temperature:g} K, "
        f"{seconds:.1f} s including the teacher's loading — {seconds / cartnet_seconds:.0f}× "
        "CartNet's time:"
    )
    report = compare(u_pred, u_ref, atoms, names=("CartNet", "phonon_ref"))
    print("    " + report.table().replace("\n", "\n    "))
    png = report.plot(out / "mgal2si2_cartnet_vs_phonon_ref.png")
    print(f"    wrote {png}")


def experimental_part(out: Path, checkpoint: str | None) -> None:
    from ase_cartnet.adp import adp_metrics
    from ase_cartnet.calculators.cartnet_adp import CartNetADP
    from ase_cartnet.data import L_ALANINE_CIF
    from ase_cartnet.io.cif import read_cif, write_cif

    atoms = read_cif(L_ALANINE_CIF)
    heavy = atoms.numbers != 1
    print(
        f"[3] {L_ALANINE_CIF.name}: {atoms.get_chemical_formula()} ({len(atoms)} atoms in the "
        f"cell, {atoms.info['spacegroup']}), T = {atoms.info['temperature']} K, experimental ADPs"
    )
    cif = write_cif(out / "l_alanine_experimental_P1.cif", atoms, p1=True)
    reference = atoms.arrays["adps"].copy()
    calc = CartNetADP(checkpoint=checkpoint, hydrogen="riding")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the domain warning is stated in the line below
        predicted = calc.get_property("adps", atoms)
    m = adp_metrics(predicted[heavy], reference[heavy])
    print(
        f"    CartNet vs experiment, {m['n_atoms']} non-H atoms: MAE {m['mae']:.2e} Å², "
        f"S12 {m['s12']:.2f} %, IoU {m['iou']:.1f} % (a molecular crystal: outside the default "
        "model's inorganic training domain)"
    )
    png = calc.plot_ellipsoids(
        out / "l_alanine_cartnet_vs_experiment.png", reference=reference, atoms=atoms
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
    atoms, u_pred, seconds = cartnet_part(out, args.checkpoint)
    reference_part(atoms, u_pred, seconds, out)
    experimental_part(out, args.checkpoint)


if __name__ == "__main__":
    main()
