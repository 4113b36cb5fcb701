"""Error and warning types of the package: every error is an ``AseCartnetError`` (a
``ValueError``), so callers and the command line can tell bad input from a bug."""

from __future__ import annotations


class AseCartnetError(ValueError):
    """Base of the package's own errors: something the user gave that it cannot use."""


class InputError(AseCartnetError):
    """A structure, temperature or option that the package cannot use, named in the message."""


class CheckpointError(AseCartnetError):
    """A checkpoint file that is unreadable, truncated, corrupt, or of another architecture."""


class CIFError(AseCartnetError):
    """A CIF file that cannot be parsed or lacks the data that was asked for."""


class CIFWarning(UserWarning):
    """Something in a CIF was odd but usable (ambiguous label, broken site symmetry, …)."""


class BatchItemWarning(UserWarning):
    """A batch item that failed and was skipped (``errors="skip"``); the message names it."""


class ExtrapolationWarning(UserWarning):
    """A prediction outside what the model was trained on (a temperature outside its range, an
    atom without neighbours within the cutoff): computed, but an extrapolation."""


class MissingADPWarning(UserWarning):
    """Atoms left without a U (NaN rows), named in the message: e.g. an H with no parent atom to
    ride on under the riding-hydrogen policy."""
