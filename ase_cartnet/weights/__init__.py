"""Shipped model weights, each with its JSON model card (same stem), and :func:`shipped`."""

from __future__ import annotations

from pathlib import Path

from ase_cartnet.errors import CheckpointError

WEIGHTS_DIR = Path(__file__).resolve().parent
DEFAULT_CARTNET = WEIGHTS_DIR / "cartnet_adp_default.pt"
DEFAULT_DEEPRELAX = WEIGHTS_DIR / "deeprelax_ensemble.pt"
DEFAULT_EMPNN = WEIGHTS_DIR / "empnn_lattice_default.pt"
DEFAULT_PROPERTY = {
    "formation_energy_per_atom": WEIGHTS_DIR / "property_mp20_formation_energy.pt",
    "heat_ref": WEIGHTS_DIR / "property_perov5_heat_ref.pt",
}
"""Shipped property models per target."""

DEFAULT_PROPERTY_TARGET = "formation_energy_per_atom"

_INSTEAD = {
    "cartnet": (
        "CartNet",
        "CartNetADP(checkpoint='cartnet_adp.ckpt') with an official or ase-cartnet checkpoint",
    ),
    "deeprelax": ("DeepRelax", "DeepRelax(atoms, model='checkpoint.pt')"),
    "empnn": (
        "EMPNN",
        "EMPNNLattice(atoms, model='empnn.pt') with a checkpoint from 'ase-cartnet train empnn'",
    ),
}


def shipped_names() -> list[str]:
    """Names :func:`shipped` knows: cartnet, deeprelax, empnn and property/<target>."""
    return [*_INSTEAD, *(f"property/{t}" for t in DEFAULT_PROPERTY)]


def shipped(name: str) -> Path:
    """Path of the shipped weights ``name`` (see :func:`shipped_names`); a ``CheckpointError``
    that says what to pass instead when the file is not installed."""
    paths = {"cartnet": DEFAULT_CARTNET, "deeprelax": DEFAULT_DEEPRELAX, "empnn": DEFAULT_EMPNN}
    paths |= {f"property/{t}": p for t, p in DEFAULT_PROPERTY.items()}
    if name not in paths:
        raise CheckpointError(f"no shipped weights named {name!r}; shipped: {shipped_names()}")
    path = paths[name]
    if not path.is_file():
        label, instead = _INSTEAD.get(name, (name, "checkpoint=..."))
        raise CheckpointError(
            f"no default {label} weights ship with this installation ({path}): pass {instead}"
        )
    return path
