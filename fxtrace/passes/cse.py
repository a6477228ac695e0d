"""Common subexpression elimination of pure nodes."""
from __future__ import annotations

import enum
from typing import Any, Dict, Hashable, Optional

import torch
import torch.fx as fx

from .purity import effects_of, is_impure, may_write, possibly_mutated
from .result import PassResult

__all__ = ["eliminate_common_subexpressions", "node_key"]


class _Unkeyable(Exception):
    pass


_PLAIN = (bool, int, str, type(None), type(Ellipsis), torch.dtype, torch.device, torch.layout,
          torch.memory_format, enum.Enum)


def _key(value: Any) -> Hashable:
    """A hashable key such that equal keys mean interchangeable arguments.

    Keys carry the exact type (``1``, ``1.0`` and ``True`` differ), floats are compared by
    bits (``0.0`` and ``-0.0`` differ, every NaN equals NaN), nodes, tensors and any other
    object by identity, containers element-wise with their type.
    """
    if isinstance(value, fx.Node):
        return ("node", value)
    if isinstance(value, torch.Tensor):
        return ("tensor", id(value))
    if type(value) is float:
        return ("float", value.hex())
    if type(value) is complex:
        return ("complex", value.real.hex(), value.imag.hex())
    if isinstance(value, _PLAIN):
        return (type(value), value)
    if isinstance(value, (tuple, list)):  # includes torch.Size and named tuples
        return (type(value), tuple(_key(v) for v in value))
    if isinstance(value, dict):
        return (type(value), tuple((_key(k), _key(v)) for k, v in value.items()))
    if isinstance(value, slice):
        return ("slice", _key(value.start), _key(value.stop), _key(value.step))
    try:
        hash(value)
    except TypeError:
        raise _Unkeyable() from None
    return ("object", id(value))


def node_key(node: fx.Node) -> Optional[Hashable]:
    """The value-numbering key of ``node`` (op, target, args, kwargs), None if not keyable."""
    try:
        target = node.target if isinstance(node.target, str) else ("id", id(node.target))
        kwargs = tuple(sorted((k, _key(v)) for k, v in node.kwargs.items()))
        return (node.op, target, _key(tuple(node.args)), kwargs)
    except _Unkeyable:
        return None


def eliminate_common_subexpressions(gm: fx.GraphModule) -> PassResult:
    """Replace a pure node by an earlier node with identical op, target, args and kwargs.

    Invariant: afterwards no two interchangeable nodes exist among the candidates, and every
    program value is unchanged. A node is a candidate when it is pure (not
    :func:`~fxtrace.passes.purity.is_impure`: no in-place op, guard, random op, module call),
    its value is never written later (not in :func:`~fxtrace.passes.purity.possibly_mutated`),
    and no writing node (:func:`~fxtrace.passes.purity.may_write`, e.g. ``x.add_(1)``) lies
    between it and the node it replaces: every writing node clears the table. Arguments are
    compared by exact type and value; floats bit-wise (``0.0 != -0.0``, NaN == NaN), tensors
    and other objects by identity. The surviving (earlier) node keeps its ``meta``; the later
    one is erased. Only ``gm.graph`` is visited; :func:`fxtrace.passes.run_passes` recurses.

    As in TorchScript's CSE, a graph that returned two equal fresh tensors may afterwards
    return the same tensor twice.

    Before::

        def forward(self, x):
            a = x.relu()
            b = x.relu()
            r1 = torch.rand(3)
            r2 = torch.rand(3)
            return a + b + r1 + r2

    After::

        def forward(self, x):
            a = x.relu()
            r1 = torch.rand(3)
            r2 = torch.rand(3)
            return a + a + r1 + r2
    """
    graph = gm.graph
    effects = effects_of(graph)  # erasing nodes below keeps every other entry valid
    mutated = possibly_mutated(graph, effects)
    table: Dict[Hashable, fx.Node] = {}
    modified = False
    for node in list(graph.nodes):
        if may_write(node, effects):
            table.clear()
            continue
        if is_impure(node, effects) or node in mutated:
            continue
        key = node_key(node)
        if key is None:
            continue
        previous = table.get(key)
        if previous is None:
            table[key] = node
            continue
        node.replace_all_uses_with(previous)
        graph.erase_node(node)
        modified = True
    return PassResult(gm, modified)
