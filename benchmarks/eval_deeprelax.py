"""Evaluate DeepRelax on held-out unrelaxed → relaxed pairs, beside the Dummy baseline (which
returns the unrelaxed input), with the metrics of the DeepRelax paper (section 4.10):

* coordinates: mean |r̂ − r| over atoms and Cartesian components (Å; eqn 25, as a mean);
* bond length: mean |d̂ − d| over the periodic edges of the input multi-graph, measured in the
  solved structure (Å; eqn 26);
* lattice: mean |L̂ − L| over the 9 entries (Å; eqn 27); cell volume: mean ||det L̂| − |det L||
  (Å³; eqn 28);
* match rate: pymatgen ``StructureMatcher`` with its defaults (ltol 0.2, stol 0.3, angle_tol 5)
  and with the CDVAE settings (0.3, 0.5, 10), % of pairs;
* Spearman correlation between the global uncertainty Û and the per-structure MAE of the
  predicted distances (the paper's Fig. 5);
* time per structure, model + solver, batched (this machine, shared CPU).

    .venv/bin/python benchmarks/eval_deeprelax.py --pairs runs/deeprelax/test_synthetic.db

Prints a markdown table; ``--json`` also writes the numbers.
"""

import argparse
import json
from pathlib import Path

import torch

from ase_cartnet.train.deeprelax_data import pairs_from_db
from ase_cartnet.train.deeprelax_eval import evaluate, format_table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="checkpoint (default: shipped ensemble)")
    parser.add_argument(
        "--pairs", nargs="+", default=["runs/deeprelax/test_synthetic.db"], help="pair databases"
    )
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write the reports here")
    parser.add_argument("--steps", type=int, default=100, help="solver Adam steps")
    parser.add_argument("--lr", type=float, default=0.1, help="solver Adam learning rate")
    parser.add_argument("--decay", action="store_true", help="solver lr decays linearly to 0")
    parser.add_argument(
        "--no-affine", action="store_true", help="start the solver at the input positions"
    )
    parser.add_argument(
        "--no-canonical",
        action="store_true",
        help="feed the model the input's own listing (origin, images, basis, order)",
    )
    parser.add_argument(
        "--empnn", action="store_true", help="add the shipped EMPNN as the lattice stage (a row)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    reports = {}
    for path in args.pairs:
        pairs = pairs_from_db(path, limit=args.limit)
        report = evaluate(
            args.model,
            pairs,
            args.batch_size,
            steps=args.steps,
            lr=args.lr,
            decay=args.decay,
            affine=not args.no_affine,
            canonical=not args.no_canonical,
            empnn=args.empnn,
        )
        reports[Path(path).name] = report
        print(format_table(Path(path).name, report))
        print()
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
