"""A harmonic-oscillator ADP head for CartNet: the temperature enters through eqns 2–3 of the
CartNet paper instead of the atom embedding.

Eqn 2 writes the ADP of atom j as a sum over phonon modes (q, ν):

    U(j, T) = ħ / (2 N m_j) Σ_{q,ν} (1 + 2 n_ν(q, T)) / ω_ν(q) · e_ν(j, q) ⊗ e_ν*(j, q),

with the Bose–Einstein population n of eqn 3, so that (1 + 2n)/ω = coth(ħω / 2k_BT)/ω. Grouping
the modes into K fixed frequency bins ω_k gives

    U(j, T) = ħ / (2 m_j) Σ_k W_jk coth(ħω_k / 2k_BT) / ω_k,
    W_jk = (1/N) Σ_{(q,ν) in bin k} e_ν(j, q) ⊗ e_ν*(j, q)     (Hermitian, positive semidefinite).

Completeness of the eigenvectors, Σ_ν e_ν(j, q) ⊗ e_ν*(j, q) = I₃ for every q, makes the
W_jk a partition of the identity: Σ_k W_jk = I₃, so tr Σ_k W_jk = 3. The head predicts, from the
final atom features, one Cholesky factor per bin (the construction of eqns 15–18, repeated K
times), B_jk = L_jkᵀ L_jk, and normalises their total trace to 3: W_jk = 3 B_jk / Σ_k tr B_jk.
The network therefore decides only *where* each atom's vibrational weight lies in frequency and
in direction (an atom-projected phonon density of states); the size of U follows from the
oscillator formula, its mass and the temperature. U is positive definite at every T, tends to the
zero-point value ħ/(2 m_j) Σ_k W_jk/ω_k as T → 0 and grows as k_B T/m_j Σ_k W_jk/ω_k² at high T,
as harmonic ADPs do. Since the network does not see T, one forward pass gives U at any number of
temperatures.

Pure PyTorch. Units: frequencies in THz (ν = ω / 2π), masses in amu, temperatures in K, U in Å².
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ase_cartnet.models.blocks import spd_from_six

HBAR_OVER_2_AMU_THZ = 1.054571817e-34 / (2.0 * 1.66053906660e-27 * 2.0 * math.pi * 1e12) * 1e20
"""ħ / (2 m ω) in Å² for m = 1 amu and ν = ω / 2π = 1 THz (CODATA 2018 ħ and amu)."""

H_THZ_OVER_KB = 6.62607015e-34 * 1e12 / 1.380649e-23
"""hν / k_B in K for ν = 1 THz (CODATA 2018, exact)."""


INIT_CENTRE_THZ = 5.0
"""THz: centre of the spectrum the head starts from (typical of inorganic crystals)."""

INIT_WIDTH = 0.7
"""Width in ln ν of that starting spectrum."""


def bin_frequencies(num_bins: int, freq_min: float, freq_max: float) -> torch.Tensor:
    """(K,) THz: the representative frequencies ν_k, log-spaced from ``freq_min`` to ``freq_max``
    (the phonon densities of states of crystals span about two decades)."""
    if num_bins < 1 or not 0.0 < freq_min < freq_max:
        raise ValueError(
            f"need num_bins >= 1 and 0 < freq_min < freq_max, got {num_bins}, {freq_min}, "
            f"{freq_max}"
        )
    return torch.logspace(math.log10(freq_min), math.log10(freq_max), num_bins, dtype=torch.float64)


def oscillator_factor(frequencies: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """ħ (1 + 2n) / (2ω) = ħ coth(hν / 2k_BT) / (2ω) per unit mass (Å²·amu), eqns 2–3.

    ``frequencies`` (K,) THz; ``temperature`` (...) K, ≥ 0 (T = 0 gives the zero-point value).
    Returns (..., K).
    """
    nu = frequencies.to(torch.float64)
    t = temperature.to(torch.float64).unsqueeze(-1)
    x = H_THZ_OVER_KB * nu / (2.0 * t.clamp_min(1e-12))
    coth = 1.0 / torch.tanh(x.clamp_max(40.0))  # coth(x) = 1 to float64 precision beyond 40
    return HBAR_OVER_2_AMU_THZ * coth / nu


class HarmonicHead(nn.Module):
    """Per-atom spectral weights W_jk (K bins of 3×3 PSD matrices with Σ_k tr W_jk = 3) from the
    final atom features, and U(j, T) from them by eqns 2–3 (module docstring).

    ``forward(h, masses, temperature)``: h (n, d); masses (n,) amu; temperature (n,) K → U
    (n, 3, 3), or (n, T) K → (n, T, 3, 3), Å², float64.
    """

    def __init__(
        self, dim: int, num_bins: int, freq_min: float, freq_max: float, floor: float = 0.0
    ) -> None:
        super().__init__()
        self.num_bins = int(num_bins)
        self.MLP = nn.Sequential(
            nn.Linear(dim, dim // 2), nn.SiLU(), nn.Linear(dim // 2, 6 * self.num_bins)
        )
        self.register_buffer(
            "frequencies", bin_frequencies(num_bins, freq_min, freq_max), persistent=False
        )
        self.floor = float(floor)
        self._init_spectrum()

    @torch.no_grad()
    def _init_spectrum(self, centre: float = INIT_CENTRE_THZ, width: float = INIT_WIDTH) -> None:
        """Start from an isotropic log-normal spectrum around ``centre`` THz (``width`` in ln ν)
        instead of equal weights in every bin: equal weights put a third of each atom in the
        lowest bins, where 1/ω² makes U hundreds of times too large at the start of training.
        Only the biases of the diagonal outputs are set; the network learns the rest."""
        nu = self.frequencies
        prior = torch.exp(-0.5 * ((torch.log(nu) - math.log(centre)) / width) ** 2)
        prior = prior.clamp_min(1e-4)
        bias = self.MLP[2].bias.view(self.num_bins, 6)
        bias.zero_()
        bias[:, :3] = torch.log(torch.expm1(prior)).to(bias.dtype)[:, None]  # softplus⁻¹

    def spectral_weights(self, h: torch.Tensor) -> torch.Tensor:
        """W (n, K, 3, 3): B_k = L_kᵀ L_k with an upper-triangular L_k (eqns 15–18's
        construction, softplus diagonal), normalised so that Σ_k tr W_k = 3 (completeness)."""
        b = spd_from_six(self.MLP(h).double().reshape(h.shape[0], self.num_bins, 6))
        total = torch.diagonal(b, dim1=-2, dim2=-1).sum(dim=(-1, -2))  # Σ_k tr B_k, (n,)
        return 3.0 * b / total[:, None, None, None]

    def adps(
        self, weights: torch.Tensor, masses: torch.Tensor, temperature: torch.Tensor
    ) -> torch.Tensor:
        """U(j, T) = (1/m_j) Σ_k W_jk ħ coth(hν_k / 2k_BT) / (2ω_k) (eqns 2–3 over the bins).

        weights (n, K, 3, 3); masses (n,) amu; temperature (n,) or (n, T) K."""
        factor = oscillator_factor(self.frequencies, temperature)  # (n, K) or (n, T, K)
        factor = factor / masses.to(torch.float64).reshape(-1, *([1] * (factor.dim() - 1)))
        u = torch.einsum("n...k,nkab->n...ab", factor, weights)
        if self.floor > 0.0:
            u = u + self.floor * torch.eye(3, dtype=u.dtype, device=u.device)
        return u

    def forward(
        self, h: torch.Tensor, masses: torch.Tensor, temperature: torch.Tensor
    ) -> torch.Tensor:
        return self.adps(self.spectral_weights(h), masses, temperature)
