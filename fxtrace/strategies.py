"""Hypothesis strategies for torch tensors and for whole argument structures.

The strategies follow ``hypothesis.extra.numpy`` and ``hypothesis.extra.array_api``:

* every argument after the first obvious one is keyword-only and has a small default;
* every argument is checked when the strategy is built, and a bad one raises
  :class:`hypothesis.errors.InvalidArgument` naming the argument and the bound
  (``"min_dims=3 is larger than max_dims=2"``);
* ``dtype``, ``shape``, ``device``, ``layout`` and ``requires_grad`` of :func:`tensors` each take a
  value or a strategy; a strategy is resolved with ``flatmap``, a value costs nothing;
* element values are inferred from the dtype (:func:`from_dtype`), and all strategies shrink
  towards the smallest shape, contiguous memory and zeros.

Public strategies: :func:`dtypes`, :func:`shapes`, :func:`from_dtype`, :func:`tensors` and
:func:`inputs_like`, which derives a strategy for a whole argument structure (tensors nested in
tuples, lists and dicts, plus constants) from the example inputs given to ``fxtrace.trace``. By
default inputs_like seeds its tensor values (a kind and a seed per tensor fill it through a
private ``torch.Generator``, NOTE [seeded]) instead of drawing every element, so a large input
costs as few Hypothesis choices as a small one.

Why not ``hypothesis-torch``
----------------------------
The ``hypothesis-torch`` package (2.0.7 evaluated) was read and not used, for these reasons:

* its ``tensor_strategy`` ends with ``tensor.contiguous()``: it cannot produce non-contiguous,
  sliced, expanded or arbitrarily strided tensors, which are the inputs a tracer most often
  gets wrong; its only memory-layout knob is ``channels_last`` for 4-d/5-d tensors;
* it builds every tensor through ``hypothesis.extra.numpy`` and ``torch.from_numpy``, so numpy
  becomes a run-time dependency (fxtrace needs numpy only for its tests; hypothesis-torch's own
  metadata lists numpy only as an extra), and bfloat16 is drawn as float32, filtered and cast;
* its defaults suit fuzzing, not trace checks: elements include NaN and infinities, and
  ``requires_grad`` and the device are drawn at random unless pinned;
* nothing is validated when a strategy is built (it is one ``@composite``), so a bad argument
  surfaces mid-test instead of at the call;
* importing it registers a global strategy for ``torch.Tensor``, and installing it registers a
  Hypothesis entry-point plugin that manages torch's global RNG in every test session;
* it has no counterpart to :func:`inputs_like` (structures, dynamic dims, linked sizes);
* its metadata caps Python below 3.14 (``Requires-Python <3.14,>=3.9``); fxtrace has no cap.

What it does that this module does not (sparse layouts, named tensors, modules and optimizers)
is outside what a trace check needs. The tensor code here is a few hundred lines; owning it costs
less than working around the points above, and adds no dependency.
"""
from __future__ import annotations

import dataclasses
import math
import struct
from functools import lru_cache
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.strategies import SearchStrategy

__all__ = [
    "LAYOUTS",
    "NDIM_MAX",
    "dtypes",
    "shapes",
    "from_dtype",
    "tensors",
    "inputs_like",
]

Shape = Tuple[int, ...]

#: The values :func:`tensors` accepts for ``layout``.
LAYOUTS = ("any", "contiguous", "noncontiguous", "strided")

#: The most dims :func:`shapes` generates (the same bound as ``hypothesis.extra.numpy``).
NDIM_MAX = 32

# Ordered so that ``sampled_from`` shrinks towards torch's default dtypes.
_FLOATING = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_INTEGRAL = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)
_EXTRA_UNSIGNED = tuple(getattr(torch, n) for n in ("uint16", "uint32", "uint64") if hasattr(torch, n))
_COMPLEX = (torch.complex64, torch.complex128)
# The signed dtype of the same width as each of _EXTRA_UNSIGNED, for kernels those lack.
_SIGNED_VIEW = {
    d: {16: torch.int16, 32: torch.int32, 64: torch.int64}[torch.iinfo(d).bits] for d in _EXTRA_UNSIGNED
}
_SUPPORTED = _FLOATING + _INTEGRAL + _EXTRA_UNSIGNED + (torch.bool,) + _COMPLEX

# bfloat16 is drawn as float32 and rounded, see _round_to_bfloat16.
_FLOAT_WIDTH = {torch.float16: 16, torch.float32: 32, torch.bfloat16: 32, torch.float64: 64}
_COMPLEX_WIDTH = {torch.complex64: 64, torch.complex128: 128}

# Tensors (or strided base buffers) with more elements than this are drawn as one background
# value plus a sparse set of drawn elements, as hypothesis.extra.numpy does with ``fill``.
_DENSE_LIMIT = 128

# The value range inputs_like gives floating and complex tensors unless told otherwise.
_INPUTS_FLOAT_BOUND = 10.0

#: The values ``inputs_like(values=...)`` accepts (None picks one, see inputs_like).
_VALUE_MODES = ("seeded", "drawn")

# Seeded values (see NOTE [seeded]): kinds 0.._SEEDED_KINDS-1, kind 0 being the constant, and a
# seed for a private torch.Generator.
_SEEDED_KINDS = 4
_SEED_MAX = 2**31 - 1
# Built once: constructing a strategy costs more than the torch call that fills a small tensor.
_SEEDED_KIND = st.integers(0, _SEEDED_KINDS - 1)
_SEED = st.integers(0, _SEED_MAX)
# Seeded complex tensors: real and imaginary parts each within [-7, 7], so |z| <= 7 * sqrt(2) < 10.
_SEEDED_COMPLEX_PART_BOUND = 7


# --------------------------------------------------------------------------- validation


def _fail(message: str) -> InvalidArgument:
    return InvalidArgument(message)


def _check_int(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(f"{name}={value!r} must be an int, not {type(value).__name__}")


def _check_bool(value: Any, name: str) -> None:
    if not isinstance(value, bool):
        raise _fail(f"{name}={value!r} must be True or False, not {type(value).__name__}")


def _order_check(name: str, floor: int, low: int, high: int) -> None:
    if low < floor:
        raise _fail(f"min_{name}={low} must be at least {floor}")
    if low > high:
        raise _fail(f"min_{name}={low} is larger than max_{name}={high}")


def _check_dtype(dtype: Any, name: str = "dtype") -> None:
    if not isinstance(dtype, torch.dtype):
        raise _fail(f"{name}={dtype!r} must be a torch.dtype or a strategy of them")
    if dtype not in _SUPPORTED:
        raise _fail(
            f"{name}={dtype} is not supported; supported dtypes are "
            + ", ".join(str(d) for d in _SUPPORTED)
        )


def _is_floating(dtype: torch.dtype) -> bool:
    return dtype in _FLOATING


def _normalise_shape(shape: Any, name: str = "shape") -> Shape:
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list, torch.Size)):
        raise _fail(f"{name}={shape!r} must be an int, a tuple of ints or a strategy of them")
    for side in shape:
        if isinstance(side, bool) or not isinstance(side, int):
            raise _fail(f"{name}={tuple(shape)!r} must hold ints, not {type(side).__name__}")
    if any(side < 0 for side in shape):
        raise _fail(f"{name}={tuple(shape)!r} has a negative side")
    if len(shape) > 64:
        raise _fail(f"{name} has {len(shape)} dims; torch supports at most 64")
    return tuple(int(side) for side in shape)


@lru_cache(maxsize=None)
def _device_of(device: Any) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise _fail(f"device={device!r} is not a torch device: {err}") from None
    try:
        torch.empty(0, device=dev)
    except (RuntimeError, AssertionError) as err:
        raise _fail(f"device={device!r} is not available here: {err}") from None
    return dev


def _check_device(device: Any) -> torch.device:
    if not isinstance(device, (str, torch.device, int)) or isinstance(device, bool):
        raise _fail(f"device={device!r} must be a str, a torch.device or a strategy of them")
    return _device_of(device)


def _check_layout(layout: Any, name: str = "layout") -> None:
    if layout not in LAYOUTS:
        raise _fail(f"{name}={layout!r} must be one of " + ", ".join(repr(x) for x in LAYOUTS))


def _check_strategy_or_none(value: Any, name: str) -> None:
    if value is not None and not isinstance(value, SearchStrategy):
        raise _fail(f"{name}={value!r} must be a strategy or None")


def _numel(shape: Sequence[int]) -> int:
    return math.prod(shape)


def _can_be_noncontiguous(shape: Sequence[int]) -> bool:
    # torch calls every tensor with fewer than two elements contiguous.
    return _numel(shape) >= 2


# --------------------------------------------------------------------------- dtypes, shapes


def dtypes(
    *, floating: bool = True, integral: bool = True, boolean: bool = True, complex: bool = False
) -> SearchStrategy[torch.dtype]:
    """Return a strategy for the torch dtypes :func:`tensors` supports.

    * ``floating`` (default True): float32, float64, float16, bfloat16.
    * ``integral`` (default True): int64, int32, int16, int8, uint8.
    * ``boolean`` (default True): bool.
    * ``complex`` (default False): complex64, complex128.

    Examples shrink towards torch's default dtypes: ``torch.float32`` first, then ``torch.int64``.

    >>> dtypes(floating=False, boolean=False).example() in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)
    True
    """
    for name, flag in (("floating", floating), ("integral", integral), ("boolean", boolean), ("complex", complex)):
        _check_bool(flag, name)
    chosen: Tuple[torch.dtype, ...] = ()
    if floating:
        chosen += _FLOATING
    if integral:
        chosen += _INTEGRAL
    if boolean:
        chosen += (torch.bool,)
    if complex:
        chosen += _COMPLEX
    if not chosen:
        raise _fail("dtypes() needs at least one of floating, integral, boolean, complex to be True")
    return st.sampled_from(chosen)


def shapes(
    *, min_dims: int = 0, max_dims: Optional[int] = None, min_side: int = 0, max_side: Optional[int] = None
) -> SearchStrategy[Shape]:
    """Return a strategy for tensor shapes (tuples of non-negative ints).

    * ``min_dims`` (default 0): the fewest dims; 0 gives 0-d tensors.
    * ``max_dims`` (default ``min_dims + 3``, at most 32): the most dims.
    * ``min_side`` (default 0): the smallest side; 0 gives zero-size tensors.
    * ``max_side`` (default ``min_side + 5``): the largest side.

    Examples shrink towards ``min_dims`` dims of side ``min_side`` (with the defaults: ``()``).

    >>> shape = shapes(min_dims=2, max_dims=2, min_side=1, max_side=3).example()
    >>> len(shape) == 2 and all(1 <= side <= 3 for side in shape)
    True
    """
    _check_int(min_dims, "min_dims")
    _check_int(min_side, "min_side")
    if min_dims > NDIM_MAX:
        raise _fail(f"min_dims={min_dims} is larger than {NDIM_MAX}, the most dims shapes() generates")
    if max_dims is None:
        max_dims = min(min_dims + 3, NDIM_MAX)
    _check_int(max_dims, "max_dims")
    if max_dims > NDIM_MAX:
        raise _fail(f"max_dims={max_dims} is larger than {NDIM_MAX}, the most dims shapes() generates")
    if max_side is None:
        max_side = min_side + 5
    _check_int(max_side, "max_side")
    _order_check("dims", 0, min_dims, max_dims)
    _order_check("side", 0, min_side, max_side)
    return st.lists(st.integers(min_side, max_side), min_size=min_dims, max_size=max_dims).map(tuple)


# --------------------------------------------------------------------------- elements


def _round_to_bfloat16(x: float) -> float:
    """Round a float32 value to the nearest bfloat16 (ties to even), as torch does."""
    if x != x:
        return x
    bits = struct.unpack("<I", struct.pack("<f", x))[0]
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def _round_inward(value: float, dtype: torch.dtype, up: bool) -> float:
    """The nearest ``dtype`` value to ``value`` on the inner side of a bound."""
    exact = torch.tensor(float(value), dtype=torch.float64)
    rounded = exact.to(dtype)
    if up and rounded.double() < exact:
        rounded = torch.nextafter(rounded, torch.tensor(math.inf, dtype=dtype))
    elif not up and rounded.double() > exact:
        rounded = torch.nextafter(rounded, torch.tensor(-math.inf, dtype=dtype))
    return float(rounded.item())


def _check_real_bound(value: Any, name: str, dtype: torch.dtype) -> None:
    if value is None:
        return
    if dtype == torch.bool or dtype in _COMPLEX:
        raise _fail(f"dtype={dtype} does not take {name}; pass elements= instead")
    if dtype in _FLOATING:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(f"{name}={value!r} must be a real number for dtype={dtype}")
        if math.isnan(value):
            raise _fail(f"{name}={value!r} is not a number")
        info: Any = torch.finfo(dtype)
    else:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(f"{name}={value!r} must be an int for dtype={dtype}")
        info = torch.iinfo(dtype)
    if value > info.max:
        raise _fail(f"dtype={dtype} requires {name}={value!r} to be at most {info.max}")
    if value < info.min:
        raise _fail(f"dtype={dtype} requires {name}={value!r} to be at least {info.min}")


def from_dtype(
    dtype: torch.dtype,
    *,
    min_value: Optional[Union[int, float]] = None,
    max_value: Optional[Union[int, float]] = None,
    allow_nan: bool = False,
    allow_infinity: bool = False,
    allow_subnormal: bool = False,
) -> SearchStrategy[Any]:
    """Return a strategy for Python scalars that ``dtype`` stores exactly.

    * ``dtype``: a torch dtype (see :func:`dtypes`).
    * ``min_value`` / ``max_value`` (default: the dtype's whole finite range): bounds for integral
      and floating dtypes. Floating bounds are rounded inwards to the nearest ``dtype`` value, so
      ``from_dtype(torch.float16, max_value=0.1)`` never exceeds 0.1. Bool and complex dtypes take no
      bounds.
    * ``allow_nan``, ``allow_infinity``, ``allow_subnormal`` (default False each): let floating
      and complex values be NaN, ±inf or subnormal. Ignored for integral and bool dtypes.

    Values are Python ``bool``, ``int``, ``float`` or ``complex``; floats are drawn with
    ``floats(width=...)`` for float16/32/64, and as float32 rounded to the nearest bfloat16 for
    bfloat16. Examples shrink towards zero (or the bound nearest to it), and ``False``.

    >>> from_dtype(torch.int8, min_value=-3, max_value=3).example() in range(-3, 4)
    True
    """
    _check_dtype(dtype)
    _check_bool(allow_nan, "allow_nan")
    _check_bool(allow_infinity, "allow_infinity")
    _check_bool(allow_subnormal, "allow_subnormal")
    _check_real_bound(min_value, "min_value", dtype)
    _check_real_bound(max_value, "max_value", dtype)
    if min_value is not None and max_value is not None and min_value > max_value:
        raise _fail(f"min_value={min_value!r} is larger than max_value={max_value!r}")

    if dtype == torch.bool:
        return st.booleans()
    if dtype in _COMPLEX:
        strategy = st.complex_numbers(
            allow_nan=allow_nan,
            allow_infinity=allow_infinity,
            allow_subnormal=allow_subnormal,
            width=_COMPLEX_WIDTH[dtype],
        )
        strategy.validate()
        return strategy
    if dtype not in _FLOATING:
        info = torch.iinfo(dtype)
        low = info.min if min_value is None else min_value
        high = info.max if max_value is None else max_value
        return st.integers(low, high)

    low = None if min_value is None else _round_inward(min_value, dtype, up=True)
    high = None if max_value is None else _round_inward(max_value, dtype, up=False)
    if low is not None and high is not None and low > high:
        raise _fail(f"no {dtype} value lies between min_value={min_value!r} and max_value={max_value!r}")
    strategy = st.floats(
        min_value=low,
        max_value=high,
        allow_nan=allow_nan,
        allow_infinity=allow_infinity,
        allow_subnormal=allow_subnormal,
        width=_FLOAT_WIDTH[dtype],
    )
    strategy.validate()  # hypothesis' own checks (e.g. allow_nan with bounds), at construction
    if dtype == torch.bfloat16:
        return strategy.map(_finite_bfloat16 if not allow_infinity else _round_to_bfloat16)
    return strategy


_BFLOAT16_MAX = torch.finfo(torch.bfloat16).max


def _finite_bfloat16(x: float) -> float:
    # float32 values just above bfloat16's largest finite value round to infinity; clamp them.
    # (Bounds given by the user are bfloat16 values already, so rounding never crosses them.)
    rounded = _round_to_bfloat16(x)
    return math.copysign(_BFLOAT16_MAX, x) if math.isinf(rounded) and not math.isinf(x) else rounded


# --------------------------------------------------------------------------- drawing tensors


@dataclasses.dataclass(frozen=True)
class _Spec:
    """Everything needed to draw one tensor of a known shape."""

    dtype: torch.dtype
    shape: Shape
    elements: SearchStrategy[Any]
    fill: Optional[SearchStrategy[Any]]
    device: torch.device
    layout: str
    requires_grad: bool
    check: bool  # elements came from the user: check each value is stored exactly
    # "drawn": every value from ``elements`` (with NOTE [fill] for large buffers); "seeded": one
    # kind and one seed per buffer, ``elements`` unused (NOTE [seeded]).
    values: str = "drawn"
    # Seeded integral tensors only: the inclusive [low, high] range of the values.
    int_range: Tuple[int, int] = (0, 0)


def _as_tensor(values: List[Any], spec: _Spec) -> torch.Tensor:
    try:
        tensor = torch.tensor(values, dtype=spec.dtype)
    except (RuntimeError, TypeError, OverflowError, ValueError) as err:
        raise _fail(f"elements: a generated value cannot be stored as dtype={spec.dtype}: {err}") from None
    if spec.check:
        for value, stored in zip(values, tensor.tolist()):
            if not (value == stored or (value != value and stored != stored)):
                raise _fail(
                    f"generated element {value!r} cannot be represented exactly as dtype={spec.dtype} "
                    f"(it would be stored as {stored!r}); use a more precise elements strategy, "
                    f"e.g. from_dtype({spec.dtype}) or floats(width=...)"
                )
    return tensor


def _draw_flat(draw: Callable[..., Any], spec: _Spec, n: int) -> torch.Tensor:
    """A 1-d CPU tensor of ``n`` values drawn for ``spec``."""
    if n == 0:
        return torch.empty(0, dtype=spec.dtype)
    if spec.values == "seeded":
        return _draw_seeded(draw, spec, n)
    no_fill = spec.fill is not None and spec.fill.is_empty
    if no_fill or (spec.fill is None and n <= _DENSE_LIMIT):
        return _as_tensor(draw(st.lists(spec.elements, min_size=n, max_size=n)), spec)
    # NOTE [fill]: a background value plus sparse drawn elements keeps large tensors cheap to
    # generate and shrink (hypothesis.extra.numpy does the same).
    background = _as_tensor([draw(spec.fill if spec.fill is not None else spec.elements)], spec)
    flat = background.expand(n).clone()
    changes = draw(st.lists(st.tuples(st.integers(0, n - 1), spec.elements), max_size=min(n, _DENSE_LIMIT)))
    if changes:
        index = torch.tensor([i for i, _ in changes], dtype=torch.int64)
        new = _as_tensor([v for _, v in changes], spec)
        signed = _SIGNED_VIEW.get(spec.dtype)
        if signed is not None:  # torch has no index_put for uint16/32/64: write their bits
            flat.view(signed)[index] = new.view(signed)
        else:
            flat[index] = new
    return flat


# NOTE [seeded]: drawing every element through Hypothesis costs about 80 µs per float element,
# and NOTE [fill] makes large tensors mostly one constant. inputs_like's default instead draws two
# choices per buffer: a kind, then (for kinds other than 0) a seed for a private CPU
# torch.Generator that fills the whole buffer in one torch call. The cost is O(1) choices per
# tensor whatever its size, the values of large tensors are as random as those of small ones,
# and replaying the two choices rebuilds the tensor bit for bit (only IEEE-exact arithmetic on
# torch's serial CPU generator: uniform_, random_ and casts, no transcendental functions whose
# last bit could differ between CPUs). The price is shrinking: a seeded tensor shrinks as a whole,
# to kind 0, the constant that drawn values shrink to; a failure that needs random values keeps
# its (shrunk) seed, never a tensor with one interesting element.
def _seeded_constant(spec: _Spec) -> Any:
    """The value every element of a kind-0 seeded tensor has: the one drawn values shrink to."""
    if spec.dtype == torch.bool:
        return False
    if spec.dtype in _FLOATING or spec.dtype in _COMPLEX:
        return 0
    low, high = spec.int_range
    return min(max(0, low), high)


def _seeded_real(gen: torch.Generator, kind: int, n: int, dtype: torch.dtype, bound: int) -> torch.Tensor:
    """``n`` values of floating ``dtype`` in [-bound, bound] for a kind in 1..3."""
    out = torch.empty(n, dtype=dtype)
    if kind == 1:
        return out.uniform_(-bound, bound, generator=gen)
    if kind == 2:  # the scale of typical activations: [-1, 1]
        return out.uniform_(-1.0, 1.0, generator=gen)
    # Integer values: ties, exact zeros and exact comparisons, as in examples built from arange.
    return out.random_(-bound, bound + 1, generator=gen)


def _seeded_integral(gen: torch.Generator, n: int, dtype: torch.dtype, low: int, high: int) -> torch.Tensor:
    """``n`` values of integral ``dtype``, uniform in [low, high] (exact for every width)."""
    if dtype == torch.uint64:
        # random_ takes int64 bounds: draw the range shifted down by 2**63 as int64, then flip the
        # sign bit, which adds 2**63 back when the bits are read as uint64.
        shifted = _seeded_integral(gen, n, torch.int64, low - 2**63, high - 2**63)
        return shifted.bitwise_xor_(-(2**63)).view(torch.uint64)
    # random_'s upper bound is exclusive and must fit the dtype; None means "the dtype's maximum"
    # (with low == int64's minimum: every int64, which high + 1 could not express).
    top = None if high == torch.iinfo(dtype).max else high + 1
    return torch.empty(n, dtype=dtype).random_(low, top, generator=gen)


def _flush_subnormals(values: torch.Tensor) -> torch.Tensor:
    """``values`` with subnormal entries (of either part, for complex) set to zero, in place."""
    parts = torch.view_as_real(values) if values.is_complex() else values
    parts.masked_fill_(parts.abs() < torch.finfo(parts.dtype).tiny, 0)
    return values


def _draw_seeded(draw: Callable[..., Any], spec: _Spec, n: int) -> torch.Tensor:
    """A 1-d CPU tensor of ``n`` (> 0) seeded values for ``spec``, from two choices (NOTE [seeded]).

    Invariants: the same choices give a bit-identical tensor; kind 0 (where shrinking goes) is
    :func:`_seeded_constant`; other kinds stay in inputs_like's documented ranges (floating in
    [-10, 10], complex parts in [-7, 7], integral in ``spec.int_range``), with no NaN, infinity or
    subnormal; torch's global RNG is neither read nor advanced.
    """
    kind = draw(_SEEDED_KIND)
    if kind == 0:
        # torch.tensor, not torch.full: full cannot take uint64 values above int64's maximum.
        return torch.tensor([_seeded_constant(spec)], dtype=spec.dtype).expand(n).clone()
    gen = torch.Generator()
    gen.manual_seed(draw(_SEED))
    dtype = spec.dtype
    if dtype == torch.bool:
        return torch.empty(n, dtype=torch.bool).random_(0, 2, generator=gen)
    if dtype not in _FLOATING and dtype not in _COMPLEX:
        return _seeded_integral(gen, n, dtype, *spec.int_range)
    # Generate in float64 for 64-bit parts and float32 otherwise (float16 and bfloat16 are cast
    # from float32, rounding to nearest, so no value leaves the range).
    wide = dtype in (torch.float64, torch.complex128)
    work = torch.float64 if wide else torch.float32
    if dtype in _COMPLEX:
        parts = _seeded_real(gen, kind, 2 * n, work, _SEEDED_COMPLEX_PART_BOUND)
        return torch.view_as_complex(parts.view(n, 2))
    values = _seeded_real(gen, kind, n, work, int(_INPUTS_FLOAT_BOUND))
    if dtype == work:
        # uniform_ computes low + u * (high - low) with u a multiple of 2**-24 (float32) or 2**-53
        # (float64), and random_ gives whole numbers: nothing nonzero comes near the subnormals.
        return values
    # A narrowing cast can make small float32 values subnormal (float16's smallest normal is 6e-5).
    return _flush_subnormals(values.to(dtype))


def _contiguous_strides(shape: Sequence[int]) -> List[int]:
    strides, step = [], 1
    for side in reversed(shape):
        strides.append(step)
        step *= max(side, 1)
    return strides[::-1]


def _draw_noncontiguous(draw: Callable[..., Any], spec: _Spec) -> torch.Tensor:
    shape = spec.shape
    big = [d for d, side in enumerate(shape) if side >= 2]
    methods = ["slice", "expand"] + (["transpose"] if len(big) >= 2 else [])
    method = draw(st.sampled_from(methods))
    if method == "slice":
        # Every ``step``-th row of a larger base along one dim.
        dim = draw(st.sampled_from(big))
        step = draw(st.integers(2, 3))
        start = draw(st.integers(0, step - 1))
        base_shape = list(shape)
        base_shape[dim] = shape[dim] * step
        base = torch.empty(base_shape, dtype=spec.dtype, device=spec.device)
        base.fill_(_draw_flat(draw, spec, 1)[0])  # padding between the rows: one drawn value
        index = [slice(None)] * len(shape)
        index[dim] = slice(start, start + step * shape[dim], step)
        view = base[tuple(index)]
        view.copy_(_draw_flat(draw, spec, _numel(shape)).reshape(shape))
        return view
    if method == "expand":
        # A size-1 dim expanded: stride 0, the values repeat along that dim. All values are drawn
        # and one slice is kept (see NOTE [draw count]).
        dim = draw(st.sampled_from(big))
        full = _draw_flat(draw, spec, _numel(shape)).reshape(shape)
        return full.narrow(dim, 0, 1).clone().to(spec.device).expand(shape)
    # transpose: values laid out with two dims swapped.
    i, j = draw(st.sampled_from([(a, b) for a in big for b in big if a < b]))
    swapped = list(shape)
    swapped[i], swapped[j] = swapped[j], swapped[i]
    return _draw_flat(draw, spec, _numel(shape)).reshape(swapped).to(spec.device).transpose(i, j)


def _draw_strided(draw: Callable[..., Any], spec: _Spec) -> torch.Tensor:
    # torch.as_strided over a drawn base buffer; strides are arbitrary (they may overlap or be 0)
    # and shrink towards the contiguous ones, the offset towards 0.
    shape = spec.shape
    strides = [draw(st.one_of(st.just(s), st.integers(0, 2 * s + 1))) for s in _contiguous_strides(shape)]
    offset = draw(st.integers(0, 3))
    if _numel(shape) == 0:
        length = offset + 1
    else:
        length = offset + sum((side - 1) * stride for side, stride in zip(shape, strides)) + 1
    length = max(length, _numel(shape))  # NOTE [draw count]
    buffer = _draw_flat(draw, spec, length).to(spec.device)
    return buffer.as_strided(shape, strides, offset)


# NOTE [draw count]: Hypothesis shrinks towards shorter choice sequences first. Every layout
# therefore draws at least as many values as the tensor has elements, and more choices than a
# contiguous tensor; otherwise an expanded or overlapping view (fewer values) would count as
# "simpler" than a contiguous tensor, and examples would not shrink to contiguous memory.
def _draw_tensor(draw: Callable[..., Any], spec: _Spec) -> torch.Tensor:
    kinds = ["contiguous"] + (["noncontiguous"] if _can_be_noncontiguous(spec.shape) else []) + ["strided"]
    kind = spec.layout if spec.layout != "any" else draw(st.sampled_from(kinds))
    if kind == "noncontiguous" and not _can_be_noncontiguous(spec.shape):
        kind = "contiguous"  # only reachable from inputs_like, which documents this
    if kind == "contiguous":
        tensor = _draw_flat(draw, spec, _numel(spec.shape)).reshape(spec.shape).to(spec.device)
    elif kind == "noncontiguous":
        tensor = _draw_noncontiguous(draw, spec)
    else:
        tensor = _draw_strided(draw, spec)
    if spec.requires_grad:
        tensor = tensor.detach().requires_grad_(True)  # detach keeps the strides
    return tensor


@st.composite
def _tensor_strategy(draw: Callable[..., Any], spec: _Spec) -> torch.Tensor:
    return _draw_tensor(draw, spec)


# --------------------------------------------------------------------------- tensors

_ELEMENT_KWARGS = ("min_value", "max_value", "allow_nan", "allow_infinity", "allow_subnormal")


def tensors(
    *,
    dtype: Union[torch.dtype, SearchStrategy[torch.dtype]],
    shape: Union[int, Shape, SearchStrategy[Shape]],
    elements: Optional[Union[SearchStrategy[Any], Mapping[str, Any]]] = None,
    device: Union[str, torch.device, SearchStrategy[Any]] = "cpu",
    layout: Union[str, SearchStrategy[str]] = "any",
    allow_nan: bool = False,
    allow_infinity: bool = False,
    allow_subnormal: bool = False,
    min_value: Optional[Union[int, float]] = None,
    max_value: Optional[Union[int, float]] = None,
    requires_grad: Union[bool, SearchStrategy[bool]] = False,
    fill: Optional[SearchStrategy[Any]] = None,
) -> SearchStrategy[torch.Tensor]:
    """Return a strategy for torch tensors.

    * ``dtype`` (required): a torch dtype or a strategy of them, e.g. :func:`dtypes`.
    * ``shape`` (required): an int, a tuple of ints or a strategy of them, e.g. :func:`shapes`.
      ``()`` gives 0-d tensors; a side of 0 gives zero-size tensors.
    * ``elements`` (default None: :func:`from_dtype` with the value arguments below): a strategy
      for the values, or a dict of :func:`from_dtype` keyword arguments. Every value it draws
      must be stored exactly by ``dtype``, or drawing raises ``InvalidArgument``.
    * ``device`` (default ``"cpu"``): a device or a strategy of them; checked to exist.
    * ``layout`` (default ``"any"``), or a strategy of layouts:

      - ``"contiguous"``: a fresh contiguous tensor;
      - ``"noncontiguous"``: ``is_contiguous()`` is False. A view of a larger base, by a step
        slice, a transpose, or an expanded size-1 dim (stride 0, so its memory aliases). The
        shape needs at least 2 elements;
      - ``"strided"``: ``torch.as_strided`` over a drawn base buffer, with arbitrary
        non-negative strides (elements may alias) and a storage offset;
      - ``"any"``: one of the three.

      Views that alias memory reject in-place writes, as in eager torch; use ``"contiguous"``
      (or ``.clone()``) for programs that write to their inputs.
    * ``allow_nan``, ``allow_infinity``, ``allow_subnormal`` (default False each): NaN, ±inf
      and subnormal values for floating and complex dtypes.
    * ``min_value``, ``max_value`` (default None: the dtype's finite range): value bounds for
      integral and floating dtypes, checked against the dtype.
    * ``requires_grad`` (default False): a bool or a strategy; True needs a floating or complex
      dtype. The result is always a leaf tensor.
    * ``fill`` (default None): a strategy for one background value. With a fill, most elements
      are that value and a few are drawn from ``elements``; ``fill=nothing()`` draws every
      element. By default tensors (and strided buffers) with more than 128 elements use a fill
      drawn from ``elements``, smaller ones draw every element.

    Examples shrink towards the smallest shape, contiguous memory, and zeros (or the bound
    nearest zero).

    >>> t = tensors(dtype=torch.float32, shape=(2, 3), layout="noncontiguous").example()
    >>> t.shape, t.dtype, t.is_contiguous()
    (torch.Size([2, 3]), torch.float32, False)
    >>> bool(tensors(dtype=torch.int8, shape=4, min_value=-2, max_value=2).example().abs().max() <= 2)
    True
    """
    kwargs: Dict[str, Any] = dict(
        dtype=dtype, shape=shape, elements=elements, device=device, layout=layout,
        allow_nan=allow_nan, allow_infinity=allow_infinity, allow_subnormal=allow_subnormal,
        min_value=min_value, max_value=max_value, requires_grad=requires_grad, fill=fill,
    )
    # Validate every argument that is a value now, so a strategy-valued one cannot hide a bad
    # sibling until draw time.
    if not isinstance(dtype, SearchStrategy):
        _check_dtype(dtype)
    if not isinstance(shape, SearchStrategy):
        shape = kwargs["shape"] = _normalise_shape(shape)
    if not isinstance(device, SearchStrategy):
        _check_device(device)
    if not isinstance(layout, SearchStrategy):
        _check_layout(layout)
        if layout == "noncontiguous" and not isinstance(shape, SearchStrategy) and not _can_be_noncontiguous(shape):
            raise _fail(f"layout='noncontiguous' needs a shape with at least 2 elements, got shape={shape!r}")
    if not isinstance(requires_grad, SearchStrategy):
        _check_bool(requires_grad, "requires_grad")
    for name in ("allow_nan", "allow_infinity", "allow_subnormal"):
        _check_bool(kwargs[name], name)
    _check_strategy_or_none(fill, "fill")
    given = [n for n in _ELEMENT_KWARGS if kwargs[n] is not None and kwargs[n] is not False]
    if elements is not None:
        if not isinstance(elements, (SearchStrategy, Mapping)):
            raise _fail(f"elements={elements!r} must be a strategy, a dict of from_dtype arguments, or None")
        if given:
            raise _fail(f"elements= cannot be combined with {given[0]}={kwargs[given[0]]!r}; put it in elements instead")
        if isinstance(elements, Mapping):
            unknown = sorted(set(elements) - set(_ELEMENT_KWARGS))
            if unknown:
                raise _fail(f"elements has unknown from_dtype argument {unknown[0]!r}; known: {', '.join(_ELEMENT_KWARGS)}")

    # Resolve strategy-valued arguments one at a time; shape last, so that it can be filtered
    # for the layout.
    for name in ("dtype", "layout", "device", "requires_grad", "shape"):
        value = kwargs[name]
        if isinstance(value, SearchStrategy):
            if name == "shape" and layout == "noncontiguous":
                value = value.filter(_can_be_noncontiguous)
            return value.flatmap(lambda v, name=name: tensors(**{**kwargs, name: v}))

    if requires_grad and not (_is_floating(dtype) or dtype in _COMPLEX):
        raise _fail(f"requires_grad=True needs a floating or complex dtype, got dtype={dtype}")
    if isinstance(elements, SearchStrategy):
        element_strategy, check = elements, True
    else:
        options = dict(elements) if elements is not None else {n: kwargs[n] for n in _ELEMENT_KWARGS}
        element_strategy, check = from_dtype(dtype, **options), False
    spec = _Spec(dtype, shape, element_strategy, fill, _check_device(device), layout, requires_grad, check)
    return _tensor_strategy(spec)


# --------------------------------------------------------------------------- inputs_like


def _collect(obj: Any, path: str, out: List[Tuple[str, torch.Tensor]]) -> None:
    """Tensors of ``obj`` in depth-first order (dicts in insertion order), with their paths."""
    if isinstance(obj, torch.Tensor):
        out.append((path, obj))
    elif isinstance(obj, (tuple, list)):
        for i, item in enumerate(obj):
            _collect(item, f"{path}[{i}]", out)
    elif isinstance(obj, dict):
        for key, item in obj.items():
            _collect(item, f"{path}[{key!r}]", out)


def _rebuild(obj: Any, tensors_: Iterator[torch.Tensor]) -> Any:
    """``obj`` with its tensors replaced, in :func:`_collect`'s order, by ``tensors_``."""
    if isinstance(obj, torch.Tensor):
        return next(tensors_)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(_rebuild(item, tensors_) for item in obj))
    if isinstance(obj, (tuple, list)):
        items = [_rebuild(item, tensors_) for item in obj]
        return type(obj)(items) if type(obj) in (tuple, list) else _try_type(obj, items)
    if isinstance(obj, dict):
        pairs = [(key, _rebuild(item, tensors_)) for key, item in obj.items()]
        return dict(pairs) if type(obj) is dict else _try_type(obj, pairs)
    return obj


def _try_type(obj: Any, items: Any) -> Any:
    try:
        return type(obj)(items)
    except Exception:  # a container subclass with another constructor: fall back to the base
        return (dict if isinstance(obj, dict) else list if isinstance(obj, list) else tuple)(items)


def _normalise_dynamic(dynamic: Any, leaves: List[Tuple[str, torch.Tensor]]) -> List[List[int]]:
    """The dynamic dims of each tensor, by flat index."""
    if dynamic is None or dynamic is True:
        return [list(range(t.dim())) for _, t in leaves]
    if dynamic is False:
        return [[] for _ in leaves]
    pairs: List[Tuple[Any, Any]] = []
    if isinstance(dynamic, Mapping):
        for index, dims in dynamic.items():
            if isinstance(dims, int) and not isinstance(dims, bool):
                dims = [dims]
            if not isinstance(dims, Iterable):
                raise _fail(f"dynamic[{index!r}]={dims!r} must be a dim or a list of dims")
            pairs.extend((index, d) for d in dims)
    elif isinstance(dynamic, Iterable) and not isinstance(dynamic, (str, bytes)):
        for pair in dynamic:
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                raise _fail(f"dynamic={dynamic!r} must hold (input_index, dim) pairs, got {pair!r}")
            pairs.append((pair[0], pair[1]))
    else:
        raise _fail(
            f"dynamic={dynamic!r} must be None, True, False, a dict {{input_index: [dims]}} "
            "or a list of (input_index, dim) pairs"
        )
    result: List[List[int]] = [[] for _ in leaves]
    for index, dim in pairs:
        if isinstance(index, bool) or not isinstance(index, int) or isinstance(dim, bool) or not isinstance(dim, int):
            raise _fail(f"dynamic names ({index!r}, {dim!r}); input indices and dims must be ints")
        if not 0 <= index < len(leaves):
            raise _fail(
                f"dynamic names input {index}, but example_inputs has {len(leaves)} tensor(s)"
                + (f" (indices 0..{len(leaves) - 1})" if leaves else "")
            )
        path, tensor = leaves[index]
        if not -tensor.dim() <= dim < tensor.dim():
            raise _fail(f"dynamic names dim {dim} of input {index} ({path}), which has shape {tuple(tensor.shape)}")
        dim %= tensor.dim()
        if dim not in result[index]:
            result[index].append(dim)
    return [sorted(dims) for dims in result]


def _int_range(tensor: torch.Tensor) -> Tuple[int, int]:
    """The inclusive [min, max] of an integral tensor's values; (0, 0) when it is empty.

    Exact for every integral dtype: torch has no min/max kernels for uint16/32/64, so those are
    compared as int64 (uint64 with its sign bit flipped, which keeps the unsigned order).
    """
    if tensor.numel() == 0:
        return 0, 0
    values = tensor.detach()
    if values.dtype == torch.uint64:
        signed = values.view(torch.int64).bitwise_xor(-(2**63))
        return int(signed.min()) + 2**63, int(signed.max()) + 2**63
    if values.dtype in _EXTRA_UNSIGNED:
        values = values.to(torch.int64)
    return int(values.min()), int(values.max())


def _default_elements(tensor: torch.Tensor) -> SearchStrategy[Any]:
    dtype = tensor.dtype
    if dtype == torch.bool:
        return st.booleans()
    if dtype in _FLOATING:
        return from_dtype(dtype, min_value=-_INPUTS_FLOAT_BOUND, max_value=_INPUTS_FLOAT_BOUND)
    if dtype in _COMPLEX:
        return st.complex_numbers(
            max_magnitude=_INPUTS_FLOAT_BOUND, allow_nan=False, allow_infinity=False,
            allow_subnormal=False, width=_COMPLEX_WIDTH[dtype],
        )
    # Integral: stay within the example's values (indices into an embedding, class labels...).
    return st.integers(*_int_range(tensor))


def inputs_like(
    example_inputs: Any,
    *,
    dynamic: Any = None,
    min_side: int = 1,
    max_side: Optional[int] = None,
    elements: Optional[Union[SearchStrategy[Any], Callable[[torch.Tensor], SearchStrategy[Any]]]] = None,
    values: Optional[str] = None,
    link_sizes: bool = True,
    layout: str = "contiguous",
) -> SearchStrategy[Any]:
    """Return a strategy for argument structures like ``example_inputs``, with varied sizes.

    ``example_inputs`` is what you pass to ``fxtrace.trace``: a tensor, or tuples, lists and
    dicts (nested, namedtuples included) of tensors and constants. Each example has the same
    structure and container types; every tensor keeps its dtype, device, ``requires_grad`` and
    number of dims; everything that is not a tensor (None, ints, floats, strings...) is kept as
    it is (the same object).

    Tensors are numbered in depth-first order, dicts in insertion order: in
    ``(x, {"a": y, "b": None}, [z])`` x is input 0, y input 1 and z input 2.

    * ``dynamic`` (default None): the dims whose size varies.

      - ``None`` or ``True``: every dim of every tensor;
      - ``False``: none (only values vary);
      - a dict ``{input_index: [dims]}``, e.g. ``{0: [0], 1: [0, 2]}``, or a list of
        ``(input_index, dim)`` pairs, e.g. ``[(0, 0)]``; negative dims count from the end.

      Other dims keep the example's size.
    * ``min_side`` (default 1): the smallest size of a dynamic dim; 0 allows zero-size tensors.
    * ``max_side`` (default None: ``max(example size, min_side) + 4`` for each group): the
      largest size of a dynamic dim.
    * ``elements`` (default None: see below): a strategy used for every tensor, or a callable
      ``f(example_tensor) -> strategy`` to choose one per input. Its values are drawn element by
      element (``values="drawn"``).
    * ``values`` (default None: ``"seeded"``, or ``"drawn"`` when ``elements`` is given): how
      tensor values are generated, ``"seeded"`` or ``"drawn"``; see below. ``"seeded"`` cannot be
      combined with ``elements``.
    * ``link_sizes`` (default True): see the linking rule below. False lets every dynamic dim
      vary on its own.
    * ``layout`` (default ``"contiguous"``): as in :func:`tensors`; ``"noncontiguous"`` falls
      back to contiguous for a shape with fewer than 2 elements.

    **Linking rule.** Dynamic dims that have the same size in the example vary together: one
    size is drawn for each distinct example size among the dynamic dims. With
    ``x = torch.ones(4, 3)`` and ``y = torch.ones(4, 3)``, dim 0 of both gets one drawn size and
    dim 1 of both another, so ``x + y`` and ``x @ y.T`` stay valid; a square matrix stays square.
    The rule also links dims that match by coincidence, and it varies size-1 dims, so a size-1
    dim that broadcasts against a larger dim may no longer broadcast: name the dynamic dims
    (``dynamic=``) for such programs.

    **Values.** Floating tensors get values in [-10, 10] (complex: magnitude at most 10), bool
    tensors any bools, and integral tensors values between the example tensor's own minimum and
    maximum (0 for an empty example), so an index tensor for an embedding stays in range.
    No NaN, infinities or subnormals. Without ``elements``, both modes keep these ranges:

    - ``values="seeded"`` (default): per tensor (per buffer it is built from, for views),
      Hypothesis draws a kind and, unless the kind is 0, a seed; a private CPU
      ``torch.Generator`` seeded with it fills the tensor in one call, and the values are then
      moved to the tensor's device. Kind 0 is a constant: zeros, False, or the integer nearest
      zero in range. The other kinds are random: floating values uniform in [-10, 10], uniform
      in [-1, 1], or whole numbers in [-10, 10]; complex values with real and imaginary parts
      each drawn that way within [-7, 7]; bool and integral values uniform over their range.
      The cost is a few choices per tensor whatever its size, and the same choices give the
      same tensor bit for bit. Torch's global RNG is not touched.
    - ``values="drawn"``: Hypothesis draws every element (from ``elements`` if given), at about
      80 µs per floating element; a tensor with more than 128 elements is one drawn background
      value plus up to 128 drawn elements, as in :func:`tensors`.

    Examples shrink towards ``min_side`` for every dynamic dim, contiguous memory and zeros (or
    the value nearest zero in range). A seeded tensor shrinks as a whole: to the constant, or,
    when the failure needs random values, to another seed; never to a tensor that differs from
    the constant in one element. Drawn values shrink element by element, so pass
    ``values="drawn"`` when a failure depends on the value of one element and you want the
    minimal example to show which.

    >>> x, y = torch.zeros(4, 3), torch.zeros(4, 3)
    >>> a, b = inputs_like((x, y)).example()
    >>> a.shape == b.shape
    True
    >>> ids = torch.tensor([[0, 9]])
    >>> out = inputs_like({"ids": ids, "mask": None}, dynamic={0: [1]}).example()
    >>> sorted(out), out["ids"].shape[0], bool(out["ids"].max() <= 9)
    (['ids', 'mask'], 1, True)
    >>> big = inputs_like(torch.zeros(64, 3, 32, 32), dynamic=False).example()   # cheap: seeded
    >>> big.shape, bool(big.abs().max() <= 10)
    (torch.Size([64, 3, 32, 32]), True)
    """
    leaves: List[Tuple[str, torch.Tensor]] = []
    _collect(example_inputs, "example_inputs", leaves)
    _check_int(min_side, "min_side")
    if min_side < 0:
        raise _fail(f"min_side={min_side} must be at least 0")
    if max_side is not None:
        _check_int(max_side, "max_side")
        _order_check("side", 0, min_side, max_side)
    _check_bool(link_sizes, "link_sizes")
    _check_layout(layout)
    if elements is not None and not isinstance(elements, SearchStrategy) and not callable(elements):
        raise _fail(f"elements={elements!r} must be a strategy, a callable returning one, or None")
    if values is not None and (not isinstance(values, str) or values not in _VALUE_MODES):
        raise _fail(
            f"values={values!r} must be one of " + ", ".join(repr(x) for x in _VALUE_MODES)
            + " or None ('seeded' unless elements= is given)"
        )
    if values == "seeded" and elements is not None:
        raise _fail(
            "values='seeded' cannot be combined with elements=: seeded values do not use elements; "
            "pass values='drawn' (or leave values=None) to draw every element from elements"
        )
    mode = values if values is not None else ("seeded" if elements is None else "drawn")

    specs: List[_Spec] = []
    for path, tensor in leaves:
        if tensor.layout != torch.strided:
            raise _fail(f"{path} has layout={tensor.layout}; inputs_like supports strided (dense) tensors only")
        _check_dtype(tensor.dtype, name=f"{path}.dtype")
        int_range = (0, 0)
        if mode == "seeded":
            # elements is unused (NOTE [seeded]); nothing() makes any accidental use fail loudly.
            strategy, check = st.nothing(), False
            if not (tensor.dtype == torch.bool or _is_floating(tensor.dtype) or tensor.dtype in _COMPLEX):
                int_range = _int_range(tensor)
        elif elements is None:
            strategy, check = _default_elements(tensor), False
        elif isinstance(elements, SearchStrategy):
            strategy, check = elements, True
        else:
            strategy, check = elements(tensor), True
            if not isinstance(strategy, SearchStrategy):
                raise _fail(f"elements({path}) returned {strategy!r}, not a strategy")
        specs.append(_Spec(tensor.dtype, tuple(tensor.shape), strategy, None, tensor.device, layout,
                           bool(tensor.requires_grad), check, mode, int_range))

    dims = _normalise_dynamic(dynamic, leaves)
    # group key of each dynamic (input, dim): its example size when linked, else itself.
    key_of: Dict[Tuple[int, int], Any] = {}
    bound: Dict[Any, Tuple[int, int]] = {}
    for index, (_, tensor) in enumerate(leaves):
        for dim in dims[index]:
            size = int(tensor.shape[dim])
            key = ("size", size) if link_sizes else ("dim", index, dim)
            key_of[(index, dim)] = key
            high = max_side if max_side is not None else max(size, min_side) + 4
            bound[key] = (min_side, high)
    keys = sorted(bound, key=lambda k: (k[1:], k[0]))
    size_strategies = {key: st.integers(*bound[key]) for key in keys}  # built once, not per example

    @st.composite
    def strategy(draw: Callable[..., Any]) -> Any:
        sizes = {key: draw(size_strategies[key]) for key in keys}
        drawn = []
        for index, spec in enumerate(specs):
            shape = tuple(
                sizes[key_of[(index, d)]] if (index, d) in key_of else side for d, side in enumerate(spec.shape)
            )
            drawn.append(_draw_tensor(draw, dataclasses.replace(spec, shape=shape)))
        return _rebuild(example_inputs, iter(drawn))

    return strategy()
