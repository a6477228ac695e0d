"""Python ``typing`` types of example values: what a graph input's annotation says.

Lowering writes these annotations into the TorchScript signature, so they follow TorchScript's
type language: ``Tensor``, ``int``, ``float``, ``bool``, ``str``, ``Tuple[...]``, ``List[T]``,
``Dict[str, T]`` and ``Optional[T]``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch

from ..errors import InvalidArgument
from .values import TracedSize, is_traced, untraced

__all__ = ["python_type_of"]


def python_type_of(value: Any, where: str = "input") -> Any:
    """The TorchScript-expressible type of ``value``; raises InvalidArgument naming ``where``."""
    if isinstance(value, torch.Tensor):
        return torch.Tensor
    if isinstance(value, TracedSize):
        return List[int]  # the size list node (``x.size()``)
    if is_traced(value):
        value = untraced(value)
    if value is None:
        return Optional[torch.Tensor]
    if isinstance(value, bool):
        return bool
    if isinstance(value, int):
        return int
    if isinstance(value, float):
        return float
    if isinstance(value, str):
        return str
    if isinstance(value, torch.dtype):
        return torch.dtype
    if isinstance(value, torch.device):
        return torch.device
    if isinstance(value, tuple):
        if not value:
            return Tuple[()]
        return Tuple[tuple(_element_type(v, f"{where}[{i}]") for i, v in enumerate(value))]
    if isinstance(value, list):
        types = {python_type_of(v, f"{where}[{i}]") for i, v in enumerate(value)}
        if len(types) > 1:
            raise InvalidArgument(f"{where} is a list mixing element types {sorted(map(str, types))};"
                                  " TorchScript lists hold one type (use a tuple)")
        return List[types.pop() if types else torch.Tensor]  # type: ignore[misc]
    if isinstance(value, dict):
        keys = {type(k) for k in value}
        if len(keys) > 1 or not keys <= {str, int}:
            raise InvalidArgument(f"{where} is a dict whose keys are not all str (or all int)")
        key = keys.pop() if keys else str
        types = {python_type_of(v, f"{where}[{k!r}]") for k, v in value.items()}
        if len(types) > 1:
            raise InvalidArgument(f"{where} is a dict mixing value types; TorchScript dicts hold one")
        return Dict[key, types.pop() if types else torch.Tensor]  # type: ignore[misc,valid-type]
    raise InvalidArgument(f"{where} has type {type(value).__name__}, which a traced program cannot "
                          "take as input (expected tensors, numbers, strings, None, or tuples, "
                          "lists and dicts of them)")


def _element_type(value: Any, where: str) -> Any:
    # Inside a tuple, None is NoneType rather than Optional[Tensor].
    return type(None) if value is None else python_type_of(value, where)
