"""Side-by-side comparison of predicted and reference ADPs: MAE, S12, IoU, a table and a plot.

All metric code is ``ase_cartnet.adp`` (the same functions the calculator reports); this module
only selects atoms, formats and draws.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms
from numpy.typing import ArrayLike, NDArray

from ase_cartnet.adp import IOU_GRID, adp_metrics, per_atom_metrics, u_equiv
from ase_cartnet.errors import InputError


@dataclass(frozen=True)
class ADPComparison:
    """Per-atom and summary metrics of ``u_pred`` against ``u_ref`` (both (N, 3, 3) Å²).

    ``compared`` (N,) bool marks the atoms that entered the metrics (non-H, finite in both);
    ``per_atom`` holds (N,) arrays ``mae`` (Å²), ``s12`` (%), ``iou`` (%), ``u_eq_pred`` and
    ``u_eq_ref`` (Å²), NaN for atoms not compared; ``summary`` is
    :func:`ase_cartnet.adp.adp_metrics` over the compared atoms (``mae`` Å², ``s12`` %, ``iou``
    %, ``n_atoms``).
    """

    atoms: Atoms
    u_pred: NDArray[np.float64]
    u_ref: NDArray[np.float64]
    compared: NDArray[np.bool_]
    per_atom: dict[str, NDArray[np.float64]]
    summary: dict[str, float]
    labels: list[str]
    names: tuple[str, str] = field(default=("pred", "ref"))

    def table(self) -> str:
        """A plain-text table: one line per atom, then the summary."""
        pred, ref = self.names
        head = (
            f"{'#':>4} {'atom':<8} {'U_eq ' + pred:>12} {'U_eq ' + ref:>12} "
            f"{'MAE (Å²)':>10} {'S12 (%)':>8} {'IoU (%)':>8}"
        )
        lines = [head]
        p = self.per_atom
        for i, label in enumerate(self.labels):
            if not self.compared[i]:
                lines.append(f"{i:>4} {label:<8} {'(not compared)':>12}")
                continue
            lines.append(
                f"{i:>4} {label:<8} {p['u_eq_pred'][i]:>12.5f} {p['u_eq_ref'][i]:>12.5f} "
                f"{p['mae'][i]:>10.2e} {p['s12'][i]:>8.3f} {p['iou'][i]:>8.1f}"
            )
        s = self.summary
        lines.append(
            f"mean over {s['n_atoms']} atoms: MAE {s['mae']:.3e} Å², S12 {s['s12']:.3f} %, "
            f"IoU {s['iou']:.1f} %"
        )
        return "\n".join(lines)

    def plot(
        self,
        path: str | os.PathLike,
        probability: float = 0.5,
        title: str | None = None,
        inputs: Sequence[str | os.PathLike | None] = (),
    ) -> Path:
        """ORTEP-style overlay (prediction red, reference translucent green) via
        :func:`ase_cartnet.plot.plot_ellipsoids`; atoms not compared are drawn as spheres."""
        from ase_cartnet.plot import plot_ellipsoids

        pred = np.where(self.compared[:, None, None], self.u_pred, np.nan)
        ref = np.where(self.compared[:, None, None], self.u_ref, np.nan)
        if title is None:
            s = self.summary
            title = (
                f"{self.atoms.get_chemical_formula()}: {self.names[0]} vs {self.names[1]} "
                f"(S12 {s['s12']:.2f} %, IoU {s['iou']:.0f} %)"
            )
        return plot_ellipsoids(
            path,
            self.atoms,
            pred,
            reference=ref,
            probability=probability,
            labels=self.labels,
            title=title,
            inputs=inputs,
        )


def compare(
    u_pred: ArrayLike,
    u_ref: ArrayLike,
    atoms: Atoms,
    *,
    include_hydrogen: bool = False,
    labels: Sequence[str] | None = None,
    names: tuple[str, str] = ("pred", "ref"),
    grid: int = IOU_GRID,
) -> ADPComparison:
    """Compare two sets of Cartesian ADPs (N, 3, 3) in Å² of the N atoms of ``atoms``.

    Hydrogen atoms are left out unless ``include_hydrogen`` (the CartNet paper's protocol),
    and so are atoms whose U is not finite in either set (e.g. NaN rows for H). Compared
    atoms must be symmetric positive definite in both sets (``ase_cartnet.adp`` raises
    otherwise). ``labels`` default to ``atoms.arrays["site_label"]`` or the element symbols.
    """
    pred = np.asarray(u_pred, dtype=np.float64)
    ref = np.asarray(u_ref, dtype=np.float64)
    n = len(atoms)
    if pred.shape != (n, 3, 3) or ref.shape != (n, 3, 3):
        raise InputError(
            f"expected ADPs of shape ({n}, 3, 3) for {n} atoms, got {pred.shape} and {ref.shape}"
        )
    compared = np.isfinite(pred).all(axis=(1, 2)) & np.isfinite(ref).all(axis=(1, 2))
    if not include_hydrogen:
        compared &= atoms.numbers != 1
    if not compared.any():
        raise InputError("no atom to compare (all hydrogen or non-finite)")
    if labels is None:
        labels = atoms.arrays.get("site_label", atoms.get_chemical_symbols())
    labels = [str(x) for x in labels]
    if len(labels) != n:
        raise InputError(f"{len(labels)} labels for {n} atoms")
    metrics = per_atom_metrics(pred[compared], ref[compared], grid=grid)
    per_atom = {}
    for key, values in metrics.items():
        full = np.full(n, np.nan)
        full[compared] = values
        per_atom[key] = full
    per_atom["u_eq_pred"] = np.where(
        compared, u_equiv(np.where(compared[:, None, None], pred, 0.0)), np.nan
    )
    per_atom["u_eq_ref"] = np.where(
        compared, u_equiv(np.where(compared[:, None, None], ref, 0.0)), np.nan
    )
    summary = adp_metrics(pred[compared], ref[compared], grid=grid)
    return ADPComparison(
        atoms=atoms.copy(),
        u_pred=pred,
        u_ref=ref,
        compared=compared,
        per_atom=per_atom,
        summary=summary,
        labels=labels,
        names=tuple(names),
    )
