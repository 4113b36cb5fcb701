"""``ase-cartnet relax POSCAR -o POSCAR.prerelaxed``: DeepRelax one-shot pre-relaxation."""

from __future__ import annotations

import argparse

from ase_cartnet.cli import add_command, options


def _run_relax(args: argparse.Namespace) -> int:
    from ase_cartnet.calculators.deeprelax import DeepRelax
    from ase_cartnet.io.structure import write_structure

    out, atoms = options.start(args, f"{args.input}.prerelaxed")
    opt = DeepRelax(
        atoms,
        model=args.checkpoint,
        trajectory=args.trajectory,
        logfile="-",
        threshold=args.threshold,
        steps=args.steps,
        lr=args.lr,
        symmetrize=not args.no_symmetrize,
        dtype=options.dtype(args),
    )
    trusted = opt.run()
    fmt = args.format
    write_structure(out, atoms, fmt, **({"direct": True, "sort": False} if fmt == "vasp" else {}))
    u = opt.uncertainty
    print(
        f"wrote {out} ({fmt}); global uncertainty {u.global_uncertainty:.3g} Å², "
        f"{'trusted' if trusted else 'NOT trusted: check it before relying on it'}"
    )
    return 0 if trusted or not args.strict else 1


def register(subparsers) -> None:
    """Add ``relax`` to the ``ase-cartnet`` CLI."""
    p = add_command(subparsers, "relax")
    p.add_argument("input", help="structure file (POSCAR, CIF, any ASE-readable format)")
    options.add_output(p, "INPUT.prerelaxed", fmt="vasp")
    options.add_checkpoint(p, "DeepRelax checkpoint")
    p.add_argument("--trajectory", help="ASE trajectory with the initial and predicted frames")
    p.add_argument("--threshold", type=float, default=None, help="Å² (default: model card)")
    p.add_argument("--steps", type=int, default=100, help="solver Adam steps")
    p.add_argument("--lr", type=float, default=0.1, help="solver Adam learning rate (Å)")
    p.add_argument(
        "--no-symmetrize",
        action="store_true",
        help="keep the model's raw prediction (default: impose the input's space group)",
    )
    options.add_float64(p)
    p.add_argument(
        "--strict", action="store_true", help="exit with status 1 when the prediction is untrusted"
    )
    options.add_threads(p)
    p.set_defaults(func=_run_relax)
