"""Compact, stable text for the values that appear in table cells."""
from __future__ import annotations

import types
from typing import Any, Optional

import torch
import torch.fx

from .. import tree

ELLIPSIS = "\u2026"  # "…"


def abbreviate(text: str, max_width: Optional[int]) -> str:
    """One line, at most ``max_width`` characters; longer text ends in ``…``.

    ``max_width`` of ``None`` or ``0`` keeps the text whole (newlines still become spaces).
    """
    if "\n" in text:
        text = " ".join(part.strip() for part in text.splitlines() if part.strip())
    if max_width and len(text) > max_width:
        return text[: max(max_width - 1, 0)] + ELLIPSIS
    return text


def fmt_shape(shape: Any) -> str:
    """``(2, 3)`` -> ``2x3``; a 0-dim shape -> ``()``; unknown sizes print as ``?``."""
    if shape is None:
        return "?"
    dims = tuple(shape)
    if not dims:
        return "()"
    return "x".join("?" if d is None else str(d) for d in dims)


def fmt_dtype(dtype: Any) -> str:
    if dtype is None:
        return ""
    return str(dtype).replace("torch.", "", 1)


def fmt_device(device: Any) -> str:
    if device is None:
        return ""
    return str(device)


def qualname(fn: Any) -> str:
    """A stable dotted name for a call target: ``torch.relu``, ``operator.add``."""
    if isinstance(fn, str):
        return fn
    try:
        from torch.fx.node import _get_qualified_name

        name = _get_qualified_name(fn)
    except Exception:  # noqa: BLE001 - any target must print
        module = getattr(fn, "__module__", None)
        short = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
        if short is None:
            return repr(fn)
        name = f"{module}.{short}" if module else short
    if name.startswith("_operator."):
        name = "operator." + name[len("_operator."):]
    return name


def _is_tensor_meta(v: Any) -> bool:
    # fxtrace's TensorMeta and fx ShapeProp's TensorMetadata both have shape and dtype.
    return hasattr(v, "shape") and hasattr(v, "dtype") and not isinstance(v, torch.Tensor)


def fmt_value(v: Any, node_ref=None) -> str:
    """Text for an argument, a specialised value or a constant.

    Nodes print as ``%name`` (or as ``node_ref(node)`` when given), tensors as
    ``Tensor(2x3, float32)``, containers compactly, dtypes/devices without ``torch.``.
    """
    if isinstance(v, torch.fx.Node):
        return node_ref(v) if node_ref is not None else f"%{v.name}"
    if isinstance(v, torch.Tensor):
        return f"Tensor({fmt_shape(v.shape)}, {fmt_dtype(v.dtype)})"
    if isinstance(v, bool) or v is None or isinstance(v, int):
        return repr(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, torch.Size):  # printed as the tuple it is, as it always was
        inner = ", ".join(fmt_value(x, node_ref) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    if tree.is_container(v):
        items = tree.children(v)
        if isinstance(v, dict):
            return "{" + ", ".join(f"{fmt_value(k)}: {fmt_value(x, node_ref)}"
                                   for k, x in items) + "}"
        inner = ", ".join(fmt_value(x, node_ref) for _, x in items)
        if isinstance(v, list):
            return f"[{inner}]"
        if tree.is_namedtuple(v):
            return f"{type(v).__name__}({inner})"
        return f"({inner},)" if len(items) == 1 else f"({inner})"
    if isinstance(v, slice):
        parts = [("" if p is None else fmt_value(p, node_ref)) for p in (v.start, v.stop, v.step)]
        return ":".join(parts[:2]) if v.step is None else ":".join(parts)
    if v is Ellipsis:
        return "..."
    if isinstance(v, (torch.dtype, torch.layout, torch.memory_format)):
        return fmt_dtype(v)
    if isinstance(v, torch.device):
        return str(v)
    if isinstance(v, torch.Size):
        return f"Size({fmt_shape(v)})"
    if _is_tensor_meta(v):
        return f"Tensor({fmt_shape(v.shape)}, {fmt_dtype(v.dtype)})"
    if isinstance(v, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)) or (
            callable(v) and hasattr(v, "__qualname__")):
        return qualname(v)
    if isinstance(v, type):
        return v.__name__
    return repr(v)


def fmt_args(args: Any, kwargs: Any, node_ref=None) -> tuple[str, str]:
    a = ", ".join(fmt_value(x, node_ref) for x in args)
    k = ", ".join(f"{key}={fmt_value(val, node_ref)}" for key, val in kwargs.items())
    return a, k


def fmt_number(v: Optional[float]) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and v != v:
        return "nan"
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    return f"{v:.3g}"


def fmt_bytes(n: int) -> str:
    """``48`` -> ``48 B``; ``4096`` -> ``4.0 KiB`` (binary prefixes, one decimal)."""
    if n < 1024:
        return f"{n} B"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024.0
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}"
    return f"{n} B"  # pragma: no cover

