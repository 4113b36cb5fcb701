"""``ase-cartnet relax a.cif [b.cif …] [-o out.cif | --out-dir out]``: DeepRelax one-shot
pre-relaxation."""

from __future__ import annotations

import argparse
from pathlib import Path

from ase_cartnet.cli import add_command, options


def _settings(args: argparse.Namespace) -> dict:
    """The keyword arguments of ``DeepRelax`` the options set."""
    return {
        "threshold": args.threshold,
        "steps": args.steps,
        "lr": args.lr,
        "symmetrize": not args.no_symmetrize,
        "dtype": options.dtype(args),
    }


def _read(path: Path):
    """The structure of ``path``, checked for DeepRelax (3D periodic, sane)."""
    from ase_cartnet.calculators.deeprelax import _check
    from ase_cartnet.io.structure import read_structure

    atoms = read_structure(path)
    _check(atoms)
    return atoms


def _relax_into_out_dir(args: argparse.Namespace) -> int:
    """``--out-dir``: every file relaxed on its own (checkpoint read per file, a fraction of a
    second), summary.csv with the uncertainty and trust of each."""
    from ase_cartnet.calculators.deeprelax import DeepRelax

    settings = _settings(args)

    def relax(path: Path):
        atoms = _read(path)
        opt = DeepRelax(atoms, model=args.checkpoint, logfile=None, **settings)
        opt.run()
        u = opt.uncertainty
        row = {
            "formula": atoms.get_chemical_formula(mode="hill"),
            "global_uncertainty": f"{u.global_uncertainty:.4g}",
            "trusted": u.trusted,
        }
        return atoms, row

    columns = ("formula", "global_uncertainty", "trusted")
    code, rows = options.run_into_out_dir(args, "prerelaxed", relax, columns, "pre-relaxed")
    untrusted = sum(row.get("trusted") is False for row in rows)
    if untrusted:
        print(f"{untrusted} NOT trusted (check them before relying on them)")
    return code or int(bool(untrusted and args.strict))


def _run_relax(args: argparse.Namespace) -> int:
    from ase_cartnet.calculators.deeprelax import DeepRelax
    from ase_cartnet.io.structure import write_structure

    options.set_threads(args)
    if options.into_out_dir(args):
        return _relax_into_out_dir(args)
    settings = _settings(args)
    ready, failed = options.read_all(options.plan_outputs(args, "prerelaxed"), _read)
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
    p = add_command(subparsers, "relax")
    options.add_inputs_outputs(p, "prerelaxed")
    options.add_checkpoint(p, "DeepRelax checkpoint")
    p.add_argument("--trajectory", help="ASE trajectory with the initial and predicted frames")
    p.add_argument("--threshold", type=float, default=None, help="Å² (default: model card)")
    p.add_argument("--steps", type=options.positive_int, default=100, help="solver Adam steps")
    p.add_argument(
        "--lr", type=options.positive_float, default=0.1, help="solver Adam learning rate (Å)"
    )
    p.add_argument(
        "--no-symmetrize",
        action="store_true",
        help="keep the model's raw prediction (default: impose the input's space group)",
    )
    options.add_float64(p)
    p.add_argument(
        "--strict", action="store_true", help="exit with status 1 when a prediction is untrusted"
    )
    options.add_threads(p)
    p.set_defaults(func=_run_relax)
