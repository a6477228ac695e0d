"""fxtrace: ``torch.jit.trace`` reimplemented on ``torch.fx``.

Capture runs user code on real example inputs and records it into ``torch.fx`` graphs;
fxtrace writes TorchScript source for those graphs and compiles real ``ScriptModule`` /
``ScriptFunction`` objects. Every value the trace freezes is recorded and guarded.
"""
from .api import capture, trace, trace_module
from .errors import (FxTraceError, GuardError, InvalidArgument, InvalidAttribute, LoweringError, PassError,
                     TraceError, TracerWarning, TracingCheckError, VerifyError)

__all__ = [
    "trace", "trace_module", "capture",
    "FxTraceError", "TraceError", "InvalidArgument", "InvalidAttribute", "LoweringError", "GuardError", "PassError",
    "VerifyError", "TracingCheckError", "TracerWarning",
]
__version__ = "0.1.0"
