"""Ship a trained CartNet run as the embedded default weights with its model card.

    .venv/bin/python scripts/default_weights/export.py --checkpoint runs/cartnet_default/best.pt \
        --train-db runs/adp_default/frozen/train.db --test-db runs/adp_default/frozen/test.db \
        --metrics runs/adp_default/eval.json

writes ``ase_cartnet/weights/cartnet_adp_default.pt`` and ``.json`` (the card: what the model is
and is not, the data with counts and content hashes, teacher and version, the training command,
the held-out metrics of ``benchmarks/eval_cartnet_default.py --json``, licence, sha256).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ase.data import chemical_symbols
from ase.db import connect

ROOT = Path(__file__).resolve().parents[2]


from ase_cartnet.io.checkpoint import read_checkpoint  # noqa: E402
from ase_cartnet.io.datasets import content_hash  # noqa: E402
from ase_cartnet.train.model_card import export_cartnet  # noqa: E402
from ase_cartnet.weights import DEFAULT_CARTNET  # noqa: E402

DESCRIPTION = (
    "ase-cartnet's own default CartNet weights: harmonic-approximation ADPs (CartNet paper eqns "
    "2-3, computed by phonon_ref) of inorganic crystals, with a machine-learning potential "
    "({teacher}) as the teacher in place of DFT. They are NOT the official CartNet weights "
    "(trained on ~200k experimental CSD structures) and were never fitted to experimental ADPs: "
    "expect harmonic, 0 K-lattice, teacher-level thermal ellipsoids of ordered inorganic "
    "crystals, no anharmonicity, no disorder, no molecular-crystal libration. For experimental "
    "organic/metal-organic ADPs use the official checkpoint: CartNetADP(checkpoint='cartnet.ckpt')."
)
HARMONIC_NOTE = (
    "Architecture: the CartNet trunk with ase-cartnet's harmonic head instead of the paper's "
    "Cholesky head: per-atom spectral weights over fixed frequency bins turned into U(T) by "
    "eqns 2-3 (temperature only in the head; one forward pass for any number of temperatures; "
    "see ase_cartnet/models/harmonic_head.py). Chosen on validation against the Cholesky head "
    "trained on the same data."
)


def db_summary(path: Path) -> dict:
    digest, counts = content_hash(path)
    with connect(path) as db:
        row = next(db.select(status="ok"))
        teacher_version = str(row.data.get("teacher_version", row.get("teacher", "")))
        settings = {
            "displacement_angstrom": float(row.data.get("displacement", float("nan"))),
            "freq_min_thz": float(row.data.get("freq_min", float("nan"))),
        }
        ids = sorted(str(r.source_id) for r in db.select(status="ok"))
    sources: dict[str, int] = {}
    for sid in ids:
        prefix = sid.split(":", 1)[0]
        sources[prefix] = sources.get(prefix, 0) + 1
    return {
        "file": path.name,
        "rows_by_status": counts,
        "stable_structures_by_source": sources,
        "stable_row_sha256": digest,
        "teacher_version": teacher_version,
        "phonon_settings": settings,
        "stable_ids": ids,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="best.pt of the training run")
    parser.add_argument("--train-db", required=True)
    parser.add_argument("--test-db", required=True)
    parser.add_argument("--metrics", default=None, help="JSON of eval_cartnet_default.py")
    parser.add_argument(
        "--adp-floor", type=float, default=None, help="Å², ε of U = LᵀL + εI (default: the run's)"
    )
    parser.add_argument("--out", default=str(DEFAULT_CARTNET))
    parser.add_argument("--eval-command", default="", help="the command that made --metrics")
    parser.add_argument(
        "--train-db-origin", default="", help="where the exact training database is kept"
    )
    parser.add_argument("--teacher", default="CHGNet", help="teacher name for the card")
    parser.add_argument(
        "--generation-command",
        default="bash scripts/default_weights/generate.sh",
        help="the command that built the databases",
    )
    parser.add_argument(
        "--pretrained-card",
        default=None,
        help="card (JSON) of the weights the run was initialised from (training with --init)",
    )
    parser.add_argument("--pretrained-sha256", default="", help="sha256 of those weights")
    parser.add_argument(
        "--training-candidates",
        default="data/adp_default/train_ids.txt (val splits of MP-20, Perov-5 and Carbon-24; "
        "≤ 10 atoms per cell)",
        help="where the training candidates are listed, for the card",
    )
    args = parser.parse_args()

    metrics = json.loads(Path(args.metrics).read_text()) if args.metrics else None
    train = db_summary(Path(args.train_db))
    test = db_summary(Path(args.test_db))
    checkpoint = read_checkpoint(args.checkpoint)
    metadata = checkpoint.get("metadata", {})
    harmonic = checkpoint["config"].get("head") == "harmonic"
    card = {
        "name": "cartnet_adp_default",
        "description": DESCRIPTION.format(teacher=args.teacher)
        + (" " + HARMONIC_NOTE if harmonic else ""),
        "target": "Cartesian U (3x3 per atom, Å²) at a given temperature (K)",
        "teacher": {
            "name": args.teacher,
            "version": train["teacher_version"],
            "pipeline": "phonon_ref.build_dataset: FrechetCellFilter + FixSymmetry relaxation to "
            "fmax 1e-3 eV/Å, finite displacements on ≥ 10 Å supercells, q-mesh of ≥ 100 Å, "
            "harmonic ADPs (eqns 2-3); dynamically unstable structures left out",
            "settings": train["phonon_settings"],
        },
        "data": {
            "training_candidates": args.training_candidates,
            "test_candidates": "data/adp_default/test_ids.txt (test splits; held out)",
            "generation_command": args.generation_command,
            "train_db": {
                **{k: v for k, v in train.items() if k != "stable_ids"},
                "origin": args.train_db_origin,
            },
            "test_db": {k: v for k, v in test.items() if k != "stable_ids"},
            "train_ids": train["stable_ids"],
            "test_ids": test["stable_ids"],
            "licence": "structures: Materials Project (CC BY 4.0) via CDVAE's MP-20, Perov-5 and "
            "Carbon-24 splits (MIT); labels computed by ase-cartnet",
        },
        "elements": [chemical_symbols[z] for z in metadata.get("elements", [])],
        "temperature_range_K": metadata.get("temperature_range"),
        "training_command": metadata.get("command"),
        "held_out_metrics": metrics,
        "evaluation_command": args.eval_command,
        "licence": "MIT (weights, ase-cartnet)",
        "official_checkpoint": "CartNetADP(checkpoint=path) loads the official CartNet "
        "checkpoint format (Solé et al., Digital Discovery 2025) unchanged",
    }
    if args.pretrained_card:
        # the run started from other weights: their data counts too (elements, provenance)
        earlier = json.loads(Path(args.pretrained_card).read_text())
        symbols = set(card["elements"]) | set(earlier.get("elements", []))
        card["elements"] = sorted(symbols, key=chemical_symbols.index)
        card["pretraining"] = {
            "weights_sha256": args.pretrained_sha256,
            "teacher": earlier.get("teacher"),
            "training_command": earlier.get("training_command"),
            "train_db": earlier.get("data", {}).get("train_db"),
            "held_out_metrics_summary": (earlier.get("held_out_metrics") or {}).get("cartnet"),
        }
    elements = [chemical_symbols.index(e) for e in card["elements"]]
    weights, card_path = export_cartnet(
        args.checkpoint, args.out, card, adp_floor=args.adp_floor, elements=elements
    )
    print(f"wrote {weights} ({weights.stat().st_size / 2**20:.1f} MB) and {card_path}")


if __name__ == "__main__":
    main()
