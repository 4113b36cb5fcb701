"""``ase-cartnet denoise in.cif -o out.cif``: EMPNN lattice denoising (fractional coords kept)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ase_cartnet.cli import add_command, options


def _run_denoise(args: argparse.Namespace) -> int:
    import numpy as np

    from ase_cartnet.calculators.empnn_lattice import EMPNNLattice
    from ase_cartnet.io.structure import write_structure

    out, atoms = options.start(args, Path(args.input).with_suffix(".denoised.cif"))
    opt = EMPNNLattice(
        atoms,
        model=args.checkpoint,
        trajectory=args.trajectory,
        logfile="-",
        dtype=options.dtype(args),
    )
    action = opt.run(steps=args.steps)
    fmt = args.format or ("cif" if out.suffix.lower() == ".cif" else None)
    if fmt == "cif":
        from ase_cartnet.io.cif import write_cif

        # deformed ADPs would be meaningless: the CIF is written without them
        write_cif(out, atoms, adps=np.full((len(atoms), 3, 3), np.nan))
    else:
        write_structure(out, atoms, fmt)
    volume_ratio = float(np.linalg.det(action))
    print(
        f"wrote {out}; lattice action h (cell' = cell @ hᵀ), det h = {volume_ratio:.4f}:\n"
        + "\n".join("  " + " ".join(f"{x:9.5f}" for x in row) for row in action)
    )
    return 0


def register(subparsers) -> None:
    """Add ``denoise`` to the ``ase-cartnet`` CLI."""
    p = add_command(subparsers, "denoise")
    p.add_argument("input", help="structure file (CIF, POSCAR, any ASE-readable format)")
    options.add_output(p, "INPUT.denoised.cif")
    options.add_checkpoint(p, "EMPNN checkpoint")
    p.add_argument("--steps", type=int, default=None, help="deformation steps (default: all)")
    p.add_argument("--trajectory", default=None, help="ASE trajectory of every step")
    options.add_float64(p)
    options.add_threads(p)
    p.set_defaults(func=_run_denoise)
