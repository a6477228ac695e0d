"""Tracing helpers shared by the ``fxtrace.check`` tests: a torch.jit trace (the oracle,
``check_trace=False``) and an fxtrace trace, each with its TracerWarnings silenced (the tests
judge the traces, not the warnings)."""
from __future__ import annotations

import warnings
from typing import Any

import torch

import fxtrace

__all__ = ["jit_trace", "fx_trace"]


def jit_trace(fn: Any, *example: Any) -> Any:
    """``torch.jit.trace(fn, example, check_trace=False)``, quietly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.trace(fn, example, check_trace=False)


def fx_trace(fn: Any, *example: Any, **kw: Any) -> Any:
    """``fxtrace.trace(fn, example, **kw)``, quietly; ``check_trace`` is False unless given."""
    kw.setdefault("check_trace", False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fxtrace.trace(fn, example, **kw)
