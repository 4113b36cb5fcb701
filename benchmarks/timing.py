"""Timing helpers shared by the benchmark scripts (best-of-N wall time, interleaved variants)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def best_time(function: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Best wall time (s) of ``repeats`` calls, and the last call's result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def interleaved_best_times(
    functions: dict[str, Callable[[], Any]], repeats: int
) -> dict[str, float]:
    """Best-of-``repeats`` wall time of each function, runs interleaved (A, B, A, B, …) after
    one warm-up each, so load from other processes on a noisy machine hits every variant alike."""
    for function in functions.values():
        function()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}
