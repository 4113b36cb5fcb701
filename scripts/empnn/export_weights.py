"""Ship an EMPNN checkpoint: weights-only float32 file plus its JSON model card.

    .venv/bin/python scripts/empnn/export_weights.py runs/empnn/ketbra/best.pt \\
        ase_cartnet/weights/empnn_lattice_default.pt --eval runs/empnn/eval.json --name ketbra

The card holds the training data and counts, σ and the loss, the exact training command, the
held-out (test-split) metrics of ``benchmarks/eval_empnn.py``, licence, scope and the sha256.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ase_cartnet.train.model_card import export_empnn


def main() -> None:
    parser = argparse.ArgumentParser(description="export EMPNN weights with a model card")
    parser.add_argument("checkpoint")
    parser.add_argument("weights_out")
    parser.add_argument("--eval", required=True, help="JSON of benchmarks/eval_empnn.py")
    parser.add_argument("--name", required=True, help="the model's name in that JSON")
    parser.add_argument("--note", action="append", default=[], help="extra notes for the card")
    args = parser.parse_args()
    evaluation = json.loads(Path(args.eval).read_text())
    held_out = {dataset: rows[args.name] for dataset, rows in evaluation["results"].items()}
    card = {
        "name": "EMPNN lattice denoiser (ase-cartnet default)",
        "paper": "Klipfel et al., Equivariant Message Passing Neural Network for Crystal Material "
        "Discovery, AAAI 2023 (hal-04454883)",
        "licence": "MIT",
        "task": "undo a random lattice strain exp(A) of a stable crystal, fractional coordinates "
        "kept (paper section 6, denoising)",
        "scope": "periodic crystals like MP-20 (<= 20 atoms; elements: training.elements), "
        "Carbon-24 and Perov-5; "
        "strains of about 10 %. Not a relaxation: atomic positions are not moved, and "
        "structures far from this domain get unreliable actions.",
        "data_licences": "MP-20 (Materials Project, CC-BY 4.0, CDVAE split, MIT repository), "
        "Carbon-24 (Pickard 2020, Materials Cloud), Perov-5 (Castelli et al. 2012, CMR)",
        "held_out": {
            "description": "test splits, first --limit structures drawn at random (seed 0), one "
            "deformation each (seed of the JSON); improvement = noisy - denoised "
            "mean absolute error, lengths in Å, angles in degrees (eqns 11-12)",
            "sigma": evaluation["sigma"],
            "seed": evaluation["seed"],
            "limit": evaluation["limit"],
            "metrics": held_out,
        },
        "notes": args.note,
    }
    weights, card_path = export_empnn(args.checkpoint, args.weights_out, card)
    print(f"wrote {weights} and {card_path}")


if __name__ == "__main__":
    main()
