"""``ase-cartnet relax POSCAR -o POSCAR.prerelaxed``: DeepRelax one-shot pre-relaxation."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ase_cartnet.errors import InputError


def _run_relax(args: argparse.Namespace) -> int:
    import torch

    from ase_cartnet import batch

    torch.set_num_threads(args.threads)
    if batch.is_batch(args.input):
        if not args.out_dir or args.output or args.trajectory:
            raise InputError("several inputs or a folder: give --out-dir (and no -o/--trajectory)")
        result = batch.run_files(
            args.input,
            args.out_dir,
            lambda path, out: _relax_file(args, path, out, logfile=None),
            output_name=lambda path: f"{path.name}.prerelaxed",
            columns=("formula", "global_uncertainty", "trusted"),
            desc="relax",
        )
        code = batch.report_batch(result, args.out_dir, "pre-relaxed")
        untrusted = [r["file"] for r in result.rows if r.get("trusted") is False]
        if untrusted:
            print(f"{len(untrusted)} NOT trusted (check before relying on them)")
        return code or int(bool(untrusted and args.strict))
    (source,) = args.input
    row = _relax_file(args, Path(source), Path(args.output or f"{source}.prerelaxed"), "-")
    print(
        f"wrote {row['output']} ({args.format}); global uncertainty "
        f"{row['global_uncertainty']:.3g} Å², "
        f"{'trusted' if row['trusted'] else 'NOT trusted: check it before relying on it'}"
    )
    return 0 if row["trusted"] or not args.strict else 1


def _relax_file(args: argparse.Namespace, source: Path, output: Path, logfile) -> dict:
    """Pre-relax one file and write ``output``; the summary row (formula, uncertainty, trust)."""
    import torch
    from ase.io import write

    from ase_cartnet.calculators.deeprelax import DeepRelax
    from ase_cartnet.io.atomic import atomic_path, ensure_not_input
    from ase_cartnet.io.structure import read_structure

    out = ensure_not_input(output, source)
    atoms = read_structure(source)
    opt = DeepRelax(
        atoms,
        model=args.checkpoint,
        trajectory=args.trajectory,
        logfile=logfile,
        threshold=args.threshold,
        steps=args.steps,
        lr=args.lr,
        symmetrize=not args.no_symmetrize,
        dtype=torch.float64 if args.float64 else torch.float32,
    )
    trusted = opt.run()
    fmt = args.format
    if fmt == "vasp":
        kwargs = {"direct": True, "sort": False}
    else:
        kwargs = {}
    with atomic_path(out) as tmp:
        try:
            write(tmp, atoms, format=fmt, **kwargs)
        except (ValueError, KeyError) as exc:
            raise InputError(f"cannot write format {fmt!r}: {exc}") from exc
    return {
        "output": str(out),
        "formula": atoms.get_chemical_formula(mode="hill"),
        "global_uncertainty": float(opt.uncertainty.global_uncertainty),
        "trusted": bool(trusted),
    }


def register(subparsers) -> None:
    """Add ``relax`` to the ``ase-cartnet`` CLI."""
    p = subparsers.add_parser(
        "relax", help="one-shot pre-relaxation of a crystal with DeepRelax (positions and cell)"
    )
    p.add_argument(
        "input",
        nargs="+",
        help="structure files (POSCAR, CIF, any ASE-readable format) or folders of them",
    )
    p.add_argument(
        "-o", "--output", help="output file (default: INPUT.prerelaxed; never the input)"
    )
    p.add_argument("--out-dir", help="several inputs: folder for <name>.prerelaxed and summary.csv")
    p.add_argument("--format", default="vasp", help="ASE output format (default: vasp)")
    p.add_argument("--checkpoint", help="DeepRelax checkpoint (default: the shipped ensemble)")
    p.add_argument("--trajectory", help="ASE trajectory with the initial and predicted frames")
    p.add_argument("--threshold", type=float, default=None, help="Å² (default: model card)")
    p.add_argument("--steps", type=int, default=100, help="solver Adam steps")
    p.add_argument("--lr", type=float, default=0.1, help="solver Adam learning rate (Å)")
    p.add_argument(
        "--no-symmetrize",
        action="store_true",
        help="keep the model's raw prediction (default: impose the input's space group)",
    )
    p.add_argument("--float64", action="store_true")
    p.add_argument(
        "--strict", action="store_true", help="exit with status 1 when the prediction is untrusted"
    )
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.set_defaults(func=_run_relax)
