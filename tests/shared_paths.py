"""Where ../shared lives, and a skip marker for tests that need it (absent on a user's machine)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(
    os.environ.get("ASE_CARTNET_SHARED", Path(__file__).resolve().parents[1].parent / "shared")
)
FIXTURES = SHARED / "fixtures" / "cartnet_upstream"
DATA = SHARED / "data"

needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason="../shared is absent (a user's machine); CI has it"
)
