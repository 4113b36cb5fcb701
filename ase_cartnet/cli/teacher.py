"""``ase-cartnet teacher-pairs CSV -o pairs.db``: DeepRelax training pairs from a teacher."""

from __future__ import annotations

import argparse

from ase_cartnet.cli import add_command
from ase_cartnet.cli.options import add_teacher_arguments, teacher_options, worker_pool


def run(args: argparse.Namespace) -> int:
    """Substituted prototypes of the CSV relaxed by the teacher, one row per pair."""
    import logging

    from ase_cartnet.io.datasets import read_mp20
    from ase_cartnet.train.deeprelax_teacher import build_teacher_pairs

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from ase_cartnet.io.atomic import check_output

    check_output(args.out, "--out database")
    # an unreadable row becomes a "failed" row of the database; the others are computed
    structures = [a for a in read_mp20(args.csv, keep_unreadable=True) if len(a) <= args.max_atoms]
    if args.limit is not None:
        structures = structures[: args.limit]
    with worker_pool(args.workers, args.pool) as executor:
        summary = build_teacher_pairs(
            structures,
            args.out,
            executor=executor,
            **teacher_options(args),
            seed=args.seed,
            substitutions=args.substitutions,
            keep_frames=args.keep_frames,
        )
    print(summary.line(unstable=False))
    return 0


def register(subparsers) -> None:
    """Add ``teacher-pairs`` to the ``ase-cartnet`` CLI."""
    from ase_cartnet.train.deeprelax_teacher import DEFAULT_FMAX, DEFAULT_MAX_STEPS

    p = add_command(subparsers, "teacher-pairs")
    p.add_argument("csv", help="MP-20 style CSV(.gz) of relaxed prototypes")
    p.add_argument("-o", "--out", required=True, help="ASE database (resumed if present)")
    add_teacher_arguments(p, DEFAULT_FMAX, DEFAULT_MAX_STEPS)
    p.add_argument("--max-atoms", type=int, default=20, help="skip larger prototypes")
    p.add_argument("--limit", type=int, default=None, help="first N prototypes (≤ max-atoms)")
    p.add_argument("--seed", type=int, default=0, help="substitution seed")
    p.add_argument(
        "--substitutions", type=int, default=1, help="substituted versions per prototype"
    )
    p.add_argument("--keep-frames", type=int, default=0, help="trajectory frames stored per pair")
    p.set_defaults(func=run)
