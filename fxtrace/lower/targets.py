"""What a recorded target is, for the code generator: Tensor methods reached as functions,
``torch.ops`` overloads, Python-level Tensor methods, and what ``...`` stands for in a subscript.
"""
from __future__ import annotations

import inspect
from typing import Any, Dict, Optional, Tuple

import torch
import torch.fx as fx

from ..capture.meta import TENSOR_META, VALUE_TYPE, TensorMeta
from .schema import binds_as_recorded

__all__ = ["NO_BUILTIN_DTYPE_METHODS", "binds", "ellipsis_fill", "is_tensor", "op_packet",
           "python_method_of_function", "tensor_method_name", "tolist_type"]


def python_method_of_function(name: str) -> bool:
    """``Tensor.name`` is Python code and ``torch.name`` a Python function of the same name."""
    return inspect.isfunction(vars(torch.Tensor).get(name)) and inspect.isfunction(
        getattr(torch, name, None))


def binds(name: str, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> bool:
    """The method call ``args[0].name(*args[1:], **kwargs)`` binds to an aten schema as is."""
    return binds_as_recorded(f"aten::{name}", args, kwargs)


def op_packet(fn: Any) -> Any:
    """The ``torch.ops`` packet of an operator overload or packet, else None."""
    if isinstance(fn, torch._ops.OpOverload):
        return fn.overloadpacket
    return fn if isinstance(fn, torch._ops.OpOverloadPacket) else None


# TorchScript has no method for these dtype conversions, even without arguments.
NO_BUILTIN_DTYPE_METHODS = frozenset({"bool", "bfloat16", "cfloat", "cdouble", "chalf"})


def is_tensor(value: Any) -> bool:
    """``value`` is a node the capture recorded a tensor for."""
    return isinstance(value, fx.Node) and isinstance(value.meta.get(TENSOR_META), TensorMeta)


def _tensor_method_table() -> Dict[int, str]:
    table: Dict[int, str] = {}
    for cls in (torch._C.TensorBase, torch.Tensor):  # Tensor's own entries win
        for attr, obj in vars(cls).items():
            if callable(obj) and not isinstance(obj, type):
                table[id(obj)] = attr
    return table


_TENSOR_METHODS = _tensor_method_table()


def tensor_method_name(fn: Any) -> Optional[str]:
    """The Tensor attribute name under which ``fn`` is defined (``Tensor.__pow__`` is a
    wrapper whose ``__name__`` is ``pow``), or None."""
    name = _TENSOR_METHODS.get(id(fn))
    if name is None:
        return None
    owner = torch.Tensor if name in vars(torch.Tensor) else torch._C.TensorBase
    return name if vars(owner).get(name) is fn else None


def _dims_consumed(item: Any) -> Optional[int]:
    """How many dimensions of the indexed tensor one index entry consumes; None if unknown."""
    if item is None:
        return 0
    if isinstance(item, (int, slice)) and not isinstance(item, bool):
        return 1
    if isinstance(item, fx.Node):
        meta = item.meta.get(TENSOR_META)
        if isinstance(meta, TensorMeta):
            return len(meta.shape) if meta.dtype in (torch.bool, torch.uint8) else 1
        return 1 if item.meta.get(VALUE_TYPE) is int else None
    return None


def ellipsis_fill(base: Any, idx: Any) -> Optional[int]:
    """The number of full slices ``...`` stands for in ``base[idx]``, when ``idx`` holds an
    Ellipsis *and* a tensor; None when the subscript can be written as recorded."""
    if not isinstance(idx, tuple) or Ellipsis not in idx or not is_tensor(base):
        return None
    if not any(is_tensor(i) for i in idx):
        return None
    used = [_dims_consumed(i) for i in idx if i is not Ellipsis]
    if any(u is None for u in used) or sum(idx_i is Ellipsis for idx_i in idx) != 1:
        return None
    fill = len(base.meta[TENSOR_META].shape) - sum(used)  # type: ignore[arg-type]
    return fill if fill >= 0 else None


def tolist_type(t: Any) -> Optional[str]:
    """The TorchScript type of ``t.tolist()`` for a recorded tensor ``t`` (``int``,
    ``List[List[float]]``, ...), which TorchScript needs spelled out; None if unknown."""
    if not is_tensor(t):
        return None
    meta = t.meta[TENSOR_META]
    if meta.dtype == torch.bool:
        elem = "bool"
    elif meta.dtype.is_floating_point:
        elem = "float"
    elif meta.dtype.is_complex:
        return None
    else:
        elem = "int"
    for _ in range(len(meta.shape)):
        elem = f"List[{elem}]"
    return elem
