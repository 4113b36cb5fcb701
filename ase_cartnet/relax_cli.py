"""``ase-cartnet relax a.cif [b.cif …] [-o out.cif]``: DeepRelax one-shot pre-relaxation."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ase_cartnet.errors import AseCartnetError, InputError


def _plan(args: argparse.Namespace, tag: str) -> list[tuple[Path, Path, str]]:
    """(input, output, format) per input file, checked before any model runs: ``-o`` only for
    one input, never an input file, a format the output name (or ``--format``) names."""
    from ase_cartnet.io.atomic import ensure_not_input
    from ase_cartnet.io.structure import default_output, output_format

    inputs = [Path(p) for p in args.input]
    if args.output and len(inputs) > 1:
        raise InputError("-o/--output names one file: give one input, or none (X_<tag>.cif)")
    if getattr(args, "trajectory", None) and len(inputs) > 1:
        raise InputError("--trajectory needs a single input")
    plan = []
    for source in inputs:
        out = Path(args.output) if args.output else default_output(source, tag)
        plan.append((source, ensure_not_input(out, *inputs), output_format(out, args.format)))
    return plan


def _read_all(plan, read) -> tuple[list, int]:
    """The structures that could be read and checked (with their plan rows), and how many
    could not (each named on stderr)."""
    import sys

    ready, failed = [], 0
    for row in plan:
        try:
            ready.append((row, read(row[0])))
        except AseCartnetError as exc:  # the package's own errors name the problem
            named = str(row[0]) in str(exc)
            print(f"ase-cartnet: {'' if named else f'{row[0]}: '}{exc}", file=sys.stderr)
            failed += 1
    return ready, failed


def _run_relax(args: argparse.Namespace) -> int:
    import torch

    from ase_cartnet.calculators.deeprelax import DeepRelax, _check
    from ase_cartnet.io.structure import read_structure, write_structure

    torch.set_num_threads(args.threads)
    dtype = torch.float64 if args.float64 else torch.float32
    settings = {
        "threshold": args.threshold,
        "steps": args.steps,
        "lr": args.lr,
        "symmetrize": not args.no_symmetrize,
        "dtype": dtype,
    }

    def read(path: Path):
        atoms = read_structure(path)
        _check(atoms)
        return atoms

    ready, failed = _read_all(_plan(args, "prerelaxed"), read)
    if len(args.input) == 1 and ready:
        (((_, out, fmt), atoms),) = ready
        opt = DeepRelax(
            atoms, model=args.checkpoint, trajectory=args.trajectory, logfile="-", **settings
        )
        opt.run()
        results = [(out, fmt, atoms, opt.uncertainty)]
    elif ready:
        relaxed = DeepRelax.relax_many(
            [atoms for _, atoms in ready], model=args.checkpoint, progress=True, **settings
        )
        results = [
            (out, fmt, r.atoms, r.uncertainty)
            for ((_, out, fmt), _), r in zip(ready, relaxed, strict=True)
        ]
    else:
        results = []
    untrusted = 0
    for out, fmt, atoms, u in results:
        write_structure(out, atoms, fmt)
        untrusted += not u.trusted
        print(
            f"wrote {out} ({fmt}); global uncertainty {u.global_uncertainty:.3g} Å², "
            f"{'trusted' if u.trusted else 'NOT trusted: check it before relying on it'}"
        )
    if failed:
        print(f"{failed} of {len(args.input)} inputs failed (named above)")
        return 2
    return 1 if untrusted and args.strict else 0


def register(subparsers) -> None:
    """Add ``relax`` to the ``ase-cartnet`` CLI."""
    p = subparsers.add_parser(
        "relax", help="one-shot pre-relaxation of crystals with DeepRelax (positions and cell)"
    )
    p.add_argument(
        "input", nargs="+", help="structure files (POSCAR, CIF, any ASE-readable format)"
    )
    p.add_argument(
        "-o",
        "--output",
        help="output file for a single input; its name sets the format (.cif a CIF, "
        "POSCAR/CONTCAR/.vasp VASP). Default: X_prerelaxed.cif beside each input "
        "(POSCAR_prerelaxed.vasp for VASP inputs); never an input",
    )
    p.add_argument("--format", default=None, help="ASE output format (default: from the name)")
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
        "--strict", action="store_true", help="exit with status 1 when a prediction is untrusted"
    )
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.set_defaults(func=_run_relax)
