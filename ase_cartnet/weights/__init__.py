"""Shipped model weights and their model cards (JSON)."""

from __future__ import annotations

from pathlib import Path

from ase_cartnet.errors import CheckpointError

WEIGHTS_DIR = Path(__file__).resolve().parent
DEFAULT_CARTNET = WEIGHTS_DIR / "cartnet_adp_default.pt"


def default_cartnet_checkpoint() -> Path:
    """Path of the embedded default CartNet ADP weights; a clear error while none ship."""
    if not DEFAULT_CARTNET.is_file():
        raise CheckpointError(
            "no default CartNet weights ship with this version of ase-cartnet yet: pass "
            "CartNetADP(checkpoint='cartnet_adp.ckpt') with an official or ase-cartnet checkpoint"
        )
    return DEFAULT_CARTNET
