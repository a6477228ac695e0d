"""Constants and argument checks shared by the tensor strategies."""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Dict, Literal, Sequence, Tuple

import torch
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.strategies import SearchStrategy

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

# Literal-typed because hypothesis' floats/complex_numbers accept only these widths.
# bfloat16 is drawn as float32 and rounded, see _round_to_bfloat16.
_FLOAT_WIDTH: Dict[torch.dtype, Literal[16, 32, 64]] = {
    torch.float16: 16, torch.float32: 32, torch.bfloat16: 32, torch.float64: 64,
}
_COMPLEX_WIDTH: Dict[torch.dtype, Literal[32, 64, 128]] = {torch.complex64: 64, torch.complex128: 128}

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

