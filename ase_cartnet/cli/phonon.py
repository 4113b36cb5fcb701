"""``ase-cartnet phonon-ref`` (one structure) and ``ase-cartnet phonon-dataset`` (many)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ase_cartnet.cli import add_command
from ase_cartnet.cli.options import add_teacher_arguments, teacher_options, worker_pool


def _grid_argument(values: list[str] | None, name: str, allowed: tuple[int, ...]):
    """One number (float → length in Å; int → n n n for meshes), 3 ints, or 9 ints."""
    if values is None:
        return None
    from ase_cartnet.errors import InputError

    if len(values) not in allowed:
        raise InputError(f"--{name} takes {' or '.join(map(str, allowed))} numbers, got {values}")
    if len(values) == 1:
        text = values[0]
        return float(text) if any(c in text for c in ".eE") else int(text)
    try:
        ints = [int(v) for v in values]
    except ValueError as exc:
        raise InputError(f"--{name} needs integers, got {values}") from exc
    return np.array(ints).reshape(3, 3) if len(ints) == 9 else tuple(ints)


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


def run(args: argparse.Namespace) -> int:
    """The ``phonon-ref`` command: harmonic reference ADPs of one structure."""
    from ase_cartnet.adp import u_equiv
    from ase_cartnet.io.atomic import ensure_not_input
    from ase_cartnet.io.cif import write_cif
    from ase_cartnet.io.structure import read_structure
    from phonon_ref.grids import DEFAULT_MESH_LENGTH, DEFAULT_MIN_LENGTH
    from phonon_ref.reference import PhononReference
    from phonon_ref.relax import relax

    source = Path(args.input)
    for out in (args.output, args.plot):
        if out is not None:
            ensure_not_input(out, source)
    atoms = read_structure(source)
    temperature = _temperature(args, atoms)
    supercell = _grid_argument(args.supercell, "supercell", (1, 3, 9))
    if isinstance(supercell, int):
        supercell = float(supercell)
    mesh = _grid_argument(args.mesh, "mesh", (1, 3))
    structure = atoms.copy()
    structure.calc = None
    if args.relax:
        rel = relax(structure, args.calculator, fmax=args.fmax)
        print(
            f"relaxed with {args.calculator}: {rel.steps} steps, max force {rel.fmax_reached:.1e} "
            f"eV/Å ({'converged' if rel.converged else 'NOT converged'})"
        )
        structure = rel.atoms
    ref = PhononReference(
        structure,
        calculator=args.calculator,
        supercell=supercell if supercell is not None else DEFAULT_MIN_LENGTH,
        mesh=mesh if mesh is not None else DEFAULT_MESH_LENGTH,
        displacement=args.displacement,
        cache_dir=args.cache_dir,
        progress=not args.no_progress,
        on_imaginary=args.on_imaginary,
    )
    result = ref.run(temperature)
    u_ref = result.u_cart[0]
    sc = ref.supercell_matrix
    diagonal = np.count_nonzero(sc - np.diag(np.diag(sc))) == 0
    print(
        f"{source.name}: {structure.get_chemical_formula()} ({len(structure)} atoms), "
        f"calculator {args.calculator}, supercell {(np.diag(sc) if diagonal else sc).tolist()} "
        f"({len(ref.phonopy.supercell)} atoms, {ref.n_force_calls} force calls"
        f"{', cached' if ref.cache_hit else ''}), mesh {ref.mesh_numbers().tolist()}"
    )
    print(
        f"frequencies {result.min_frequency:.3f} … {result.max_frequency:.3f} THz; "
        f"{result.n_imaginary} imaginary, {result.n_skipped} modes skipped "
        f"(≤ {result.freq_min} THz)"
    )
    print(f"harmonic U at {temperature:g} K (Å²):")
    labels = structure.arrays.get("site_label", structure.get_chemical_symbols())
    for i, (label, ueq) in enumerate(zip(labels, u_equiv(u_ref), strict=True)):
        w = np.linalg.eigvalsh(u_ref[i])
        print(f"{i:>4} {str(label):<8} U_eq {ueq:.5f}  principal {w[0]:.5f} {w[1]:.5f} {w[2]:.5f}")
    comparison = None
    if args.compare_with:
        from ase_cartnet.calculators.cartnet_adp import CartNetADP
        from phonon_ref.compare import compare

        calc = CartNetADP(checkpoint=args.compare_with, temperature=temperature)
        u_pred = calc.get_property("adps", structure)
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
    parser.add_argument("input", help="structure file (CIF, POSCAR, any ASE format)")
    parser.add_argument("--calculator", default="emt", help="emt, chgnet or module:factory")
    parser.add_argument(
        "-T", "--temperature", type=float, default=None, help="K (default: from the CIF)"
    )
    parser.add_argument(
        "--supercell",
        nargs="+",
        metavar="N",
        help="3 ints (diagonal), 9 ints (matrix) or one length in Å (default 10 Å)",
    )
    parser.add_argument(
        "--mesh", nargs="+", metavar="N", help="3 ints, one int, or a length in Å (default 100 Å)"
    )
    parser.add_argument("--displacement", type=float, default=0.01, help="Å (default 0.01)")
    parser.add_argument("--relax", action="store_true", help="relax positions and cell first")
    parser.add_argument("--fmax", type=float, default=1e-3, help="relaxation target, eV/Å")
    parser.add_argument("-o", "--output", help="write a CIF with the harmonic ADPs")
    parser.add_argument("--compare-with", metavar="CKPT", help="CartNet checkpoint to compare with")
    parser.add_argument("--plot", help="ORTEP-style PNG (overlay with CartNet if --compare-with)")
    parser.add_argument("--cache-dir", help="force-constant cache directory")
    parser.add_argument("--on-imaginary", choices=("warn", "raise", "ignore"), default="warn")
    parser.add_argument("--no-progress", action="store_true")


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``phonon-dataset``."""
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
    parser.add_argument("--device", default="cpu", help="where the teacher runs (cpu, cuda)")
    parser.add_argument(
        "-T", "--temperatures", type=float, nargs="+", default=list(DEFAULT_TEMPERATURES)
    )
    parser.add_argument("--limit", type=int, default=None, help="first N rows only")
    parser.add_argument("--ids", nargs="+", default=None, help="only these material ids")
    parser.add_argument("--supercell-length", type=float, default=DEFAULT_MIN_LENGTH, help="Å")
    parser.add_argument("--mesh-length", type=float, default=DEFAULT_MESH_LENGTH, help="Å")
    parser.add_argument("--cache-dir", help="keep the force constants (phonopy yaml) here")


def run_dataset(args: argparse.Namespace) -> int:
    """The ``phonon-dataset`` command: :func:`phonon_ref.dataset.build_dataset`, a summary line."""
    import logging

    from ase_cartnet.io.datasets import read_mp20
    from phonon_ref.dataset import build_dataset

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    structures = read_mp20(args.csv, limit=args.limit, ids=args.ids)
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
            device=args.device,
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
