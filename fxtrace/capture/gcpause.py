"""Python's cyclic garbage collector paused while fxtrace builds a graph.

NOTE [Paused GC]
A capture creates tens of Python objects per recorded op (fx nodes, metadata, source
locations) that all stay alive until the trace returns. Every 700 allocations the collector
scans the young objects; every tenth of those scans the middle generation, and once the
survivors reach a quarter of the long-lived heap, a full collection walks every object of
the process (torch alone leaves ~170k): on an 8,000-op trace that was a fifth of the trace
time and made the per-op cost grow with the graph. torch.jit's tracer keeps its graph in C++
and never pays it. While a capture, its passes or the lowering run, the collector is paused
and then resumed as it was: reference counting still frees every acyclic object at once
(tensors an op no longer needs included); only cyclic garbage waits until the end.

Invariant: the collector's enabled flag after the outermost pause ends is what it was before
it began, whatever the nesting and however many threads trace at once (a counter under a
lock: the last one out restores the flag the first one in saw).
"""
from __future__ import annotations

import contextlib
import gc
import threading
from typing import Iterator

__all__ = ["paused_gc"]

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic collector for the block (also usable as a decorator)."""
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
