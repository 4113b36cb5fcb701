"""Measured equivariance errors of EMPNN in float64 (random weights, and the shipped weights):
max |h(g·M) − g h(M) gᵀ| under a rotation-reflection plus translation (Euc(3)), max |h(g·M) −
h(M)| under a change of cell by a unimodular g (SL₃(ℤ), Prop. 2) and under a permutation.

    .venv/bin/python benchmarks/empnn_equivariance.py [--structures 10]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from ase_cartnet.graph.empnn import crystal_graph
from ase_cartnet.graph.neighbours import batch_graphs
from ase_cartnet.models.empnn import EDGE_FIELDS, EMPNN, TRIPLET_FIELDS, EMPNNConfig, run_model

UNIMODULAR = (
    np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1]])
    @ np.array([[1, 0, 0], [0, 1, 0], [-1, 2, 1]])
    @ np.array([[1, 0, 0], [0, 1, -1], [0, 0, 1]])
)
SMALL = {"dim": 32, "num_layers": 1, "num_steps": 2}
VARIANTS = {
    "edge ket-bra": EMPNNConfig(dim=32, num_layers=2, num_steps=3),
    "triplet ket-bra": EMPNNConfig(
        dim=32, num_layers=2, num_steps=3, edge_fields=(), triplet_fields=("ketbra",)
    ),
    "all fields": EMPNNConfig(
        **SMALL, edge_fields=EDGE_FIELDS, triplet_fields=TRIPLET_FIELDS, triplet_messages=True
    ),
    "∇ sym (r, θ, A)": EMPNNConfig(
        **SMALL, edge_fields=("grad_r",), triplet_fields=("grad_theta", "grad_area"), sym=True
    ),
}


def action(model, numbers, frac, cell) -> torch.Tensor:
    graph = crystal_graph(numbers, frac @ cell, cell, model.config.k, dtype=torch.float64)
    with torch.no_grad():
        return run_model(model, batch_graphs([graph])).action[0]


def errors(model, n_structures: int, seed: int = 0) -> tuple[float, float, float, float]:
    rng = np.random.default_rng(seed)
    worst = np.zeros(4)
    for _ in range(n_structures):
        n = int(rng.integers(2, 9))
        cell = np.diag(rng.uniform(3.5, 6.0, 3)) + rng.normal(scale=0.6, size=(3, 3))
        frac, numbers = rng.random((n, 3)), rng.integers(1, 84, n)
        h = action(model, numbers, frac, cell)
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        shift = rng.normal(size=3) * 4.0
        qt = torch.as_tensor(q)
        moved = action(model, numbers, np.mod(frac + shift @ np.linalg.inv(cell), 1.0), cell @ q.T)
        repaved = action(
            model, numbers, np.mod(frac @ np.linalg.inv(UNIMODULAR), 1.0), UNIMODULAR @ cell
        )
        perm = rng.permutation(n)
        shuffled = action(model, numbers[perm], frac[perm], cell)
        worst = np.maximum(
            worst,
            [
                float((moved - qt @ h @ qt.T).abs().max()),
                float((repaved - h).abs().max()),
                float((shuffled - h).abs().max()),
                float((h - torch.eye(3, dtype=torch.float64)).abs().max()),
            ],
        )
    return tuple(worst)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    models = {}
    for name, config in VARIANTS.items():
        torch.manual_seed(0)
        model = EMPNN(config).double().eval()
        with torch.no_grad():  # random weights with a far-from-identity action
            for head in list(model.edge_weights) + list(model.triplet_weights):
                last = head[-1] if isinstance(head, torch.nn.Sequential) else head
                last.weight.normal_(std=0.3)
        models[f"{name} (random weights)"] = model
    try:
        from ase_cartnet.io.checkpoint import load_model

        models["shipped weights"] = load_model("empnn", "empnn", dtype=torch.float64).model
    except ValueError as exc:
        print(f"(shipped weights skipped: {exc})")
    print(f"max errors over {args.structures} random crystals (2–8 atoms), float64")
    print("| model | Euc(3) | SL3(Z) | permutation | max abs(h − I) |")
    print("|---|---|---|---|---|")
    for name, model in models.items():
        e = errors(model, args.structures)
        print(f"| {name} | {e[0]:.1e} | {e[1]:.1e} | {e[2]:.1e} | {e[3]:.3f} |")


if __name__ == "__main__":
    main()
