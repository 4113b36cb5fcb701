"""Harmonic reference ADPs of fcc copper with ASE's EMT, in about ten seconds on a laptop.

    python examples/phonon_reference.py [--out-dir out/phonon_reference]

1. relax the crystal with the same calculator (positions and cell);
2. force constants from phonopy finite displacements (cached: a second run does no force call);
3. U(T) from eqns (2)–(3) on a q-mesh, and how it converges with the mesh;
4. a CIF with the reference ADPs and an ORTEP plot.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from ase.build import bulk

from ase_cartnet.adp import u_equiv
from ase_cartnet.io.cif import write_cif
from phonon_ref import PhononReference
from phonon_ref.relax import relax


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", default="out/phonon_reference")
    args = parser.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    relaxed = relax(bulk("Cu", "fcc", a=3.6), "emt", fmax=1e-4).atoms
    print(f"relaxed a = {relaxed.cell.cellpar()[0] * np.sqrt(2):.4f} Å (conventional)")

    ref = PhononReference(
        relaxed, calculator="emt", supercell=(5, 5, 5), mesh=100.0, cache_dir=out / "fc-cache"
    )
    print(
        f"{ref.n_force_calls} force calls (cache hit: {ref.cache_hit}), mesh {ref.mesh_numbers()}"
    )
    lo, hi = ref.frequency_range()
    print(f"frequencies {lo:.3f} … {hi:.3f} THz")

    temperatures = [0.0, 100.0, 300.0]
    print("mesh     " + "  ".join(f"U_iso({t:.0f} K)" for t in temperatures))
    for n in (9, 15, 25, 41):
        u = u_equiv(ref.adps(temperatures, mesh=n))[:, 0]
        print(f"{n:>3}^3    " + "  ".join(f"{x:12.5f}" for x in u))
    u = u_equiv(ref.adps(temperatures, mesh=41, extrapolate=True))[:, 0]
    print("→ ∞      " + "  ".join(f"{x:12.5f}" for x in u) + "   (41³/27³ extrapolated)")

    atoms = ref.to_atoms(300.0)
    print(f"wrote {write_cif(out / 'cu_harmonic_300K.cif', atoms)}")
    from ase_cartnet.plot import plot_ellipsoids

    cubic = bulk("Cu", "fcc", a=relaxed.cell.cellpar()[0] * np.sqrt(2), cubic=True)
    u_cubic = np.repeat(atoms.arrays["adps"], len(cubic), axis=0)  # one site, isotropic
    print(f"wrote {plot_ellipsoids(out / 'cu_ortep.png', cubic, u_cubic, title='Cu, EMT, 300 K')}")


if __name__ == "__main__":
    main()
