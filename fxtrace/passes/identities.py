"""Remove calls that return their input unchanged: dropout that a trace records as off."""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.fx as fx
import torch.nn.functional as F

from .result import PassResult

__all__ = ["drop_inactive_dropout"]

#: dropout functions with the signature ``(input, p, training[, inplace])``
_DROPOUTS = {F.dropout, torch.dropout, F.dropout1d, F.dropout2d, F.dropout3d,
             F.alpha_dropout, torch.alpha_dropout, F.feature_alpha_dropout,
             torch.feature_dropout, torch.feature_alpha_dropout}


def _flag(node: fx.Node) -> Optional[Any]:
    """The ``training`` argument of a dropout call as recorded (a node if it is computed)."""
    if len(node.args) > 2:
        return node.args[2]
    if "training" in node.kwargs:
        return node.kwargs["training"]
    if "train" in node.kwargs:
        return node.kwargs["train"]
    # F.dropout's default is training=True; torch.dropout has no default
    return True


def drop_inactive_dropout(gm: fx.GraphModule) -> PassResult:
    """Replace every dropout call whose ``training`` argument is the literal ``False`` by its
    input.

    Invariant: outputs are bitwise unchanged. Dropout with ``training=False`` returns its
    input tensor itself (ATen's ``dropout`` returns ``input`` when not training; the
    functional wrappers too, except batchless ``dropout1d``/``dropout3d``, which return a
    view of all of it), so using the input directly computes the same values, sharing the
    same memory, one call fewer. A flag that is a graph value (read from ``self.training``
    at run time) or ``True`` is left alone.
    """
    modified = False
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in _DROPOUTS or not node.args:
            continue
        flag = _flag(node)
        if flag is not False or not isinstance(node.args[0], fx.Node):
            continue
        node.replace_all_uses_with(node.args[0])
        gm.graph.erase_node(node)
        modified = True
    return PassResult(gm, modified)
