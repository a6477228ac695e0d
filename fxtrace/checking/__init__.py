"""Checks of a trace against the original program.

* :func:`fxtrace.checking.trace_check.check_trace` — torch.jit's ``check_trace`` (re-trace and
  compare graphs, run both sides and compare outputs), called by ``fxtrace.trace``;
* :func:`check` (exported as ``fxtrace.check``) — Hypothesis property checks;
* :func:`probe_dynamic` — which input dims a trace handles at other sizes;
* :mod:`fxtrace.checking.pytest_plugin` — the ``fxtrace_check`` fixture.

Note: ``fxtrace.check`` (the attribute of the ``fxtrace`` package) is the *function*; import
submodules with ``from fxtrace.checking import trace_check`` or ``import fxtrace.checking.trace_check``.
"""
from .dynamic import DimProbe, ProbeReport, probe_dynamic
from .properties import PropertyCheckError, check
from .trace_check import check_trace

__all__ = ["check", "check_trace", "probe_dynamic", "PropertyCheckError", "ProbeReport",
           "DimProbe"]
