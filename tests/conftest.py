"""Test-session settings: deterministic, two-thread torch."""

from __future__ import annotations

import os

import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))
torch.manual_seed(0)
