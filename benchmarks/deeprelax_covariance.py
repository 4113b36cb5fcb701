"""How much DeepRelax's answer depends on how a crystal is written, before (the model fed the
input's own listing, ``canonical=False``) and after (the canonical listing, the default).

For strained, rattled copies of small crystals (shipped weights, float32) it prints the median
and largest change of the predicted positions when every atom is translated (compared with
the result moved by t L⁻¹L̂), one atom is listed at another periodic image (compared with that
atom moved by the predicted lattice vector), the cell is written in another basis, and the
structure is relaxed in a batch of 16 instead of alone; and the predicted volume change. The
model now runs one structure at a time in both columns, so the batch row's "before" (a batched
forward pass) is the figure measured on the previous code, in the README.

    .venv/bin/python benchmarks/deeprelax_covariance.py
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from ase.build import bulk

from ase_cartnet.calculators.deeprelax import load_deeprelax, predict
from ase_cartnet.train.deeprelax_data import distort

BASIS = np.array([[1, 2, 0], [0, 1, 0], [-1, 1, 1]])


def crystals(count_per_base: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    bases = [
        bulk("NaCl", "rocksalt", a=5.64),
        bulk("Si", "diamond", a=5.43),
        bulk("MgO", "rocksalt", a=4.2) * (1, 1, 2),
        bulk("ZnS", "zincblende", a=5.4),
        bulk("Cu", "fcc", a=3.6) * (2, 1, 1),
        bulk("Fe", "bcc", a=2.87) * (1, 2, 2),
    ]
    return [distort(b, 0.04, 0.06, rng) for b in bases for _ in range(count_per_base)]


def changes(ensemble, structures, canonical: bool) -> dict[str, np.ndarray]:
    run = lambda s, **kw: predict(ensemble, s, canonical=canonical, **kw)  # noqa: E731
    ref = run(structures, batch_size=1)
    t = np.array([0.37, -1.1, 0.52])
    translated, imaged, rebased = [], [], []
    for s in structures:
        m = s.copy()
        m.translate(t)
        translated.append(m)
        m = s.copy()
        m.positions[0] += s.cell[0] - s.cell[2]
        imaged.append(m)
        m = s.copy()
        m.set_cell(BASIS @ s.cell[:], scale_atoms=False)
        rebased.append(m)
    out = {k: [] for k in ("translation", "image", "basis", "batch of 16", "volume (image, %)")}
    for s, r, a, b, c, d in zip(
        structures,
        ref,
        run(translated, batch_size=1),
        run(imaged, batch_size=1),
        run(rebased, batch_size=1),
        run(structures, batch_size=16),
        strict=True,
    ):
        p0 = r.atoms.positions
        shift = t @ np.linalg.solve(s.cell[:], r.atoms.cell[:])
        out["translation"].append(np.linalg.norm(a.atoms.positions - p0 - shift, axis=1))
        moved = b.atoms.positions.copy()
        moved[0] -= b.atoms.cell[0] - b.atoms.cell[2]
        out["image"].append(np.linalg.norm(moved - p0, axis=1))
        out["basis"].append(np.linalg.norm(c.atoms.positions - p0, axis=1))
        out["batch of 16"].append(np.linalg.norm(d.atoms.positions - p0, axis=1))
        out["volume (image, %)"].append(
            np.array([100 * abs(b.atoms.get_volume() / r.atoms.get_volume() - 1)])
        )
    return {k: np.concatenate(v) for k, v in out.items()}


def skewed(structures, seed: int = 1):
    """Each crystal written in a very skewed basis (a random unimodular matrix, entries to ±3)."""
    rng = np.random.default_rng(seed)
    out = []
    for s in structures:
        while True:
            m = rng.integers(-3, 4, size=(3, 3))
            if round(abs(np.linalg.det(m))) == 1 and np.abs(m).max() == 3:
                break
        t = s.copy()
        t.set_cell(m @ s.cell[:], scale_atoms=False)
        out.append(t)
    return out


def overlaps(ensemble, structures, canonical: bool) -> int:
    """Predictions that put two atoms < 0.5 Å apart (refused and counted by the adapter)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predict(ensemble, structures, canonical=canonical)
    return sum("apart" in str(w.message) for w in caught)


def main() -> int:
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    ensemble = load_deeprelax()[0]
    structures = crystals()
    before = changes(ensemble, structures, canonical=False)
    after = changes(ensemble, structures, canonical=True)
    print(f"{len(structures)} strained, rattled crystals, shipped weights, float32\n")
    print("| change (Å; volume %) | before: median | before: max | after: median | after: max |")
    print("|---|---:|---:|---:|---:|")
    for k in before:
        b, a = before[k], after[k]
        if k == "batch of 16":  # both sides run the model one structure at a time now
            print(f"| {k} | (see README) | | {np.median(a):.3g} | {a.max():.3g} |")
            continue
        print(f"| {k} | {np.median(b):.3g} | {b.max():.3g} | {np.median(a):.3g} | {a.max():.3g} |")
    bent = skewed(structures * 3)
    print(
        f"\n{len(bent)} of these crystals in very skewed bases: predictions with atoms < 0.5 Å "
        f"apart, before {overlaps(ensemble, bent, False)}, after {overlaps(ensemble, bent, True)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
