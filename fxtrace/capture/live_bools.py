"""Booleans computed by torch calls, kept live until Python branches on them.

NOTE [Live bools]
``torch.equal(a, b)``, ``torch.allclose(a, b)``, ``torch.is_nonzero(t)``: torch calls that
return a Python ``bool`` computed from tensors. TorchScript has them as operators returning
``bool``, so a program that *returns* the value (or passes it to another recorded call)
needs no guard: the trace computes it again on every call. Only where Python itself decides
on the value (``if``, ``not``, ``and``/``or``, arithmetic, ``int()``) is the trace specialised
to it, and that is where the guard goes.

``bool`` cannot be subclassed, so the capture hands the program a :class:`TracedBool`: an
``int`` subclass that prints, hashes and compares as the ``bool`` it holds, mapped (like
every traced number, NOTE [Live sizes]) to the node of the recorded call. Every operation
that lets Python see the value guards it (once) and then works on the plain ``bool``.
What it cannot imitate: ``value is True`` and ``type(value) is bool`` (``bool`` has exactly
two instances); docs/differences.md lists it.
"""
from __future__ import annotations

import operator
import sys
from typing import TYPE_CHECKING, Any, Callable

from .source import user_source
from .values import TracedInt

if TYPE_CHECKING:
    from .concrete import ConcreteTracer

__all__ = ["TracedBool"]

#: What fxtrace says where Python decides on a live bool (as for sizes: a TracerWarning).
BRANCH_WARNING = ("A boolean computed from tensors ({name}() == {value}) was used as a Python "
                  "value: the trace is specialised to it; fxtrace guards it at run time.")


class TracedBool(TracedInt):
    """The ``bool`` result of a recorded torch call (NOTE [Live bools])."""

    _name: str
    _guarded: bool

    def __new__(cls, value: bool, tracer: "ConcreteTracer", name: str) -> "TracedBool":
        self = int.__new__(cls, bool(value))
        self._tracer = tracer
        self._name = name
        self._guarded = False
        return self

    def _plain(self) -> Any:
        return bool(int.__int__(self))

    def _decided(self) -> bool:
        """Python looks at the value: guard it (once), return the plain bool."""
        value = self._plain()
        tracer = self._tracer
        if not self._guarded and not tracer.finished:
            self._guarded = True
            frame = tracer.frame
            node = frame.lookup(self)
            if node is not None:
                src = user_source(sys._getframe(2))
                cond = tracer._create(frame, "call_function", operator.eq, (node, value), {},
                                      True, source=src)
                tracer._guard(frame, cond, "bool", value, src, f"{self._name}() == {value}")
                tracer._warn(src, BRANCH_WARNING.format(name=self._name, value=value))
        return value

    # repr, str, format and hash come from _TracedNumber, through this class's _plain

    def __bool__(self) -> bool:
        return self._decided()

    def __index__(self) -> int:
        return int(self._decided())

    def __int__(self) -> int:
        return int(self._decided())

    def __float__(self) -> float:
        return float(self._decided())


def _decide(name: str) -> Callable[..., Any]:
    def method(self: TracedBool, *args: Any) -> Any:
        plain = [a._decided() if isinstance(a, TracedBool) else a for a in args]
        return getattr(self._decided(), name)(*plain)
    method.__name__ = name
    return method


for _name in ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__neg__", "__pos__",
              "__abs__", "__invert__", "__add__", "__radd__", "__sub__", "__rsub__", "__mul__",
              "__rmul__", "__truediv__", "__rtruediv__", "__floordiv__", "__rfloordiv__",
              "__mod__", "__rmod__", "__pow__", "__rpow__", "__and__", "__rand__", "__or__",
              "__ror__", "__xor__", "__rxor__", "__round__", "__floor__", "__ceil__", "__trunc__"):
    setattr(TracedBool, _name, _decide(_name))
