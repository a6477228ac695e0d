"""Input sets of the checks: ``(args, kwargs)`` calls, their example, their text.

The lower module that :mod:`~fxtrace.checking.properties` and :mod:`~fxtrace.checking.dynamic`
both build on (neither imports the other's internals). Every walk over an input structure
goes through :mod:`fxtrace.tree`.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch

from .. import tree

__all__ = ["Call", "as_call", "example_call", "describe", "describe_inputs", "abbrev",
           "input_leaves", "tensor_leaves"]

#: One input set: positional and keyword arguments.
Call = Tuple[Tuple[Any, ...], Dict[str, Any]]


def as_call(value: Any, kw_mode: bool) -> Call:
    """A drawn or given input as a call: a dict is the keyword inputs of a trace taken with
    ``example_kwarg_inputs`` (``kw_mode``), a plain tuple the positional inputs, anything
    else one positional input."""
    if kw_mode and isinstance(value, dict):
        return (), dict(value)
    if isinstance(value, tuple) and not tree.is_namedtuple(value):
        return value, {}
    return (value,), {}


def example_call(traced: Any, example_inputs: Any) -> Tuple[Optional[Call], bool]:
    """``(call, kw_mode)``: the example input set (``example_inputs``, else the one stored on
    the trace as ``_fxtrace_traced_inputs["forward"]``; None when neither exists) and whether
    the trace takes keyword inputs only."""
    stored = getattr(traced, "_fxtrace_traced_inputs", None)
    if stored is None:
        stored = getattr(traced, "__dict__", {}).get("_fxtrace_traced_inputs")
    kw_mode = False
    if isinstance(stored, dict) and "forward" in stored:
        s_args, s_kwargs = stored["forward"]
        kw_mode = not s_args and bool(s_kwargs)
        if example_inputs is None:
            return (tuple(s_args), dict(s_kwargs)), kw_mode
    if example_inputs is None:
        return None, kw_mode
    return as_call(example_inputs, kw_mode), kw_mode


def input_leaves(args: Any, kwargs: Any) -> List[Tuple[str, Any]]:
    """Every leaf of an input set with its path (``args[0]``, ``kwargs['mask']``)."""
    return tree.leaves_with_paths(tuple(args), "args") + \
        tree.leaves_with_paths(dict(kwargs), "kwargs")


def tensor_leaves(args: Any, kwargs: Any) -> List[Tuple[str, torch.Tensor]]:
    """The tensors of an input set with their paths, numbered as ``inputs_like`` numbers
    them (depth first, positional inputs before keyword inputs)."""
    return [(p, v) for p, v in input_leaves(args, kwargs) if isinstance(v, torch.Tensor)]


def describe(value: Any) -> str:
    """``Tensor(2x3, float32)`` for a tensor, ``repr`` (shortened) for anything else."""
    if isinstance(value, torch.Tensor):
        shape = "x".join(str(s) for s in value.shape) or "()"
        dtype = str(value.dtype).replace("torch.", "")
        dev = "" if value.device.type == "cpu" else f", {value.device}"
        return f"Tensor({shape}, {dtype}{dev})"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def describe_inputs(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> str:
    """``args[0]=Tensor(2x3, float32), kwargs['mask']=None``: an input set's leaves."""
    return ", ".join(f"{p}={describe(v)}" for p, v in input_leaves(args, kwargs))


def abbrev(text: str, n: int) -> str:
    """``text`` on one line, at most ``n`` characters (``…`` marks a cut)."""
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
