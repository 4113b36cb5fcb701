"""``ase-cartnet denoise in.cif -o out.cif``: EMPNN lattice denoising (fractional coords kept)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from ase_cartnet.errors import InputError


def _format_for(path: Path, given: str | None) -> str | None:
    if given:
        return given
    return "cif" if path.suffix.lower() == ".cif" else None


def _run_denoise(args: argparse.Namespace) -> int:
    import torch

    from ase_cartnet import batch

    torch.set_num_threads(args.threads)
    if batch.is_batch(args.input):
        if not args.out_dir or args.output or args.trajectory:
            raise InputError("several inputs or a folder: give --out-dir (and no -o/--trajectory)")
        suffix = f".{args.format}" if args.format else ".cif"
        result = batch.run_files(
            args.input,
            args.out_dir,
            lambda path, out: _denoise_file(args, path, out, logfile=None),
            output_name=lambda path: f"{path.stem}.denoised{suffix}",
            columns=("formula", "volume_ratio"),
            desc="denoise",
        )
        return batch.report_batch(result, args.out_dir, "denoised")
    (source,) = args.input
    output = Path(args.output) if args.output else Path(source).with_suffix(".denoised.cif")
    row = _denoise_file(args, Path(source), output, "-")
    action = row["action"]
    print(
        f"wrote {row['output']}; lattice action h (cell' = cell @ hᵀ), det h = "
        f"{row['volume_ratio']:.4f}:\n"
        + "\n".join("  " + " ".join(f"{x:9.5f}" for x in r) for r in action)
    )
    return 0


def _denoise_file(args: argparse.Namespace, source: Path, output: Path, logfile) -> dict:
    """Denoise one file's lattice and write ``output``; the summary row (formula, det h)."""
    import torch
    from ase.io import write

    from ase_cartnet.calculators.empnn_lattice import EMPNNLattice
    from ase_cartnet.io.atomic import atomic_path, ensure_not_input
    from ase_cartnet.io.structure import read_structure

    out = ensure_not_input(output, source)
    atoms = read_structure(source)
    opt = EMPNNLattice(
        atoms,
        model=args.checkpoint,
        trajectory=args.trajectory,
        logfile=logfile,
        dtype=torch.float64 if args.float64 else torch.float32,
    )
    action = opt.run(steps=args.steps)
    fmt = _format_for(out, args.format)
    if fmt == "cif":
        from ase_cartnet.io.cif import write_cif

        # deformed ADPs would be meaningless: the CIF is written without them
        write_cif(out, atoms, adps=np.full((len(atoms), 3, 3), np.nan), p1=True)  # a new cell
    else:
        with atomic_path(out) as tmp:
            try:
                write(tmp, atoms, format=fmt)
            except (ValueError, KeyError) as exc:
                raise InputError(f"cannot write format {fmt!r}: {exc}") from exc
    return {
        "output": str(out),
        "formula": atoms.get_chemical_formula(mode="hill"),
        "volume_ratio": float(np.linalg.det(action)),
        "action": action,
    }


def register(subparsers) -> None:
    """Add ``denoise`` to the ``ase-cartnet`` CLI."""
    p = subparsers.add_parser(
        "denoise", help="pull a distorted lattice back toward a stable one with EMPNN"
    )
    p.add_argument(
        "input",
        nargs="+",
        help="structure files (CIF, POSCAR, any ASE-readable format) or folders of them",
    )
    p.add_argument("--out-dir", help="several inputs: folder for the outputs and summary.csv")
    p.add_argument(
        "-o", "--output", help="output file (default: INPUT.denoised.cif; never the input)"
    )
    p.add_argument("--format", default=None, help="ASE output format (default: from the suffix)")
    p.add_argument("--checkpoint", default=None, help="EMPNN checkpoint (default: shipped)")
    p.add_argument("--steps", type=int, default=None, help="deformation steps (default: all)")
    p.add_argument("--trajectory", default=None, help="ASE trajectory of every step")
    p.add_argument("--float64", action="store_true", help="run the model in float64")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.set_defaults(func=_run_denoise)
