"""Shared bench plumbing: a scratch database and topic prefix on the real infrastructure."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from tests.support import Stack


def scratch_stack() -> Stack:
    """Benchmarks reuse the test stack: own databases (dropped after) and topic prefix."""
    return Stack()


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")
