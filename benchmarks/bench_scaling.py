"""Scale and speed of CartNet inference: symmetrisation, the forward pass, memory and time
against the number of atoms and edges. Every ratio is against a baseline run in the same
process (or, for peak memory, a fresh process per point); times are medians.

Sections (``--sections``, default symmetry, forward and scaling):

* ``symmetry``: ``CartNetADP(symmetrize=True)`` against a plain prediction on Si supercells,
  and the former ASE ``prep_symmetry`` average on the same structures.
* ``forward``: the direct concatenation form (``ase_cartnet.benchmarking.reference``), the
  layer-by-layer split/fused form (autograd-free), and the blocked in-place inference path on a
  180-atom molecular cell (optionally ``compile=True``).
* ``scaling``: one fresh process per (path, size): wall time and peak RSS of graph + prediction
  for molecular crystals of growing size, the layer-by-layer path against the blocked one;
  a log-log plot (``--plot``).
* ``screening``: ``CartNetADP.predict_many`` on MP-20 test structures, structures per second.
* ``threads``: torch's intra-op threads (1 against every core) for one prediction of the default
  model on NaCl supercells of growing size and for screening MP-20 structures in one process:
  the measurement behind the thread defaults.
* ``deeprelax``: the shipped DeepRelax ensemble on NaCl supercells (4³ × 8 = 512 atoms, …),
  displacement heads in one pass against blocks, time and peak RSS in fresh processes.
* ``pe``: CrysToGraph's positional encodings (Laplacian eigenvectors, random-walk returns),
  the dense computations against the sparse ones, on NaCl supercells.

    python benchmarks/bench_scaling.py --sections symmetry forward --repeats 5
    python benchmarks/bench_scaling.py --sections scaling --sizes 180 1440 4860 11520 \\
        --plot docs/scaling.png
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ase_cartnet.benchmarking import interleaved_times, molecular_crystal
from ase_cartnet.benchmarking.reference import dense_random_walk, forward_variants, layer_by_layer
from ase_cartnet.graph.neighbours import atoms_to_graph
from ase_cartnet.models.cartnet import CartNet, CartNetConfig

ROOT = Path(__file__).resolve().parents[1]


def run_worker(args: list[str], threads: int, what: str) -> dict | None:
    """Run this file again with ``args`` in a fresh process (from ``ROOT``; as a module when it
    was started with ``python -m``, so that the worker imports the same copy of the package) and
    return the JSON line it prints last; None, after saying so, when ``what`` failed."""
    script = ["-m", __spec__.name] if __spec__ is not None else [__file__]
    env = {"OMP_NUM_THREADS": str(threads), "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, *script, *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        print(f"{what} failed: {done.stderr[-300:]}", flush=True)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_workers(
    points: list[tuple[list[str], str]], threads: int, line: Callable[[dict], str]
) -> list[dict]:
    """The rows of :func:`run_worker` for every ``(args, what)`` of ``points``, in order, each
    printed as ``line(row)`` when it comes; a failed point is named and left out."""
    rows = []
    for args, what in points:
        row = run_worker(args, threads, what)
        if row is not None:
            rows.append(row)
            print(line(row), flush=True)
    return rows


def interleaved_medians(functions: dict[str, Callable[[], object]], repeats: int) -> dict:
    """(median, min, max) wall time (s) of each function over ``repeats`` interleaved runs."""
    times = interleaved_times(functions, repeats)
    return {name: (statistics.median(v), min(v), max(v)) for name, v in times.items()}


def section_symmetry(repeats: int) -> list[dict]:
    from ase.build import bulk
    from ase.spacegroup.symmetrize import prep_symmetry

    from ase_cartnet.calculators.cartnet_adp import CartNetADP

    plain = CartNetADP(temperature=300.0)
    sym = CartNetADP(temperature=300.0, symmetrize=True)

    def predict(calc, atoms):
        calc.reset()
        return calc.get_property("adps", atoms.copy())

    rows = []
    for rep in (1, 2, 3, 4):
        atoms = bulk("Si", "diamond", a=5.43, cubic=True) * (rep, rep, rep)
        times = interleaved_medians(
            {"plain": lambda a=atoms: predict(plain, a), "sym": lambda a=atoms: predict(sym, a)},
            repeats,
        )
        row = {"atoms": len(atoms), "plain_s": times["plain"][0], "sym_s": times["sym"][0]}
        if len(atoms) <= 216:  # the former quadratic mapping, once (8 s at 216 atoms)
            start = time.perf_counter()
            prep_symmetry(atoms, symprec=1e-3)
            row["prep_symmetry_s"] = time.perf_counter() - start
        rows.append(row)
        old = row.get("prep_symmetry_s")
        old_ratio = f"{(row['plain_s'] + old) / row['plain_s']:8.1f}x" if old else "       -"
        print(
            f"{len(atoms):>6} atoms  plain {row['plain_s'] * 1e3:8.1f} ms  symmetrize=True "
            f"{row['sym_s'] * 1e3:8.1f} ms  ratio {row['sym_s'] / row['plain_s']:5.2f}x  "
            f"(with the former prep_symmetry: {old_ratio})",
            flush=True,
        )
    return rows


def section_forward(repeats: int, compile_model: bool) -> dict:
    torch.manual_seed(0)
    atoms = molecular_crystal(20)  # 180 atoms
    config = CartNetConfig()
    model = CartNet(config).eval()
    state = model.state_dict()
    g = atoms_to_graph(atoms, config.cutoff)
    g.temperature = torch.tensor([150.0])
    heavy = g.numbers != 1
    variants = forward_variants(model, g, heavy)
    if compile_model:
        from ase_cartnet.models.cartnet import compile_blocks

        compiled = CartNet(config).eval()
        compiled.load_state_dict(state)
        start = time.perf_counter()
        compile_blocks(compiled)
        with torch.inference_mode():
            compiled(g, output_mask=heavy)
        print(f"compile=True: first call {time.perf_counter() - start:.1f} s", flush=True)
        variants["blocked_compiled"] = lambda: compiled(g, output_mask=heavy)
    with torch.inference_mode():
        ref = variants["direct"]()
        for name, function in variants.items():
            diff = (function() - ref).abs().max().item()
            print(f"max |U_{name} - U_direct| = {diff:.1e} Å²", flush=True)
        times = interleaved_medians(variants, repeats)
    base = times["direct"][0]
    print(
        f"{len(atoms)} atoms, {g.edge_index.shape[1]} edges, {torch.get_num_threads()} thread(s), "
        f"median of {repeats} (min-max)"
    )
    for name, (median, low, high) in times.items():
        print(
            f"  {name:<18}{median * 1e3:9.1f} ms ({low * 1e3:.1f}-{high * 1e3:.1f})  "
            f"speed-up vs direct {base / median:5.2f}x (range {base / high:.2f}-{base / low:.2f})"
        )
    return {k: v[0] for k, v in times.items()}


def section_positional_encodings(sizes: list[int]) -> list[dict]:
    """CrysToGraph's positional encodings (k-NN, 8 Laplacian + 16 random-walk columns) of NaCl
    supercells: the dense eigendecomposition and dense walk powers against the sparse paths."""
    from ase.build import bulk

    from ase_cartnet.graph import crystograph as cg
    from ase_cartnet.graph.neighbours import knn_graph

    rows = []
    for n_target in sizes:
        rep = max(1, round((n_target / 8) ** (1 / 3)))
        atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True) * (rep, rep, rep)
        atoms.rattle(0.05, seed=0)  # lift the degeneracies, so both paths agree column-wise
        edges = knn_graph(atoms.positions, atoms.cell[:], atoms.pbc, 12).edge_index
        n = len(atoms)
        timings = {}
        start = time.perf_counter()
        dense_lap = np.linalg.eigh(cg._dense_laplacian(edges, n))
        timings["laplacian_dense"] = time.perf_counter() - start
        start = time.perf_counter()
        sparse_lap = cg._smallest_eigenpairs(edges, n, 8, "signed")
        timings["laplacian_sparse"] = time.perf_counter() - start
        start = time.perf_counter()
        dense_rw = dense_random_walk(edges, n, 16)
        timings["walk_dense"] = time.perf_counter() - start
        start = time.perf_counter()
        sparse_rw = cg.random_walk_pe(edges, n, 16)
        timings["walk_sparse"] = time.perf_counter() - start
        eig_diff = float(np.abs(dense_lap[0][:9] - sparse_lap[0][:9]).max())
        rw_diff = float(np.abs(dense_rw - sparse_rw).max())
        rows.append({"atoms": n, **timings, "eigenvalue_diff": eig_diff, "walk_diff": rw_diff})
        print(
            f"{n:>6} atoms  Laplacian dense {timings['laplacian_dense']:7.2f} s, sparse "
            f"{timings['laplacian_sparse']:6.2f} s (max |Δλ| {eig_diff:.1e});  random walk dense "
            f"{timings['walk_dense']:7.2f} s, sparse {timings['walk_sparse']:6.2f} s "
            f"(max |Δ| {rw_diff:.1e})",
            flush=True,
        )
    return rows


def section_screening(csv_path: Path, count: int, repeats: int) -> dict:
    """``predict_many`` on ``count`` MP-20 structures (default weights, 300 K): the former
    batching (fixed slices in input order) against size-sorted batches and against two worker
    processes (``executor=``), structures per second."""
    import warnings

    from ase_cartnet.calculators.cartnet_adp import CartNetADP
    from ase_cartnet.io.datasets import read_mp20

    warnings.simplefilter("ignore")  # untrained-element warnings
    structures = read_mp20(csv_path, limit=count)
    calc = CartNetADP(temperature=300.0)

    def input_order(batch_size: int) -> None:
        for start in range(0, len(structures), batch_size):
            calc.predict_many(structures[start : start + batch_size], batch_size=batch_size)

    # two worker processes (one thread each), started and warmed once: each keeps its calculator
    pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    calc.predict_many(structures[:64], batch_size=16, executor=pool)
    variants = {
        "input order, batch 1": lambda: input_order(1),
        "input order, batch 16": lambda: input_order(16),
        "size-sorted, batch 16": lambda: calc.predict_many(structures, batch_size=16),
        "size-sorted, batch 64": lambda: calc.predict_many(structures, batch_size=64),
        "2 processes, batch 16": lambda: calc.predict_many(
            structures, batch_size=16, executor=pool
        ),
    }
    times = interleaved_medians(variants, repeats)
    pool.shutdown()
    base = len(structures) / times["input order, batch 16"][0]
    out = {}
    for name, (median, _, _) in times.items():
        rate = len(structures) / median
        out[name] = rate
        print(f"  {name:<24}{rate:8.1f} structures/s  ({rate / base:4.2f}x input order, 16)")
    return out


def section_threads(csv_path: Path, count: int, repeats: int) -> dict:
    """Wall time of the default model at 1 intra-op thread and at every core, interleaved in this
    process: one prediction (300 K) of NaCl supercells of 216, 1,728 and 4,096 atoms, and
    ``predict_many`` on ``count`` MP-20 structures (batches of 16)."""
    import os
    import warnings

    from ase.build import bulk

    from ase_cartnet.calculators.cartnet_adp import CartNetADP
    from ase_cartnet.io.datasets import read_mp20

    warnings.simplefilter("ignore")
    cores = os.cpu_count() or 1
    calc = CartNetADP(temperature=300.0)
    nacl = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    workloads = {f"NaCl, {8 * m**3} atoms": [nacl * (m, m, m)] for m in (3, 6, 8)}
    workloads[f"{count} MP-20 structures"] = read_mp20(csv_path, limit=count)

    def at(threads: int, structures: list) -> Callable[[], object]:
        def run() -> object:
            torch.set_num_threads(threads)
            return calc.predict_many(structures, batch_size=16)

        return run

    before = torch.get_num_threads()
    out = {}
    for name, structures in workloads.items():
        at(cores, structures)()  # warm-up
        times = interleaved_medians(
            {"1": at(1, structures), str(cores): at(cores, structures)}, repeats
        )
        one, every = times["1"][0], times[str(cores)][0]
        out[name] = {"1_thread_s": one, f"{cores}_threads_s": every, "speed_up": one / every}
        print(
            f"  {name:<24} 1 thread {one:8.3f} s   {cores} threads {every:8.3f} s   "
            f"({one / every:4.2f}x)",
            flush=True,
        )
    torch.set_num_threads(before)
    return out


def deeprelax_worker(mode: str, repeats: int) -> None:
    """One DeepRelax point in a fresh process: the shipped ensemble's ``predict`` on a rattled
    NaCl supercell; ``mode`` "one_pass" puts every displacement edge in one block (as before)."""
    import warnings

    from ase.build import bulk

    from ase_cartnet.calculators.deeprelax import load_deeprelax, predict
    from ase_cartnet.models import deeprelax

    warnings.simplefilter("ignore")
    if mode == "one_pass":
        deeprelax.PAIR_CHUNK = 2**62
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True) * (repeats, repeats, repeats)
    atoms.rattle(0.05, seed=0)
    ensemble = load_deeprelax(None)[0]
    start = time.perf_counter()
    predict(ensemble, [atoms])
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"mode": mode, "atoms": len(atoms), "seconds": seconds, "peak": peak}))


def section_deeprelax(repeats_list: list[int], threads: int) -> list[dict]:
    points = [
        (["--deeprelax-worker", mode, str(repeats)], f"DeepRelax {mode} x{repeats}")
        for repeats in repeats_list
        for mode in ("one_pass", "blocked")
    ]
    return run_workers(
        points,
        threads,
        lambda row: (
            f"DeepRelax {row['mode']:<9}{row['atoms']:>6} atoms  {row['seconds']:8.2f} s  "
            f"peak RSS {row['peak'] / 2**30:6.2f} GiB"
        ),
    )


def worker(path: str, n_molecules: int) -> None:
    """One point of the scaling sweep, in a fresh process: prints a JSON line."""
    torch.manual_seed(0)
    atoms = molecular_crystal(n_molecules, seed=1)
    model = CartNet(CartNetConfig()).eval()
    start = time.perf_counter()
    with torch.inference_mode():
        g = atoms_to_graph(atoms, model.config.cutoff)
        g.temperature = torch.tensor([150.0])
        heavy = g.numbers != 1
        if path == "blocked":
            u = model(g, output_mask=heavy)
        else:
            u = layer_by_layer(model, g, heavy)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kB
    print(
        json.dumps(
            {
                "path": path,
                "atoms": len(atoms),
                "edges": int(g.edge_index.shape[1]),
                "seconds": seconds,
                "peak_rss_bytes": peak,
                "finite": bool(torch.isfinite(u).all()),
            }
        )
    )


def section_scaling(sizes: list[int], paths: list[str], threads: int) -> list[dict]:
    points = [
        (["--worker", path, str(max(1, n_atoms // 9))], f"{path} at {n_atoms} atoms")
        for n_atoms in sizes
        for path in paths
    ]
    return run_workers(
        points,
        threads,
        lambda row: (
            f"{row['path']:<15}{row['atoms']:>8} atoms {row['edges']:>10} edges  "
            f"{row['seconds']:8.2f} s  {row['seconds'] / row['edges'] * 1e6:6.1f} µs/edge  "
            f"peak RSS {row['peak_rss_bytes'] / 2**30:6.2f} GiB  "
            f"{row['peak_rss_bytes'] / row['edges'] / 1e3:5.2f} kB/edge"
        ),
    )


def plot_scaling(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4.2))
    for name, style in (("layer_by_layer", "o--"), ("blocked", "s-")):
        sel = sorted((r for r in rows if r["path"] == name), key=lambda r: r["edges"])
        if not sel:
            continue
        edges = [r["edges"] for r in sel]
        label = {"layer_by_layer": "before (layer by layer)", "blocked": "blocked, in place"}[name]
        ax_t.loglog(edges, [r["seconds"] for r in sel], style, label=label)
        ax_m.loglog(edges, [r["peak_rss_bytes"] / 2**30 for r in sel], style, label=label)
    if rows:  # a line of slope 1 (time ∝ edges) through the largest blocked point
        last = max((r for r in rows if r["path"] == "blocked"), key=lambda r: r["edges"])
        span = np.array([min(r["edges"] for r in rows), last["edges"]])
        ax_t.loglog(span, last["seconds"] * span / span[-1], ":", color="grey", label="∝ edges")
    for ax in (ax_t, ax_m):
        ax.set_xlabel("edges (5 Å cutoff; molecular crystals, 9 atoms per molecule)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    ax_t.set_ylabel("graph + prediction time (s, one thread)")
    ax_m.set_ylabel("peak RSS of the process (GiB)")
    from matplotlib.ticker import FormatStrFormatter

    ax_m.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax_m.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    per_atom = float(np.median([r["edges"] / r["atoms"] for r in rows])) if rows else 1.0
    top = ax_t.secondary_xaxis("top", functions=(lambda e: e / per_atom, lambda a: a * per_atom))
    top.set_xlabel(f"≈ atoms ({per_atom:.0f} edges per atom)")
    fig.suptitle("CartNet (dim 256, 4 layers) inference scaling on CPU")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"plot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", default=["symmetry", "forward", "scaling"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help="forward: also compile=True")
    parser.add_argument("--sizes", type=int, nargs="+", default=[180, 720, 2880, 11520])
    parser.add_argument("--mp20", type=Path, default=ROOT.parent / "shared/data/mp_20/test.csv.gz")
    parser.add_argument("--count", type=int, default=1000, help="screening: MP-20 structures")
    parser.add_argument("--pe-sizes", type=int, nargs="+", default=[1000, 2744, 5832])
    parser.add_argument("--paths", nargs="+", default=["layer_by_layer", "blocked"])
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write all results here")
    parser.add_argument("--deeprelax-repeats", type=int, nargs="+", default=[4, 5])
    parser.add_argument("--deeprelax-worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--worker", nargs=2, metavar=("PATH", "MOLECULES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        worker(args.worker[0], int(args.worker[1]))
        return
    if args.deeprelax_worker:
        deeprelax_worker(args.deeprelax_worker[0], int(args.deeprelax_worker[1]))
        return
    results: dict[str, object] = {}
    if "symmetry" in args.sections:
        results["symmetry"] = section_symmetry(args.repeats)
    if "forward" in args.sections:
        results["forward"] = section_forward(args.repeats, args.compile)
    if "screening" in args.sections:
        results["screening"] = section_screening(args.mp20, args.count, args.repeats)
    if "threads" in args.sections:
        results["threads"] = section_threads(args.mp20, min(args.count, 300), args.repeats)
    if "deeprelax" in args.sections:
        results["deeprelax"] = section_deeprelax(args.deeprelax_repeats, args.threads)
    if "pe" in args.sections:
        results["pe"] = section_positional_encodings(args.pe_sizes)
    if "scaling" in args.sections:
        rows = section_scaling(args.sizes, args.paths, args.threads)
        results["scaling"] = rows
        if args.plot:
            plot_scaling(rows, args.plot)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
