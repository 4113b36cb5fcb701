"""Harmonic ADPs from phonon modes: eqns (2)–(3) of the CartNet paper, vectorised.

    U(j, T) = ħ / (2 N m_j) Σ_{q,ν} (1 + 2 n_ν(q, T)) / ω_ν(q) · e_ν(j, q) ⊗ e_ν*(j, q)   (2)
    n_ν(q, T) = 1 / (exp(ħ ω_ν(q) / k_B T) − 1)                                          (3)

N is the number of q-points of the (unreduced, Γ-centred) mesh, m_j the mass of atom j and
e_ν(j, q) the three components of atom j in the mass-weighted eigenvector of the dynamical
matrix (phonopy's convention: eigenvectors are unit columns, ``eigenvectors[q][:, ν]``).

Physical constants are **phonopy's** (``phonopy.physical_units.get_physical_units()``, CODATA
2006 by default: ħ, eV, amu, k_B, h), read at call time. scipy.constants (CODATA 2018) would
shift ħ/amu by 3.4e-7 and h/k_B by 6.7e-7 relative, which would spoil a 1e-8 comparison with
phonopy; with phonopy's units our numbers equal phonopy's to rounding (≤ 2e-14 relative).

Only the real part of the sum is formed: U is the covariance of real displacements, and the
imaginary part cancels between q and −q on a symmetric mesh. phonopy instead asserts that it
is below 1e-10, which fails for even meshes of body-centred cells (TiO2 anatase at 6³); we
return a real U there, but such meshes break the lattice symmetry and converge from above
(anatase Ti, 300 K: U_eq 0.0060 Å² at 6³ against 0.0053 Å² at 5³ and 7³) — use odd meshes.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ase_cartnet.adp import CIF_COMPONENT_ORDER, six_to_matrix
from ase_cartnet.errors import InputError

DEFAULT_FREQ_MIN = 0.01
"""THz. Modes at or below this frequency are skipped (the acoustic modes at Γ and any
imaginary mode); phonopy's own regression tests use the same value."""

DEFAULT_IMAGINARY_TOL = 0.05
"""THz. A mode with frequency below −tol counts as imaginary (dynamically unstable). Smaller
negative values come from numerical noise of the acoustic branches near Γ."""

_CHUNK_ELEMENTS = 4_000_000
"""Float64 elements per q-chunk of mode outer products (≈32 MB); bounds the memory use."""


class ImaginaryModesError(InputError):
    """The phonon spectrum has imaginary modes beyond the tolerance: the structure is not a
    minimum (dynamically unstable), so harmonic ADPs are not defined."""


class ImaginaryModesWarning(UserWarning):
    """Imaginary modes were found and skipped; the ADPs miss their (divergent) contribution."""


@dataclass(frozen=True)
class HarmonicADPs:
    """Result of eqn (2) on a q-mesh.

    Attributes
    ----------
    temperatures
        (T,) K.
    u_cart
        (T, n_atoms, 3, 3) Cartesian U in Å², symmetric (positive definite unless every
        mode of an atom was skipped).
    n_qpoints
        N of eqn (2).
    n_modes
        number of (q, ν) pairs seen, ``n_qpoints × 3 n_atoms``.
    n_skipped
        modes left out of the sum (frequency ≤ ``freq_min``), imaginary ones included.
    n_imaginary
        modes with frequency < −``imaginary_tol`` (THz).
    min_frequency, max_frequency
        THz, over all modes (negative = imaginary).
    freq_min, imaginary_tol
        THz, the thresholds used.
    """

    temperatures: NDArray[np.float64]
    u_cart: NDArray[np.float64]
    n_qpoints: int
    n_modes: int
    n_skipped: int
    n_imaginary: int
    min_frequency: float
    max_frequency: float
    freq_min: float
    imaginary_tol: float

    @property
    def is_stable(self) -> bool:
        """True when no mode is imaginary beyond ``imaginary_tol``."""
        return self.n_imaginary == 0


def phonopy_units() -> dict[str, float]:
    """The constants used here, from phonopy: ħ (eV s), eV (J), amu (kg), k_B (eV/K), h (eV s)."""
    from phonopy.physical_units import get_physical_units

    u = get_physical_units()
    return {"hbar": u.Hbar, "ev": u.EV, "amu": u.AMU, "kb": u.KB, "thz_to_ev": u.THzToEv}


def _one_plus_two_n_over_omega(
    freqs_thz: NDArray[np.float64], temperatures: NDArray[np.float64], units: dict[str, float]
) -> NDArray[np.float64]:
    """(1 + 2 n) / ω in s for frequencies (K,) in THz (all > 0) at temperatures (T,); (T, K)."""
    omega = 2.0 * np.pi * 1e12 * freqs_thz  # ω in rad/s
    with np.errstate(divide="ignore"):
        # ħω / k_B T (= inf at T = 0, where n = 0)
        x = (units["thz_to_ev"] * freqs_thz)[None, :] / (units["kb"] * temperatures)[:, None]
    n = np.exp(-x) / -np.expm1(-x)  # eqn (3), written without overflow: 1 / (exp(x) − 1)
    return (1.0 + 2.0 * n) / omega[None, :]  # eqn (2): the mode weight (1 + 2n)/ω


class HarmonicSum:
    """Accumulates eqn (2) over chunks of q-points, so a large mesh never has to sit in memory.

    >>> acc = HarmonicSum(masses, temperatures)
    >>> for freqs, vecs in chunks:          # (q, 3n) THz, (q, 3n, 3n) complex
    ...     acc.add(freqs, vecs)
    >>> result = acc.result()               # HarmonicADPs

    The temperature-independent part, Re e_ν(j,q) ⊗ e_ν*(j,q) (6 unique components per atom),
    is formed once per mode; all temperatures then follow from one matrix product with the
    weights (1 + 2n)/ω.
    """

    def __init__(
        self,
        masses: ArrayLike,
        temperatures: ArrayLike,
        freq_min: float = DEFAULT_FREQ_MIN,
        imaginary_tol: float = DEFAULT_IMAGINARY_TOL,
    ) -> None:
        m = np.asarray(masses, dtype=np.float64)
        if m.ndim != 1 or m.size == 0 or not np.all(np.isfinite(m)) or np.any(m <= 0):
            raise InputError(
                f"masses must be a non-empty 1-D array of positive amu, got {masses!r}"
            )
        self._masses = m
        self._temperatures = _as_temperatures(temperatures)
        if not (np.isfinite(freq_min) and freq_min >= 0.0):
            raise InputError(f"freq_min must be a finite frequency >= 0 THz, got {freq_min!r}")
        if not (np.isfinite(imaginary_tol) and imaginary_tol >= 0.0):
            raise InputError(f"imaginary_tol must be finite and >= 0 THz, got {imaginary_tol!r}")
        self._freq_min = float(freq_min)
        self._imaginary_tol = float(imaginary_tol)
        self._units = phonopy_units()
        n_atoms = m.size
        self._sum6 = np.zeros((self._temperatures.size, n_atoms * 6))
        self._n_q = 0
        self._n_modes = 0
        self._n_skipped = 0
        self._n_imaginary = 0
        self._f_min = np.inf
        self._f_max = -np.inf
        a_idx, b_idx = zip(*CIF_COMPONENT_ORDER, strict=True)
        self._a = np.array(a_idx)
        self._b = np.array(b_idx)

    @property
    def n_atoms(self) -> int:
        """Atoms per primitive cell."""
        return self._masses.size

    def add(self, frequencies: ArrayLike, eigenvectors: ArrayLike) -> None:
        """Add the modes of a batch of q-points.

        frequencies : (q, 3n) THz, phonopy's convention (imaginary modes negative).
        eigenvectors : (q, 3n, 3n) complex, column ν is mode ν (as ``np.linalg.eigh`` and
            phonopy return them); row 3 j + α is atom j, Cartesian direction α.
        """
        freqs = np.asarray(frequencies, dtype=np.float64)
        vecs = np.asarray(eigenvectors)
        n3 = 3 * self.n_atoms
        if freqs.ndim != 2 or freqs.shape[1] != n3:
            raise InputError(f"frequencies must have shape (q, {n3}), got {freqs.shape}")
        if vecs.shape != (freqs.shape[0], n3, n3):
            raise InputError(
                f"eigenvectors must have shape ({freqs.shape[0]}, {n3}, {n3}), got {vecs.shape}"
            )
        if not np.all(np.isfinite(freqs)):
            raise InputError("frequencies contain NaN or inf")
        if freqs.size:
            self._f_min = min(self._f_min, float(freqs.min()))
            self._f_max = max(self._f_max, float(freqs.max()))
        self._n_q += freqs.shape[0]
        self._n_modes += freqs.size
        self._n_imaginary += int(np.count_nonzero(freqs < -self._imaginary_tol))
        per_q = n3 * self.n_atoms * 6
        step = max(1, _CHUNK_ELEMENTS // max(per_q, 1))
        for start in range(0, freqs.shape[0], step):
            self._add_chunk(freqs[start : start + step], vecs[start : start + step])

    def _add_chunk(self, freqs: NDArray[np.float64], vecs: NDArray) -> None:
        valid = freqs > self._freq_min  # imaginary and near-zero modes are skipped
        self._n_skipped += int(valid.size - np.count_nonzero(valid))
        # Modes as rows: (q, ν, j, α) -> the valid (K, n, 3) atom-resolved eigenvector parts.
        e = np.swapaxes(vecs, 1, 2).reshape(freqs.shape[0], -1, self.n_atoms, 3)[valid]
        if e.shape[0] == 0:
            return
        # eqn (2): Re e(j) ⊗ e*(j), the 6 unique components per atom, T-independent; (K, n·6)
        outer = (
            e.real[:, :, self._a] * e.real[:, :, self._b]
            + e.imag[:, :, self._a] * e.imag[:, :, self._b]
        ).reshape(e.shape[0], -1)
        weights = _one_plus_two_n_over_omega(freqs[valid], self._temperatures, self._units)
        self._sum6 += weights @ outer  # eqn (2): Σ_{q,ν} (1 + 2n)/ω e ⊗ e*, all T at once

    def result(self, raise_on_imaginary: bool = False) -> HarmonicADPs:
        """Finish eqn (2): the prefactor ħ/(2 N m_j) and the unit conversion to Å².

        With ``raise_on_imaginary`` an :class:`ImaginaryModesError` is raised when any mode is
        below −``imaginary_tol``; otherwise an :class:`ImaginaryModesWarning` is issued and the
        imaginary modes are left out.
        """
        if self._n_q == 0:
            raise InputError("no q-points were added")
        if self._n_imaginary:
            msg = (
                f"{self._n_imaginary} of {self._n_modes} phonon modes are imaginary "
                f"(below −{self._imaginary_tol:g} THz; lowest {self._f_min:.4g} THz): the "
                "structure is dynamically unstable and its harmonic ADPs are not physical"
            )
            if raise_on_imaginary:
                raise ImaginaryModesError(msg)
            warnings.warn(msg + "; those modes were skipped", ImaginaryModesWarning, stacklevel=3)
        u = self._units
        # eqn (2): ħ / (2 N m_j) in J s / kg, then m² -> Å² (1e20)
        prefactor = u["hbar"] * u["ev"] / (2.0 * self._n_q * self._masses * u["amu"]) * 1e20
        six = self._sum6.reshape(self._temperatures.size, self.n_atoms, 6) * prefactor[:, None]
        return HarmonicADPs(
            temperatures=self._temperatures.copy(),
            u_cart=six_to_matrix(six),
            n_qpoints=self._n_q,
            n_modes=self._n_modes,
            n_skipped=self._n_skipped,
            n_imaginary=self._n_imaginary,
            min_frequency=float(self._f_min),
            max_frequency=float(self._f_max),
            freq_min=self._freq_min,
            imaginary_tol=self._imaginary_tol,
        )


def _as_temperatures(temperatures: ArrayLike) -> NDArray[np.float64]:
    t = np.atleast_1d(np.asarray(temperatures, dtype=np.float64))
    if t.ndim != 1 or t.size == 0:
        raise InputError(f"temperatures must be a number or a 1-D sequence, got {temperatures!r}")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise InputError(f"temperatures must be finite and >= 0 K, got {t.tolist()}")
    return t


def harmonic_adps(
    frequencies: ArrayLike,
    eigenvectors: ArrayLike,
    masses: ArrayLike,
    temperatures: float | Sequence[float] | ArrayLike,
    freq_min: float = DEFAULT_FREQ_MIN,
    imaginary_tol: float = DEFAULT_IMAGINARY_TOL,
    raise_on_imaginary: bool = False,
) -> HarmonicADPs:
    """Cartesian ADPs of every atom of the primitive cell by eqns (2)–(3).

    Parameters
    ----------
    frequencies
        (Q, 3n) THz on the full (not symmetry-reduced) q-mesh, as phonopy gives them
        (``phonon.mesh.frequencies`` after ``run_mesh(..., with_eigenvectors=True,
        is_mesh_symmetry=False)``); imaginary modes are negative.
    eigenvectors
        (Q, 3n, 3n) complex, columns are modes (``phonon.mesh.eigenvectors``).
    masses
        (n,) amu, the primitive cell's masses in the eigenvector's atom order.
    temperatures
        K, a number or (T,); T = 0 gives the zero-point motion.
    freq_min
        THz; modes with frequency ≤ freq_min are skipped (Γ acoustic, imaginary).
    imaginary_tol
        THz; modes below −imaginary_tol are counted as imaginary.
    raise_on_imaginary
        raise :class:`ImaginaryModesError` instead of warning.

    Returns
    -------
    HarmonicADPs
        ``u_cart`` of shape (T, n, 3, 3) in Å² and the mode counts.
    """
    acc = HarmonicSum(masses, temperatures, freq_min=freq_min, imaginary_tol=imaginary_tol)
    acc.add(frequencies, eigenvectors)
    return acc.result(raise_on_imaginary=raise_on_imaginary)
