"""Predicting many structure files: one calculator, a progress bar, a summary CSV, failures kept.

The command line (``ase-cartnet predict a.cif b.cif folder/ --out-dir out``) is a thin layer
over :func:`predict_file` and :func:`run_batch`: each file is read (every site; the calculator
applies its disorder policy), predicted, compared with the file's own ADPs when it has them, and
written as a CIF in its own terms (optionally a PNG and an HTML view). A file that fails is
recorded with its error and the batch goes on.
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms

from ase_cartnet.errors import InputError

STRUCTURE_SUFFIXES = (".cif", ".vasp", ".poscar")
"""File kinds collected from folders, with files named POSCAR* or CONTCAR* (any ASE format is
accepted when named explicitly)."""

SUMMARY_COLUMNS = (
    "file",
    "formula",
    "temperature_K",
    "status",
    "n_atoms",
    "u_eq_min",
    "u_eq_max",
    "mae",
    "s12",
    "iou",
    "n_compared",
    "warnings",
    "error",
)


@dataclass
class FilePrediction:
    """One predicted file: the structure (every site), U (N, 3, 3) Å², the file's own U (or
    None), the temperature (K), metrics against the file (or None) and the warnings raised."""

    path: Path
    atoms: Atoms
    adps: np.ndarray
    reference: np.ndarray | None
    temperature: float
    metrics: dict[str, float] | None
    warnings: list[str] = field(default_factory=list)


def collect_inputs(paths: Sequence[str | os.PathLike]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Files named directly and the structure files (``*.cif``, recursively, sorted) of folders;
    each file once. Returns (files, [(path, error)] for paths that do not exist or hold none)."""
    files: list[Path] = []
    missing: list[tuple[Path, str]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and _is_structure(p))
            if not found:
                missing.append((path, f"no {', '.join(STRUCTURE_SUFFIXES)} files in this folder"))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            missing.append((path, "no such file or folder"))
    unique = list(dict.fromkeys(p.resolve() for p in files))
    return unique, missing


def _is_structure(path: Path) -> bool:
    return path.suffix.lower() in STRUCTURE_SUFFIXES or path.name.upper().startswith(
        ("POSCAR", "CONTCAR")
    )


def is_batch(inputs: Sequence[str | os.PathLike]) -> bool:
    """Whether a command line names several inputs or a folder (a batch run)."""
    return len(inputs) > 1 or any(Path(p).is_dir() for p in inputs)


def run_files(
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    process: Callable[[Path, Path], dict[str, object]],
    *,
    output_name: Callable[[Path], str],
    columns: Sequence[str],
    desc: str,
    progress: bool = True,
) -> BatchResult:
    """Run ``process(input, output)`` on every structure file of ``inputs`` (files and folders),
    the output named ``out_dir``/``output_name(input)`` (``_2``, ``_3`` … for repeated names),
    with a progress bar. ``process`` returns the summary row (``columns``); a file that fails
    gets status "failed" and its error, and the batch goes on. Writes ``out_dir``/summary.csv.
    An ``InputError`` before any file is processed when ``out_dir`` cannot be written."""
    from tqdm.auto import tqdm

    from ase_cartnet.io.atomic import check_output_dir

    out = check_output_dir(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files, missing = collect_inputs(inputs)
    rows: list[dict[str, object]] = []
    failures = [(str(p), msg) for p, msg in missing]
    taken: set[str] = set()
    for path in tqdm(files, desc=desc, unit="file", disable=not progress):
        name = output_name(path)
        k = 1
        while name in taken:  # two inputs with one name (from different folders)
            k += 1
            stem, dot, rest = output_name(path).partition(".")
            name = f"{stem}_{k}{dot}{rest}"
        taken.add(name)
        try:
            row = {"file": str(path), "status": "ok", **process(path, out / name)}
        except (ValueError, OSError, RuntimeError) as exc:  # one bad file never stops a batch
            failures.append((str(path), str(exc)))
            row = {"file": str(path), "status": "failed", "error": str(exc)}
        rows.append(row)
    rows += [{"file": str(p), "status": "failed", "error": msg} for p, msg in missing]
    write_summary(out / "summary.csv", rows, ("file", "status", *columns, "error"))
    return BatchResult(rows=rows, failures=failures)


def report_batch(result: BatchResult, out_dir: str | os.PathLike, verb: str) -> int:
    """Print what a batch did and its failures; the exit status (1 if any file failed)."""
    ok = sum(1 for row in result.rows if row.get("status") == "ok")
    summary = Path(out_dir) / "summary.csv"
    print(f"{ok} of {len(result.rows)} files {verb}; summary: {summary}")
    if not result.failures:
        return 0
    print(f"{len(result.failures)} failed:")
    for path, error in result.failures:
        print(f"  {error}" if error.startswith(path) else f"  {path}: {error}")
    return 1


def predict_file(calc, path: Path, temperature: float | None = None) -> FilePrediction:
    """Read ``path`` (every site), predict its ADPs with ``calc`` (a ``CartNetADP``) at
    ``temperature`` K or the file's, and compare with the file's ADPs (non-H sites of the
    asymmetric unit). Raises ``InputError`` naming the file when it states no temperature."""
    from ase_cartnet.io.structure import read_structure
    from ase_cartnet.plausibility import check_reference_adps
    from ase_cartnet.report import compare_with_reference

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        atoms = read_structure(path, disorder="all")
        if temperature is None and "temperature" not in atoms.info:
            raise InputError(
                f"{path}: the file states no temperature; give one with -T/--temperature (K)"
            )
        t = float(temperature if temperature is not None else atoms.info["temperature"])
        reference = atoms.arrays.get("adps")
        if reference is not None and not np.isfinite(reference[atoms.numbers != 1]).any():
            reference = None
        if reference is not None:
            check_reference_adps(atoms, reference, t)
        calc.parameters["temperature"] = temperature
        calc.reset()
        atoms.calc = calc
        adps = calc.get_property("adps", atoms)
    for w in caught:  # shown once, as they were raised, and kept for the summary
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return FilePrediction(
        path=path,
        atoms=atoms,
        adps=adps,
        reference=reference,
        temperature=t,
        metrics=compare_with_reference(atoms, adps, reference),
        warnings=[str(w.message) for w in caught],
    )


def write_outputs(
    calc,
    result: FilePrediction,
    *,
    cif: Path | None = None,
    png: Path | None = None,
    html: Path | None = None,
    p1: bool = False,
) -> list[Path]:
    """The requested output files of one prediction (CIF in the input's terms unless ``p1``,
    ORTEP PNG beside the file's ADPs, interactive HTML view); returns the paths written."""
    written = []
    if cif is not None:
        written.append(calc.write_cif(cif, result.atoms, p1=p1))
    if png is not None:
        written.append(calc.plot_ellipsoids(png, reference=result.reference, atoms=result.atoms))
    if html is not None:
        from ase_cartnet.viewer import write_view

        written.append(
            write_view(
                html,
                result.atoms,
                result.adps,
                result.reference,
                inputs=(result.atoms.info.get("source_file"),),
            )
        )
    return written


def summary_row(result: FilePrediction) -> dict[str, object]:
    """The CSV row of a successful prediction (U_eq range over the predicted atoms, Å²)."""
    from ase_cartnet.adp import u_equiv

    u_eq = u_equiv(result.adps)
    finite = u_eq[np.isfinite(u_eq)]
    m = result.metrics or {}
    return {
        "file": str(result.path),
        "formula": result.atoms.get_chemical_formula(mode="hill"),
        "temperature_K": f"{result.temperature:g}",
        "status": "ok",
        "n_atoms": len(result.atoms),
        "u_eq_min": f"{finite.min():.5f}" if finite.size else "",
        "u_eq_max": f"{finite.max():.5f}" if finite.size else "",
        "mae": f"{m['mae']:.3e}" if m else "",
        "s12": f"{m['s12']:.3f}" if m else "",
        "iou": f"{m['iou']:.2f}" if m else "",
        "n_compared": m.get("n_atoms", "") if m else "",
        "warnings": len(result.warnings),
        "error": "",
    }


@dataclass
class BatchResult:
    rows: list[dict[str, object]]
    failures: list[tuple[str, str]]  # (file, error)


def run_batch(
    calc,
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    temperature: float | None = None,
    plot: bool = False,
    html: bool = False,
    p1: bool = False,
    progress: bool = True,
) -> BatchResult:
    """Predict every structure file of ``inputs`` (files and folders) with ``calc`` and write
    ``out_dir``/<stem>_cartnet.cif (and .png, .html when asked) plus ``summary.csv``
    (``SUMMARY_COLUMNS``). A failing file is recorded and the batch goes on."""

    def process(path: Path, cif: Path) -> dict[str, object]:
        result = predict_file(calc, path, temperature)
        write_outputs(
            calc,
            result,
            cif=cif,
            png=cif.with_suffix(".png") if plot else None,
            html=cif.with_suffix(".html") if html else None,
            p1=p1,
        )
        return summary_row(result)

    return run_files(
        inputs,
        out_dir,
        process,
        output_name=lambda path: f"{path.stem}_cartnet.cif",
        columns=[c for c in SUMMARY_COLUMNS if c not in ("file", "status", "error")],
        desc="predict",
        progress=progress,
    )


def write_summary(
    path: Path, rows: list[dict[str, object]], columns: Sequence[str] = SUMMARY_COLUMNS
) -> Path:
    """The summary CSV (``columns``), written atomically."""
    from ase_cartnet.io.atomic import atomic_write

    with atomic_write(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: row.get(key, "") for key in columns})
    return path
