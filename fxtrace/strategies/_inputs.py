"""``inputs_like``: a strategy for whole argument structures like the example inputs."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple, Union

import torch
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from .. import tree
from ._base import (
    _COMPLEX,
    _COMPLEX_WIDTH,
    _EXTRA_UNSIGNED,
    _FLOATING,
    _INPUTS_FLOAT_BOUND,
    _VALUE_MODES,
    _check_bool,
    _check_dtype,
    _check_int,
    _check_layout,
    _fail,
    _is_floating,
    _order_check,
)
from ._draw import _draw_tensor, _Spec
from ._elements import from_dtype

# --------------------------------------------------------------------------- inputs_like


def _collect(obj: Any, path: str) -> List[Tuple[str, torch.Tensor]]:
    """Tensors of ``obj`` in depth-first order (dicts in insertion order), with their paths
    (the order of :func:`fxtrace.tree.leaves`)."""
    return [(p, v) for p, v in tree.leaves_with_paths(obj, path) if isinstance(v, torch.Tensor)]


def _rebuild(obj: Any, tensors_: Iterator[torch.Tensor]) -> Any:
    """``obj`` with its tensors replaced, in :func:`_collect`'s order, by ``tensors_``."""
    return tree.map_leaves(lambda v: next(tensors_) if isinstance(v, torch.Tensor) else v, obj)


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


def _check_int_ranges(int_ranges: Any, leaves: List[Tuple[str, torch.Tensor]]
                      ) -> Dict[int, Tuple[int, int]]:
    """``int_ranges`` checked: integral inputs only, ``low <= high``, within the dtype."""
    if int_ranges is None:
        return {}
    if not isinstance(int_ranges, Mapping):
        raise _fail(f"int_ranges={int_ranges!r} must be a dict {{input_index: (low, high)}}")
    out: Dict[int, Tuple[int, int]] = {}
    for index, bounds in int_ranges.items():
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(leaves):
            raise _fail(f"int_ranges names input {index!r}, but example_inputs has "
                        f"{len(leaves)} tensor(s)")
        path, tensor = leaves[index]
        dtype = tensor.dtype
        if dtype == torch.bool or _is_floating(dtype) or dtype in _COMPLEX:
            raise _fail(f"int_ranges[{index}]: {path} has dtype {dtype}, not an integral dtype")
        low, high = bounds
        info = torch.iinfo(dtype)
        if not info.min <= low <= high <= info.max:
            raise _fail(f"int_ranges[{index}]=({low}, {high}) must satisfy "
                        f"{info.min} <= low <= high <= {info.max} ({path} is {dtype})")
        out[index] = (int(low), int(high))
    return out


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


def _default_elements(tensor: torch.Tensor, int_range: Optional[Tuple[int, int]] = None
                      ) -> SearchStrategy[Any]:
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
    return st.integers(*(int_range if int_range is not None else _int_range(tensor)))


def _input_spec(path: str, tensor: torch.Tensor, mode: str, elements: Any, layout: str,
                own_range: Optional[Tuple[int, int]] = None) -> _Spec:
    """How to draw tensors like the example ``tensor`` (at ``path``) in values mode ``mode``;
    ``own_range``: the integral values' range when not the example's own."""
    if tensor.layout != torch.strided:
        raise _fail(f"{path} has layout={tensor.layout}; inputs_like supports strided (dense) tensors only")
    _check_dtype(tensor.dtype, name=f"{path}.dtype")
    int_range = (0, 0)
    if mode == "seeded":
        # elements is unused (NOTE [seeded]); nothing() makes any accidental use fail loudly.
        strategy, check = st.nothing(), False
        if not (tensor.dtype == torch.bool or _is_floating(tensor.dtype) or tensor.dtype in _COMPLEX):
            int_range = own_range if own_range is not None else _int_range(tensor)
    elif elements is None:
        strategy, check = _default_elements(tensor, own_range), False
    elif isinstance(elements, SearchStrategy):
        strategy, check = elements, True
    else:
        strategy, check = elements(tensor), True
        if not isinstance(strategy, SearchStrategy):
            raise _fail(f"elements({path}) returned {strategy!r}, not a strategy")
    return _Spec(tensor.dtype, tuple(tensor.shape), strategy, None, tensor.device, layout,
                 bool(tensor.requires_grad), check, mode, int_range)


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
    int_ranges: Optional[Mapping[int, Tuple[int, int]]] = None,
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
    * ``int_ranges`` (default None): ``{input_index: (low, high)}``, the inclusive range of the
      values of an integral tensor input instead of the example's own minimum and maximum
      (``fxtrace.check`` passes the range of indices the original accepts).

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
    leaves = _collect(example_inputs, "example_inputs")
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

    ranges = _check_int_ranges(int_ranges, leaves)
    specs = [_input_spec(path, tensor, mode, elements, layout, ranges.get(i))
             for i, (path, tensor) in enumerate(leaves)]

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
