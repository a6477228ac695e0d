"""The pass runner: applies passes in order, records the ``passes`` table, blames failures."""
from __future__ import annotations

import functools
import logging
import os
import time
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.fx as fx

from ..errors import PassError
from .result import PassRecord, PassResult
from .verify import verify

__all__ = ["run_passes", "pass_name", "count_nodes", "VERIFY_ENV"]

log = logging.getLogger("fxtrace.passes")

#: Environment variable: ``FXTRACE_VERIFY=1`` verifies after every pass.
VERIFY_ENV = "FXTRACE_VERIFY"

Pass = Callable[[fx.GraphModule], PassResult]


def pass_name(p: Callable) -> str:
    """A pass's name for tables and messages: the function name (of a partial's function)."""
    while isinstance(p, functools.partial):
        p = p.func
    return getattr(p, "__name__", None) or type(p).__name__


def _graph_modules_post_order(gm: torch.nn.Module, prefix: str = "", seen=None
                              ) -> Iterator[Tuple[str, torch.nn.Module, str, fx.GraphModule]]:
    """``(parent path, parent, attribute name, GraphModule)``, submodules before parents."""
    seen = set() if seen is None else seen
    for name, child in list(gm.named_children()):
        path = f"{prefix}.{name}" if prefix else name
        yield from _graph_modules_post_order(child, path, seen)
        if isinstance(child, fx.GraphModule) and id(child) not in seen:
            seen.add(id(child))
            yield prefix, gm, name, child


def count_nodes(gm: torch.nn.Module) -> int:
    """Number of nodes in every GraphModule of the tree (shared submodules counted once)."""
    total = len(gm.graph.nodes) if isinstance(gm, fx.GraphModule) else 0
    return total + sum(len(sub.graph.nodes) for *_, sub in _graph_modules_post_order(gm))


def _apply(p: Pass, gm: fx.GraphModule) -> Tuple[fx.GraphModule, bool]:
    """Apply ``p`` to every GraphModule submodule (post-order) and then to ``gm``."""
    modified = False
    for _path, parent, attr, sub in list(_graph_modules_post_order(gm)):
        new_sub, changed = _call(p, sub)
        if new_sub is not sub:
            setattr(parent, attr, new_sub)
        modified |= changed
    new_gm, changed = _call(p, gm)
    return new_gm, modified or changed


def _call(p: Pass, gm: fx.GraphModule) -> Tuple[fx.GraphModule, bool]:
    result = p(gm)
    if result is None:
        raise TypeError("the pass returned None instead of a PassResult")
    new_gm, modified = result
    if not isinstance(new_gm, fx.GraphModule):
        raise TypeError(f"the pass returned a {type(new_gm).__name__}, not a GraphModule")
    if modified:
        new_gm.recompile()
    return new_gm, bool(modified)


def run_passes(gm: fx.GraphModule, passes: Sequence[Pass], *,
               verify_each: Optional[bool] = None, require_source: bool = False
               ) -> Tuple[fx.GraphModule, List[PassRecord]]:
    """Apply ``passes`` in order to ``gm`` and to every ``GraphModule`` in its module tree.

    Each pass is called on every GraphModule submodule (children before parents, each shared
    submodule once) and then on ``gm``; a pass that returns a different GraphModule for a
    submodule has it set in place of the old one. Every GraphModule a pass reports as modified
    is ``recompile()``-d. After each pass, when ``verify_each`` is True (or None and the
    environment has ``FXTRACE_VERIFY=1``), :func:`fxtrace.passes.verify` checks the whole tree
    (with ``require_source``); the input is verified once before the first pass as well.

    Returns the final root GraphModule and one :class:`PassRecord` per pass (name, node counts
    before/after over the whole tree, milliseconds, modified). Each record is also logged on
    the ``fxtrace.passes`` logger at DEBUG level.

    Any exception from a pass, or from verification after it, is re-raised as
    :class:`~fxtrace.errors.PassError` chained from the original::

        PassError: error in pass 'cse' after passes ['eliminate_dead_code']: Node ...
    """
    if verify_each is None:
        verify_each = os.environ.get(VERIFY_ENV, "") == "1"
    records: List[PassRecord] = []
    done: List[str] = []
    if verify_each:
        try:
            verify(gm, require_source=require_source)
        except Exception as exc:
            raise PassError(f"the graph is invalid before any pass ran: {exc}") from exc
    for p in passes:
        name = pass_name(p)
        before = count_nodes(gm)
        start = time.perf_counter()
        try:
            gm, modified = _apply(p, gm)
            ms = (time.perf_counter() - start) * 1000.0
            if verify_each:
                verify(gm, require_source=require_source)
        except Exception as exc:
            raise PassError(f"error in pass {name!r} after passes {done!r}: "
                            f"{type(exc).__name__}: {exc}") from exc
        record = PassRecord(name, before, count_nodes(gm), ms, modified)
        log.debug("pass %s: %d -> %d nodes, %.2f ms, modified=%s", *record)
        records.append(record)
        done.append(name)
    return gm, records
