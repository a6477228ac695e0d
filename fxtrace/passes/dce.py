"""Dead code elimination that keeps side effects."""
from __future__ import annotations

import torch.fx as fx

from .purity import is_impure
from .result import PassResult

__all__ = ["eliminate_dead_code"]


def eliminate_dead_code(gm: fx.GraphModule) -> PassResult:
    """Remove every node whose value is unused and that has no side effect.

    Invariant: afterwards every node of ``gm.graph`` either has a user or is impure in the
    sense of :func:`fxtrace.passes.purity.is_impure` (placeholders, output, in-place ops,
    guards and ``torch._assert``, random ops, ``call_module``, unknown functions). Kept nodes
    keep their ``meta`` untouched; nothing is created. Unused placeholders stay (they are the
    signature) and attributes of ``gm`` are not deleted. Only ``gm.graph`` is visited;
    :func:`fxtrace.passes.run_passes` applies the pass to GraphModule submodules as well.

    Before::

        def forward(self, x):
            a = x.sin()          # unused, pure: removed
            b = torch.rand(3)    # unused, random: kept
            x.add_(1)            # unused, in place: kept
            return x * 2

    After::

        def forward(self, x):
            b = torch.rand(3)
            x.add_(1)
            return x * 2
    """
    graph = gm.graph
    modified = False
    # Reverse order: erasing a user first lets its inputs become dead in the same sweep.
    for node in reversed(list(graph.nodes)):
        if node.users or is_impure(node):
            continue
        graph.erase_node(node)
        modified = True
    return PassResult(gm, modified)
