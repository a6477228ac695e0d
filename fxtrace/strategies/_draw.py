"""Drawing one tensor of a known shape: dense, sparse-filled, seeded, strided (NOTE [fill],
NOTE [seeded])."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from ._base import (
    _COMPLEX,
    _DENSE_LIMIT,
    _FLOATING,
    _INPUTS_FLOAT_BOUND,
    _SEED,
    _SEEDED_COMPLEX_PART_BOUND,
    _SEEDED_KIND,
    _SIGNED_VIEW,
    Shape,
    _can_be_noncontiguous,
    _fail,
    _numel,
)

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

