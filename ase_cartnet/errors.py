"""Error types raised on bad input (every one is a ``ValueError``)."""

from __future__ import annotations


class InputError(ValueError):
    """A structure, temperature or option that the package cannot use, named in the message."""


class CheckpointError(ValueError):
    """A checkpoint file that is unreadable, truncated, or of another architecture."""


class CIFError(ValueError):
    """A CIF file that cannot be parsed or lacks the data that was asked for."""


class CIFWarning(UserWarning):
    """Something in a CIF was odd but usable (ambiguous label, broken site symmetry, …)."""
