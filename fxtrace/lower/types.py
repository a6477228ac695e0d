"""TorchScript's spelling of the types lowering writes: signature annotations and the
NamedTuple classes a generated function returns."""
from __future__ import annotations

import typing
from typing import Any, Dict

import torch
import torch.fx as fx

from ..capture.meta import VALUE_TYPE
from ..errors import LoweringError

__all__ = ["type_repr", "expressible_namedtuple", "scriptable_namedtuple"]


def type_repr(t: Any) -> str:
    """TorchScript spelling of a ``typing`` annotation (``Tuple[Tensor, int]``, ...)."""
    if t is torch.Tensor:
        return "Tensor"
    if t in (int, float, bool, str):
        return t.__name__
    if t is type(None):
        return "NoneType"
    if t is torch.dtype:
        return "int"
    if t is torch.device:
        return "Device"
    origin = typing.get_origin(t)
    args = typing.get_args(t)
    if origin is tuple:
        if not args or args == ((),):
            return "Tuple[()]"
        return f"Tuple[{', '.join(type_repr(a) for a in args)}]"
    if origin is list:
        return f"List[{type_repr(args[0])}]"
    if origin is dict:
        return f"Dict[{type_repr(args[0])}, {type_repr(args[1])}]"
    if origin is typing.Union and len(args) == 2 and type(None) in args:
        inner = args[0] if args[1] is type(None) else args[1]
        return f"Optional[{type_repr(inner)}]"
    raise LoweringError(f"type {t!r} has no TorchScript spelling")


def expressible_namedtuple(value: tuple) -> bool:
    """TorchScript rebuilds a namedtuple class from its annotations; a plain
    ``collections.namedtuple`` has none and is taken as all-Tensor fields."""
    if getattr(type(value), "__annotations__", None):
        return True
    return all(isinstance(v, fx.Node) and v.meta.get(VALUE_TYPE) is None for v in value)


_RESOLVED_NAMEDTUPLES: Dict[type, type] = {}


def scriptable_namedtuple(cls: type) -> type:
    """``cls``, or a twin whose annotations are types, not strings: TorchScript cannot read a
    NamedTuple declared under ``from __future__ import annotations``."""
    annotations = getattr(cls, "__annotations__", {})
    if not any(isinstance(v, (str, typing.ForwardRef)) for v in annotations.values()):
        return cls
    known = _RESOLVED_NAMEDTUPLES.get(cls)
    if known is not None:
        return known
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - unresolvable: TorchScript will say what it lacks
        return cls
    fields = [(f, hints.get(f, torch.Tensor)) for f in getattr(cls, "_fields", ())]
    twin: Any = typing.NamedTuple(cls.__name__, fields)  # type: ignore[misc]
    # a qualified name of its own: TorchScript keys NamedTuple types by it
    twin.__module__ = cls.__module__
    twin.__qualname__ = f"{cls.__qualname__}_fxtrace{len(_RESOLVED_NAMEDTUPLES)}"
    _RESOLVED_NAMEDTUPLES[cls] = twin
    return twin
