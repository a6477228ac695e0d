"""Call the ATen op a ``torch.nn.functional`` wrapper would call, where the recorded flags
already decide the wrapper's branches."""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import torch
import torch.fx as fx
import torch.nn.functional as F

from .result import PassResult

__all__ = ["call_ops_directly", "DIRECT_OPS"]

_MISSING = object()


def _arg(node: fx.Node, index: int, name: str, default: Any = _MISSING) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _batch_norm(node: fx.Node) -> Optional[Tuple[Callable[..., Any], Tuple[Any, ...]]]:
    if _arg(node, 5, "training", False) is not False:  # training: F checks the batch size
        return None
    x, mean, var = (_arg(node, i, n) for i, n in enumerate(("input", "running_mean",
                                                            "running_var")))
    weight, bias = _arg(node, 3, "weight", None), _arg(node, 4, "bias", None)
    momentum, eps = _arg(node, 6, "momentum", 0.1), _arg(node, 7, "eps", 1e-5)
    if _MISSING in (x, mean, var):
        return None
    return torch.batch_norm, (x, weight, bias, mean, var, False, momentum, eps,
                              torch.backends.cudnn.enabled)


def _unary(op: Callable[..., Any], inplace_op: Callable[..., Any]) -> Callable[[fx.Node], Any]:
    def rewrite(node: fx.Node) -> Optional[Tuple[Callable[..., Any], Tuple[Any, ...]]]:
        x, inplace = _arg(node, 0, "input"), _arg(node, 1, "inplace", False)
        if x is _MISSING or inplace not in (False, True) or \
                set(node.kwargs) - {"input", "inplace"}:
            return None
        return (inplace_op if inplace else op), (x,)
    return rewrite


def _layer_norm(node: fx.Node) -> Optional[Tuple[Callable[..., Any], Tuple[Any, ...]]]:
    x, shape = _arg(node, 0, "input"), _arg(node, 1, "normalized_shape")
    if _MISSING in (x, shape):
        return None
    return torch.layer_norm, (x, shape, _arg(node, 2, "weight", None),
                              _arg(node, 3, "bias", None), _arg(node, 4, "eps", 1e-5))


def _adaptive_avg_pool(op: Callable[..., Any], rank: int) -> Callable[[fx.Node], Any]:
    """``F.adaptive_avg_poolNd(x, output_size)`` with a literal size (an int or ints, no
    ``None``, which the wrapper would fill in from ``x``'s sizes): the op on that size as a
    list. Outputs are bitwise the same; an input of too low a rank fails in the op (a
    RuntimeError, as in torch.jit's trace) instead of in the wrapper (a ValueError)."""
    def rewrite(node: fx.Node) -> Optional[Tuple[Callable[..., Any], Tuple[Any, ...]]]:
        x, size = _arg(node, 0, "input"), _arg(node, 1, "output_size")
        if x is _MISSING or set(node.kwargs) - {"input", "output_size"}:
            return None
        if type(size) is int:
            size = [size] * rank
        if not isinstance(size, (list, tuple)) or len(size) != rank or \
                any(type(v) is not int for v in size):
            return None
        return op, (x, list(size))
    return rewrite


#: wrapper -> rewrite(node) -> (ATen op, args) or None to leave the call alone
DIRECT_OPS: Dict[Callable[..., Any], Callable[[fx.Node], Any]] = {
    F.batch_norm: _batch_norm,
    F.relu: _unary(torch.relu, torch.relu_),
    F.hardswish: _unary(torch._C._nn.hardswish, torch._C._nn.hardswish_),
    F.hardsigmoid: _unary(torch._C._nn.hardsigmoid, torch._C._nn.hardsigmoid_),
    F.layer_norm: _layer_norm,
    F.adaptive_avg_pool2d: _adaptive_avg_pool(torch._C._nn.adaptive_avg_pool2d, 2),
    F.adaptive_avg_pool3d: _adaptive_avg_pool(torch._C._nn.adaptive_avg_pool3d, 3),
}


def call_ops_directly(gm: fx.GraphModule) -> PassResult:
    """Replace calls of the ``torch.nn.functional`` wrappers in :data:`DIRECT_OPS` by the
    ATen op the wrapper calls, when the recorded arguments fix the wrapper's branches
    (``training=False`` for ``batch_norm``; a literal ``inplace`` for the activations, which
    then call the op or its in-place form).

    Invariant: outputs are bitwise unchanged (the wrapper would call exactly that op with
    those arguments). Lowered, the wrapper is a TorchScript function compiled from its
    Python source (once per process, at the first trace that calls it) and inlined by the
    graph executor; the op is the one call torch.jit's trace records, and the generated
    ``.code`` names it instead of ``__torch__.torch.nn.functional.batch_norm``.
    The node is rewritten in place, keeping its name, meta (source line, tensor meta) and
    users.

    Before / after::

        batch_norm = torch.nn.functional.batch_norm(x, mean, var, w, b, False, 0.1, 1e-05)
        batch_norm = torch.batch_norm(x, w, b, mean, var, False, 0.1, 1e-05, True)
    """
    modified = False
    for node in list(gm.graph.nodes):
        if node.op != "call_function":
            continue
        try:
            rewrite = DIRECT_OPS.get(node.target)
        except TypeError:  # an unhashable target
            continue
        found = rewrite(node) if rewrite is not None else None
        if found is None:
            continue
        op, args = found
        # rewritten in place: the node keeps its name (the generated local's), meta and users
        node.target, node.args, node.kwargs = op, args, {}
        modified = True
    return PassResult(gm, modified)
