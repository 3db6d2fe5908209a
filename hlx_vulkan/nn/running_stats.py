"""Running-statistics updates (batch norm's ``running_mean``, ``running_var`` and batch count),
applied at once or, inside :func:`deferred`, recorded to be replayed later.

Data-parallel training (hlx_vulkan.training.parallel) defers them: each rank records the updates
of its own micro-batches, the ranks' records are gathered after the step, and every rank replays
all of them in rank order with the same kernels, so the buffers get the bits of one process that
ran every micro-batch in turn.

Example::

    with deferred() as records:
        loss_fn(model(x), y).backward()      # running statistics untouched
    replay(records)                          # now updated, as if not deferred
"""

from __future__ import annotations

from contextlib import contextmanager

from ..autograd.graph import no_grad
from ..ops import elementwise as ew

_records: list | None = None


def deferring() -> bool:
    return _records is not None


def blend(running, stat, alpha: float, beta: float) -> None:
    """``running = running * alpha + stat * beta`` in place (``stat`` detached, same shape)."""
    if _records is not None:
        _records.append(("blend", running, stat, alpha, beta))
        return
    apply_blend(running, stat, alpha, beta)


def count(counter) -> None:
    """``counter += 1`` in place (the batch count)."""
    if _records is not None:
        _records.append(("count", counter, None, 0.0, 0.0))
        return
    apply_count(counter)


def apply_blend(running, stat, alpha: float, beta: float) -> None:
    with no_grad():
        ew.launch("x * alpha + y * beta", [running, stat], alpha=alpha, beta=beta, out=running)


def apply_count(counter) -> None:
    with no_grad():
        ew.launch("x + CT(1)", [counter], out=counter)


@contextmanager
def deferred():
    """Record instead of applying, until the block ends; yields the list of records
    ``(kind, running, stat, alpha, beta)``, kind ``"blend"`` or ``"count"``."""
    global _records
    if _records is not None:
        raise RuntimeError("running-statistics updates are already being deferred")
    _records = []
    try:
        yield _records
    finally:
        records, _records = _records, None


def replay(records, stats=None) -> None:
    """Apply ``records`` in order; ``stats`` (one per record) replaces each record's statistic
    (another rank's values for the same buffers)."""
    for i, (kind, running, stat, alpha, beta) in enumerate(records):
        if kind == "count":
            apply_count(running)
        else:
            apply_blend(running, stat if stats is None else stats[i], alpha, beta)


__all__ = ["blend", "count", "deferred", "deferring", "replay"]
