"""``ase-cartnet denoise a.cif [b.cif …] [-o out.cif | --out-dir out]``: EMPNN lattice
denoising (fractional coordinates kept)."""

from __future__ import annotations

import argparse

from ase_cartnet.cli import add_command, options


def _read(path):
    """The structure of ``path``, checked (3D periodic, sane)."""
    from ase_cartnet.io.structure import read_structure
    from ase_cartnet.validation import validate_structure

    atoms = read_structure(path)
    validate_structure(atoms, require_pbc=True)
    return atoms


def _loaded_model(args: argparse.Namespace):
    """The EMPNN module of ``--checkpoint`` (or the shipped one), loaded once for many files."""
    from ase_cartnet.io.checkpoint import load_model
    from ase_cartnet.weights import shipped

    path = shipped("empnn") if args.checkpoint is None else args.checkpoint
    return load_model(path, "empnn", dtype=options.dtype(args)).model


def _denoise(args: argparse.Namespace, atoms, model, logfile):
    """Denoise ``atoms``' lattice in place; the lattice action h (3, 3), cell' = cell @ hᵀ."""
    from ase_cartnet.calculators.empnn_lattice import EMPNNLattice

    opt = EMPNNLattice(
        atoms, model=model, trajectory=args.trajectory, logfile=logfile, dtype=options.dtype(args)
    )
    opt.run(steps=args.steps)
    return opt.action


def _denoise_into_out_dir(args: argparse.Namespace) -> int:
    """``--out-dir``: every file denoised, summary.csv with det h (the volume ratio) of each."""
    import numpy as np

    model = _loaded_model(args)

    def denoise(path):
        atoms = _read(path)
        action = _denoise(args, atoms, model, logfile=None)
        row = {
            "formula": atoms.get_chemical_formula(mode="hill"),
            "volume_ratio": f"{np.linalg.det(action):.5f}",
        }
        return atoms, row

    code, _ = options.run_into_out_dir(
        args, "denoised", denoise, ("formula", "volume_ratio"), "denoised"
    )
    return code


def _run_denoise(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm.auto import tqdm

    from ase_cartnet.io.structure import write_structure

    options.set_threads(args)
    if options.into_out_dir(args):
        return _denoise_into_out_dir(args)
    ready, failed = options.read_all(options.plan_outputs(args, "denoised"), _read)
    single = len(args.input) == 1
    model = args.checkpoint
    if ready and not single:  # load once for many files
        model = _loaded_model(args)
    for (_, out, fmt), atoms in tqdm(ready, unit="file", desc="EMPNN", disable=single):
        action = _denoise(args, atoms, model, logfile="-" if single else None)
        write_structure(out, atoms, fmt)
        volume_ratio = float(np.linalg.det(action))
        tqdm.write(
            f"wrote {out} ({fmt}); lattice action h (cell' = cell @ hᵀ), det h = "
            f"{volume_ratio:.4f}:\n"
            + "\n".join("  " + " ".join(f"{x:9.5f}" for x in row) for row in action)
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
    p.add_argument(
        "--steps", type=options.positive_int, default=None, help="deformation steps (default: all)"
    )
    p.add_argument("--trajectory", default=None, help="ASE trajectory of every step")
    options.add_float64(p)
    options.add_threads(p)
    p.set_defaults(func=_run_denoise)
