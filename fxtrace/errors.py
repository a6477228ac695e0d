"""The one exception hierarchy of fxtrace.

Every error fxtrace raises on purpose is a :class:`FxTraceError`. Where torch.jit has an
exception type for the same situation, fxtrace's class also derives from it, so code written
for ``torch.jit.trace`` keeps catching what it caught before.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch

__all__ = [
    "FxTraceError",
    "TraceError",
    "InvalidArgument",
    "InvalidAttribute",
    "InvalidInput",
    "MissingForward",
    "InvalidOption",
    "UnknownArgumentName",
    "RecursionTraceError",
    "InternalError",
    "LoweringError",
    "PassError",
    "VerifyError",
    "TracingCheckError",
    "SymbolicTraceError",
    "PropertyCheckError",
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


class MissingForward(InvalidAttribute, NotImplementedError):
    """The traced module's class defines no ``forward``.

    Also a ``NotImplementedError``, which torch raises (and torch.jit passes on) when the
    placeholder ``nn.Module.forward`` is called.
    """


class InvalidInput(InvalidArgument, RuntimeError):
    """An example input fxtrace cannot trace with (missing, of an untraceable type, a list
    mixing element types, ...), or ``func`` is not callable.

    Also a ``RuntimeError``: torch.jit's tracer raises one in these situations ("Tracer cannot
    infer type of ..."). The message names the input by its position and parameter name.
    """


class InvalidOption(InvalidArgument, RuntimeError):
    """A keyword option of ``trace``/``trace_module``/``capture`` has the wrong type or value
    (``strict="yes"``, ``check_tolerance="1e-3"``, ``check_inputs=x``, ``mode="fast"``).

    A ``TypeError``/``ValueError`` as Python's convention asks, and a ``RuntimeError``, which
    torch.jit raises for some of them. The message names the option and shows a valid value.
    """


class UnknownArgumentName(InvalidArgument, NameError):
    """A key of ``example_kwarg_inputs`` names no parameter of the traced function.

    A ``NameError`` as torch.jit raises for modules, and a ``TypeError`` as torch.jit (which
    calls the function) raises for plain functions. The message lists the valid names.
    """


class RecursionTraceError(TraceError, RecursionError):
    """Tracing recursed without end: a module tree that contains itself (``net.loop = net``),
    or a forward or function that calls itself with no base case.

    A ``RecursionError``, as torch.jit raises. The message names the cycle (``net.loop is
    net``) or the recursive function and its line.
    """


class InternalError(FxTraceError):
    """fxtrace failed inside its own code (or torch's), with no line of the user's program in
    the traceback: a bug to report, not a mistake of the caller.

    Raised as a class deriving from this one *and* from the builtin type of the original
    exception (:meth:`of`), so handlers for that type still catch it; the message is the
    original's, the original is the ``__cause__``, and a note says where fxtrace was.
    """

    _classes: Dict[type, type] = {}

    @classmethod
    def of(cls, base: type) -> type:
        """The class deriving from both ``InternalError`` and ``base`` (made once per base)."""
        made = cls._classes.get(base)
        if made is None:
            made = type(f"Internal{base.__name__}", (cls, base), {"__module__": __name__})
            cls._classes[base] = made
        return made


class SymbolicTraceError(TraceError):
    """``torch.fx`` symbolic tracing could not capture the program (``mode="symbolic"``).

    ``source`` is the user line (a ``SourceLoc``) the failure is attributed to, ``module`` the
    qualified path of the module being traced (``""`` = root). The fix is usually
    ``mode="concrete"``, which runs the code instead of tracing it symbolically.
    """

    def __init__(self, message: str, source: Any = None, module: str = "") -> None:
        super().__init__(message)
        self.source = source
        self.module = module


class LoweringError(FxTraceError, RuntimeError):
    """The captured graph could not be written as TorchScript or did not compile.

    The message shows the generated source and the user line behind the failing node.
    """


class PassError(FxTraceError, RuntimeError):
    """A graph pass failed; the message names the pass and the passes that ran before it."""


class VerifyError(FxTraceError, RuntimeError):
    """A graph broke one of fxtrace's invariants; the message names the node."""


class PropertyCheckError(FxTraceError, AssertionError):
    """``fxtrace.check`` found an input on which the trace is wrong.

    ``report`` is the ``fxtrace.inspect.CheckReport`` of the (shrunk) failing input;
    ``inputs`` is that input as ``(args, kwargs)``. The message is the report's table.
    """

    def __init__(self, message: str, report: Any,
                 inputs: Optional[Tuple[Tuple[Any, ...], Dict[str, Any]]] = None) -> None:
        super().__init__(message)
        self.report = report
        self.inputs = inputs


class TracingCheckError(FxTraceError, torch.jit.TracingCheckError):
    """``check_trace`` found that the trace does not reproduce the original program."""

    def __init__(self, graph_diff_error: str | None, tensor_compare_error: str | None,
                 extra_msg: str | None = None) -> None:
        torch.jit.TracingCheckError.__init__(self, graph_diff_error, tensor_compare_error, extra_msg)
