"""``dtypes``, ``shapes`` and ``from_dtype``: strategies for the parts of a tensor."""
from __future__ import annotations

import math
import struct
from typing import Any, Optional, Tuple, Union

import torch
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from ._base import (
    _COMPLEX,
    _COMPLEX_WIDTH,
    _FLOAT_WIDTH,
    _FLOATING,
    _INTEGRAL,
    NDIM_MAX,
    Shape,
    _check_bool,
    _check_dtype,
    _check_int,
    _fail,
    _order_check,
)

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

    >>> dtypes(floating=False, boolean=False).example() in (
    ...     torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)
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
        # _check_real_bound has rejected non-int bounds for integral dtypes.
        assert min_value is None or isinstance(min_value, int)
        assert max_value is None or isinstance(max_value, int)
        int_low = info.min if min_value is None else min_value
        int_high = info.max if max_value is None else max_value
        return st.integers(int_low, int_high)

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

