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


DEFAULT_DEEPRELAX = WEIGHTS_DIR / "deeprelax_ensemble.pt"


def default_deeprelax_checkpoint() -> Path:
    """Path of the shipped DeepRelax ensemble (model card: ``deeprelax_ensemble.json``)."""
    if not DEFAULT_DEEPRELAX.is_file():
        raise CheckpointError(
            f"the shipped DeepRelax weights are missing ({DEFAULT_DEEPRELAX}); reinstall "
            "ase-cartnet or pass DeepRelax(atoms, model='checkpoint.pt')"
        )
    return DEFAULT_DEEPRELAX


DEFAULT_EMPNN = WEIGHTS_DIR / "empnn_lattice_default.pt"


def default_empnn_checkpoint() -> Path:
    """Path of the shipped EMPNN lattice-denoising weights (model card: same stem, .json)."""
    if not DEFAULT_EMPNN.is_file():
        raise CheckpointError(
            "no default EMPNN weights ship with this installation: pass "
            "EMPNNLattice(atoms, model='empnn.pt') with a checkpoint from 'ase-cartnet train empnn'"
        )
    return DEFAULT_EMPNN
