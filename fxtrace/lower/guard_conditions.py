"""How a guard's condition is written: one test inside its ``if``.

NOTE [Guard conditions]
A guard runs on every call, so its condition is written as one test: the comparisons and
``not`` that capture recorded for it (``eq = training == False; assert eq``) are written into
the ``if`` itself when they exist only for that guard, immediately before it, and compare no
tensors (:func:`inlined_conditions`). ``not (a == b)`` becomes ``a != b`` and vice versa
(exact for every scalar, NaN included); other comparisons keep their ``not (...)``; a
module's training flag compared with a literal bool is tested directly
(``if training: raise``). A guard then costs a read and a branch, as a ``self.training`` test
in scripted code does (about half the interpreter time of ``eq``, ``not`` and a branch); the
guard that fires and its message are unchanged.
"""
from __future__ import annotations

import operator
from typing import Any, Callable, Set

import torch
import torch.fx as fx

from ..capture.meta import GUARD
from .special import negation
from .targets import is_tensor

__all__ = ["inlined_conditions", "failing", "holding"]

_COMPARISONS = {operator.eq: "==", operator.ne: "!=", operator.lt: "<", operator.le: "<=",
                operator.gt: ">", operator.ge: ">="}
_NEGATED = {operator.eq: "!=", operator.ne: "=="}  # ``not (a == b)``: exact, NaN included

Value = Callable[[Any], str]  # the code generator's spelling of a graph value


def _is_training_flag(value: Any) -> bool:
    """``value`` reads a module's ``training`` attribute (a bool in TorchScript)."""
    return isinstance(value, fx.Node) and value.op == "get_attr" and \
        str(value.target).rsplit(".", 1)[-1] == "training"


def _inlinable(cond: Any, user: fx.Node) -> bool:
    """``cond`` is a comparison or ``not`` of scalars computed only for ``user``, the node
    right after it: it can be written inside ``user``'s guard condition."""
    if not isinstance(cond, fx.Node) or cond.op != "call_function" or cond.kwargs or \
            list(cond.users) != [user] or cond.next is not user:
        return False
    if cond.target is operator.not_:
        return len(cond.args) == 1
    return cond.target in _COMPARISONS and len(cond.args) == 2 and \
        not any(is_tensor(a) for a in cond.args)


def inlined_conditions(graph: fx.Graph) -> Set[fx.Node]:
    """The nodes written inside the ``if`` of the guard they feed rather than as statements
    of their own."""
    found: Set[fx.Node] = set()
    for node in graph.nodes:
        if node.op != "call_function" or node.target is not torch._assert or \
                not node.meta.get(GUARD):
            continue
        cond, user = (node.args[0] if node.args else node.kwargs.get("condition")), node
        while _inlinable(cond, user):
            found.add(cond)
            cond, user = (cond.args[0] if cond.target is operator.not_ else None), cond
    return found


def failing(cond: Any, inlined: Set[fx.Node], value: Value) -> str:
    """TorchScript text that is true exactly when the guard condition ``cond`` is false."""
    if cond not in inlined:
        return negation(value(cond))
    if cond.target is operator.not_:
        return holding(cond.args[0], inlined, value)
    a, b = cond.args
    if cond.target is operator.eq and isinstance(b, bool) and _is_training_flag(a):
        return value(a) if b is False else negation(value(a))
    if cond.target in _NEGATED:
        return f"{value(a)} {_NEGATED[cond.target]} {value(b)}"
    return f"not ({holding(cond, inlined, value)})"


def holding(cond: Any, inlined: Set[fx.Node], value: Value) -> str:
    """TorchScript text that is true exactly when ``cond`` is."""
    if cond not in inlined:
        return value(cond)
    if cond.target is operator.not_:
        return failing(cond.args[0], inlined, value)
    return f"{value(cond.args[0])} {_COMPARISONS[cond.target]} {value(cond.args[1])}"
