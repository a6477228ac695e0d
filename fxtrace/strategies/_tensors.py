"""``tensors``: a strategy for torch tensors, every property a value or a strategy."""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Union

import torch
from hypothesis.strategies import SearchStrategy

from ._base import (
    _COMPLEX,
    Shape,
    _can_be_noncontiguous,
    _check_bool,
    _check_device,
    _check_dtype,
    _check_layout,
    _check_strategy_or_none,
    _fail,
    _is_floating,
    _normalise_shape,
)
from ._draw import _Spec, _tensor_strategy
from ._elements import from_dtype

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
            raise _fail(f"elements= cannot be combined with {given[0]}={kwargs[given[0]]!r}; "
                        "put it in elements instead")
        if isinstance(elements, Mapping):
            unknown = sorted(set(elements) - set(_ELEMENT_KWARGS))
            if unknown:
                raise _fail(f"elements has unknown from_dtype argument {unknown[0]!r}; "
                            f"known: {', '.join(_ELEMENT_KWARGS)}")

    # Resolve strategy-valued arguments one at a time; shape last, so that it can be filtered
    # for the layout.
    for name in ("dtype", "layout", "device", "requires_grad", "shape"):
        value = kwargs[name]
        if isinstance(value, SearchStrategy):
            if name == "shape" and layout == "noncontiguous":
                value = value.filter(_can_be_noncontiguous)

            def resolved(v: Any, name: str = name) -> SearchStrategy[torch.Tensor]:
                return tensors(**{**kwargs, name: v})

            return value.flatmap(resolved)
    # The loop above has returned for every strategy-valued argument; shape is normalised.
    assert not isinstance(dtype, SearchStrategy)
    assert not isinstance(device, SearchStrategy)
    assert not isinstance(layout, SearchStrategy)
    assert not isinstance(requires_grad, SearchStrategy)
    assert isinstance(shape, tuple)

    if requires_grad and not (_is_floating(dtype) or dtype in _COMPLEX):
        raise _fail(f"requires_grad=True needs a floating or complex dtype, got dtype={dtype}")
    if isinstance(elements, SearchStrategy):
        element_strategy, check = elements, True
    else:
        options = dict(elements) if elements is not None else {n: kwargs[n] for n in _ELEMENT_KWARGS}
        element_strategy, check = from_dtype(dtype, **options), False
    spec = _Spec(dtype, shape, element_strategy, fill, _check_device(device), layout, requires_grad, check)
    return _tensor_strategy(spec)

