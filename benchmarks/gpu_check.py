"""CartNet on a CUDA device: correctness against the CPU and the direct form, the forward-pass
forms, screening throughput and large cells. One script, written to run once on a GPU machine
within a few minutes; prints as it goes and writes a JSON summary.

    PYTHONPATH=. python benchmarks/gpu_check.py --mp20 test.csv.gz --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import torch

from ase_cartnet.benchmarking import molecular_crystal
from ase_cartnet.benchmarking.models import SMALL, ethanol_crystal, randomised_model
from ase_cartnet.benchmarking.reference import forward_variants, reference_cartnet
from ase_cartnet.graph.neighbours import atoms_to_graph, edge_vectors
from ase_cartnet.models.cartnet import CartNet, CartNetConfig, compile_blocks

CUDA = torch.device("cuda")  # --device cpu: a dry run of the script without a GPU
RESULTS: dict[str, object] = {}


def sync() -> None:
    if CUDA.type == "cuda":
        torch.cuda.synchronize()


def timed(function, repeats: int) -> tuple[float, float, float]:
    """(median, min, max) seconds of ``repeats`` synchronised calls after one warm-up."""
    function()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), max(times)


def check_correctness(structures) -> None:
    from ase_cartnet.calculators.cartnet_adp import CartNetADP

    model = randomised_model(CartNetConfig(**SMALL))
    g = atoms_to_graph(ethanol_crystal(3) * (2, 2, 1), 5.0, dtype=torch.float64)
    g.temperature = torch.tensor([180.0], dtype=torch.float64)
    heavy = g.numbers != 1
    with torch.no_grad():
        cpu = model(g, output_mask=heavy)
    model_gpu, g_gpu = model.to(CUDA), g.to(CUDA)
    diffs = {}
    for chunk in (7, 4096):
        model_gpu.chunk_size = chunk
        with torch.no_grad():
            blocked = model_gpu(g_gpu, output_mask=heavy.to(CUDA))
        diffs[f"blocked_chunk{chunk}_vs_cpu"] = (blocked.cpu() - cpu).abs().max().item()
    with torch.enable_grad():
        plain = model_gpu(g_gpu, output_mask=heavy.to(CUDA)).detach()
    vec = -edge_vectors(g_gpu.pos, g_gpu.cell, g_gpu.edge_index, g_gpu.cell_shift)
    t_std = float(model.standardise_temperature(torch.tensor(180.0, dtype=torch.float64)))
    state = model_gpu.state_dict()
    direct = reference_cartnet(state, g_gpu.numbers, g_gpu.edge_index, vec, t_std, 2)
    diffs["plain_vs_cpu"] = (plain.cpu() - cpu).abs().max().item()
    diffs["direct_vs_cpu"] = (direct[heavy.to(CUDA)].cpu() - cpu).abs().max().item()
    print("float64 random model, max |ΔU| (Å²):", diffs, flush=True)
    cpu_calc = CartNetADP(temperature=300.0)
    gpu_calc = CartNetADP(temperature=300.0, device=CUDA, symmetrize=True)
    sample = structures[:100]
    from ase_cartnet.symmetry import symmetrize_adps

    u_cpu = [
        symmetrize_adps(a, u)[0] for a, u in zip(sample, cpu_calc.predict_many(sample), strict=True)
    ]
    u_gpu = gpu_calc.predict_many(sample)
    worst = max(float(np.nanmax(np.abs(a - b))) for a, b in zip(u_cpu, u_gpu, strict=True))
    scale = max(float(np.nanmax(np.abs(a))) for a in u_cpu)
    print(f"default weights float32, 100 MP-20, symmetrize: max |U_gpu - U_cpu| = {worst:.2e} "
          f"Å² (max |U| {scale:.2e})", flush=True)  # fmt: skip
    RESULTS["correctness"] = {**diffs, "default_weights_gpu_vs_cpu": worst, "max_u": scale}


def screening(structures) -> None:
    from ase_cartnet.calculators.cartnet_adp import CartNetADP

    calc = CartNetADP(temperature=300.0, device=CUDA)
    calc.predict_many(structures[:64], batch_size=64)  # warm-up
    rows = {}
    for batch_size in (1, 16, 64, 256):

        def in_input_order(bs=batch_size):  # the former batching: fixed slices, input order
            for start in range(0, len(structures), bs):
                calc.predict_many(structures[start : start + bs], batch_size=bs)

        def size_sorted(bs=batch_size):
            calc.predict_many(structures, batch_size=bs)

        for name, function in (("input_order", in_input_order), ("size_sorted", size_sorted)):
            if batch_size == 1 and name == "size_sorted":
                continue
            median = timed(function, 2)[0]
            rows[f"{name}_bs{batch_size}"] = len(structures) / median
            print(f"screening {name:<12} batch {batch_size:>4}: "
                  f"{len(structures) / median:8.1f} structures/s", flush=True)  # fmt: skip
    RESULTS["screening_structures_per_s"] = rows


def forward_forms(with_compile: bool) -> None:
    torch.manual_seed(0)
    model = CartNet(CartNetConfig()).eval().to(CUDA)
    g = atoms_to_graph(molecular_crystal(20), 5.0).to(CUDA)
    g.temperature = torch.tensor([150.0], device=CUDA)
    heavy = g.numbers != 1
    state = model.state_dict()
    variants = forward_variants(model, g, heavy)
    first, diff = float("nan"), float("nan")
    with torch.inference_mode():
        out = {name: timed(f, 7) for name, f in variants.items()}
        if with_compile:
            compiled = CartNet(CartNetConfig()).eval().to(CUDA)
            compiled.load_state_dict(state)
            compile_blocks(compiled)
            start = time.perf_counter()
            compiled(g, output_mask=heavy)
            sync()
            first = time.perf_counter() - start
            out["blocked_compiled"] = timed(lambda: compiled(g, output_mask=heavy), 7)
            diff = (compiled(g, output_mask=heavy) - model(g, output_mask=heavy)).abs().max()
    base = out["direct"][0]
    for name, (median, low, high) in out.items():
        print(f"forward 180 atoms {name:<18}{median * 1e3:8.2f} ms ({low * 1e3:.2f}-"
              f"{high * 1e3:.2f})  vs direct {base / median:5.2f}x", flush=True)  # fmt: skip
    print(f"compile: first call {first:.1f} s, max |ΔU| vs eager {float(diff):.1e}", flush=True)
    RESULTS["forward_180_ms"] = {k: v[0] * 1e3 for k, v in out.items()}
    RESULTS["compile_first_call_s"] = first


def large_cells(molecules: int) -> None:
    torch.manual_seed(0)
    model = CartNet(CartNetConfig()).eval().to(CUDA)
    base = molecular_crystal(molecules, seed=1)  # 1389: 12,501 atoms, x8: 100,008
    rows = []
    for reps in ((1, 1, 1), (2, 2, 2)):
        atoms = base * reps
        start = time.perf_counter()
        g = atoms_to_graph(atoms, 5.0)
        graph_s = time.perf_counter() - start
        g = g.to(CUDA)
        g.temperature = torch.tensor([150.0], device=CUDA)
        for chunk in (4096, 65536):
            model.chunk_size = chunk
            if CUDA.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            with torch.inference_mode():
                median = timed(lambda gr=g: model(gr, output_mask=gr.numbers != 1), 3)[0]
            peak = torch.cuda.max_memory_allocated() if CUDA.type == "cuda" else 0
            row = {"atoms": len(atoms), "edges": int(g.edge_index.shape[1]), "chunk": chunk,
                   "graph_cpu_s": graph_s, "forward_s": median, "peak_gpu_bytes": peak}  # fmt: skip
            rows.append(row)
            print(f"large cell {row['atoms']:>7} atoms {row['edges']:>9} edges chunk {chunk:>6}: "
                  f"graph (CPU) {graph_s:6.2f} s, forward {median:7.3f} s, "
                  f"{median / row['edges'] * 1e9:6.1f} ns/edge, peak GPU {peak / 2**30:6.2f} GiB",
                  flush=True)  # fmt: skip
        g = None  # free the GPU copy before the next cell
        if CUDA.type == "cuda":
            torch.cuda.empty_cache()
    RESULTS["large_cells"] = rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mp20", type=Path, required=True)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--big", type=int, default=1389, help="molecules of the large cell")
    parser.add_argument("--sections", nargs="+",
                        default=["correctness", "forward", "screening", "large"])  # fmt: skip
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from ase_cartnet.io.datasets import read_mp20

    global CUDA
    CUDA = torch.device(args.device)
    name = torch.cuda.get_device_name(0) if CUDA.type == "cuda" else "CPU dry run"
    print(torch.__version__, name, torch.get_num_threads(), "threads", flush=True)
    structures = read_mp20(args.mp20, limit=args.n)
    steps = {
        "correctness": lambda: check_correctness(structures),
        "forward": lambda: forward_forms(False),
        "compile": lambda: forward_forms(True),
        "screening": lambda: screening(structures),
        "large": lambda: large_cells(args.big),
    }
    for name in args.sections:
        start = time.perf_counter()
        try:
            steps[name]()
        except Exception:  # noqa: BLE001 - report and go on to the next section
            traceback.print_exc()
            RESULTS[f"{name}_error"] = traceback.format_exc()[-2000:]
        print(f"[{name}: {time.perf_counter() - start:.1f} s]", flush=True)
        if args.json:
            args.json.write_text(json.dumps(RESULTS, indent=1))


if __name__ == "__main__":
    main()
