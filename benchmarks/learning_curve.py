"""Held-out ADP metrics of CartNet checkpoints trained on growing subsets: a learning curve.

Each ``--run N=CKPT`` is evaluated on every stable structure of ``--test-db`` at all its
temperatures (MAE, S12, IoU over non-H atoms); the x axis is the number of training structures
the checkpoint's metadata records (its training split, validation excluded). Each
``--report N=JSON`` adds a point from a report of ``benchmarks/eval_cartnet_default.py`` for a
model trained on N structures (its held-out IoU, and its IoU against DFT on the ten phonopy
examples of the v7 issue, pooled over their atoms and temperatures), so runs whose checkpoints
are gone still count; ``--reuse`` takes the checkpoint points of an earlier ``--json`` output.

    .venv/bin/python -m benchmarks.learning_curve --test-db runs/adp_v7/test.db \
        --run 100=runs/adp_v7/curve/n100/best.pt ... \
        --report 551=benchmarks/results_cartnet_v7.json ... --png docs/learning_curve_v7.png
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
from benchmarks.eval_cartnet_default import DFT_TEN, pooled


def held_out_metrics(checkpoint: str, test) -> tuple[dict, int]:
    """Metrics of one checkpoint on the test structures and its number of training structures."""
    calc = CartNetADP(checkpoint=checkpoint)
    pred, target, _, _ = cartnet_predictions(calc, test)
    return adp_metrics(pred, target), int(calc.metadata["n_train_structures"])


def report_point(n_train: int, path: str) -> dict:
    """Held-out IoU and DFT-ten IoU (%) of an ``eval_cartnet_default`` report."""
    with open(path) as handle:
        report = json.load(handle)
    ten = [m for m in report["dft_phonopy_examples"] if m["material"] in DFT_TEN]
    dft = pooled(ten)["iou"]  # also for reports older than their "dft_pooled" entry
    return {"report": path, "n_train": n_train, "iou": report["cartnet"]["iou"], "dft_ten_iou": dft}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--test-db", required=True)
    parser.add_argument("--run", action="append", default=[], help="LABEL=CHECKPOINT")
    parser.add_argument(
        "--reuse", default=None, help="take the checkpoint points of an earlier --json output"
    )
    parser.add_argument(
        "--report", action="append", default=[], help="N=JSON of eval_cartnet_default.py"
    )
    parser.add_argument("--png", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="structure contains elements outside")
    test = structures_from_db(args.test_db)
    points = []
    if args.reuse:
        with open(args.reuse) as handle:
            points = json.load(handle)["points"]
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
    reports = []
    for spec in args.report:
        n_train, _, path = spec.partition("=")
        reports.append(report_point(int(n_train), path))
        print(f"{n_train:>5} training structures: {reports[-1]}", flush=True)
    reports.sort(key=lambda p: p["n_train"])
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"test_db": args.test_db, "points": points, "reports": reports}, handle,
                      indent=1)  # fmt: skip
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.0, 3.8), dpi=120)
        x = [p["n_train"] for p in points]
        ax.plot(
            x, [p["iou"] for p in points], "o-", color="C0", label="held-out (teacher), subsets"
        )
        for p in points:
            ax.annotate(f"{p['iou']:.1f}", (p["n_train"], p["iou"]), textcoords="offset points",
                        xytext=(0, 6), ha="center", fontsize=8)  # fmt: skip
        if reports:
            rx = [p["n_train"] for p in reports]
            ax.plot(rx, [p["iou"] for p in reports], "s", mfc="none", color="C0",
                    label="held-out (teacher), all labels, 2 seeds")  # fmt: skip
            ax.plot(rx, [p["dft_ten_iou"] for p in reports], "^", color="C1",
                    label="DFT, the ten phonopy examples")  # fmt: skip
        ax.set_xscale("log")
        ax.margins(x=0.08, y=0.15)
        ax.set_xlabel("training structures (SevenNet-0 labels)")
        ax.set_ylabel("IoU (%)")
        ax.set_title(f"CartNet v7 recipe: learning curve ({len(test)} held-out structures)",
                     fontsize=10)  # fmt: skip
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
        fig.tight_layout()
        fig.savefig(args.png)


if __name__ == "__main__":
    main()
