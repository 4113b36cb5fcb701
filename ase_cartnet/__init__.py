"""ase-cartnet: CartNet ADPs and other crystal models behind ASE interfaces."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
