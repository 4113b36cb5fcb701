"""ase-cartnet: CartNet ADPs and other crystal models behind ASE interfaces.

``from ase_cartnet import CartNetADP`` works as in the user flows of DESIGN.md; the import is
lazy, so ``ase_cartnet.adp`` or ``ase_cartnet.io.cif`` users do not pay for torch_geometric.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "CartNetADP": "ase_cartnet.calculators.cartnet_adp",
    "DeepRelax": "ase_cartnet.calculators.deeprelax",
    "CrysToGraphProperty": "ase_cartnet.calculators.crystograph_property",
    "EMPNNLattice": "ase_cartnet.calculators.empnn_lattice",
}

__all__ = ["CartNetADP", "CrysToGraphProperty", "DeepRelax", "EMPNNLattice", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ase_cartnet' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names plus the lazy ones, so that ``dir`` and tab completion show them."""
    return sorted(set(globals()) | set(_LAZY))
