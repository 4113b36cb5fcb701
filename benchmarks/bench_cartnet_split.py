"""CartNet forward pass: the split/fused CartLayer (ase_cartnet) against the direct concatenation
form (``ase_cartnet.benchmarking.reference``), same weights, same process, graph building
included.

Full size (dim 256, 64 RBF, 4 layers), a 180-atom molecular cell, 2 threads. Prints the times,
the max |ΔU| between the two forms and the speed-up ratio.

    .venv/bin/python benchmarks/bench_cartnet_split.py [--repeats 7] [--molecules 20]
"""

from __future__ import annotations

import argparse

import torch

from ase_cartnet.benchmarking import interleaved_best_times, molecular_crystal
from ase_cartnet.benchmarking.reference import reference_cartnet
from ase_cartnet.graph.neighbours import atoms_to_graph, edge_vectors
from ase_cartnet.models.cartnet import CartNet, CartNetConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--molecules", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    atoms = molecular_crystal(args.molecules)
    config = CartNetConfig()  # dim 256, 64 RBF, 4 layers
    model = CartNet(config).eval()
    state = model.state_dict()
    temperature = 150.0
    t_std = float(model.standardise_temperature(torch.tensor(temperature)))

    def split_fused():
        g = atoms_to_graph(atoms, config.cutoff)
        g.temperature = torch.tensor([temperature])
        return model(g, output_mask=g.numbers != 1)  # ADPs of the non-H atoms, as predicted

    def direct():
        g = atoms_to_graph(atoms, config.cutoff)
        vec = -edge_vectors(g.pos, g.cell, g.edge_index, g.cell_shift)
        u = reference_cartnet(state, g.numbers, g.edge_index, vec, t_std, config.num_layers)
        return u[g.numbers != 1]

    with torch.inference_mode():
        g = atoms_to_graph(atoms, config.cutoff)
        diff = (split_fused() - direct()).abs().max().item()
        times = interleaved_best_times(
            {
                "graph": lambda: atoms_to_graph(atoms, config.cutoff),
                "direct": direct,
                "split": split_fused,
            },
            args.repeats,
        )
        t_graph, t_direct, t_fast = times["graph"], times["direct"], times["split"]
    print(
        f"structure: {len(atoms)} atoms, {g.edge_index.shape[1]} edges; model dim {config.dim}, "
        f"{config.dim_rbf} RBF, {config.num_layers} layers; {torch.get_num_threads()} threads"
    )
    print(f"max |U_split - U_direct| = {diff:.2e} Å²")
    print(f"{'variant':<28}{'time (ms)':>12}")
    print(f"{'graph building only':<28}{t_graph * 1e3:>12.1f}")
    print(f"{'direct (concatenation)':<28}{t_direct * 1e3:>12.1f}")
    print(f"{'split + fused (ours)':<28}{t_fast * 1e3:>12.1f}")
    print(f"speed-up direct/split: {t_direct / t_fast:.2f}x (graph building included)")


if __name__ == "__main__":
    main()
