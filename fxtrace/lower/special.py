"""Python-level torch functions whose recorded arguments TorchScript's version does not take.

TorchScript compiles ``torch.nn.functional`` functions from their (annotated) Python source,
which declares narrower types than the Python code accepts. The rewrites here pass the same
values in the declared types, so the compiled function computes what the recorded call did:

* adaptive pooling with ``None`` in ``output_size`` (keep that input size): TorchScript's
  ``BroadcastingList[int]`` has no ``None``; each ``None`` becomes ``input.size(d)``, which is
  what ``F._list_with_default`` computes in Python;
* ``F.ctc_loss`` with Python lists of lengths: TorchScript declares Tensors; the lists become
  ``torch.tensor(lengths)`` (aten's Tensor overload reads them back as the same ints);
* ``F.embedding(..., max_norm=m)``: TorchScript's version skips the in-place renormalisation
  of the weight rows (a silent difference); it is written out before the call, as Python's
  ``_no_grad_embedding_renorm_`` does it, and the call gets ``max_norm=None``.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import torch.nn.functional as F

from .schema import Expr

__all__ = ["rewrite_python_call", "guard_statements"]

Args = Tuple[Any, ...]
Kwargs = Dict[str, Any]
#: new arguments, and statements (as Expr) to emit before the call
Rewrite = Tuple[Args, Kwargs, List[Expr]]


def _argument(args: Args, kwargs: Kwargs, index: int, name: str) -> Tuple[bool, Any]:
    if len(args) > index:
        return True, args[index]
    return (name in kwargs), kwargs.get(name)


def _replace(args: Args, kwargs: Kwargs, index: int, name: str, value: Any) -> Tuple[Args, Kwargs]:
    if len(args) > index:
        return (*args[:index], value, *args[index + 1:]), kwargs
    return args, {**kwargs, name: value}


def _adaptive_pool(args: Args, kwargs: Kwargs) -> Optional[Rewrite]:
    has_x, x = _argument(args, kwargs, 0, "input")
    has_size, size = _argument(args, kwargs, 1, "output_size")
    if not (has_x and has_size) or not isinstance(size, (list, tuple)) or None not in size:
        return None
    k = len(size)
    filled = [Expr("{}.size(%d)" % (j - k), (x,)) if s is None else s for j, s in enumerate(size)]
    return (*_replace(args, kwargs, 1, "output_size", filled), [])


def _ctc_loss(args: Args, kwargs: Kwargs) -> Optional[Rewrite]:
    changed = False
    for index, name in ((2, "input_lengths"), (3, "target_lengths")):
        present, value = _argument(args, kwargs, index, name)
        if present and isinstance(value, (list, tuple)) and all(type(v) is int for v in value):
            args, kwargs = _replace(args, kwargs, index, name,
                                    Expr("torch.tensor({}, dtype=torch.long)", (list(value),)))
            changed = True
    return (args, kwargs, []) if changed else None


def _embedding(args: Args, kwargs: Kwargs) -> Optional[Rewrite]:
    has_norm, max_norm = _argument(args, kwargs, 3, "max_norm")
    if not has_norm or max_norm is None:
        return None
    _, indices = _argument(args, kwargs, 0, "input")
    _, weight = _argument(args, kwargs, 1, "weight")
    has_type, norm_type = _argument(args, kwargs, 4, "norm_type")
    norm_type = norm_type if has_type else 2.0
    renorm = Expr("torch.embedding_renorm_({}.detach(), {}.contiguous(), float({}), float({}))",
                  (weight, indices, max_norm, norm_type))
    args, kwargs = _replace(args, kwargs, 3, "max_norm", None)
    return args, kwargs, [renorm]


_REWRITES: Dict[Any, Callable[[Args, Kwargs], Optional[Rewrite]]] = {
    F.ctc_loss: _ctc_loss,
    F.embedding: _embedding,
    **{getattr(F, name): _adaptive_pool for name in (
        "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
        "adaptive_max_pool1d_with_indices", "adaptive_max_pool2d_with_indices",
        "adaptive_max_pool3d_with_indices", "adaptive_avg_pool2d", "adaptive_avg_pool3d")
       if hasattr(F, name)},
}


def rewrite_python_call(fn: Any, args: Args, kwargs: Kwargs) -> Optional[Rewrite]:
    """The arguments of a call to a Python-defined torch function in the types its
    TorchScript version declares, and the statements that must precede the call so that it
    computes what Python's did; None when the call needs no change."""
    try:
        rewrite = _REWRITES.get(fn)
    except TypeError:  # unhashable callable
        return None
    return rewrite(args, kwargs) if rewrite is not None else None


def negation(operand: str) -> str:
    """``not operand`` as TorchScript reads it. Its lexer takes ``not in`` greedily, so
    ``not index_fill_ == 2`` would read as ``not in`` + ``dex_fill_`` (fuzz F19): an operand
    starting with ``in`` is parenthesised (``not (index_fill_ == 2)``, the same test)."""
    return f"not ({operand})" if operand.startswith("in") else f"not {operand}"


def guard_statements(cond: str, message: str) -> List[str]:
    """The TorchScript lines of a runtime guard: ``cond`` must hold, else the call fails with
    ``message`` (a string literal) alone.

    A guard is written as ``if not cond: raise RuntimeError(message)`` rather than
    ``torch._assert(cond, message)``: TorchScript compiles ``torch._assert`` from its own
    source, so a failing guard would quote torch's ``_assert`` body (and its "shim-layer"
    comment) above the message; a ``raise`` quotes the generated guard line, whose comment
    names the user's file:line, and ends with the message (``builtins.RuntimeError: ...``),
    in the compiling process and after ``torch.jit.load`` alike."""
    return [f"if {negation(cond)}:", f"    raise RuntimeError({message})"]
