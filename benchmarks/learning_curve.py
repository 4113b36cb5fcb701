"""Held-out ADP metrics of CartNet checkpoints trained on growing subsets: a learning curve.

Each ``--run N=CKPT`` is evaluated on every stable structure of ``--test-db`` at all its
temperatures (MAE, S12, IoU over non-H atoms); the x axis is the number of training structures
the checkpoint's metadata records (its training split, validation excluded).

    .venv/bin/python benchmarks/learning_curve.py --test-db runs/adp_v7/test.db \
        --run 100=runs/adp_v7/curve/n100/best.pt ... --png docs/learning_curve_v7.png
"""

from __future__ import annotations

import argparse
import json
import warnings

import torch

from ase_cartnet.adp import adp_metrics
from ase_cartnet.calculators.cartnet_adp import CartNetADP
from ase_cartnet.train.adp_data import structures_from_db
from ase_cartnet.train.cartnet import cartnet_predictions


def held_out_metrics(checkpoint: str, test) -> tuple[dict, int]:
    """Metrics of one checkpoint on the test structures and its number of training structures."""
    calc = CartNetADP(checkpoint=checkpoint)
    pred, target, _, _ = cartnet_predictions(calc, test)
    return adp_metrics(pred, target), int(calc.metadata["n_train_structures"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--test-db", required=True)
    parser.add_argument("--run", action="append", required=True, help="LABEL=CHECKPOINT")
    parser.add_argument("--png", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="structure contains elements outside")
    test = structures_from_db(args.test_db)
    points = []
    for spec in args.run:
        label, _, path = spec.partition("=")
        metrics, n_train = held_out_metrics(path, test)
        points.append({"label": label, "checkpoint": path, "n_train": n_train, **metrics})
        print(
            f"{n_train:5d} training structures: MAE {metrics['mae']:.2e} Å², "
            f"S12 {metrics['s12']:.2f} %, IoU {metrics['iou']:.2f} %",
            flush=True,
        )
    points.sort(key=lambda p: p["n_train"])
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"test_db": args.test_db, "points": points}, handle, indent=1)
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.0, 3.4), dpi=120)
        x = [p["n_train"] for p in points]
        ax.plot(x, [p["iou"] for p in points], "o-", color="C0")
        for p in points:
            ax.annotate(f"{p['iou']:.1f}", (p["n_train"], p["iou"]), textcoords="offset points",
                        xytext=(0, 6), ha="center", fontsize=8)  # fmt: skip
        ax.set_xscale("log")
        ax.margins(x=0.08, y=0.15)
        ax.set_xlabel("training structures (SevenNet-0 labels)")
        ax.set_ylabel(f"held-out IoU (%), {len(test)} structures")
        ax.set_title("CartNet v7 recipe: learning curve", fontsize=10)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(args.png)


if __name__ == "__main__":
    main()
