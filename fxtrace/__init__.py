"""fxtrace: ``torch.jit.trace`` reimplemented on ``torch.fx``.

Capture runs user code on real example inputs and records it into ``torch.fx`` graphs;
fxtrace writes TorchScript source for those graphs and compiles real ``ScriptModule`` /
``ScriptFunction`` objects. Every value the trace freezes is recorded and guarded.
"""
from .api import capture, trace, trace_module
# ``fxtrace.check`` is the property-check *function*. The ``fxtrace.check`` package is imported
# first (binding the attribute to the package), then the name is rebound to the function; later
# imports of its submodules do not rebind it.
from .checking import DimProbe, ProbeReport, probe_dynamic
from .checking.properties import check as check
from .errors import (FxTraceError, InvalidArgument, InvalidAttribute, LoweringError, PassError,
                     PropertyCheckError, SymbolicTraceError, TraceError, TracerWarning,
                     TracingCheckError, VerifyError)

__all__ = [
    "trace", "trace_module", "capture", "check", "probe_dynamic", "ProbeReport", "DimProbe",
    "FxTraceError", "TraceError", "SymbolicTraceError", "InvalidArgument", "InvalidAttribute",
    "LoweringError", "PassError", "VerifyError", "TracingCheckError", "PropertyCheckError",
    "TracerWarning",
]
__version__ = "0.1.0"
