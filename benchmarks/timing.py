"""The timing loop the benchmark scripts share."""

from __future__ import annotations

import time


def mean_seconds(fn, sync, warmup: int, reps: int) -> float:
    """Seconds per call of ``fn``: ``warmup`` calls, a sync, then ``reps`` calls pipelined and one sync."""
    for _ in range(warmup):
        fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return (time.perf_counter() - t0) / reps
