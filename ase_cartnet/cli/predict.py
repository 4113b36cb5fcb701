"""``ase-cartnet predict`` and ``ase-cartnet view``: CartNet ADPs of structure files, with a
table, a CIF in the input's own terms, an ORTEP figure and an interactive HTML view; many files
and folders as a batch."""

from __future__ import annotations

import argparse
from pathlib import Path

from ase_cartnet.cli import add_command
from ase_cartnet.cli.options import (
    add_checkpoint,
    add_float64,
    add_threads,
    check_outputs,
    dtype,
    positive_int,
    set_threads,
    temperature,
)
from ase_cartnet.errors import InputError
from ase_cartnet.io.atomic import check_output_dir


def _calculator(args: argparse.Namespace):
    """The CartNetADP the options describe (threads set for torch)."""
    from ase_cartnet.calculators.cartnet_adp import CartNetADP

    set_threads(args)
    return CartNetADP(
        checkpoint=args.checkpoint,
        temperature=args.temperature,
        hydrogen=args.hydrogen,
        rotations=args.rotations,
        symmetrize=args.symmetrize,
        disorder=args.disorder,
        dtype=dtype(args),
    )


def _run_predict(args: argparse.Namespace) -> int:
    from ase_cartnet import batch

    if batch.is_batch(args.input):
        return _run_predict_batch(args)
    if args.out_dir:
        out = check_output_dir(args.out_dir)
        stem = Path(args.input[0]).stem
        args.output = args.output or str(out / f"{stem}_cartnet.cif")
        args.plot = args.plot or (str(out / f"{stem}_cartnet.png") if args.plot == "" else None)
        args.html = args.html or (str(out / f"{stem}_cartnet.html") if args.html == "" else None)
    for flag in ("plot", "html"):
        if getattr(args, flag) == "":
            raise InputError(f"--{flag} needs a file name for one input (or give --out-dir)")
    check_outputs(args.input, output=args.output, plot=args.plot, html=args.html)
    if args.out_dir:
        Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    from ase_cartnet.report import format_adp_table

    calc = _calculator(args)
    result = batch.predict_file(calc, Path(args.input[0]), args.temperature)
    atoms = result.atoms
    print(
        f"CartNet ADPs for {args.input[0]} ({atoms.get_chemical_formula()}, {len(atoms)} atoms) "
        f"at {result.temperature:g} K"
    )
    print(f"checkpoint: {calc.checkpoint_path}")
    print(format_adp_table(atoms, result.adps, result.reference))
    m = result.metrics
    if m is not None:
        print(
            f"vs the file's ADPs ({m['n_atoms']} non-H sites of the asymmetric unit): "
            f"MAE {m['mae']:.2e} Å², S12 {m['s12']:.2f} %, IoU {m['iou']:.1f} %"
        )
    outputs = batch.write_outputs(
        calc,
        result,
        cif=Path(args.output) if args.output else None,
        png=Path(args.plot) if args.plot else None,
        html=Path(args.html) if args.html else None,
        p1=args.p1,
    )
    for path in outputs:
        print(f"wrote {path}")
    return 0


def _run_predict_batch(args: argparse.Namespace) -> int:
    from ase_cartnet import batch

    if not args.out_dir:
        raise InputError("several inputs or a folder: give --out-dir for the outputs")
    if args.output:
        raise InputError("-o names one output file; with several inputs use --out-dir")
    check_output_dir(args.out_dir)
    calc = _calculator(args)
    result = batch.run_batch(
        calc,
        args.input,
        args.out_dir,
        temperature=args.temperature,
        plot=args.plot is not None,
        html=args.html is not None,
        p1=args.p1,
    )
    return batch.report_batch(result, args.out_dir, "predicted")


def _run_view(args: argparse.Namespace) -> int:
    from ase_cartnet import batch

    args.disorder = getattr(args, "disorder", "major")
    html = Path(args.output or f"{Path(args.input).stem}_view.html")
    check_outputs([args.input], output=html)
    calc = _calculator(args)
    result = batch.predict_file(calc, Path(args.input), args.temperature)
    (path,) = batch.write_outputs(calc, result, html=html)
    print(f"wrote {path}")
    return 0


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-T", "--temperature", type=temperature, default=None, help="K (default: from the file)"
    )
    add_checkpoint(parser, "official or ase-cartnet CartNet checkpoint")
    parser.add_argument("--hydrogen", choices=("nan", "riding"), default="riding")
    parser.add_argument(
        "--rotations", type=positive_int, default=1, help="test-time rotation averaging (K)"
    )
    add_float64(parser)
    parser.add_argument(
        "--symmetrize",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="average the predicted U over the space group (site symmetry, equivalent atoms; "
        "default on)",
    )
    parser.add_argument(
        "--disorder",
        choices=("major", "each", "error"),
        default="major",
        help="disordered files: predict the major configuration, minor sites take their "
        "counterpart's ADP (default); every configuration; or refuse",
    )
    add_threads(parser)


def register(subparsers) -> None:
    """Add ``predict`` and ``view`` to the ``ase-cartnet`` CLI."""
    predict = add_command(subparsers, "predict")
    predict.add_argument(
        "input",
        nargs="+",
        help="structure files or folders of CIFs (a CIF keeps its ADPs and temperature; any "
        "ASE format when named)",
    )
    predict.add_argument(
        "-o",
        "--output",
        help="write a CIF with the predicted ADPs: the input's own data block (space group, site "
        "labels, asymmetric unit) with the ADP items replaced",
    )
    predict.add_argument(
        "--p1", action="store_true", help="write the expanded cell in P1 instead (with -o)"
    )
    predict.add_argument(
        "--plot",
        nargs="?",
        const="",
        help="write an ORTEP figure (PNG; beside the file's ADPs if any); a file name for one "
        "input, no value with --out-dir",
    )
    predict.add_argument(
        "--html", nargs="?", const="", help="write an interactive HTML view (as --plot)"
    )
    predict.add_argument(
        "--out-dir",
        help="folder for <name>_cartnet.cif (and .png/.html) of every input and summary.csv",
    )
    _add_model_options(predict)
    predict.set_defaults(func=_run_predict)
    view = add_command(subparsers, "view")
    view.add_argument("input", help="structure file (a CIF's own ADPs can be toggled in)")
    view.add_argument("-o", "--output", help="HTML file (default: <name>_view.html here)")
    _add_model_options(view)
    view.set_defaults(func=_run_view)
