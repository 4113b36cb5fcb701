"""The one ``to_dict``/``from_dict`` of every model config (dataclasses stored in checkpoints)."""

from __future__ import annotations

import math
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

    def check_fields(
        self,
        positive_ints: tuple[str, ...] = (),
        positive: tuple[str, ...] = (),
        non_negative: tuple[str, ...] = (),
    ) -> None:
        """A ``ValueError`` naming the first field that is not a positive integer
        (``positive_ints``; None passes), a finite number > 0 (``positive``) or a finite number
        >= 0 (``non_negative``), and for any float field that is not finite."""
        name = type(self).__name__
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{name}.{f.name} must be finite, got {value}")
        for field in positive_ints:
            value = getattr(self, field)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"{name}.{field} must be a positive integer, got {value!r}")
        for field, least in [(f, "> 0") for f in positive] + [(f, ">= 0") for f in non_negative]:
            value = getattr(self, field)
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            ok = ok and math.isfinite(value) and (value > 0 if least == "> 0" else value >= 0)
            if not ok:
                raise ValueError(f"{name}.{field} must be a finite number {least}, got {value!r}")
