"""Lowering of a rebound attribute (:func:`fxtrace.capture.rebinding.set_state`).

A forward that rebinds a buffer to a tensor of another dtype, shape or device
(``self.running = <float64 value>`` on a float32 buffer) is recorded as a ``set_state`` node
(NOTE [Rebinding state] in :mod:`fxtrace.capture.rebinding`). TorchScript modules can rebind
a Tensor attribute, on themselves and on submodules: the node is written as the assignment
``self.<path> = value`` (``prim::SetAttr``), which a saved and reloaded trace keeps.
"""
from __future__ import annotations

from typing import Any, Callable

import torch.fx as fx

from ..capture.rebinding import set_state

__all__ = ["assigns_state", "is_set_state", "set_state_statement"]


def is_set_state(target: Any) -> bool:
    """Whether a ``call_function`` target is an attribute rebinding."""
    return target is set_state


def set_state_statement(node: fx.Node, value: Callable[[Any], str]) -> str:
    """``self.<path> = <value>`` for a ``set_state`` node; ``value`` spells its argument.
    The capture records only paths of identifiers (others stay unrecorded, warned)."""
    path, written = node.args
    assert isinstance(path, str)
    return f"self.{path} = {value(written)}"


def assigns_state(gm: fx.GraphModule) -> bool:
    """Whether any graph of ``gm``'s tree rebinds an attribute: the lowered module then holds
    state of its own (its attribute slots), which a check must put back as the model's."""
    for module in gm.modules():
        graph = getattr(module, "graph", None)
        if isinstance(graph, fx.Graph) and any(
                n.op == "call_function" and n.target is set_state for n in graph.nodes):
            return True
    return False
