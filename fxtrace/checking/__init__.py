"""Checks of a trace against the original program.

* :func:`fxtrace.checking.trace_check.check_trace` — torch.jit's ``check_trace`` (re-trace and
  compare graphs, run both sides and compare outputs), called by ``fxtrace.trace``;
* :func:`check` (exported as ``fxtrace.check``) — Hypothesis property checks
  (:mod:`~fxtrace.checking.properties`, one input: :mod:`~fxtrace.checking.check_run`, the
  verdict: :mod:`~fxtrace.checking.check_report`);
* :func:`probe_dynamic` — which input dims a trace handles at other sizes;
* :mod:`fxtrace.checking.refusals` — which error of a trace is a guard's refusal;
* :mod:`fxtrace.checking.pytest_plugin` — the ``fxtrace_check`` fixture.

The names are loaded on first use: ``fxtrace.trace`` imports :mod:`~fxtrace.checking.graphs`
and :mod:`~fxtrace.checking.trace_check` only, never Hypothesis.
"""
from __future__ import annotations

import importlib
from typing import Any

__all__ = ["check", "check_trace", "probe_dynamic", "PropertyCheckError", "ProbeReport",
           "DimProbe", "CheckWarning"]

_WHERE = {"check": "properties", "PropertyCheckError": "properties",
          "CheckWarning": "check_report", "check_trace": "trace_check",
          "probe_dynamic": "dynamic", "ProbeReport": "dynamic", "DimProbe": "dynamic"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))
