"""Errors that escape the pipeline: the user's own exception passes through with a note,
unbounded recursion becomes a short RecursionTraceError, and a builtin error raised with no
user frame in its traceback is fxtrace's own failure (InternalError of the same type)."""
from __future__ import annotations

import traceback
from collections import Counter
from typing import Any, List, Optional

from .arguments import NOTE, describe, where
from .capture.source import is_internal_file
from .errors import FxTraceError, InternalError, RecursionTraceError

__all__ = ["pipeline_error"]


def _frames(exc: BaseException) -> List[traceback.FrameSummary]:
    return list(traceback.extract_tb(exc.__traceback__))


def pipeline_error(exc: BaseException, func: Any, api: str) -> BaseException:
    """The exception to raise for ``exc``, which escaped capture, lowering or the check.

    fxtrace's own errors pass as they are. Unbounded recursion becomes a
    :class:`RecursionTraceError` naming the recursive function. An exception with a user
    frame in its traceback is the program's: the same object, with a note saying what fxtrace
    was doing. A builtin exception with no user frame is fxtrace's (or torch's) failure:
    an :class:`InternalError` of the same builtin type, chained to it.
    """
    if isinstance(exc, FxTraceError):
        return exc
    if isinstance(exc, RecursionError) and "maximum recursion depth" in str(exc):
        return _recursion_error(exc, func, api)
    notes = getattr(exc, "__notes__", [])
    if hasattr(exc, "add_note") and not any(n.startswith(NOTE) for n in notes):
        user = [fr for fr in _frames(exc) if not is_internal_file(fr.filename)]
        if user:
            exc.add_note(f"{NOTE}raised at {user[-1].filename}:{user[-1].lineno} while "
                         f"fxtrace.{api} ran {describe(func)} on the example inputs{where()}; "
                         "the exception is the program's own, unchanged")
        else:
            frames = _frames(exc)
            at = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
            note = (f"{NOTE}raised inside fxtrace or torch{at}, with no user line involved, "
                    f"while fxtrace.{api} traced {describe(func)}{where()}; if the arguments "
                    "are valid this is an fxtrace bug: please report it")
            internal = _internal(exc)
            (internal if internal is not None else exc).add_note(note)
            if internal is not None:
                return internal
    return exc


def _internal(exc: BaseException) -> Optional[BaseException]:
    """``exc`` as an :class:`InternalError` of its own builtin type (same message, ``exc`` as
    the cause), or None where that type cannot be derived from or rebuilt from its args."""
    base = type(exc)
    if base.__module__ != "builtins":
        return None  # a library's own exception class: kept as it is
    try:
        err = InternalError.of(base)(*exc.args)
    except Exception:  # noqa: BLE001 - a type whose constructor does not take its args
        return None
    err.__cause__ = exc
    return err


def _recursion_error(exc: RecursionError, func: Any, api: str) -> RecursionTraceError:
    frames = _frames(exc)
    user = Counter((fr.filename, fr.name, fr.lineno) for fr in frames
                   if not is_internal_file(fr.filename))
    if user:
        (filename, name, lineno), count = user.most_common(1)[0]
        culprit = f"{name}() at {filename}:{lineno}, which ran {count} times nested"
        fix = "give the recursion a base case that the example inputs reach"
    else:
        inner = Counter((fr.filename, fr.name, fr.lineno) for fr in frames).most_common(1)
        (filename, name, lineno), _ = inner[0] if inner else (("?", "?", 0), 0)
        culprit = f"fxtrace's {name}() at {filename}:{lineno} (an fxtrace bug; please report it)"
        fix = "report it with the model that triggers it"
    err = RecursionTraceError(f"fxtrace.{api} of {describe(func)} recursed without end: "
                              f"{culprit}; {fix}{where()}")
    err.__cause__ = None
    err.__suppress_context__ = True
    return err
