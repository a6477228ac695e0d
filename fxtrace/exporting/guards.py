"""fxtrace's guards as runtime assertions that ``torch.export`` keeps.

A capture guards every value it froze with ``torch._assert(cond, message)``. Under
``torch.export`` that call is a Python ``assert``: on a size it is a guard that specialises the
dim (right: the trace covers only that size), but on a value read from a tensor
(``if x.sum() > 0``, ``n = int(t)``) it asks for the data at export time and export refuses.

:func:`exportable_guards` rewrites each guard of a captured tree, in place:

* a condition that reads a tensor's value is recomputed *as a tensor* (``bool(t) == True``
  becomes ``t.reshape(()).bool().eq(True)``) and asserted with ``torch._assert_async(cond,
  message)``: an op of the exported graph, with fxtrace's message, that raises at run time;
* any other condition (sizes, ranks, input constants) goes through :func:`check_guard`,
  ``torch._check``: export specialises what it must (a dim it fixes becomes static, checked by
  the exported program's input checks) and defers what it cannot decide to a runtime
  assertion (``aten._assert_scalar``).

Every node written keeps the guard's user line (``SOURCE`` and ``stack_trace``), so the
exported graph's ``stack_trace`` names the user's line of each assertion.
"""
from __future__ import annotations

import operator
from typing import Any, Callable, Dict, Iterator, Optional

import torch
import torch.fx as fx

from ..capture.meta import GUARD, METHODS, TENSOR_META, TensorMeta

__all__ = ["exportable_guards", "check_guard", "graph_modules"]


def check_guard(cond: Any, message: str) -> None:
    """A guard on a non-tensor value: ``torch._check`` (a plain bool is checked at once)."""
    torch._check(cond, lambda: message)


# The readings of a tensor's value that a guard may compare, as tensor computations. The
# capture read them from a one-element tensor (they raise otherwise), so ``reshape(())`` is safe.
def _as_bool(g: fx.Graph, t: fx.Node) -> fx.Node:
    return g.call_method("bool", (g.call_method("reshape", (t, ())),))


def _as_int(g: fx.Graph, t: fx.Node) -> fx.Node:
    # int() truncates toward zero, as the conversion to int64 does
    return g.call_method("to", (g.call_method("reshape", (t, ())), torch.int64))


def _as_float(g: fx.Graph, t: fx.Node) -> fx.Node:
    return g.call_method("to", (g.call_method("reshape", (t, ())), torch.float64))


def _as_item(g: fx.Graph, t: fx.Node) -> fx.Node:
    return g.call_method("reshape", (t, ()))


_READS: Dict[Any, Callable[[fx.Graph, fx.Node], fx.Node]] = {
    ("call_function", bool): _as_bool, ("call_function", int): _as_int,
    ("call_function", float): _as_float, ("call_method", "item"): _as_item,
}
_COMPARE = {operator.eq: "eq", operator.ne: "ne", operator.lt: "lt", operator.le: "le",
            operator.gt: "gt", operator.ge: "ge"}


def _is_tensor(node: Any) -> bool:
    return isinstance(node, fx.Node) and isinstance(node.meta.get(TENSOR_META), TensorMeta)


def _tensor_condition(g: fx.Graph, cond: Any) -> Optional[fx.Node]:
    """``cond`` recomputed as a boolean tensor node, or None when it reads no tensor value."""
    if not isinstance(cond, fx.Node):
        return None
    read = _READS.get((cond.op, cond.target))
    operand = cond.args[0] if len(cond.args) == 1 else None
    if read is not None and isinstance(operand, fx.Node) and _is_tensor(operand):
        return read(g, operand)
    if cond.op == "call_function" and cond.target is operator.not_:
        inner = _tensor_condition(g, cond.args[0])
        return None if inner is None else g.call_function(torch.logical_not, (inner,))
    if cond.op == "call_function" and cond.target in _COMPARE and len(cond.args) == 2:
        a, b = cond.args
        left = _tensor_condition(g, a)
        if left is not None and not isinstance(b, fx.Node):
            return g.call_method(_COMPARE[cond.target], (left, b))
    return None


def _rewrite(gm: fx.GraphModule, guard: fx.Node) -> bool:
    """Replace ``guard``; True when its condition became a tensor assertion."""
    g = gm.graph
    cond, message = guard.args[0], guard.args[1]
    existing = set(g.nodes)
    with g.inserting_before(guard):
        tensor = _tensor_condition(g, cond)
        new = (g.call_function(torch._assert_async, (tensor, message)) if tensor is not None
               else g.call_function(check_guard, (cond, message)))
    # the nodes just written carry the guard's user line, for export's stack traces
    for node in g.nodes:
        if node not in existing:
            node.meta.update({k: v for k, v in guard.meta.items()
                              if k not in (TENSOR_META, GUARD)})
    new.meta[GUARD] = True
    guard.replace_all_uses_with(new)
    g.erase_node(guard)
    if tensor is not None:
        _erase_unused(g, cond)
    return tensor is not None


def _erase_unused(g: fx.Graph, node: Any) -> None:
    """Erase the old condition's nodes that nothing reads any more (``bool(t)`` would ask
    export for the data), walking back through their inputs."""
    if not isinstance(node, fx.Node) or node.users or node.op != "call_function" and \
            node.op != "call_method":
        return
    inputs = node.all_input_nodes
    g.erase_node(node)
    for arg in inputs:
        _erase_unused(g, arg)


def _len_as_size(g: fx.Graph, node: fx.Node) -> None:
    """``len(t)`` as ``t.size(0)``: the same number, but a symbol under export where ``len``
    must give a Python int (``len(x.nonzero())`` would ask export for the data)."""
    with g.inserting_before(node):
        size = g.call_method("size", (node.args[0], 0))
    size.meta.update(node.meta)
    node.replace_all_uses_with(size)
    g.erase_node(node)


def graph_modules(gm: fx.GraphModule) -> Iterator[fx.GraphModule]:
    """Every GraphModule of a captured tree, extra traced methods included, once each."""
    seen = set()
    for module in gm.modules():
        if isinstance(module, fx.GraphModule) and id(module) not in seen:
            seen.add(id(module))
            yield module
            for extra in module.meta.get(METHODS, {}).values():
                if id(extra) not in seen:
                    seen.add(id(extra))
                    yield extra


def exportable_guards(gm: fx.GraphModule) -> int:
    """Rewrite every guard of the tree ``gm`` (see the module docstring) and write each
    graph's code; returns how many guards became ``torch._assert_async`` assertions."""
    tensor_guards = 0
    for module in list(graph_modules(gm)):
        for node in module.graph.nodes:
            if node.name == "self":
                # a call of a child module called ``self`` (BERT's attention): the generated
                # code would rebind ``self`` and lose the module's other children
                node._rename("self_")
        for node in list(module.graph.nodes):
            if node.op == "call_function" and node.target is len and len(node.args) == 1 \
                    and _is_tensor(node.args[0]):
                _len_as_size(module.graph, node)
        for guard in [n for n in module.graph.nodes if n.meta.get(GUARD)]:
            tensor_guards += _rewrite(module, guard)
        module.recompile()
        # A lazy GraphModule's forward is ``(*args, **kwargs)`` until its code is written;
        # export reads the parameter names from it.
        real = getattr(module, "real_recompile", None)
        if real is not None:
            real()
    return tensor_guards
