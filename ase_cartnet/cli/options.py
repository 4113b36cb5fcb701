"""Options shared by several commands, written once: threads, float64, checkpoint, inputs and
outputs, teacher data; and the planning of many inputs to their outputs."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from pathlib import Path


def _number(text: str, parse, ok, expected: str):
    """``parse(text)`` when it parses and ``ok`` of it holds; else an ``ArgumentTypeError``
    "expected <expected>, got <text>" (argparse names the option in its message)."""
    try:
        value = parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An ``argparse`` type: an integer >= 1."""
    return _number(text, int, lambda v: v >= 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """An ``argparse`` type: an integer >= 0."""
    return _number(text, int, lambda v: v >= 0, "an integer >= 0")


def temperature(text: str) -> float:
    """An ``argparse`` type: a temperature in K, a finite number >= 0."""
    return _number(
        text, float, lambda v: math.isfinite(v) and v >= 0, "a temperature in K (finite, >= 0)"
    )


def positive_float(text: str) -> float:
    """An ``argparse`` type: a finite number > 0."""
    return _number(text, float, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")


def add_threads(parser: argparse.ArgumentParser, default: int | None = None) -> None:
    """``--threads``: torch intra-op threads."""
    parser.add_argument(
        "--threads",
        type=positive_int,
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


def add_inputs_outputs(parser: argparse.ArgumentParser, tag: str) -> None:
    """Inputs (one or more structure files), ``-o/--output`` and ``--format`` of a command that
    writes one structure per input, as ``X_<tag>.cif`` beside ``X`` by default."""
    parser.add_argument(
        "input",
        nargs="+",
        help="structure files (CIF, POSCAR, any ASE-readable format), or folders of them "
        "(with --out-dir)",
    )
    parser.add_argument(
        "-o",
        "--output",
        help="output file for a single input; its name sets the format (.cif a CIF, "
        f"POSCAR/CONTCAR/.vasp VASP). Default: X_{tag}.cif beside each input "
        f"(POSCAR_{tag}.vasp for VASP inputs); never an input",
    )
    parser.add_argument("--format", default=None, help="ASE output format (default: from the name)")
    parser.add_argument(
        "--out-dir",
        help=f"a batch: write <stem>_{tag}.cif of every input file (and every structure file in "
        "input folders) here, with summary.csv; a file that fails is listed, exit status 1",
    )


def plan_outputs(args: argparse.Namespace, tag: str) -> list[tuple[Path, Path, str]]:
    """(input, output, format) per input file, checked before any model runs: ``-o`` only for
    one input, never an input file, a format the output name (or ``--format``) names."""
    from ase_cartnet.errors import InputError
    from ase_cartnet.io.atomic import check_output, ensure_not_input
    from ase_cartnet.io.structure import default_output, output_format

    inputs = [Path(p) for p in args.input]
    if args.output and len(inputs) > 1:
        raise InputError("-o/--output names one file: give one input, or none (X_<tag>.cif)")
    trajectory = getattr(args, "trajectory", None)
    if trajectory and len(inputs) > 1:
        raise InputError("--trajectory needs a single input")
    if trajectory:
        check_output(ensure_not_input(trajectory, *inputs), "trajectory")
    plan = []
    for source in inputs:
        out = Path(args.output) if args.output else default_output(source, tag)
        out = check_output(ensure_not_input(out, *inputs))
        plan.append((source, out, output_format(out, args.format)))
    return plan


def check_outputs(inputs, **outputs) -> None:
    """Before any model runs: each named output (``flag=path``, None for not asked) is a file
    that can be written and none of ``inputs``; a plot's extension is one matplotlib writes."""
    from ase_cartnet.io.atomic import check_output, ensure_not_input

    for flag, path in outputs.items():
        if path is None:
            continue
        if flag == "plot":
            from ase_cartnet.plot import plot_format

            plot_format(path)
        check_output(ensure_not_input(path, *inputs), f"--{flag}")


def into_out_dir(args: argparse.Namespace) -> bool:
    """Whether the command runs as a batch into ``--out-dir`` (a folder among the inputs needs
    one); refuses options that name one output."""
    from ase_cartnet.errors import InputError

    if not args.out_dir:
        folders = [p for p in args.input if Path(p).is_dir()]
        if folders:
            raise InputError(f"{folders[0]} is a folder: give --out-dir for its outputs")
        return False
    if args.output or getattr(args, "trajectory", None):
        raise InputError("--out-dir names the outputs: give no -o/--output or --trajectory")
    return True


def run_into_out_dir(
    args: argparse.Namespace, tag: str, process, columns: tuple[str, ...], verb: str
) -> tuple[int, list[dict[str, object]]]:
    """The batch of :func:`into_out_dir`: ``process(input) -> (atoms, row)`` on every structure
    file of the inputs, each written to ``--out-dir``/<stem>_<tag>.cif (the extension of
    ``--format`` when given), never over an input; ``summary.csv`` holds the output and
    ``columns`` of ``row``. Prints what was done; returns the exit status (1 if any file
    failed) and the summary rows."""
    from ase.io.formats import ioformats

    from ase_cartnet import batch
    from ase_cartnet.io.atomic import ensure_not_input
    from ase_cartnet.io.structure import output_format, write_structure

    fmt = output_format(f"<stem>_{tag}.{args.format or 'cif'}", args.format)  # before any model
    extension = "vasp" if fmt == "vasp" else (ioformats[fmt].extensions or [fmt])[0]
    files, _ = batch.collect_inputs(args.input)

    def write(path: Path, out: Path) -> dict[str, object]:
        atoms, row = process(path)
        write_structure(ensure_not_input(out, *files), atoms, fmt)
        return {"output": str(out), **row}

    result = batch.run_files(
        args.input,
        args.out_dir,
        write,
        output_name=lambda path: f"{path.stem}_{tag}.{extension}",
        columns=("output", *columns),
        desc=tag,
    )
    return batch.report_batch(result, args.out_dir, verb), result.rows


def read_all(plan, read) -> tuple[list, int]:
    """The structures that could be read and checked (with their plan rows), and how many
    could not (each named on stderr)."""
    import sys

    from ase_cartnet.errors import AseCartnetError

    ready, failed = [], 0
    for row in plan:
        try:
            ready.append((row, read(row[0])))
        except AseCartnetError as exc:  # the package's own errors name the problem
            named = str(row[0]) in str(exc)
            print(f"ase-cartnet: {'' if named else f'{row[0]}: '}{exc}", file=sys.stderr)
            failed += 1
    return ready, failed


def add_teacher_arguments(parser: argparse.ArgumentParser, fmax: float, max_steps: int) -> None:
    """Options of the teacher-data builders: the teacher, its relaxation (defaults: ``fmax``
    eV/Å, ``max_steps``, each builder's own), workers, resuming."""
    parser.add_argument(
        "--calculator", default="chgnet", help="teacher: chgnet, emt, module:factory"
    )
    parser.add_argument("--fmax", type=positive_float, default=fmax, help="eV/Å")
    parser.add_argument("--max-steps", type=non_negative_int, default=max_steps)
    parser.add_argument(
        "--workers", type=non_negative_int, default=0, help="worker processes (0: in-process)"
    )
    parser.add_argument(
        "--pool",
        default="dask",
        choices=("dask", "process"),
        help="kind of worker pool: a dask LocalCluster, or the standard library's process pool "
        "(spawned workers; no dask needed, e.g. on a GPU machine)",
    )
    parser.add_argument("--device", default="cpu", help="where the teacher runs (cpu, cuda)")
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
        "device": args.device,
    }


@contextmanager
def worker_pool(workers: int, pool: str = "dask") -> Iterator[Executor | None]:
    """An executor of ``workers`` one-thread worker processes, or None for 0: a dask
    ``LocalCluster`` (``pool="dask"``) or the standard library's process pool (``"process"``;
    spawned, not forked, since CUDA cannot be used in a forked child)."""
    if workers <= 0:
        yield None
    elif pool == "process":
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context) as executor:
            yield executor
    else:
        from dask.distributed import Client, LocalCluster

        with (
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=True) as cluster,
            Client(cluster) as client,
        ):
            yield client.get_executor()
