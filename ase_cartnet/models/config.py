"""The one ``to_dict``/``from_dict`` of every model config (dataclasses stored in checkpoints)."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, Self


class ConfigDict:
    """Mixin for config dataclasses: plain-dict round trip, unknown keys refused by name."""

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (tuples as lists), as checkpoints store them."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Self:
        """The config of ``values``; a ``ValueError`` names any key that is not a field."""
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {unknown}")
        return cls(**values)
