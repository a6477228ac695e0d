"""The one exception hierarchy of fxtrace.

Every error fxtrace raises on purpose is a :class:`FxTraceError`. Where torch.jit has an
exception type for the same situation, fxtrace's class also derives from it, so code written
for ``torch.jit.trace`` keeps catching what it caught before.
"""
from __future__ import annotations

import torch

__all__ = [
    "FxTraceError",
    "TraceError",
    "InvalidArgument",
    "InvalidAttribute",
    "LoweringError",
    "GuardError",
    "PassError",
    "VerifyError",
    "TracingCheckError",
    "TracerWarning",
]

#: fxtrace warns with torch.jit's own category, so existing warning filters keep working.
TracerWarning = torch.jit.TracerWarning


class FxTraceError(Exception):
    """Base class of every error fxtrace raises on purpose."""


class TraceError(FxTraceError, RuntimeError):
    """Capture could not record the user's program.

    Example: a closure tensor that requires grad is used by the traced function::

        w = torch.ones(3, requires_grad=True)
        fxtrace.trace(lambda x: x * w, torch.ones(3))   # TraceError

    Fix: pass the tensor as an input, or hold it in an ``nn.Module`` as a Parameter.
    """


class InvalidArgument(FxTraceError, ValueError, TypeError):
    """An argument of ``trace``/``trace_module``/``capture`` is malformed.

    The message names the argument and the value that was rejected.
    """


class InvalidAttribute(InvalidArgument, AttributeError):
    """An argument names an attribute (a method, a module member) that does not exist.

    Also an ``AttributeError``, the type torch.jit raises in the same situation.
    """


class LoweringError(FxTraceError, RuntimeError):
    """The captured graph could not be written as TorchScript or did not compile.

    The message shows the generated source and the user line behind the failing node.
    """


class GuardError(FxTraceError, RuntimeError):
    """A specialisation recorded at capture time does not hold for the inputs given."""


class PassError(FxTraceError, RuntimeError):
    """A graph pass failed; the message names the pass and the passes that ran before it."""


class VerifyError(FxTraceError, RuntimeError):
    """A graph broke one of fxtrace's invariants; the message names the node."""


class TracingCheckError(FxTraceError, torch.jit.TracingCheckError):
    """``check_trace`` found that the trace does not reproduce the original program."""

    def __init__(self, graph_diff_error: str | None, tensor_compare_error: str | None,
                 extra_msg: str | None = None) -> None:
        torch.jit.TracingCheckError.__init__(self, graph_diff_error, tensor_compare_error, extra_msg)
