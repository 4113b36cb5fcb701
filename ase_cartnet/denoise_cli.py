"""``ase-cartnet denoise a.cif [b.cif …] [-o out.cif]``: EMPNN lattice denoising (fractional
coordinates kept)."""

from __future__ import annotations

import argparse
import os

import numpy as np

from ase_cartnet.relax_cli import _plan, _read_all


def _run_denoise(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from ase_cartnet.calculators.empnn_lattice import EMPNNLattice, load_empnn
    from ase_cartnet.io.structure import read_structure, write_structure
    from ase_cartnet.validation import validate_structure

    torch.set_num_threads(args.threads)
    dtype = torch.float64 if args.float64 else torch.float32

    def read(path):
        atoms = read_structure(path)
        validate_structure(atoms, require_pbc=True)
        return atoms

    ready, failed = _read_all(_plan(args, "denoised"), read)
    single = len(args.input) == 1
    model = args.checkpoint
    if ready and not single:  # load once for many files
        if model is None:
            from ase_cartnet.weights import default_empnn_checkpoint

            model = default_empnn_checkpoint()
        model = load_empnn(model, dtype=dtype)[0]
    for (_, out, fmt), atoms in tqdm(ready, unit="file", desc="EMPNN", disable=single):
        opt = EMPNNLattice(
            atoms,
            model=model,
            trajectory=args.trajectory,
            logfile="-" if single else None,
            dtype=dtype,
        )
        opt.run(steps=args.steps)
        write_structure(out, atoms, fmt)
        volume_ratio = float(np.linalg.det(opt.action))
        tqdm.write(
            f"wrote {out} ({fmt}); lattice action h (cell' = cell @ hᵀ), det h = "
            f"{volume_ratio:.4f}:\n"
            + "\n".join("  " + " ".join(f"{x:9.5f}" for x in row) for row in opt.action)
        )
    if failed:
        print(f"{failed} of {len(args.input)} inputs failed (named above)")
        return 2
    return 0


def register(subparsers) -> None:
    """Add ``denoise`` to the ``ase-cartnet`` CLI."""
    p = subparsers.add_parser(
        "denoise", help="pull distorted lattices back toward stable ones with EMPNN"
    )
    p.add_argument(
        "input", nargs="+", help="structure files (CIF, POSCAR, any ASE-readable format)"
    )
    p.add_argument(
        "-o",
        "--output",
        help="output file for a single input; its name sets the format (.cif a CIF, "
        "POSCAR/CONTCAR/.vasp VASP). Default: X_denoised.cif beside each input "
        "(POSCAR_denoised.vasp for VASP inputs); never an input",
    )
    p.add_argument("--format", default=None, help="ASE output format (default: from the name)")
    p.add_argument("--checkpoint", default=None, help="EMPNN checkpoint (default: shipped)")
    p.add_argument("--steps", type=int, default=None, help="deformation steps (default: all)")
    p.add_argument("--trajectory", default=None, help="ASE trajectory of every step")
    p.add_argument("--float64", action="store_true", help="run the model in float64")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.set_defaults(func=_run_denoise)
