"""Traced Python values: sizes that behave like ints and remember the graph node they came from.

NOTE [Live sizes]
``x.size(0)`` during concrete capture returns a :class:`TracedInt`: a real ``int`` (so every
Python use of it works, with the example value) that the tracer maps to the fx node computing
it, frame by frame (the same object may be an input of a submodule's graph).
Arithmetic between traced and plain ints is recorded and yields new traced ints, so
``x.view(x.size(0) * 2, -1)`` lowers to an expression over the runtime input, not to the number
seen at trace time. Where a traced int *leaves* the graph (``int(n)``, ``range(n)``, ``n > 3``
in an ``if``, use as a list index, ...) its value is frozen: the tracer records a
specialisation and emits a guard, so the trace refuses inputs on which the frozen value would
be wrong instead of silently computing something else.
"""
from __future__ import annotations

import math
import operator
import sys
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Tuple

from .. import tree
from .foreign import foreign_caller
from .source import is_internal_file

if TYPE_CHECKING:
    from .concrete import ConcreteTracer

__all__ = ["TracedInt", "TracedFloat", "TracedSize", "is_traced", "untraced"]


def _binary(op: Callable[[Any, Any], Any], reflected: bool = False) -> Callable[[Any, Any], Any]:
    def method(self: "TracedInt", other: Any) -> Any:
        if not isinstance(other, (int, float)) or isinstance(other, bool):
            return NotImplemented
        a, b = (other, self) if reflected else (self, other)
        value = op(untraced(a), untraced(b))
        return self._tracer.record_scalar(op, (a, b), value)

    method.__name__ = f"__{'r' if reflected else ''}{op.__name__.strip('_')}__"
    return method


def _compare(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], Any]:
    def method(self: "TracedInt", other: Any) -> Any:
        if not isinstance(other, (int, float)):
            return NotImplemented
        result = op(untraced(self), untraced(other))
        if other is self and self._base is int:
            return result  # an int against itself: the same answer at every value, no guard
        _foreign_read(self, sys._getframe(1))  # np.arange(n) compares n, then reads it
        self._tracer.specialise_scalar("compare", op, (self, other), result)
        return result

    method.__name__ = f"__{op.__name__.strip('_')}__"
    return method


def _foreign_read(value: "_TracedNumber", frame: Any) -> None:
    """Freeze ``value`` when foreign C code called at ``frame`` (NOTE [Foreign readers]) runs
    one of its methods: it reads the number too, where no method runs."""
    if not is_internal_file(frame.f_code.co_filename):
        reader = foreign_caller(frame)
        if reader is not None:
            value._tracer.freeze_number(value, reader, frame)


def _escape(kind: str, convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def method(self: "TracedInt") -> Any:
        value = convert(untraced(self))
        self._tracer.specialise_scalar(kind, operator.eq, (self, untraced(self)), True)
        return value

    return method


class _TracedNumber:
    """Mixin: the node and tracer, and the arithmetic shared by traced ints and floats.

    Listed before ``int``/``float`` in the bases, so these methods take precedence.
    """

    _tracer: "ConcreteTracer"
    _base: type

    def _plain(self) -> Any:
        # The base type's own slot: calling int(self) would run our __int__ and specialise.
        return int.__int__(self) if self._base is int else float.__float__(self)  # type: ignore

    def __reduce__(self) -> Any:  # pickling / deepcopy see the plain number
        return (self._base, (self._plain(),))

    def __repr__(self) -> str:
        return repr(self._plain())

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return format(self._plain(), spec)

    def __hash__(self) -> int:
        return hash(self._plain())

    def __neg__(self) -> Any:
        return self._tracer.record_scalar(operator.neg, (self,), -self._plain())

    def __pos__(self) -> Any:
        return self

    __add__ = _binary(operator.add)
    __radd__ = _binary(operator.add, reflected=True)
    __sub__ = _binary(operator.sub)
    __rsub__ = _binary(operator.sub, reflected=True)
    __mul__ = _binary(operator.mul)
    __rmul__ = _binary(operator.mul, reflected=True)
    __truediv__ = _binary(operator.truediv)
    __rtruediv__ = _binary(operator.truediv, reflected=True)
    __eq__ = _compare(operator.eq)  # type: ignore[assignment]
    __ne__ = _compare(operator.ne)  # type: ignore[assignment]
    __lt__ = _compare(operator.lt)
    __le__ = _compare(operator.le)
    __gt__ = _compare(operator.gt)
    __ge__ = _compare(operator.ge)
    __int__ = _escape("int", int)
    __float__ = _escape("float", float)
    __bool__ = _escape("bool", bool)


class TracedInt(_TracedNumber, int):
    """An ``int`` produced by a traced size query or by arithmetic on one."""

    _base = int

    def __new__(cls, value: int, tracer: "ConcreteTracer") -> "TracedInt":
        self = int.__new__(cls, value)
        self._tracer = tracer
        return self

    __floordiv__ = _binary(operator.floordiv)
    __rfloordiv__ = _binary(operator.floordiv, reflected=True)
    __mod__ = _binary(operator.mod)
    __rmod__ = _binary(operator.mod, reflected=True)
    __pow__ = _binary(operator.pow)  # type: ignore[assignment]
    __index__ = _escape("index", int)

    # math.floor/ceil/trunc and round() of an int are the int itself: it stays live.
    def __floor__(self) -> "TracedInt":
        return self

    __ceil__ = __trunc__ = __floor__

    def __round__(self, ndigits: Any = None) -> Any:
        return self if ndigits is None else self._tracer.record_scalar(
            round, (self, ndigits), round(self._plain(), ndigits))

    # Defining __eq__ removes the inherited __hash__; restate the mixin's.
    __hash__ = _TracedNumber.__hash__


class TracedFloat(_TracedNumber, float):
    """A ``float`` computed from traced sizes (``x.size(0) / 2``)."""

    _base = float

    def __new__(cls, value: float, tracer: "ConcreteTracer") -> "TracedFloat":
        self = float.__new__(cls, value)
        self._tracer = tracer
        return self

    # math.floor/ceil/trunc of a traced float are recorded (TorchScript has them too).
    def __floor__(self) -> Any:
        return self._tracer.record_scalar(math.floor, (self,), math.floor(self._plain()))

    def __ceil__(self) -> Any:
        return self._tracer.record_scalar(math.ceil, (self,), math.ceil(self._plain()))

    def __trunc__(self) -> Any:
        return self._tracer.record_scalar(math.trunc, (self,), math.trunc(self._plain()))

    __hash__ = _TracedNumber.__hash__


class TracedSize(tuple):
    """``x.shape`` / ``x.size()`` of a graph tensor: a tuple whose items are :class:`TracedInt`.

    The tuple's own storage holds the plain example sizes; every Python access goes through
    the tracer. ``s[i]`` (``i`` negative too) records ``size[i]``, which stays correct at any
    rank; passing ``s`` whole to a torch call passes the size list itself. Uses that depend
    on the rank (iteration and unpacking, ``len``, slicing, ``==``, concatenation) record a
    guard on the rank first: at another rank they would silently mean something else.
    """

    _tracer: "ConcreteTracer"
    _rank_guarded: bool
    #: The sizes, when the graph itself fixed them (the size arguments of the factory call
    #: that made the tensor): items are read from here, and the rank needs no guard.
    known: Optional[Tuple[Any, ...]]

    def __new__(cls, values: Tuple[int, ...], tracer: "ConcreteTracer",
                known: Optional[Tuple[Any, ...]] = None) -> "TracedSize":
        self = tuple.__new__(cls, values)
        self._tracer = tracer
        self._rank_guarded = known is not None
        self.known = known
        return self

    def _whole(self) -> Tuple[Any, ...]:
        if not self._rank_guarded:
            self._rank_guarded = True
            self._tracer.guard_rank(self)
        return tuple(self._tracer.size_item(self, i) for i in range(tuple.__len__(self)))

    def __getitem__(self, index: Any) -> Any:  # type: ignore[override]
        if isinstance(index, slice):
            return self._whole()[index]
        return self._tracer.size_item(self, index)

    def __iter__(self) -> Iterator[Any]:
        items = self._whole()
        self._foreign_reader(sys._getframe(1))
        return iter(items)

    def __len__(self) -> int:
        self._whole()
        self._foreign_reader(sys._getframe(1))
        return tuple.__len__(self)

    def _foreign_reader(self, frame: Any) -> None:
        """Called C code outside torch (``np.zeros(x.shape)``) reads the items as plain ints:
        freeze them all (NOTE [Foreign readers])."""
        if is_internal_file(frame.f_code.co_filename):
            return
        reader = foreign_caller(frame)
        if reader is not None:
            self._tracer.freeze_sizes(self, reader, frame)

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        """NumPy converting the whole size (``np.prod(x.shape)``, ``np.array(x.shape)``): the
        items become plain numbers, so every one is frozen (NOTE [Foreign readers])."""
        import numpy as np
        frame = sys._getframe(1)
        self._tracer.freeze_sizes(self, "numpy.asarray", frame)
        return np.array(tuple(tuple.__iter__(self)), dtype=dtype)

    def __contains__(self, item: Any) -> bool:
        return any(d == item for d in self._whole())

    def __eq__(self, other: Any) -> bool:  # type: ignore[override]
        if not isinstance(other, (tuple, list)):
            return NotImplemented
        dims = self._whole()
        return len(dims) == len(other) and all(a == b for a, b in zip(dims, other))

    def __ne__(self, other: Any) -> bool:  # type: ignore[override]
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = tuple.__hash__

    def __add__(self, other: Any) -> Any:  # type: ignore[override]
        return self._whole() + tuple(other)

    def __radd__(self, other: Any) -> Any:
        return tuple(other) + self._whole()

    def __repr__(self) -> str:
        return f"torch.Size({list(tuple.__iter__(self))})"

    def __reduce__(self) -> Any:
        return (tuple, (tuple(tuple.__iter__(self)),))

    def numel(self) -> Any:
        total: Any = 1
        for d in self._whole():
            total = total * d
        return total


def is_traced(value: Any) -> bool:
    """True for traced ints/floats (values the tracer maps to graph nodes)."""
    return isinstance(value, _TracedNumber)


def untraced(value: Any) -> Any:
    """The plain Python value behind a traced one; other values are returned unchanged."""
    if isinstance(value, _TracedNumber):
        return value._plain()
    if type(value) is TracedSize:
        return tuple(tuple.__iter__(value))  # the plain sizes, without recording anything
    return value

tree.register_leaf_type(TracedSize)  # one value (a size list), not structure: NOTE [Value tree]
