"""What a pass returns and what the runner records about it."""
from __future__ import annotations

from typing import NamedTuple

import torch.fx as fx

__all__ = ["PassResult", "PassRecord"]


class PassResult(NamedTuple):
    """The result of one pass.

    ``graph_module`` is the (possibly rewritten) module, ``modified`` is True exactly when the
    pass changed its graph or its attributes. Same field names as
    ``torch.fx.passes.infra.pass_base.PassResult``, so code written for fx's pass manager reads
    it the same way.
    """

    graph_module: fx.GraphModule
    modified: bool


class PassRecord(NamedTuple):
    """One row of the ``passes`` table: what ``run_passes`` observed for one pass.

    ``nodes_before``/``nodes_after`` count the nodes of every ``GraphModule`` in the tree
    (root and submodules), ``ms`` is the wall time of the pass over the whole tree (verification
    excluded), ``modified`` is what the pass reported, OR-ed over the tree.
    """

    name: str
    nodes_before: int
    nodes_after: int
    ms: float
    modified: bool
