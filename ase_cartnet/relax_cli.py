"""``ase-cartnet relax POSCAR -o POSCAR.prerelaxed``: DeepRelax one-shot pre-relaxation."""

from __future__ import annotations

import argparse
import os

from ase_cartnet.errors import InputError


def _run_relax(args: argparse.Namespace) -> int:
    import torch
    from ase.io import write

    from ase_cartnet.calculators.deeprelax import DeepRelax
    from ase_cartnet.io.atomic import atomic_path, ensure_not_input
    from ase_cartnet.io.structure import read_structure

    torch.set_num_threads(args.threads)
    output = args.output or f"{args.input}.prerelaxed"
    out = ensure_not_input(output, args.input)
    atoms = read_structure(args.input)
    opt = DeepRelax(
        atoms,
        model=args.checkpoint,
        trajectory=args.trajectory,
        logfile="-",
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
    u = opt.uncertainty
    print(
        f"wrote {out} ({fmt}); global uncertainty {u.global_uncertainty:.3g} Å², "
        f"{'trusted' if trusted else 'NOT trusted: check it before relying on it'}"
    )
    return 0 if trusted or not args.strict else 1


def register(subparsers) -> None:
    """Add ``relax`` to the ``ase-cartnet`` CLI."""
    p = subparsers.add_parser(
        "relax", help="one-shot pre-relaxation of a crystal with DeepRelax (positions and cell)"
    )
    p.add_argument("input", help="structure file (POSCAR, CIF, any ASE-readable format)")
    p.add_argument(
        "-o", "--output", help="output file (default: INPUT.prerelaxed; never the input)"
    )
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
