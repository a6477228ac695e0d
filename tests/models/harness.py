"""Shared tracing harness for the vision models: traces each (model, mode) once per process
with fxtrace and with torch.jit.trace (both with their default ``check_trace=True``),
classifies what happened, and runs traces against eager on the same RNG seed.

Used by ``tests/test_vision.py``, ``tests/test_interop.py``, ``tests/test_cpp_loader.py``,
``scripts/models_table.py`` and ``benchmarks/models.py``, so the table in ``docs/models.md``
and the tests see the same outcomes.

Outcome words (the pass/fail cells of the models table):

* check — ``pass`` (no exception, no "does not match" warning), ``mismatch`` (the check warned
  that an output does not match), ``TracingCheckError`` / other exception type names;
* probe — ``match`` (equal to eager), ``guard`` (an fxtrace guard refused the input:
  ``torch.jit.Error`` with "fxtrace guard failed"), ``WRONG`` (ran, silently differs from eager),
  ``error`` (raised something else; eager itself worked).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
import warnings
from typing import Any, Callable, ContextManager, Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn as nn

import fxtrace

from .vision import BY_NAME, MODES, VisionCase, set_mode

__all__ = ["MODES", "Traced", "grad_context", "run", "leaves", "same_outputs", "fx_traced",
           "jit_traced", "probe", "probe_label", "GUARD_TEXT"]

GUARD_TEXT = "fxtrace guard failed"
MISMATCH_TEXT = "does not match"


def grad_context(mode: str) -> ContextManager[Any]:
    """``torch.no_grad()`` for ``eval_no_grad``, nothing for the other modes."""
    return torch.no_grad() if mode == "eval_no_grad" else contextlib.nullcontext()


def run(fn: Callable[..., Any], inputs: Tuple[Any, ...], mode: str, seed: int = 0) -> Any:
    """``fn(*inputs)`` in ``mode``'s grad context, after ``torch.manual_seed(seed)`` so that
    dropout in training mode draws the same masks for eager and traced calls."""
    with grad_context(mode):
        torch.manual_seed(seed)
        return fn(*inputs)


def leaves(out: Any, path: str = "out") -> Iterator[Tuple[str, Any]]:
    if isinstance(out, (tuple, list)):
        for i, v in enumerate(out):
            yield from leaves(v, f"{path}[{i}]")
    elif isinstance(out, dict):
        for k, v in out.items():
            yield from leaves(v, f"{path}[{k!r}]")
    else:
        yield path, out


def same_outputs(actual: Any, expected: Any, what: str, **tol: float) -> None:
    """Same structure and every leaf close (``torch.testing.assert_close``; raises)."""
    a, e = list(leaves(actual)), list(leaves(expected))
    assert [p for p, _ in a] == [p for p, _ in e], (
        f"{what}: output structure differs: {[p for p, _ in a]} vs {[p for p, _ in e]}")
    for (path, x), (_, y) in zip(a, e):
        torch.testing.assert_close(x, y, msg=lambda m, path=path: f"{what}: {path}: {m}", **tol)


@dataclasses.dataclass
class Traced:
    """One trace of one (model, mode) and what its default check said."""

    case: VisionCase
    mode: str
    model: nn.Module
    traced: Any            # the ScriptModule (for torch.jit after TracingCheckError: retraced
    check: str             # with check_trace=False, so that it can still be compared)
    check_detail: str      # the first mismatch warning or the exception text
    warnings: List[str]    # every warning message of the checked trace
    seconds: float         # wall time of the checked trace


def _fx(model: nn.Module, example: Tuple[Any, ...], strict: bool, check: bool) -> Any:
    return fxtrace.trace(model, example, strict=strict, check_trace=check)


def _jit(model: nn.Module, example: Tuple[Any, ...], strict: bool, check: bool) -> Any:
    return torch.jit.trace(model, example, strict=strict, check_trace=check)


TRACERS: Dict[str, Callable[[nn.Module, Tuple[Any, ...], bool, bool], Any]] = {
    "fxtrace": _fx, "jit": _jit}


def trace_checked(tracer: str, name: str, mode: str) -> Traced:
    """A fresh model of ``name`` traced in ``mode`` by ``tracer`` with ``check_trace=True``."""
    c = BY_NAME[name]
    model = set_mode(c.make(), mode)
    example = c.example(c.batch)
    fn = TRACERS[tracer]
    traced, outcome, detail = None, "pass", ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        try:
            with grad_context(mode):
                traced = fn(model, example, c.strict, True)
        except Exception as e:  # noqa: BLE001 - classified, reported
            outcome, detail = type(e).__name__, str(e)
        seconds = time.perf_counter() - start
    messages = [str(w.message) for w in caught]
    mismatches = [m for m in messages if MISMATCH_TEXT in m]
    if outcome == "pass" and mismatches:
        outcome, detail = "mismatch", mismatches[0]
    if traced is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with grad_context(mode):
                traced = fn(model, example, c.strict, False)
    return Traced(c, mode, model, traced, outcome, detail, messages, seconds)


@functools.lru_cache(maxsize=None)
def fx_traced(name: str, mode: str) -> Traced:
    """fxtrace's checked trace of ``name`` in ``mode``, once per process."""
    return trace_checked("fxtrace", name, mode)


@functools.lru_cache(maxsize=None)
def jit_traced(name: str, mode: str) -> Traced:
    """torch.jit.trace's checked trace of ``name`` in ``mode``, once per process."""
    return trace_checked("jit", name, mode)


def probe_label(batch: int, hw: int) -> str:
    return f"b{batch}@{hw}px"


def probe(t: Traced, batch: int, hw: int, seed: int = 0) -> str:
    """Run trace and eager on another input: ``match`` / ``guard`` / ``WRONG`` / ``error``."""
    inputs = t.case.example(batch, hw)
    want = run(t.model, inputs, t.mode, seed)
    try:
        got = run(t.traced, inputs, t.mode, seed)
    except torch.jit.Error as e:
        return "guard" if GUARD_TEXT in str(e) else "error"
    except Exception:  # noqa: BLE001
        return "error"
    try:
        same_outputs(got, want, "probe")
    except AssertionError:
        return "WRONG"
    return "match"


def probes(t: Traced) -> Dict[str, str]:
    """Every probe of the case: ``{label: outcome}``."""
    return {probe_label(b, hw): probe(t, b, hw) for b, hw in t.case.probes}


def call_nodes(t: Traced) -> Optional[int]:
    """Call nodes of fxtrace's captured graph tree (None for torch.jit)."""
    gm = getattr(t.traced, "_fxtrace_capture", None)
    if gm is None:
        return None
    return sum(1 for sub in gm.modules() if isinstance(sub, torch.fx.GraphModule)
               for n in sub.graph.nodes if n.op in ("call_function", "call_method"))
