"""Custom ``torch.autograd.Function``: a gradient through the trace is never silently wrong.

NOTE [Custom autograd Functions]
The capture records what a custom Function's ``forward`` computes, op by op; its ``backward``
is Python code TorchScript cannot hold (torch.jit.trace keeps it only in-process, as a
``PythonOp`` that cannot be saved). Differentiating the recorded ops would give a gradient
other than the user's backward — silently. So the trace computes the forward as recorded and,
right before it, asserts that no gradient can flow into the Function: at run time either
grad mode is off or none of its tensor arguments requires grad. The assertion names the
Function and the user's line and is kept with ``guards=False`` (it protects a gradient, not
a path). Inference (``torch.no_grad()``, ``torch.inference_mode()``, inputs without
``requires_grad``) runs unchanged; training through the trace raises instead of diverging.
"""
from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any, Optional, Tuple

import torch

from .. import tree
from .meta import GUARD, SourceLoc, Specialisation

if TYPE_CHECKING:
    from .concrete import ConcreteTracer

__all__ = ["guard_no_gradient", "gradient_message"]


def gradient_message(name: str, where: str) -> str:
    """The assertion message of a trace whose run would differentiate a custom Function."""
    return (f"fxtrace: the custom torch.autograd.Function {name} called at {where} would be "
            "differentiated through the trace, but its backward is not part of it (the trace "
            "holds the ops its forward ran, whose gradient is not the one its backward "
            "computes). Call the trace under torch.no_grad() or with inputs that do not "
            "require grad, or use the module eagerly for training.")


def guard_no_gradient(tracer: "ConcreteTracer", cls: Any, args: Tuple[Any, ...],
                      src: Optional[SourceLoc]) -> None:
    """Record, before the Function's recorded forward, the assertion of NOTE [Custom
    autograd Functions] on its tensor arguments that the graph knows."""
    if tracer.finished:
        return
    frame = tracer.frame
    nodes = []
    for value in tree.leaves(args):
        if isinstance(value, torch.Tensor):
            try:
                nodes.append(tracer.resolve(value))
            except Exception:  # noqa: BLE001 - a tensor the graph cannot hold is a constant
                continue
    if not nodes:
        return

    def create(target: Any, fx_args: Tuple[Any, ...], value: Any) -> Any:
        return tracer._create(frame, "call_function", target, fx_args, {}, value, source=src)

    wants: Any = None
    for node in nodes:
        needs = create(getattr, (node, "requires_grad"), False)
        wants = needs if wants is None else create(operator.or_, (wants, needs), False)
    grad = create(torch.is_grad_enabled, (), False)
    flows = create(operator.and_, (grad, wants), False)
    cond = create(operator.not_, (flows,), True)
    name = getattr(cls, "__qualname__", str(cls))
    where = str(src) if src is not None else "an unknown line"
    guard = create(torch._assert, (cond, gradient_message(name, where)), None)
    guard.meta[GUARD] = True
    tracer.specialisations.append(Specialisation(
        "autograd.Function", name, src, frame.path, guarded=True,
        detail=f"{name}: no gradient flows into it (its backward is not in the trace)"))
