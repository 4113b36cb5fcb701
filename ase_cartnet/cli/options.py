"""Options shared by several commands, written once: threads, float64, checkpoint, output."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager


def add_threads(parser: argparse.ArgumentParser, default: int | None = None) -> None:
    """``--threads``: torch intra-op threads."""
    parser.add_argument(
        "--threads",
        type=int,
        default=default if default is not None else min(2, os.cpu_count() or 1),
        help="torch threads",
    )


def set_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads`` (imports torch: call it when the command runs, not when it parses)."""
    import torch

    torch.set_num_threads(args.threads)


def add_float64(parser: argparse.ArgumentParser) -> None:
    """``--float64``: run the model in double precision."""
    parser.add_argument("--float64", action="store_true", help="run the model in float64")


def dtype(args: argparse.Namespace):
    """The torch dtype chosen by ``--float64``."""
    import torch

    return torch.float64 if args.float64 else torch.float32


def add_checkpoint(parser: argparse.ArgumentParser, what: str) -> None:
    """``--checkpoint``: a model file instead of the shipped weights (``what`` names them)."""
    parser.add_argument("--checkpoint", default=None, help=f"{what} (default: the shipped weights)")


def start(args: argparse.Namespace, default_output: str | os.PathLike):
    """The common start of a command that reads one structure and writes another: threads set,
    the output path (``-o``, else ``default_output``; never the input) and the structure read."""
    from ase_cartnet.io.atomic import ensure_not_input
    from ase_cartnet.io.structure import read_structure

    set_threads(args)
    out = ensure_not_input(args.output or default_output, args.input)
    return out, read_structure(args.input)


def add_output(parser: argparse.ArgumentParser, default: str, fmt: str | None = None) -> None:
    """``-o/--output`` and ``--format`` of a command that writes one structure (``default``
    describes the output name used without ``-o``; ``fmt`` the default ASE format)."""
    parser.add_argument("-o", "--output", help=f"output file (default: {default}; never the input)")
    parser.add_argument(
        "--format",
        default=fmt,
        help="ASE output format" + ("" if fmt else " (default: from the suffix)"),
    )


def add_teacher_arguments(parser: argparse.ArgumentParser, fmax: float, max_steps: int) -> None:
    """Options of the teacher-data builders: the teacher, its relaxation (defaults: ``fmax``
    eV/Å, ``max_steps``, each builder's own), workers, resuming."""
    parser.add_argument(
        "--calculator", default="chgnet", help="teacher: chgnet, emt, module:factory"
    )
    parser.add_argument("--fmax", type=float, default=fmax, help="eV/Å")
    parser.add_argument("--max-steps", type=int, default=max_steps)
    parser.add_argument(
        "--workers", type=int, default=0, help="dask LocalCluster workers (0: in-process)"
    )
    parser.add_argument("--retry-failed", action="store_true")
    parser.add_argument("--no-progress", action="store_true")


def teacher_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of the builders from :func:`add_teacher_arguments`' options."""
    return {
        "calculator": args.calculator,
        "fmax": args.fmax,
        "max_steps": args.max_steps,
        "retry_failed": args.retry_failed,
        "progress": not args.no_progress,
    }


@contextmanager
def worker_pool(workers: int) -> Iterator[Executor | None]:
    """A dask ``LocalCluster`` executor of ``workers`` one-thread processes, or None for 0."""
    if workers <= 0:
        yield None
        return
    from dask.distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True) as cluster,
        Client(cluster) as client,
    ):
        yield client.get_executor()
