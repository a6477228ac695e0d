"""Python-level torch functions recorded by what they do, not as one call.

NOTE [Inner calls]
A Python-defined torch function (``F.gaussian_nll_loss``, ``torch.unravel_index``, the Python
decompositions behind some ``torch.ops`` overloads) reaches the capture's torch function mode
as one call. Recording it as that call is right when the generated TorchScript can spell it:
TorchScript has a builtin operator for it, or compiles the function from its Python source.
When neither holds (keyword-only arguments, comprehension ifs, ParamSpec annotations, a
builtin name without an operator) or when an argument is something the graph cannot hold (a
module or function passed as ``distance_function=``), the capture runs the function's own body
with recording on, so its inner torch calls are recorded one by one — what torch.jit.trace
records too, since it sees only the operators that run.

The decision is general, never a list of functions: it is made once per function (a lookup
of TorchScript's builtin table with a check that the operator exists, then one TorchScript
compilation of the function) and cached for the process.

Running the body "with recording on" needs one trick: the function's first statement is
``if has_torch_function(...): return handle_torch_function(...)``, which would hand the call
straight back to the mode. The body therefore runs as a copy of the function whose globals
answer ``False`` to the ``has_torch_function*`` checks; everything else it reads from its
module's globals as they are at the call.
"""
from __future__ import annotations

import threading
import types
import warnings
from typing import Any, Callable, Dict, FrozenSet, Tuple

import torch

from .. import tree

__all__ = ["needs_inner_calls", "call_inner"]

_LOCK = threading.Lock()
_ACTIVE = threading.local()       # .running: functions whose body runs in this thread
_COMPILES: Dict[Any, bool] = {}   # function -> TorchScript can spell a call of it
_NO_DISPATCH = {"has_torch_function": lambda *a, **k: False,
                "has_torch_function_unary": lambda *a, **k: False,
                "has_torch_function_variadic": lambda *a, **k: False}


def _python_function(func: Any) -> bool:
    return isinstance(func, types.FunctionType) and func.__module__ is not None and (
        func.__module__ == "torch" or func.__module__.startswith("torch."))


def _has_builtin(func: Any) -> bool:
    if func in torch._jit_internal.boolean_dispatched:  # TorchScript picks a branch itself
        return True
    # an @overload-ed function: TorchScript resolves the call at its types (the overloads
    # are registered until first compiled, then cached)
    if torch._jit_internal._get_fn_overloads(torch._jit_internal._qualified_name(func)) or \
            torch.jit._state._try_get_jit_cached_overloads(func):
        return True
    name = torch.jit._builtins._find_builtin(func)
    return name is not None and bool(torch._C._jit_get_schemas_for_operator(name))


def _scriptable(func: Any) -> bool:
    with _LOCK:
        known = _COMPILES.get(func)
    if known is not None:
        return known
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch._C.DisableTorchFunction():
                torch.jit.script(func)
        ok = True
    except Exception:  # noqa: BLE001 - any compilation failure means "cannot spell it"
        ok = False
    with _LOCK:
        _COMPILES[func] = ok
    return ok


def _unrecordable_argument(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> bool:
    """A callable (module, function) among the arguments: the graph cannot hold it."""
    return any(callable(v) and not isinstance(v, (torch.Tensor, type))
               for v in tree.leaves((args, kwargs)))


def needs_inner_calls(func: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> bool:
    """``func`` is a Python torch function whose call TorchScript cannot spell as recorded:
    record its inner calls instead (NOTE [Inner calls])."""
    if not _python_function(func) or func in getattr(_ACTIVE, "running", ()):
        return False  # (a body that dispatches back to its own function: record the call)
    if _unrecordable_argument(args, kwargs):
        return True
    return not _has_builtin(func) and not _scriptable(func)


def call_inner(func: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
    """Run ``func``'s body on ``args`` with its torch-function dispatch answered "no", so
    that the caller's torch function mode (pushed again by the caller) sees its inner calls.
    """
    target = func
    scope = dict(target.__globals__)
    scope.update(_NO_DISPATCH)
    body = types.FunctionType(target.__code__, scope, target.__name__, target.__defaults__,
                              target.__closure__)
    body.__kwdefaults__ = target.__kwdefaults__
    body.__qualname__ = target.__qualname__
    running: FrozenSet[Any] = getattr(_ACTIVE, "running", frozenset())
    _ACTIVE.running = running | {func}
    try:
        return body(*args, **kwargs)
    finally:
        _ACTIVE.running = running
