"""``ase-cartnet phonon-ref`` (one structure) and ``ase-cartnet phonon-dataset`` (many)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ase_cartnet.cli import add_command
from ase_cartnet.cli.options import add_teacher_arguments, teacher_options, worker_pool

DEFAULT_CALCULATOR = "chgnet"
"""The calculator of ``phonon-ref`` when none is named: the project's teacher (CHGNet, as
``phonon-dataset`` and the shipped CartNet's training labels); the output says so."""

PHONOPY_YAMLS = ("phonopy_disp.yaml", "phonopy_params.yaml", "phonopy.yaml")
"""Files looked for in a folder given to ``phonon-ref``, in this order."""


def grid_number(text: str) -> int | float:
    """An ``argparse`` type for ``--supercell``/``--mesh`` entries: a positive integer, or a
    positive length in Å (written with a ``.`` or an exponent)."""
    try:
        value = float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        value = -1
    if not (np.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(
            f"expected a positive integer or a length in Å (e.g. 10.0), got {text!r}"
        )
    return value


def _grid_argument(values: list | None, name: str, allowed: tuple[int, ...]):
    """One number (float → length in Å; int → n n n for meshes), 3 ints, or 9 ints."""
    if values is None:
        return None
    from ase_cartnet.errors import InputError

    if len(values) not in allowed:
        raise InputError(f"--{name} takes {' or '.join(map(str, allowed))} numbers, got {values}")
    if len(values) == 1:
        return values[0]
    if not all(isinstance(v, int) for v in values):
        raise InputError(f"--{name} needs integers, got {values}")
    return np.array(values).reshape(3, 3) if len(values) == 9 else tuple(values)


def _temperature(args: argparse.Namespace, atoms) -> float:
    from ase_cartnet.errors import InputError

    t = args.temperature if args.temperature is not None else atoms.info.get("temperature")
    if t is None:
        raise InputError(
            "no temperature: pass -T (K) or give a CIF with _diffrn_ambient_temperature"
        )
    t = float(t)
    if not np.isfinite(t) or t < 0:
        raise InputError(f"temperature must be finite and >= 0 K, got {t}")
    return t


def _phonopy_files(args: argparse.Namespace) -> tuple[Path, Path | None] | None:
    """(phonopy yaml, FORCE_SETS or None) when the input is a phonopy calculation: a ``.yaml``
    file or a folder holding one of :data:`PHONOPY_YAMLS`; None for a structure file.
    ``--force-sets`` defaults to FORCE_SETS beside the yaml when there is one."""
    from ase_cartnet.errors import InputError

    source = Path(args.input)
    if source.is_dir():
        found = [source / name for name in PHONOPY_YAMLS if (source / name).is_file()]
        if not found:
            raise InputError(
                f"{source} is a folder without {', '.join(PHONOPY_YAMLS)}: give a structure "
                "file or a phonopy calculation"
            )
        yaml = found[0]
    elif source.suffix.lower() in (".yaml", ".yml"):
        yaml = source
    else:
        if args.force_sets or args.born:
            raise InputError("--force-sets and --born go with a phonopy yaml input")
        return None
    force_sets = Path(args.force_sets) if args.force_sets else yaml.parent / "FORCE_SETS"
    if not args.force_sets and not force_sets.is_file():
        force_sets = None  # phonopy_params.yaml / phonopy.yaml carry forces or constants
    given = [
        flag
        for flag, value in (
            ("--calculator", args.calculator),
            ("--relax", args.relax),
            ("--supercell", args.supercell),
            ("--cache-dir", args.cache_dir),
        )
        if value
    ]
    if given:
        raise InputError(
            f"{yaml} is a finished phonopy calculation (its own supercell and forces): "
            f"{', '.join(given)} cannot apply to it"
        )
    return yaml, force_sets


def _reference(args: argparse.Namespace, mesh, supercell):
    """The PhononReference of the input, the structure it describes and the calculator named
    in the output."""
    from ase_cartnet.io.structure import read_structure
    from phonon_ref.grids import DEFAULT_MESH_LENGTH, DEFAULT_MIN_LENGTH
    from phonon_ref.reference import PhononReference
    from phonon_ref.relax import relax

    mesh = mesh if mesh is not None else DEFAULT_MESH_LENGTH
    phonopy_files = _phonopy_files(args)
    if phonopy_files is not None:
        yaml, force_sets = phonopy_files
        ref = PhononReference.from_phonopy_yaml(
            yaml,
            force_sets=force_sets,
            born=args.born,
            mesh=mesh,
            progress=not args.no_progress,
            on_imaginary=args.on_imaginary,
        )
        what = f"forces of {force_sets.name if force_sets else yaml.name} (phonopy)"
        return ref, ref.atoms, what
    calculator = args.calculator or DEFAULT_CALCULATOR
    what = (
        calculator
        if args.calculator
        else f"{calculator} (the default teacher; choose one with --calculator)"
    )
    structure = read_structure(Path(args.input))
    structure.calc = None
    if args.relax:
        rel = relax(structure, calculator, fmax=args.fmax)
        print(
            f"relaxed with {calculator}: {rel.steps} steps, max force {rel.fmax_reached:.1e} "
            f"eV/Å ({'converged' if rel.converged else 'NOT converged'})"
        )
        structure = rel.atoms
    ref = PhononReference(
        structure,
        calculator=calculator,
        supercell=supercell if supercell is not None else DEFAULT_MIN_LENGTH,
        mesh=mesh,
        displacement=args.displacement,
        cache_dir=args.cache_dir,
        progress=not args.no_progress,
        on_imaginary=args.on_imaginary,
    )
    return ref, structure, what


def _check_defined(u_ref: np.ndarray, result, labels, what: str) -> None:
    """An ``InputError`` when some atom has no harmonic ADP (every mode skipped: U = 0)."""
    from ase_cartnet.adp import is_positive_definite
    from ase_cartnet.errors import InputError

    bad = np.flatnonzero(~is_positive_definite(u_ref))
    if bad.size:
        names = ", ".join(str(labels[i]) for i in bad[:10])
        raise InputError(
            f"no harmonic ADP for {bad.size} of {len(u_ref)} atoms ({names}): "
            f"{result.n_skipped} of {result.n_modes} modes skipped (≤ {result.freq_min} THz; "
            f"{result.n_imaginary} imaginary, frequencies {result.min_frequency:.3g} … "
            f"{result.max_frequency:.3g} THz). {what} does not hold this crystal at a minimum: "
            "relax it first (--relax) or use another calculator; nothing was written"
        )


def run(args: argparse.Namespace) -> int:
    """The ``phonon-ref`` command: harmonic reference ADPs of one structure or one phonopy
    calculation (``phonopy_disp.yaml`` + ``FORCE_SETS``)."""
    from ase_cartnet.adp import u_equiv
    from ase_cartnet.cli.options import check_outputs
    from ase_cartnet.io.cif import write_cif

    source = Path(args.input)
    check_outputs([source], output=args.output, plot=args.plot)
    if args.cache_dir:
        from ase_cartnet.io.atomic import check_output_dir

        check_output_dir(args.cache_dir, "--cache-dir")
    supercell = _grid_argument(args.supercell, "supercell", (1, 3, 9))
    if isinstance(supercell, int):
        supercell = float(supercell)
    mesh = _grid_argument(args.mesh, "mesh", (1, 3))
    if args.temperature is None and source.suffix.lower() in (".yaml", ".yml"):
        from ase_cartnet.errors import InputError

        raise InputError("a phonopy calculation states no temperature: pass -T (K)")
    ref, structure, what = _reference(args, mesh, supercell)
    temperature = _temperature(args, structure)
    result = ref.run(temperature)
    u_ref = result.u_cart[0]
    labels = structure.arrays.get("site_label", structure.get_chemical_symbols())
    sc = ref.supercell_matrix
    diagonal = np.count_nonzero(sc - np.diag(np.diag(sc))) == 0
    print(
        f"{source.name}: {structure.get_chemical_formula()} ({len(structure)} atoms), "
        f"calculator {what}, supercell {(np.diag(sc) if diagonal else sc).tolist()} "
        f"({len(ref.phonopy.supercell)} atoms, {ref.n_force_calls} force calls"
        f"{', cached' if ref.cache_hit else ''}), mesh {ref.mesh_numbers().tolist()}"
    )
    print(
        f"frequencies {result.min_frequency:.3f} … {result.max_frequency:.3f} THz; "
        f"{result.n_imaginary} imaginary, {result.n_skipped} modes skipped "
        f"(≤ {result.freq_min} THz)"
    )
    _check_defined(u_ref, result, labels, what)
    print(f"harmonic U at {temperature:g} K (Å²):")
    for i, (label, ueq) in enumerate(zip(labels, u_equiv(u_ref), strict=True)):
        w = np.linalg.eigvalsh(u_ref[i])
        print(f"{i:>4} {str(label):<8} U_eq {ueq:.5f}  principal {w[0]:.5f} {w[1]:.5f} {w[2]:.5f}")
    comparison = None
    if args.compare_with:
        from ase_cartnet.calculators.cartnet_adp import CartNetADP
        from phonon_ref.compare import compare

        checkpoint = None if args.compare_with == "default" else args.compare_with
        calc = CartNetADP(checkpoint=checkpoint, temperature=temperature)
        u_pred = calc.get_property("adps", structure)
        print(f"CartNet: {calc.checkpoint_path}")
        comparison = compare(u_pred, u_ref, structure, names=("CartNet", "harmonic"))
        print(comparison.table())
    if args.output:
        # the relaxed structure is no longer the file's: the expanded cell in P1
        path = write_cif(args.output, structure, u_ref, temperature=temperature, p1=True)
        print(f"wrote {path}")
    if args.plot:
        if comparison is not None:
            path = comparison.plot(args.plot, inputs=[source])
        else:
            from ase_cartnet.plot import plot_ellipsoids

            path = plot_ellipsoids(
                args.plot,
                structure,
                u_ref,
                title=f"{structure.get_chemical_formula()} harmonic ADPs, {temperature:g} K",
                inputs=[source],
            )
        print(f"wrote {path}")
    return 0


def add_reference_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``phonon-ref``."""
    from ase_cartnet.cli.options import positive_float, temperature

    parser.add_argument(
        "input",
        help="structure file (CIF, POSCAR, any ASE format), or a finished phonopy calculation: "
        "phonopy_disp.yaml (with FORCE_SETS beside it or --force-sets), phonopy_params.yaml, "
        "or a folder holding one",
    )
    parser.add_argument(
        "--calculator",
        default=None,
        help=f"emt, chgnet, sevennet or module:factory (default: {DEFAULT_CALCULATOR}, the "
        "project's teacher; named in the output)",
    )
    parser.add_argument("--force-sets", help="phonopy FORCE_SETS (default: beside the yaml)")
    parser.add_argument("--born", help="phonopy BORN file: non-analytic correction (yaml input)")
    parser.add_argument(
        "-T", "--temperature", type=temperature, default=None, help="K (default: from the CIF)"
    )
    parser.add_argument(
        "--supercell",
        nargs="+",
        metavar="N",
        type=grid_number,
        help="3 ints (diagonal), 9 ints (matrix) or one length in Å (default 10 Å)",
    )
    parser.add_argument(
        "--mesh",
        nargs="+",
        metavar="N",
        type=grid_number,
        help="3 ints, one int, or a length in Å (default 100 Å)",
    )
    parser.add_argument(
        "--displacement", type=positive_float, default=0.01, help="Å (default 0.01)"
    )
    parser.add_argument("--relax", action="store_true", help="relax positions and cell first")
    parser.add_argument("--fmax", type=positive_float, default=1e-3, help="relaxation target, eV/Å")
    parser.add_argument("-o", "--output", help="write a CIF with the harmonic ADPs")
    parser.add_argument(
        "--compare-with",
        metavar="CKPT",
        help="CartNet checkpoint to compare with ('default': the shipped weights)",
    )
    parser.add_argument("--plot", help="ORTEP-style PNG (overlay with CartNet if --compare-with)")
    parser.add_argument("--cache-dir", help="force-constant cache directory")
    parser.add_argument("--on-imaginary", choices=("warn", "raise", "ignore"), default="warn")
    parser.add_argument("--no-progress", action="store_true")


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``phonon-dataset``."""
    from ase_cartnet.cli.options import positive_float, positive_int, temperature
    from phonon_ref.dataset import (
        DEFAULT_FMAX,
        DEFAULT_MAX_STEPS,
        DEFAULT_MESH_LENGTH,
        DEFAULT_MIN_LENGTH,
        DEFAULT_TEMPERATURES,
    )

    parser.add_argument("csv", help="MP-20 style CSV(.gz) with material_id and cif columns")
    parser.add_argument("-o", "--out", default="adp.db", help="ASE database (resumed if present)")
    add_teacher_arguments(parser, DEFAULT_FMAX, DEFAULT_MAX_STEPS)
    parser.add_argument(
        "-T", "--temperatures", type=temperature, nargs="+", default=list(DEFAULT_TEMPERATURES)
    )
    parser.add_argument("--limit", type=positive_int, default=None, help="first N rows only")
    parser.add_argument("--ids", nargs="+", default=None, help="only these material ids")
    parser.add_argument(
        "--supercell-length", type=positive_float, default=DEFAULT_MIN_LENGTH, help="Å"
    )
    parser.add_argument("--mesh-length", type=positive_float, default=DEFAULT_MESH_LENGTH, help="Å")
    parser.add_argument("--cache-dir", help="keep the force constants (compressed npz) here")


def run_dataset(args: argparse.Namespace) -> int:
    """The ``phonon-dataset`` command: :func:`phonon_ref.dataset.build_dataset`, a summary line."""
    import logging

    from ase_cartnet.io.atomic import check_output, check_output_dir
    from ase_cartnet.io.datasets import read_mp20
    from phonon_ref.dataset import build_dataset

    check_output(args.out, "--out database")
    if args.cache_dir:
        check_output_dir(args.cache_dir, "--cache-dir")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # an unreadable row becomes a "failed" row of the database; the others are computed
    structures = read_mp20(args.csv, limit=args.limit, ids=args.ids, keep_unreadable=True)
    with worker_pool(args.workers, args.pool) as executor:
        summary = build_dataset(
            structures,
            executor=executor,
            **teacher_options(args),
            temperatures=args.temperatures,
            out=args.out,
            supercell=args.supercell_length,
            mesh=args.mesh_length,
            cache_dir=args.cache_dir,
        )
    print(summary.line())
    return 0


def register(subparsers) -> None:
    """Add ``phonon-ref`` and ``phonon-dataset`` to the ``ase-cartnet`` CLI."""
    ref = add_command(subparsers, "phonon-ref")
    add_reference_arguments(ref)
    ref.set_defaults(func=run)
    data = add_command(subparsers, "phonon-dataset")
    add_dataset_arguments(data)
    data.set_defaults(func=run_dataset)
