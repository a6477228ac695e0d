"""fxtrace: ``torch.jit.trace`` reimplemented on ``torch.fx``.

Capture runs user code on real example inputs and records it into ``torch.fx`` graphs;
fxtrace writes TorchScript source for those graphs and compiles real ``ScriptModule`` /
``ScriptFunction`` objects. Every value the trace freezes is recorded and guarded.

``import fxtrace`` loads what tracing needs and nothing else: the property checks
(``check``, ``probe_dynamic``, which import Hypothesis), the inspection tables
(``fxtrace.inspect``) and the command line are loaded on first use.
"""
from __future__ import annotations

import importlib
from typing import Any

from .api import capture, optimize, trace, trace_module
from .errors import (
    FxTraceError,
    InternalError,
    InvalidArgument,
    InvalidAttribute,
    InvalidInput,
    InvalidOption,
    LoweringError,
    MissingForward,
    PassError,
    PropertyCheckError,
    RecursionTraceError,
    SymbolicTraceError,
    TraceError,
    TracerWarning,
    TracingCheckError,
    UnknownArgumentName,
    VerifyError,
)

__all__ = [
    "trace", "trace_module", "capture", "optimize", "check", "check_calls", "probe_dynamic",
    "ProbeReport", "DimProbe", "export", "ExportRefused",
    "CheckWarning", "FxTraceError", "TraceError", "SymbolicTraceError", "InvalidArgument",
    "InvalidAttribute", "LoweringError", "PassError", "VerifyError", "TracingCheckError",
    "PropertyCheckError", "TracerWarning", "InvalidInput", "InvalidOption", "UnknownArgumentName",
    "MissingForward", "RecursionTraceError", "InternalError",
]
__version__ = "0.1.0"

# name -> module that defines it; loaded by __getattr__ on first use
_LAZY = {"check": "fxtrace.checking.properties", "check_calls": "fxtrace.checking.sequences",
         "CheckWarning": "fxtrace.checking.check_report",
         "probe_dynamic": "fxtrace.checking.dynamic", "ProbeReport": "fxtrace.checking.dynamic",
         "DimProbe": "fxtrace.checking.dynamic", "export": "fxtrace.export_api",
         "ExportRefused": "fxtrace.exporting.program"}
_SUBMODULES = ("inspect", "strategies", "cli", "demo", "checking", "tree")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))
