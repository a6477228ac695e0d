"""Drop a runtime guard that repeats an earlier guard of the same condition."""
from __future__ import annotations

from typing import Any, Set

import torch
import torch.fx as fx

from ..capture.meta import GUARD
from .result import PassResult

__all__ = ["merge_guards"]


def _condition(node: fx.Node) -> Any:
    return node.args[0] if node.args else node.kwargs.get("condition")


def merge_guards(gm: fx.GraphModule) -> PassResult:
    """Erase every guard (``torch._assert`` marked ``meta["fxtrace_guard"]``) whose condition
    is the same graph value as an earlier guard's.

    Invariant: every input that made a guard raise still raises, with the same message. A
    graph is straight-line code, so the earlier guard runs first on every call; when it
    passes, the later one, asserting the same value, passes too, and when it fails, the
    later one never ran. Conditions are compared as nodes: CSE (which runs before) merges
    equal pure reads such as ``x.dtype == torch.float32``, and a write between two reads
    keeps them apart. Only ``gm.graph`` is visited: a submodule's guards stay in its own
    ``forward``, which may be called alone.

    Before / after (``nn.MultiheadAttention``'s fast path reads ``query.dtype`` for each of
    its four checks)::

        eq = getattr_1 == torch.float32
        _assert = torch._assert(eq, "... traced with dtype torch.float32 ...")
        _assert_1 = torch._assert(eq, "... traced with dtype torch.float32 ...")

        eq = getattr_1 == torch.float32
        _assert = torch._assert(eq, "... traced with dtype torch.float32 ...")
    """
    asserted: Set[fx.Node] = set()
    modified = False
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target is not torch._assert or \
                not node.meta.get(GUARD) or node.users:
            continue
        cond = _condition(node)
        if not isinstance(cond, fx.Node):
            continue
        if cond in asserted:
            gm.graph.erase_node(node)
            modified = True
        else:
            asserted.add(cond)
    return PassResult(gm, modified)
