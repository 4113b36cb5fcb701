"""SO(3) rotations for CartNet: training augmentation (paper eqns 19–20) and test-time averaging.

CartNet is not rotation-equivariant by construction (raw Cartesian directions enter an MLP); the
paper teaches approximate equivariance by rotating the direction vectors (eqn 19) and the target
ADPs (eqn 20, U' = R U Rᵀ, ESI S2) with the same random rotation.
"""

from __future__ import annotations

import torch


def random_rotations(
    n: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(n, 3, 3) rotation matrices drawn uniformly from SO(3) (Haar measure).

    Uses the QR decomposition of a Gaussian matrix with the sign of R's diagonal fixed, then flips
    one column where needed so that det = +1.
    """
    gauss = torch.randn(n, 3, 3, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gauss)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    det = torch.linalg.det(q)
    q[:, :, 0] = q[:, :, 0] * det.unsqueeze(-1)
    return q.to(dtype=dtype, device=device)


def rotate_vectors(
    vectors: torch.Tensor, rotations: torch.Tensor, index: torch.Tensor
) -> torch.Tensor:
    """Eqn 19: v' = R v for each row of ``vectors`` (E, 3), with R = rotations[index], (E,)."""
    return torch.einsum("eij,ej->ei", rotations.index_select(0, index), vectors)


def rotate_adps(u: torch.Tensor, rotations: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Eqn 20: U' = R U Rᵀ for each (3, 3) matrix of ``u`` (N, ..., 3, 3) (e.g. (N, T, 3, 3), one
    U per temperature), with R = rotations[index] for row n."""
    r = rotations.index_select(0, index)
    r = r.reshape(r.shape[0], *([1] * (u.dim() - 3)), 3, 3)
    return r @ u @ r.transpose(-1, -2)


def averaging_rotations(
    k: int, *, seed: int = 0, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """K fixed rotations for test-time averaging: the identity first, then K−1 Haar-random ones
    from a seeded generator (deterministic, so repeated calls give identical predictions)."""
    if k < 1:
        raise ValueError(f"rotations must be >= 1, got {k}")
    generator = torch.Generator().manual_seed(seed)
    rest = random_rotations(k - 1, generator=generator, dtype=dtype)
    return torch.cat([torch.eye(3, dtype=dtype).unsqueeze(0), rest], dim=0)
