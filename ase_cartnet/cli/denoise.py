"""``ase-cartnet denoise a.cif [b.cif …] [-o out.cif]``: EMPNN lattice denoising (fractional
coordinates kept)."""

from __future__ import annotations

import argparse

from ase_cartnet.cli import add_command, options


def _run_denoise(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm.auto import tqdm

    from ase_cartnet.calculators.empnn_lattice import EMPNNLattice
    from ase_cartnet.io.checkpoint import load_model
    from ase_cartnet.io.structure import read_structure, write_structure
    from ase_cartnet.validation import validate_structure
    from ase_cartnet.weights import shipped

    options.set_threads(args)
    dtype = options.dtype(args)

    def read(path):
        atoms = read_structure(path)
        validate_structure(atoms, require_pbc=True)
        return atoms

    ready, failed = options.read_all(options.plan_outputs(args, "denoised"), read)
    single = len(args.input) == 1
    model = args.checkpoint
    if ready and not single:  # load once for many files
        model = load_model(shipped("empnn") if model is None else model, "empnn", dtype=dtype)
        model = model.model
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
    p = add_command(subparsers, "denoise")
    options.add_inputs_outputs(p, "denoised")
    options.add_checkpoint(p, "EMPNN checkpoint")
    p.add_argument("--steps", type=int, default=None, help="deformation steps (default: all)")
    p.add_argument("--trajectory", default=None, help="ASE trajectory of every step")
    options.add_float64(p)
    options.add_threads(p)
    p.set_defaults(func=_run_denoise)
