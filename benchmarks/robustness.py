"""Robustness table: every failure mode of the "ASE conventions and failure modes" review, run
as cases (API calls, the command line in subprocesses, malformed CIFs, fuzzed structures for
every model, kills during atomic writes, a killed and resumed dataset builder, concurrent
builders).

Each case is one row: category, case, expected behaviour, result (pass / FAIL / skip) and a
detail. A case that raises is a FAIL row, never a crash of the script. Writes a markdown table
and ``benchmarks/results_robustness.json``; prints "N/M passed" (skipped cases not counted).

    OMP_NUM_THREADS=1 python -m benchmarks.robustness            # a few minutes on 2 cores
    python -m benchmarks.robustness --only cli,fuzz --fuzz 20     # a subset

The cases use the public API only, so the same script measures an older checkout (copy it
there and run it from that checkout's root).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk

from ase_cartnet.benchmarking import rattled_fcc_crystal

ROOT = Path(__file__).resolve().parents[1]

SHARED = Path(os.environ.get("ASE_CARTNET_SHARED", ROOT.parent / "shared"))
PHONOPY = SHARED / "data" / "phonopy_examples"
MGAL2SI2 = ROOT / "ase_cartnet" / "data" / "mgal2si2_mp-3833.cif"


class Skip(Exception):
    """A case that cannot run here (e.g. a permission test as root)."""


@dataclass
class Row:
    category: str
    case: str
    expected: str
    result: str = "FAIL"
    detail: str = ""
    seconds: float = 0.0


CASES: list[tuple[str, str, str, Callable[[Path], str | None]]] = []


def case(category: str, name: str, expected: str):
    """Register ``fn(tmp) -> detail`` as a case: passes unless it raises."""

    def register(fn):
        CASES.append((category, name, expected, fn))
        return fn

    return register


# -- helpers -----------------------------------------------------------------------------------


def package_error():
    from ase_cartnet.errors import AseCartnetError

    return AseCartnetError


def expect_error(fn, *, match: str | None = None, kinds=None) -> str:
    """``fn()`` must raise one of the package's errors (``kinds``), whose message contains
    ``match``; returns the message."""
    kinds = kinds or package_error()
    try:
        fn()
    except kinds as exc:
        if match is not None and match.lower() not in str(exc).lower():
            raise AssertionError(f"message lacks {match!r}: {exc}") from exc
        return str(exc)[:120]
    except Exception as exc:
        raise AssertionError(f"{type(exc).__name__} instead: {str(exc)[:150]}") from exc
    raise AssertionError("no error raised")


def warned(fn, match: str = "") -> tuple[object, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()
    messages = [str(w.message) for w in caught if match.lower() in str(w.message).lower()]
    return out, messages


def cli(argv: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "ase_cartnet.cli", *map(str, argv)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli_fails_cleanly(argv, cwd, *, match: str | None = None, unchanged: list[Path] = ()):
    """Non-zero exit, no traceback, ``match`` in stderr."""
    done = cli(argv, cwd)
    err = done.stderr
    if "Traceback" in err:
        raise AssertionError("traceback: " + err.strip().splitlines()[-1][:150])
    if done.returncode == 0:
        raise AssertionError("exit status 0")
    if match and match.lower() not in err.lower():
        raise AssertionError(f"stderr lacks {match!r}: {err.strip()[-150:]}")
    return f"exit {done.returncode}: {err.strip().splitlines()[-1][:110] if err.strip() else ''}"


def cif_of(atoms: Atoms) -> str:
    from ase.io import write

    buffer = io.BytesIO()
    write(buffer, atoms, format="cif")
    return buffer.getvalue().decode()


def is_spd(u) -> bool:
    u = np.asarray(u, dtype=float)
    return bool(np.all(np.isfinite(u)) and np.all(np.linalg.eigvalsh(u) > 0))


_CACHE: dict[str, object] = {}


def cartnet(**kwargs):
    from ase_cartnet import CartNetADP

    return CartNetADP(temperature=kwargs.pop("temperature", 300.0), **kwargs)


def cu_cif(tmp: Path, temperature: float = 300.0) -> Path:
    from ase_cartnet.io.cif import write_cif

    path = tmp / "cu.cif"
    if not path.exists():
        write_cif(path, bulk("Cu", "fcc", a=3.61), temperature=temperature)
    return path


# == conventions ================================================================================


@case("conventions", "calc.set(temperature=900) resets", "next get_property uses 900 K")
def _(tmp):
    atoms = bulk("Cu", "fcc", a=3.61)
    calc = cartnet()
    atoms.calc = calc
    u300 = calc.get_property("adps", atoms).copy()
    calc.set(temperature=900.0)
    u900 = calc.get_property("adps", atoms)
    assert np.trace(u900[0]) > 1.5 * np.trace(u300[0]), "same result after set(temperature)"


@case("conventions", "calc.set(symmetrize=...) resets", "results cleared, parameter applied")
def _(tmp):
    atoms = bulk("Cu", "fcc", a=3.61)
    calc = cartnet(symmetrize=False)
    atoms.calc = calc
    calc.get_property("adps", atoms)
    changed = calc.set(symmetrize=True)
    assert changed and not calc.results, "results kept after set(symmetrize)"
    assert calc.symmetrize is True or calc.parameters.get("symmetrize") is True


@case("conventions", "pymatgen Structure input", "CartNetADP predicts for a Structure")
def _(tmp):
    try:
        from pymatgen.io.ase import AseAtomsAdaptor
    except ImportError as exc:
        raise Skip("pymatgen not installed") from exc
    structure = AseAtomsAdaptor.get_structure(bulk("Cu", "fcc", a=3.61))
    (u,) = cartnet().predict_many([structure])
    assert is_spd(u)


@case("conventions", "DeepRelax trajectory=Trajectory, attach, irun", "ASE optimizer protocol")
def _(tmp):
    from ase.io.trajectory import Trajectory

    from ase_cartnet import DeepRelax

    atoms = bulk("NaCl", "rocksalt", a=5.8)
    calls = []
    with Trajectory(tmp / "t.traj", "w") as traj:
        opt = DeepRelax(atoms, trajectory=traj, logfile=None)
        opt.attach(lambda: calls.append(1))
        for _ in opt.irun():
            pass
    assert calls, "attached observer never called"


@case("conventions", "EMPNNLattice.run(fmax=...) and a Filter", "accepted like an ASE optimizer")
def _(tmp):
    from ase.filters import FrechetCellFilter

    from ase_cartnet import EMPNNLattice

    atoms = bulk("NaCl", "rocksalt", a=5.8)
    EMPNNLattice(atoms, logfile=None).run(fmax=0.05)
    EMPNNLattice(FrechetCellFilter(atoms), logfile=None).run()


@case("conventions", "relax a.cif -o b.cif", "b.cif is a CIF (ase.io.read reads it)")
def _(tmp):
    from ase.io import read

    src = tmp / "a.cif"
    src.write_bytes(MGAL2SI2.read_bytes())
    done = cli(["relax", src, "-o", tmp / "b.cif"], tmp)
    assert done.returncode == 0, done.stderr[-200:]
    assert (tmp / "b.cif").read_text().startswith("data_"), "not CIF text"
    assert len(read(tmp / "b.cif", format="cif")) == 5


@case("conventions", "relax default output name", "readable by ase.io.read (a .cif name)")
def _(tmp):
    from ase.io import read

    src = tmp / "a.cif"
    src.write_bytes(MGAL2SI2.read_bytes())
    done = cli(["relax", src], tmp)
    assert done.returncode == 0, done.stderr[-200:]
    outputs = [p for p in tmp.iterdir() if p.name != "a.cif"]
    assert outputs, "nothing written"
    for path in outputs:
        read(path)  # guesses the format from the name
    return ", ".join(p.name for p in outputs)


@case("conventions", "phonon-ref phonopy_disp.yaml + FORCE_SETS", "harmonic ADPs from DFT forces")
def _(tmp):
    if not PHONOPY.is_dir():
        raise Skip("shared phonopy examples absent")
    folder = PHONOPY / "MgO"
    done = cli(
        ["phonon-ref", folder / "phonopy_disp.yaml", "--force-sets", folder / "FORCE_SETS",
         "-T", "300", "--mesh", "6", "-o", tmp / "mgo.cif", "--no-progress"],
        tmp,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.strip()[-200:]
    from ase_cartnet.io.cif import read_cif

    u = read_cif(tmp / "mgo.cif").arrays["adps"]
    assert is_spd(u) and 0.002 < u[0, 0, 0] < 0.01, u[0]


@case("conventions", "phonon-ref without --calculator", "not EMT silently: named or required")
def _(tmp):
    sn = tmp / "sn.cif"
    from ase_cartnet.io.cif import write_cif

    write_cif(sn, bulk("Sn", "diamond", a=6.65), temperature=300.0)
    done = cli(
        ["phonon-ref", sn, "--supercell", "1", "1", "1", "--mesh", "2", "--no-progress"], tmp
    )
    if "Traceback" in done.stderr:
        raise AssertionError("traceback: " + done.stderr.strip().splitlines()[-1][:120])
    said = done.stdout + done.stderr
    assert "emt" not in said.lower(), "EMT used"
    assert done.returncode != 0 or "default" in said, "calculator not named"
    return said.strip().splitlines()[0][:120]


@case("conventions", "phonon-ref --compare-with default", "the shipped CartNet is compared")
def _(tmp):
    done = cli(
        ["phonon-ref", cu_cif(tmp), "--calculator", "emt", "--supercell", "2", "2", "2",
         "--mesh", "4", "--compare-with", "default", "--no-progress"],
        tmp,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.strip()[-160:]
    assert "S12" in done.stdout


@case("conventions", "force-constant cache hit", "faster than recomputing; file < 100 kB")
def _(tmp):
    from phonon_ref import PhononReference

    atoms = bulk("Cu", "fcc", a=3.61)
    start = time.perf_counter()
    first = PhononReference(atoms, "emt", cache_dir=tmp / "cache", progress=False)
    miss = time.perf_counter() - start
    start = time.perf_counter()
    again = PhononReference(atoms, "emt", cache_dir=tmp / "cache", progress=False)
    hit = time.perf_counter() - start
    size = first.cache_file.stat().st_size
    assert again.cache_hit
    detail = f"miss {miss:.2f} s, hit {hit:.2f} s, {size / 1e3:.1f} kB"
    assert hit < miss and size < 100e3, detail
    return detail


@case("conventions", "build_dataset([atoms1, atoms2])", "two rows, no ase.db id error")
def _(tmp):
    from phonon_ref import build_dataset

    summary = build_dataset(
        [bulk("Cu", "fcc", a=3.65), bulk("Al", "fcc", a=4.0)],
        calculator="emt",
        temperatures=[300.0],
        supercell=6.0,
        mesh=5,
        out=tmp / "adp.db",
        progress=False,
    )
    assert len(summary.ok) == 2, summary.line()
    return ", ".join(summary.ok)


@case("conventions", "output file mode", "follows the umask (0644 with umask 022)")
def _(tmp):
    from ase_cartnet.io.cif import write_cif

    old = os.umask(0o022)
    try:
        path = write_cif(tmp / "m.cif", bulk("Cu"), temperature=300.0)
    finally:
        os.umask(old)
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o644, oct(mode)


@case("conventions", "dir(ase_cartnet), --version", "public names listed; version printed")
def _(tmp):
    import ase_cartnet

    assert "CartNetADP" in dir(ase_cartnet), "dir() lacks CartNetADP"
    done = cli(["--version"], tmp)
    assert done.returncode == 0 and "ase-cartnet" in done.stdout


# == silent nonsense ============================================================================


@case("nonsense", "every phonon mode skipped (LJ on Cu)", "error, no U = 0 written")
def _(tmp):
    out = tmp / "lj.cif"
    msg = cli_fails_cleanly(
        ["phonon-ref", cu_cif(tmp), "--calculator", "ase.calculators.lj:LennardJones",
         "--supercell", "2", "2", "2", "--mesh", "4", "-o", out, "--no-progress"],
        tmp,
    )  # fmt: skip
    assert not out.exists(), "CIF written"
    return msg


def _shipped_checkpoint(tmp: Path) -> Path:
    import shutil

    src = ROOT / "ase_cartnet" / "weights" / "cartnet_adp_default.pt"
    dst = tmp / src.name  # the card names its weights file: a copy keeps the name and card
    shutil.copy(src, dst)
    card = src.with_suffix(".json")
    if card.exists():
        shutil.copy(card, dst.with_suffix(".json"))
    return dst


@case("nonsense", "checkpoint with 64 bytes flipped", "refused on load (checksum), file named")
def _(tmp):
    path = _shipped_checkpoint(tmp)
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(b ^ 0xFF for b in data[mid : mid + 64])
    path.write_bytes(bytes(data))
    return expect_error(lambda: cartnet(checkpoint=path).predict_many([bulk("Cu")]))


@case("nonsense", "all-NaN checkpoint", "refused on load: non-finite weights")
def _(tmp):
    import torch

    path = _shipped_checkpoint(tmp)
    payload = torch.load(path, weights_only=True, map_location="cpu")

    def poison(obj):
        if isinstance(obj, torch.Tensor) and obj.is_floating_point():
            return torch.full_like(obj, float("nan"))
        if isinstance(obj, dict):
            return {k: poison(v) for k, v in obj.items()}
        return obj

    torch.save(poison(payload), path)
    path.with_suffix(".json").unlink(missing_ok=True)
    return expect_error(lambda: cartnet(checkpoint=path).predict_many([bulk("Cu")]))


@case("nonsense", "checkpoint with cutoff=-1", "refused on load, naming the file")
def _(tmp):
    import torch

    path = _shipped_checkpoint(tmp)
    payload = torch.load(path, weights_only=True, map_location="cpu")
    found = []

    def bad_cutoff(obj):
        if isinstance(obj, dict):
            for key in obj:
                if key == "cutoff":
                    obj[key] = -1.0
                    found.append(key)
                else:
                    bad_cutoff(obj[key])

    bad_cutoff(payload)
    if not found:
        raise Skip("no cutoff field in the checkpoint")
    torch.save(payload, path)
    path.with_suffix(".json").unlink(missing_ok=True)
    return expect_error(lambda: cartnet(checkpoint=path), match=path.name)


for _value, _expect in [
    (True, "error"),
    ("300", "error"),
    (float("nan"), "error"),
    (-5.0, "error"),
    (1e30, "error"),
    (1e300, "error"),
    (1e39, "error (no NaN U)"),
    (1e6, "warning or error"),
    (1e-300, "warning, error or finite U"),
]:

    def _temperature_case(tmp, value=_value, expect=_expect):
        atoms = bulk("Cu", "fcc", a=3.61)
        calc = cartnet()
        if expect.startswith("error"):
            return expect_error(lambda: calc.predict_many([atoms], temperatures=[value]))
        try:
            (u,), messages = warned(lambda: calc.predict_many([atoms], temperatures=[value]))
        except package_error() as exc:
            return f"error: {str(exc)[:100]}"
        if expect.startswith("warning or error"):
            assert messages, "no warning"
            return messages[0][:100]
        assert np.all(np.isfinite(u)), "non-finite U"
        return "finite U" + (f"; warned: {messages[0][:80]}" if messages else "")

    case("nonsense", f"temperature={_value!r}", _expect)(_temperature_case)


@case("nonsense", "isolated atom (no neighbour in the cutoff)", "warning naming the atom")
def _(tmp):
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [10, 10, 10]], cell=[20, 20, 20], pbc=True)
    _, messages = warned(lambda: cartnet().predict_many([atoms]), "neighbour")
    assert messages, "no warning"
    return messages[0][:110]


ALANINE = ROOT / "ase_cartnet" / "data" / "l_alanine_100K.cif"


def _npd_cif(tmp: Path) -> Path:
    """L-alanine with U11 of C1 negative (its ADP not positive definite)."""
    path = tmp / "npd.cif"
    path.write_text(ALANINE.read_text().replace(" C1 0.00854 ", " C1 -0.00854 "))
    return path


@case("nonsense", "CIF whose own ADPs are not positive definite", "warning naming the atom")
def _(tmp):
    from ase_cartnet.io.cif import read_cif

    path = _npd_cif(tmp)
    if "-0.00854" not in path.read_text():
        raise Skip("could not build the NPD CIF")
    _, messages = warned(lambda: read_cif(path), "positive")
    assert messages, "read without a word"
    return messages[0][:110]


@case("nonsense", "CIF with a UTF-8 BOM", "read like the same file without it")
def _(tmp):
    from ase_cartnet.io.cif import read_cif

    path = tmp / "bom.cif"
    path.write_bytes(b"\xef\xbb\xbf" + MGAL2SI2.read_bytes())
    assert len(read_cif(path)) == len(read_cif(MGAL2SI2))


@case("nonsense", "very skewed basis (fcc Cu, 1000 Å vectors)", "accepted, U as the reduced cell")
def _(tmp):
    atoms = bulk("Cu", "fcc", a=3.61)
    cell = np.asarray(atoms.cell[:])
    skew = cell.copy()
    skew[1] = cell[1] + 390 * cell[0]  # same lattice, |b| and |c| ~ 1000 Å
    skew[2] = cell[2] + 400 * cell[0] - 400 * cell[1]
    skewed = Atoms("Cu", cell=skew, positions=[[0, 0, 0]], pbc=True)
    calc = cartnet()
    (u_ref,) = calc.predict_many([atoms])
    (u,) = calc.predict_many([skewed])
    assert np.allclose(u, u_ref, atol=1e-5), f"U differs by {np.abs(u - u_ref).max():.1e} Å²"


def _relax_positions(atoms_list, **kwargs):
    import torch

    from ase_cartnet import DeepRelax

    results = DeepRelax.relax_many(atoms_list, dtype=torch.float64, **kwargs)
    return [r.atoms for r in results]


def _crystals(n: int, seed: int = 0) -> list[Atoms]:
    rng = np.random.default_rng(seed)
    return [rattled_fcc_crystal(k, int(rng.integers(1 << 30))) for k in range(n)]


def _wrapped_diff(a: Atoms, b: Atoms) -> float:
    d = a.get_scaled_positions(wrap=False) - b.get_scaled_positions(wrap=False)
    d -= np.round(d)
    return float(np.abs(d @ a.cell[:]).max())


def _same_relaxed(crystals: list[Atoms], change, back=None, tolerance: float = 1e-3) -> str:
    """DeepRelax of ``crystals`` and of ``change(atoms)`` (a changed copy) of each agree: the
    largest wrapped position difference (Å), after ``back(relaxed_changed, relaxed)`` brings a
    changed result into the frame of its original, is below ``tolerance`` (Å)."""
    worst = 0.0
    for a, b in zip(
        _relax_positions(crystals), _relax_positions([change(x) for x in crystals]), strict=True
    ):
        worst = max(worst, _wrapped_diff(a, b if back is None else back(b, a)))
    assert worst < tolerance, f"max {worst:.1e} Å"
    return f"max {worst:.1e} Å"


@case(
    "nonsense",
    "DeepRelax translation covariance (6 crystals)",
    "positions move by t L⁻¹L̂ (as an ASE cell-filter relaxation), crystal unchanged",
)
def _(tmp):
    # A relaxation with an ASE cell filter deforms the cell about the Cartesian origin, so a
    # translated input relaxes to the same crystal moved by t L⁻¹L̂, not by t (the two differ by
    # t L⁻¹(L̂ − L), 0.1 Å here); DeepRelax's prediction follows the same rule.
    t = np.array([0.37, -0.81, 1.23])
    crystals = _crystals(6)
    shifted = []
    for atoms in crystals:
        moved = atoms.copy()
        moved.positions += t
        shifted.append(moved)
    base = _relax_positions(crystals)
    moved = _relax_positions(shifted)
    worst = from_t = 0.0
    for atoms, a, b in zip(crystals, base, moved, strict=True):
        shift = t @ np.linalg.solve(atoms.cell[:], a.cell[:])
        worst = max(worst, float(np.abs(b.positions - a.positions - shift).max()))
        worst = max(worst, float(np.abs(b.cell[:] - a.cell[:]).max()))
        from_t = max(from_t, float(np.abs(b.positions - a.positions - t).max()))
    assert worst < 1e-6, f"max {worst:.1e} Å"
    return f"max {worst:.1e} Å (by t itself: {from_t:.3f} Å)"


@case("nonsense", "DeepRelax periodic image of one atom", "same relaxed structure")
def _(tmp):
    def imaged(atoms: Atoms) -> Atoms:
        moved = atoms.copy()
        moved.positions[0] += atoms.cell[0]
        return moved

    return _same_relaxed(_crystals(4, seed=1), imaged)


@case("nonsense", "DeepRelax equivalent cell basis", "same relaxed structure (1e-6 Å)")
def _(tmp):
    def rebased(atoms: Atoms) -> Atoms:
        cell = np.asarray(atoms.cell[:])
        new = cell.copy()
        new[1] = cell[1] + cell[0]
        changed = atoms.copy()
        changed.set_cell(new, scale_atoms=False)
        changed.wrap()
        return changed

    def in_basis_of(b: Atoms, a: Atoms) -> Atoms:  # compare in one basis (cells should agree)
        b = b.copy()
        b.set_cell(a.cell, scale_atoms=False)
        return b

    return _same_relaxed(_crystals(4, seed=2), rebased, back=in_basis_of, tolerance=1e-6)


@case("nonsense", "relax_many batch independence", "batch_size 16 = one at a time (1e-4 Å)")
def _(tmp):
    crystals = _crystals(8, seed=3)
    together = _relax_positions(crystals, batch_size=16)
    alone = [_relax_positions([a])[0] for a in crystals]
    worst = max(_wrapped_diff(a, b) for a, b in zip(together, alone, strict=True))
    assert worst < 1e-4, f"max {worst:.2e} Å"
    return f"max {worst:.1e} Å"


# == files and databases ========================================================================


@case("files", "-o names a FIFO", "refused, FIFO kept")
def _(tmp):
    fifo = tmp / "pipe.cif"
    os.mkfifo(fifo)
    msg = cli_fails_cleanly(["relax", MGAL2SI2, "-o", fifo], tmp)
    assert fifo.is_fifo(), "FIFO replaced"
    return msg


@case("files", "-o names a symbolic link", "refused or written through; link kept")
def _(tmp):
    target = tmp / "target.cif"
    target.write_text("keep")
    link = tmp / "link.cif"
    link.symlink_to(target)
    done = cli(["relax", MGAL2SI2, "-o", link], tmp)
    assert "Traceback" not in done.stderr
    assert link.is_symlink(), "link replaced by a regular file"
    return f"exit {done.returncode}"


_WRITER = """
import sys, time
sys.path.insert(0, {root!r})
from ase_cartnet.io.atomic import atomic_write
path = sys.argv[1]
k = 0
while True:
    k += 1
    with atomic_write(path) as handle:
        for line in range(20000):
            handle.write(f"{{k}} {{line}} " + "x" * 60 + "\\n")
        handle.write("END\\n")
"""


def _kill_writes(tmp: Path, n: int = 20) -> tuple[int, int]:
    """(complete outputs after each kill, leftover temporary files at the end)."""
    script = tmp / "writer.py"
    script.write_text(_WRITER.format(root=str(ROOT)))
    out = tmp / "out.txt"
    out.write_text("OLD\nEND\n")
    rng = np.random.default_rng(0)
    complete = 0
    for _ in range(n):
        proc = subprocess.Popen([sys.executable, str(script), str(out)])
        time.sleep(0.4 + float(rng.uniform(0, 0.6)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        text = out.read_text()
        complete += text.endswith("END\n")
    # one clean write afterwards: stale temporary files of killed writers should be gone
    from ase_cartnet.io.atomic import atomic_write

    with atomic_write(out) as handle:
        handle.write("FINAL\n")
    leftovers = [p for p in tmp.iterdir() if p.name.startswith(".out.txt")]
    return complete, len(leftovers)


_KILLS: dict[str, tuple[int, int]] = {}


@case("files", "20 SIGKILLs during atomic writes", "output always old or new, complete")
def _(tmp):
    _KILLS["result"] = _kill_writes(tmp)
    complete, _ = _KILLS["result"]
    assert complete == 20, f"{complete}/20 complete"
    return f"{complete}/20 complete"


@case("files", "no stale *.tmp after killed writes", "cleaned by the next write")
def _(tmp):
    if "result" not in _KILLS:
        raise Skip("kill case did not run")
    _, leftovers = _KILLS["result"]
    assert leftovers == 0, f"{leftovers} temporary files left"


_BUILDER = """
import sys
sys.path.insert(0, {root!r})
from ase.build import bulk
from phonon_ref import build_dataset
structures = {{}}
metals = (("Cu", 3.65), ("Al", 4.0), ("Ni", 3.55), ("Pd", 3.95), ("Ag", 4.15), ("Au", 4.12))
for symbol, a in metals:
    structures[symbol + "-fcc"] = bulk(symbol, "fcc", a=a)
build_dataset(structures, calculator="emt", temperatures=[300.0], supercell=7.0, mesh=5,
              out=sys.argv[1], progress=False)
"""


def _builder(tmp: Path) -> tuple[list, dict[str, str]]:
    """The command that builds the six-row EMT dataset of ``_BUILDER`` into the database named
    after it, and its environment (one OpenMP thread)."""
    script = tmp / "build.py"
    script.write_text(_BUILDER.format(root=str(ROOT)))
    return [sys.executable, script], {**os.environ, "OMP_NUM_THREADS": "1"}


def _rows(path: Path) -> dict[str, list]:
    from ase.db import connect

    out: dict[str, list] = {}
    with connect(path) as db:
        for row in db.select():
            out.setdefault(row.source_id, []).append(row)
    return out


@case("files", "dataset builder SIGKILL and resume", "every row once, equal to a clean run")
def _(tmp):
    build, env = _builder(tmp)
    clean = tmp / "clean.db"
    subprocess.run([*build, clean], env=env, check=True, timeout=600)
    killed = tmp / "killed.db"
    proc = subprocess.Popen([*build, killed], env=env)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill after the first row
        time.sleep(0.2)
        if killed.exists():
            try:
                if len(_rows(killed)) >= 1:
                    break
            except Exception:
                continue
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = len(_rows(killed))
    subprocess.run([*build, killed], env=env, check=True, timeout=600)
    a, b = _rows(clean), _rows(killed)
    assert set(a) == set(b) and all(len(v) == 1 for v in b.values()), {
        k: len(v) for k, v in b.items()
    }
    for key in a:
        ua, ub = a[key][0].data.get("adps"), b[key][0].data.get("adps")
        assert ua is None and ub is None or np.allclose(ua, ub, atol=1e-10), key
    return f"killed after {partial} of {len(a)} rows; resumed to {len(b)}"


@case("files", "two builders on one database", "each structure stored once")
def _(tmp):
    build, env = _builder(tmp)
    out = tmp / "shared.db"
    procs = [subprocess.Popen([*build, out], env=env) for _ in range(2)]
    for proc in procs:
        proc.wait(timeout=600)
    rows = _rows(out)
    total = sum(len(v) for v in rows.values())
    assert total == len(rows) == 6, f"{total} rows for {len(rows)} structures"


# == command line: failures must be one line =====================================================


@case("cli", "--threads 0", "one-line error naming --threads")
def _(tmp):
    return cli_fails_cleanly(["predict", MGAL2SI2, "--threads", "0"], tmp, match="--threads")


@case("cli", "output in a read-only folder", "refused before computing")
def _(tmp):
    folder = tmp / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            raise Skip("root writes into read-only folders")
        return cli_fails_cleanly(["predict", MGAL2SI2, "-T", "300", "-o", folder / "x.cif"], tmp)
    finally:
        folder.chmod(0o755)


@case("cli", "output below a regular file", "refused before computing")
def _(tmp):
    blocker = tmp / "file"
    blocker.write_text("x")
    return cli_fails_cleanly(["predict", MGAL2SI2, "-T", "300", "-o", blocker / "x.cif"], tmp)


for _argv in (
    ["predict", "IN", "-T", "300", "-o", "DIR"],
    ["predict", "IN", "-T", "300", "--plot", "DIR"],
    ["relax", "IN", "-o", "DIR"],
    ["phonon-ref", "IN", "--calculator", "emt", "-T", "300", "-o", "DIR"],
):

    def _dir_case(tmp, argv=_argv):
        folder = tmp / "folder"
        folder.mkdir()
        argv = [MGAL2SI2 if a == "IN" else folder if a == "DIR" else a for a in argv]
        msg = cli_fails_cleanly(argv, tmp)
        assert not list(folder.iterdir()), "wrote into the folder"
        return msg

    _flag = _argv[-2]
    case("cli", f"{_argv[0]} {_flag} <folder>", "one-line error, nothing computed")(_dir_case)


@case("cli", "relax --format nonsense", "one-line error")
def _(tmp):
    return cli_fails_cleanly(["relax", MGAL2SI2, "--format", "nonsense"], tmp, match="nonsense")


@case("cli", "phonon-dataset missing CSV", "one-line error naming the file")
def _(tmp):
    return cli_fails_cleanly(["phonon-dataset", "missing.csv", "--calculator", "emt"], tmp)


@case("cli", "phonon-dataset CSV without a cif column", "one-line error naming the column")
def _(tmp):
    (tmp / "x.csv").write_text("material_id,structure\nmp-1,abc\n")
    return cli_fails_cleanly(
        ["phonon-dataset", "x.csv", "-o", "x.db", "--calculator", "emt"], tmp, match="cif"
    )


@case("cli", "phonon-dataset one unreadable CIF row", "a failed row; the others computed")
def _(tmp):
    import pandas as pd

    rows = [
        {"material_id": "mp-good", "cif": cif_of(bulk("Cu", "fcc", a=3.65))},
        {"material_id": "mp-bad", "cif": "data_x\n_cell_length_a 3\nloop_\n_foo\n"},
    ]
    pd.DataFrame(rows).to_csv(tmp / "mixed.csv", index=False)
    done = cli(
        ["phonon-dataset", "mixed.csv", "-o", "adp.db", "--calculator", "emt", "-T", "300",
         "--supercell-length", "6", "--mesh-length", "20", "--no-progress"],
        tmp,
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr.strip().splitlines()[-1][:120]
    rows = _rows(tmp / "adp.db")
    status = {k: v[0].status for k, v in rows.items()}
    assert status == {"mp-good": "ok", "mp-bad": "failed"}, status


@case("cli", "phonon-dataset -T -5", "one-line error naming -T")
def _(tmp):
    (tmp / "x.csv").write_text("material_id,cif\n")
    return cli_fails_cleanly(["phonon-dataset", "x.csv", "-T", "-5", "--calculator", "emt"], tmp)


@case("cli", "phonon-ref --mesh abc", "argparse error naming --mesh")
def _(tmp):
    return cli_fails_cleanly(
        ["phonon-ref", cu_cif(tmp), "--calculator", "emt", "--mesh", "abc"], tmp, match="--mesh"
    )


@case("cli", "phonon-ref EMT on Sn", "one-line error naming the calculator")
def _(tmp):
    from ase_cartnet.io.cif import write_cif

    write_cif(tmp / "sn.cif", bulk("Sn", "diamond", a=6.65), temperature=300.0)
    return cli_fails_cleanly(
        ["phonon-ref", "sn.cif", "--calculator", "emt", "--supercell", "1", "1", "1",
         "--mesh", "2", "--no-progress"],
        tmp,
    )  # fmt: skip


@case("cli", "a genuine bug is not hidden", "traceback for a plain ValueError")
def _(tmp):
    import ase_cartnet.cli.property as prop
    from ase_cartnet.cli import main

    original = prop._run

    def bug(args):
        raise ValueError("an internal bug")

    prop._run = bug
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            try:
                main(["property", "x.cif"])
            except ValueError:
                return "propagated"
    finally:
        prop._run = original
    raise AssertionError("hidden as a one-line error")


# == batches ====================================================================================


def _flat() -> Atoms:
    return Atoms("Cu", positions=[[0, 0, 0]], cell=np.zeros((3, 3)), pbc=True)


@case("batches", "predict_many, one bad structure", "skip keeps the others; raise names index 1")
def _(tmp):
    calc = cartnet()
    msg = expect_error(lambda: calc.predict_many([bulk("Al"), _flat(), bulk("Ni")]), match="1")
    out, messages = warned(
        lambda: calc.predict_many([bulk("Al"), _flat(), bulk("Ni")], errors="skip"), "skipped"
    )
    assert out[1] is None and is_spd(out[0]) and is_spd(out[2]) and messages
    return msg[:80]


@case("batches", "relax_many, one bad structure", "skip keeps the others; raise names index 1")
def _(tmp):
    from ase_cartnet import DeepRelax

    good = bulk("NaCl", "rocksalt", a=5.7)
    msg = expect_error(lambda: DeepRelax.relax_many([good, _flat(), good]), match="1")
    out, messages = warned(lambda: DeepRelax.relax_many([good, _flat(), good], errors="skip"))
    assert out[1] is None and out[0] is not None and out[2] is not None
    return msg[:80]


@case("batches", "property a.cif bad.cif c.cif", "good files printed, bad named")
def _(tmp):
    from ase.io import write

    write(tmp / "a.cif", bulk("Cu", "fcc", a=3.61))
    write(tmp / "c.cif", bulk("Al", "fcc", a=4.05))
    (tmp / "bad.cif").write_text("not a cif\n")
    done = cli(["property", "a.cif", "bad.cif", "c.cif"], tmp)
    assert "Traceback" not in done.stderr
    assert "a.cif" in done.stdout and "c.cif" in done.stdout, done.stdout[-200:]
    assert "bad.cif" in done.stderr
    return f"exit {done.returncode}"


# == malformed CIFs ===============================================================================

_GOOD = MGAL2SI2.read_text()
_ALA = (ROOT / "ase_cartnet" / "data" / "l_alanine_100K.cif").read_text()
_MALFORMED = {
    "empty file": "",
    "binary junk": "\x00\x01\x02garbage\xff",
    "no data_ header": _GOOD.split("\n", 1)[1],
    "truncated in half": _GOOD[: len(_GOOD) // 2],
    "no cell": "\n".join(l for l in _GOOD.splitlines() if not l.startswith("_cell_length")),
    "zero cell length": _GOOD.replace("_cell_length_a", "_cell_length_a 0.0\n_x_old_a", 1),
    "negative cell length": _GOOD.replace("_cell_length_a", "_cell_length_a -4.0\n_x_old_a", 1),
    "cell angle 180": _GOOD.replace("_cell_angle_gamma", "_cell_angle_gamma 180\n_x_g", 1),
    "no atom sites": _GOOD.split("loop_")[0],
    "unknown element": _GOOD.replace(" Mg ", " Xx ").replace("Mg1 Mg", "Xx1 Xx"),
    "NaN coordinate": _GOOD.replace("0.33333", "nan", 1),
    "unclosed quote": _GOOD.replace("data_", "data_x\n_title 'unclosed\n", 1),
    "CRLF line ends": _GOOD.replace("\n", "\r\n"),
    "UTF-8 BOM": "\ufeff" + _GOOD,
    "non-numeric ADP": _ALA.replace(" C1 0.00854 ", " C1 abc "),
    "ADP row of an unknown label": _ALA.replace(" C1 0.00854 ", " Zz9 0.00854 "),
    "two data blocks": _GOOD + "\n" + _GOOD.replace("data_", "data_second_", 1),
    "no temperature": _GOOD.replace("_diffrn_ambient_temperature", "_x_temperature"),
}


for _name, _text in _MALFORMED.items():

    def _cif_case(tmp, text=_text, name=_name):
        from ase_cartnet.io.cif import read_cif

        path = tmp / "m.cif"
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
        try:
            atoms = read_cif(path)
        except package_error() as exc:
            assert "m.cif" in str(exc), f"error does not name the file: {str(exc)[:80]}"
            return f"refused: {str(exc)[:90]}"
        except Exception as exc:
            raise AssertionError(f"{type(exc).__name__}: {str(exc)[:120]}") from exc
        try:
            (u,) = cartnet().predict_many([atoms], temperatures=[300.0])
        except package_error() as exc:
            return f"read; prediction refused: {str(exc)[:80]}"
        assert is_spd(u), "non-SPD U"
        return f"read, {len(atoms)} atoms, U SPD"

    case("malformed CIF", _name, "read, or an error naming the file")(_cif_case)


# == fuzzed structures ============================================================================

FUZZ = {"cartnet": 60, "other": 20}


def _random_structures(n: int, seed: int) -> list[Atoms]:
    from ase.geometry import cellpar_to_cell

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        count = int(rng.integers(1, 9))
        lengths = rng.uniform(2.5, 9.0, 3)
        angles = rng.uniform(60, 120, 3)
        try:
            cell = cellpar_to_cell([*lengths, *angles])
        except Exception:
            cell = np.diag(lengths)
        numbers = rng.integers(1, 84, count)
        atoms = Atoms(numbers=numbers, cell=cell, pbc=True)
        atoms.set_scaled_positions(rng.random((count, 3)))
        out.append(atoms)
    return out


def _fuzz(predict, n: int, seed: int, check) -> str:
    """Every structure: a clean package error, or an output passing ``check``."""
    ok = refused = 0
    bad: list[str] = []
    for k, atoms in enumerate(_random_structures(n, seed)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = predict(atoms)
        except package_error():
            refused += 1
            continue
        except Exception as exc:
            bad.append(f"#{k} {type(exc).__name__}: {str(exc)[:60]}")
            continue
        problem = check(atoms, out)
        if problem:
            bad.append(f"#{k} {problem}")
        else:
            ok += 1
    detail = f"{ok} ok, {refused} refused cleanly, {len(bad)} bad"
    assert not bad, detail + "; " + "; ".join(bad[:3])
    return detail


@case(
    "fuzz",
    "CartNet on random crystals",
    "finite SPD U (or NaN H rows a warning names), permutation and translation exact",
)
def _(tmp):
    calc = cartnet()

    def predict(atoms):
        from ase_cartnet.errors import MissingADPWarning

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            (u,) = calc.predict_many([atoms])
        named = any(issubclass(w.category, MissingADPWarning) for w in caught)
        perm = np.random.default_rng(len(atoms)).permutation(len(atoms))
        (u_perm,) = calc.predict_many([atoms[perm]])
        moved = atoms.copy()
        moved.positions += [0.3, -0.7, 1.1]
        (u_move,) = calc.predict_many([moved])
        return u, u_perm[np.argsort(perm)], u_move, named

    def check(atoms, out):
        u, u_perm, u_move, named = out
        unknown = np.isnan(u).all(axis=(1, 2))
        # only H without a parent may be left without a U, and only when a warning named them
        if unknown.any() and not (named and np.all(atoms.numbers[unknown] == 1)):
            return "non-finite U not announced"
        if not is_spd(u[~unknown]):
            return "non-finite or non-SPD U"
        if not np.allclose(u, u_perm, atol=1e-5, equal_nan=True):
            return "not permutation covariant"
        if not np.allclose(u, u_move, atol=1e-5, equal_nan=True):
            return "not translation invariant"
        return None

    return _fuzz(predict, FUZZ["cartnet"], 1, check)


@case("fuzz", "DeepRelax on random crystals", "finite positions and cell, or a clean refusal")
def _(tmp):
    from ase_cartnet import DeepRelax

    def predict(atoms):
        return DeepRelax.relax_many([atoms])[0]

    def check(atoms, result):
        a = result.atoms
        good = np.all(np.isfinite(a.positions)) and np.all(np.isfinite(a.cell[:]))
        return None if good and abs(a.get_volume()) > 1e-3 else "non-finite or flat output"

    return _fuzz(predict, FUZZ["other"], 2, check)


@case("fuzz", "EMPNN on random crystals", "finite cell, fractional coordinates kept")
def _(tmp):
    from ase_cartnet import EMPNNLattice

    def predict(atoms):
        moved = atoms.copy()
        EMPNNLattice(moved, logfile=None).run()
        return moved

    def check(atoms, out):
        if not np.all(np.isfinite(out.cell[:])) or abs(out.get_volume()) < 1e-3:
            return "non-finite or flat cell"
        d = out.get_scaled_positions(wrap=False) - atoms.get_scaled_positions(wrap=False)
        return None if np.allclose(d - np.round(d), 0, atol=1e-6) else "fractional coords moved"

    return _fuzz(predict, FUZZ["other"], 3, check)


@case("fuzz", "CrysToGraph property on random crystals", "finite, permutation invariant")
def _(tmp):
    from ase_cartnet import CrysToGraphProperty

    calc = CrysToGraphProperty()

    def predict(atoms):
        perm = np.random.default_rng(len(atoms)).permutation(len(atoms))
        return calc.predict_many([atoms, atoms[perm]])

    def check(atoms, values):
        if not np.all(np.isfinite(values)):
            return "non-finite"
        return None if abs(values[0] - values[1]) < 1e-4 else "not permutation invariant"

    return _fuzz(predict, FUZZ["other"], 4, check)


# == runner =======================================================================================


def run(only: set[str] | None) -> list[Row]:
    rows = []
    for category, name, expected, fn in CASES:
        if only and category.split()[0] not in only:
            continue
        row = Row(category, name, expected)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="robust-") as tmp:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    detail = fn(Path(tmp))
                row.result, row.detail = "pass", str(detail or "")
            except Skip as exc:
                row.result, row.detail = "skip", str(exc)
            except BaseException as exc:  # a failing case is a row, never a crash
                if isinstance(exc, KeyboardInterrupt):
                    raise
                last = traceback.format_exception_only(type(exc), exc)[-1].strip()
                row.detail = last[:200]
        row.seconds = time.perf_counter() - start
        rows.append(row)
        print(f"{row.result:>4}  {category:<14} {name[:55]:<55} {row.seconds:6.1f} s", flush=True)
    return rows


def markdown(rows: list[Row]) -> str:
    head = "| category | case | expected | result | detail |\n|---|---|---|---|---|\n"
    body = "".join(
        f"| {r.category} | {r.case} | {r.expected} | {r.result} | "
        f"{r.detail.replace('|', '/').replace(chr(10), ' ')[:140]} |\n"
        for r in rows
    )
    return head + body


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated categories (conventions, nonsense, "
                        "files, cli, batches, malformed, fuzz)")  # fmt: skip
    parser.add_argument("--fuzz", type=int, default=None, help="structures per fuzzed model")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results_robustness.json")))
    args = parser.parse_args(argv)
    if args.fuzz:
        FUZZ["cartnet"] = FUZZ["other"] = args.fuzz
    only = set(args.only.split(",")) if args.only else None
    start = time.perf_counter()
    rows = run(only)
    counted = [r for r in rows if r.result != "skip"]
    passed = sum(r.result == "pass" for r in counted)
    table = markdown(rows)
    print()
    print(table)
    summary = f"{passed}/{len(counted)} passed ({len(rows) - len(counted)} skipped)"
    print(summary)
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    Path(args.out).write_text(
        json.dumps(
            {
                "summary": summary,
                "passed": passed,
                "counted": len(counted),
                "commit": commit or None,
                "seconds": round(time.perf_counter() - start, 1),
                "fuzz": FUZZ,
                "rows": [r.__dict__ for r in rows],
                "markdown": table,
            },
            indent=1,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
