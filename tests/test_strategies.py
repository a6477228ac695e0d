"""Tests of fxtrace.strategies: argument validation, generated constraints, reach and shrinking."""
from __future__ import annotations

import collections
import doctest
import math
import random
import warnings

import pytest
import torch
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from hypothesis.control import BuildContext
from hypothesis.errors import InvalidArgument, NonInteractiveExampleWarning
from hypothesis.internal.conjecture.data import ConjectureData

import fxtrace.strategies as fst
from fxtrace.strategies import dtypes, from_dtype, inputs_like, shapes, tensors

# Small example counts keep the file fast on a 2-core machine; database=None keeps the
# working tree clean.
SETTINGS = settings(max_examples=30, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
FIND = settings(max_examples=1000, deadline=None, database=None)

FLOATING = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def minimal(strategy, condition=lambda x: True):
    """The shrunk example of ``strategy`` satisfying ``condition``."""
    return find(strategy, condition, settings=FIND)


def find_any(strategy, condition):
    """Some example of ``strategy`` satisfying ``condition`` (not shrunk)."""
    return find(strategy, condition, settings=settings(FIND, phases=[Phase.generate]))


def draw_one(strategy):
    """One example of ``strategy``, drawn as a test would (errors while drawing propagate)."""
    return find_any(strategy, lambda x: True)


def _fmt(value):
    if isinstance(value, torch.Tensor):
        return f"tensor{tuple(value.shape)}"
    if callable(value) and getattr(value, "__name__", "") == "<lambda>":
        return "lambda"
    return repr(value) if not isinstance(value, torch.dtype) else str(value)


def e(func, *args, **kwargs):
    """One invalid call, with a readable id like ``tensors(dtype=torch.int8, max_value=1000)``."""
    shown = [_fmt(a) for a in args] + [f"{k}={_fmt(v)}" for k, v in kwargs.items()]
    return pytest.param(func, args, kwargs, id=f"{func.__name__}({', '.join(shown)})")


F32 = torch.float32
INVALID = [
    e(dtypes, floating=False, integral=False, boolean=False),
    e(dtypes, complex=1),
    e(shapes, min_dims=3, max_dims=2),
    e(shapes, min_dims=1.5),
    e(shapes, min_side=-1),
    e(shapes, min_side=4, max_side=3),
    e(shapes, max_dims=33),
    e(shapes, min_dims=40),
    e(from_dtype, "float32"),
    e(from_dtype, torch.int8, max_value=1000),
    e(from_dtype, torch.uint8, min_value=-1),
    e(from_dtype, torch.int8, min_value=0.5),
    e(from_dtype, torch.int16, min_value=5, max_value=2),
    e(from_dtype, torch.float16, max_value=1e5),
    e(from_dtype, torch.bfloat16, min_value=-1e39),
    e(from_dtype, F32, min_value=2.0, max_value=1.0),
    e(from_dtype, F32, min_value=math.nan),
    e(from_dtype, F32, min_value="0"),
    e(from_dtype, F32, min_value=0.0, allow_nan=True),
    e(from_dtype, F32, min_value=0.0, max_value=1.0, allow_infinity=True),
    e(from_dtype, torch.float16, min_value=0.1, max_value=0.1),
    e(from_dtype, torch.bool, min_value=0),
    e(from_dtype, torch.complex64, max_value=1.0),
    e(from_dtype, F32, allow_subnormal=None),
    e(from_dtype, torch.qint8),
    e(tensors, dtype=torch.int8, shape=3, max_value=1000),
    e(tensors, dtype="float32", shape=3),
    e(tensors, dtype=F32, shape=(2, -1)),
    e(tensors, dtype=F32, shape=-1),
    e(tensors, dtype=F32, shape=(2, 0.5)),
    e(tensors, dtype=F32, shape="2"),
    e(tensors, dtype=F32, shape=(1,), layout="noncontiguous"),
    e(tensors, dtype=F32, shape=(0, 3), layout="noncontiguous"),
    e(tensors, dtype=F32, shape=(), layout="noncontiguous"),
    e(tensors, dtype=F32, shape=2, layout="diagonal"),
    e(tensors, dtype=F32, shape=2, layout=torch.strided),
    e(tensors, dtype=F32, shape=2, device="cdua"),
    e(tensors, dtype=F32, shape=2, device=1.5),
    e(tensors, dtype=torch.int64, shape=2, requires_grad=True),
    e(tensors, dtype=F32, shape=2, requires_grad=1),
    e(tensors, dtype=F32, shape=2, allow_nan="yes"),
    e(tensors, dtype=F32, shape=2, elements=st.floats(), min_value=0),
    e(tensors, dtype=F32, shape=2, elements=st.floats(), allow_nan=True),
    e(tensors, dtype=F32, shape=2, elements={"max": 1}),
    e(tensors, dtype=F32, shape=2, elements=[1.0]),
    e(tensors, dtype=torch.float16, shape=2, elements={"max_value": 1e6}),
    e(tensors, dtype=F32, shape=2, fill=0.0),
    # a strategy-valued argument does not delay the checks of the others
    e(tensors, dtype=dtypes(), shape=(2, -1)),
    e(tensors, dtype=F32, shape=shapes(), device="cdua"),
    e(tensors, dtype=dtypes(), shape=shapes(), layout="diagonal"),
    e(inputs_like, torch.ones(2), dynamic={1: [0]}),
    e(inputs_like, torch.ones(2), dynamic={0: [1]}),
    e(inputs_like, torch.ones(2), dynamic={0: [True]}),
    e(inputs_like, torch.ones(2), dynamic=[(0,)]),
    e(inputs_like, torch.ones(2), dynamic=[(-1, 0)]),
    e(inputs_like, torch.ones(2), dynamic="all"),
    e(inputs_like, torch.ones(2), min_side=3, max_side=2),
    e(inputs_like, torch.ones(2), min_side=-1),
    e(inputs_like, torch.ones(2), max_side=2.5),
    e(inputs_like, torch.ones(2), elements=1.0),
    e(inputs_like, torch.ones(2), elements=lambda t: 1.0),
    e(inputs_like, torch.ones(2), layout="sparse"),
    e(inputs_like, torch.ones(2), link_sizes=None),
    e(inputs_like, torch.ones(2), values="random"),
    e(inputs_like, torch.ones(2), values="Seeded"),
    e(inputs_like, torch.ones(2), values=True),
    e(inputs_like, torch.ones(2), values="seeded", elements=st.just(1.0)),
    e(inputs_like, torch.ones(2), values="seeded", elements=lambda t: st.just(1.0)),
    e(inputs_like, torch.ones(2, 2).to_sparse()),
    e(inputs_like, (torch.ones(2), torch.ones(2, dtype=torch.float64).to(torch.float8_e4m3fn))),
]
if not torch.cuda.is_available():
    INVALID.append(e(tensors, dtype=F32, shape=2, device="cuda"))


@pytest.mark.parametrize("func, args, kwargs", INVALID)
def test_invalid_arguments_raise_at_construction(func, args, kwargs):
    """Every invalid argument raises InvalidArgument when the strategy is built, not drawn."""
    with pytest.raises(InvalidArgument):
        func(*args, **kwargs)


@pytest.mark.parametrize(
    "func, kwargs, message",
    [
        (shapes, dict(min_dims=3, max_dims=2), "min_dims=3 is larger than max_dims=2"),
        (from_dtype, dict(dtype=torch.int8, max_value=1000), "dtype=torch.int8 requires max_value=1000 to be at most 127"),
        (from_dtype, dict(dtype=torch.uint8, min_value=-1), "dtype=torch.uint8 requires min_value=-1 to be at least 0"),
        (tensors, dict(dtype=F32, shape=(2, -1)), "shape=(2, -1) has a negative side"),
        (tensors, dict(dtype=torch.int64, shape=2, requires_grad=True), "requires_grad=True needs a floating"),
        (tensors, dict(dtype=F32, shape=(1,), layout="noncontiguous"), "layout='noncontiguous' needs a shape with at least 2"),
        (inputs_like, dict(example_inputs=(torch.ones(2),), dynamic={0: [3]}), "dynamic names dim 3 of input 0"),
        (inputs_like, dict(example_inputs=(torch.ones(2),), dynamic={2: [0]}), "dynamic names input 2, but example_inputs has 1 tensor"),
        (inputs_like, dict(example_inputs=torch.ones(2), values="random"),
         "values='random' must be one of 'seeded', 'drawn'"),
        (inputs_like, dict(example_inputs=torch.ones(2), values="seeded", elements=st.just(1.0)),
         "values='seeded' cannot be combined with elements="),
    ],
)
def test_messages_name_the_argument_and_bound(func, kwargs, message):
    """The message names the argument and the bound it broke."""
    with pytest.raises(InvalidArgument) as info:
        func(**kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "strategy",
    [
        pytest.param(tensors(dtype=torch.float16, shape=3, elements=st.just(0.1)), id="float16-0.1"),
        pytest.param(tensors(dtype=torch.int8, shape=3, elements=st.just(1000)), id="int8-1000"),
        pytest.param(tensors(dtype=torch.int64, shape=3, elements=st.just(1.5)), id="int64-1.5"),
        pytest.param(tensors(dtype=F32, shape=30, fill=st.just(0.1), elements=st.just(0.5)), id="fill-0.1"),
        pytest.param(tensors(dtype=F32, shape=shapes(), requires_grad=st.just(1)), id="drawn-requires_grad"),
        pytest.param(inputs_like(torch.zeros(3, dtype=torch.int8), elements=st.just(300)), id="inputs_like-int8-300"),
    ],
)
def test_values_the_dtype_cannot_store_raise_when_drawn(strategy):
    """Elements or strategy-valued arguments that only fail once drawn still raise InvalidArgument."""
    with pytest.raises(InvalidArgument):
        draw_one(strategy)


def _assert_layout(t, layout):
    if layout == "contiguous":
        assert t.is_contiguous()
    elif layout == "noncontiguous":
        assert not t.is_contiguous()


def _assert_no_special_values(t):
    if t.dtype in FLOATING or t.is_complex():
        assert torch.isfinite(t).all()
        parts = (t.real, t.imag) if t.is_complex() else (t,)
        for part in parts:
            tiny = torch.finfo(part.dtype).tiny
            assert not ((part != 0) & (part.abs() < tiny)).any(), "subnormal generated without allow_subnormal"


@SETTINGS
@given(st.data(), st.sampled_from(fst.LAYOUTS))
def test_tensors_satisfy_dtype_shape_layout_and_device(data, layout):
    """Generated tensors have the drawn dtype and shape, the layout asked for, and no NaN/inf/subnormal."""
    dtype = data.draw(dtypes(complex=True))
    shape = data.draw(shapes(min_side=1 if layout == "noncontiguous" else 0).filter(
        lambda s: layout != "noncontiguous" or math.prod(s) >= 2))
    t = data.draw(tensors(dtype=dtype, shape=shape, layout=layout))
    assert t.dtype == dtype and tuple(t.shape) == shape and t.device.type == "cpu"
    assert t.layout == torch.strided and t.is_leaf and not t.requires_grad
    _assert_layout(t, layout)
    _assert_no_special_values(t)


@SETTINGS
@given(tensors(dtype=dtypes(), shape=shapes(), layout=st.just("noncontiguous")))
def test_shape_strategy_is_filtered_for_noncontiguous(t):
    """A drawn layout of 'noncontiguous' filters a shape strategy to shapes that allow it."""
    assert t.numel() >= 2 and not t.is_contiguous()


BOUNDS = [
    (torch.int8, -3, 5),
    (torch.uint8, 200, 255),
    (torch.int64, -(2**40), 2**40),
    (torch.float16, -0.1, 0.5),
    (torch.bfloat16, 1.0, 1.5),
    (torch.float32, -1e-3, 1e-3),
    (torch.float64, 5, 6),
]


@pytest.mark.parametrize("dtype, low, high", BOUNDS, ids=[str(b[0]) for b in BOUNDS])
def test_values_respect_bounds(dtype, low, high):
    """Every element lies in [min_value, max_value], for every layout."""

    @SETTINGS
    @given(tensors(dtype=dtype, shape=shapes(), min_value=low, max_value=high))
    def check(t):
        assert t.dtype == dtype
        if t.numel():
            assert t.double().min() >= low and t.double().max() <= high

    check()


def test_bounds_are_rounded_inwards():
    """A float16 bound that float16 cannot store is rounded to the nearest value inside it."""
    t = minimal(tensors(dtype=torch.float16, shape=(4,), min_value=0.1, max_value=0.2),
                lambda t: bool((t == t.max()).all()))
    assert (t.double() >= 0.1).all()


@SETTINGS
@given(st.floats(width=32, allow_nan=True))
def test_bfloat16_rounding_matches_torch(x):
    """The pure-Python bfloat16 rounding used for elements agrees with torch's conversion."""
    expected = torch.tensor(x, dtype=torch.float32).to(torch.bfloat16).item()
    got = fst._elements._round_to_bfloat16(x)
    assert got == expected or (math.isnan(got) and math.isnan(expected))


@SETTINGS
@given(st.data())
def test_requires_grad_gives_leaves_with_the_layout_kept(data):
    """requires_grad=True yields leaf tensors that require grad and keep their view's strides."""
    layout = data.draw(st.sampled_from(["noncontiguous", "strided"]))
    t = data.draw(tensors(dtype=st.sampled_from(FLOATING), shape=(3, 4), layout=layout, requires_grad=True))
    assert t.requires_grad and t.is_leaf
    _assert_layout(t, layout)


@SETTINGS
@given(tensors(dtype=F32, shape=(10, 10), elements=st.just(2.0), fill=st.just(1.5)))
def test_fill_is_the_background_value(t):
    """With a fill, every element is either the fill or drawn from elements."""
    assert set(t.flatten().tolist()) <= {1.5, 2.0}


def test_large_tensors_are_cheap():
    """A 100x100x3 tensor of any layout is drawn without health-check failures."""

    @settings(max_examples=10, deadline=None, database=None)
    @given(tensors(dtype=F32, shape=(100, 100, 3)))
    def check(t):
        assert t.shape == (100, 100, 3) and torch.isfinite(t).all()

    check()


@SETTINGS
@given(tensors(dtype=F32, shape=(2, 3), elements=st.sampled_from([0.5, -1.0]), layout="any"))
def test_user_elements_are_used(t):
    """A user elements strategy supplies the values (padding of strided buffers included)."""
    assert set(t.flatten().tolist()) <= {0.5, -1.0}


def test_meta_device():
    """Tensors can be generated on the meta device, in any layout."""
    t = draw_one(tensors(dtype=F32, shape=(2, 3), device=st.just("meta"), layout="noncontiguous"))
    assert t.device.type == "meta" and t.shape == (2, 3) and not t.is_contiguous()


# ---- reach: the strategies produce the interesting cases ----------------------------------


@pytest.mark.parametrize(
    "strategy, condition",
    [
        pytest.param(tensors(dtype=dtypes(), shape=shapes()), lambda t: t.dim() == 0, id="0-d"),
        pytest.param(tensors(dtype=dtypes(), shape=shapes(min_dims=1)), lambda t: t.numel() == 0, id="zero-size"),
        pytest.param(tensors(dtype=F32, shape=shapes()), lambda t: not t.is_contiguous(), id="noncontiguous-from-any"),
        pytest.param(tensors(dtype=F32, shape=shapes(), layout="strided"), lambda t: t.storage_offset() > 0, id="storage-offset"),
        pytest.param(tensors(dtype=F32, shape=(3, 3), layout="noncontiguous"), lambda t: t.stride() == (1, 3), id="transposed"),
        pytest.param(tensors(dtype=F32, shape=(3, 3), layout="noncontiguous"), lambda t: 0 in t.stride(), id="expanded"),
        pytest.param(tensors(dtype=F32, shape=(3, 3), layout="noncontiguous"), lambda t: t.stride()[0] > 3, id="sliced"),
        pytest.param(tensors(dtype=F32, shape=(2, 3), layout="strided"),
                     lambda t: t.stride()[0] < 3 and t.stride()[0] > 0, id="overlapping-strides"),
        pytest.param(tensors(dtype=dtypes(integral=False, boolean=False, complex=True), shape=(3,), allow_nan=True),
                     lambda t: t.isnan().any(), id="nan"),
        pytest.param(tensors(dtype=st.sampled_from(FLOATING), shape=(3,), allow_infinity=True),
                     lambda t: t.isinf().any(), id="inf"),
        pytest.param(tensors(dtype=F32, shape=(3,), allow_subnormal=True),
                     lambda t: ((t != 0) & (t.abs() < torch.finfo(F32).tiny)).any(), id="subnormal"),
        pytest.param(tensors(dtype=torch.bfloat16, shape=(3,), allow_nan=True), lambda t: t.isnan().any(), id="bfloat16-nan"),
        pytest.param(dtypes(complex=True), lambda d: d == torch.complex128, id="complex-dtype"),
    ],
)
def test_strategies_reach(strategy, condition):
    """The strategies can produce each interesting case (0-d, zero-size, views, NaN...)."""
    find_any(strategy, condition)


# ---- shrinking ------------------------------------------------------------------------------


def test_minimal_tensor_is_a_0d_contiguous_zero():
    """The minimal float32 tensor over shapes() is a contiguous 0-d zero."""
    t = minimal(tensors(dtype=F32, shape=shapes()))
    assert t.shape == () and t.item() == 0.0 and t.is_contiguous()


def test_minimal_dtype_is_float32():
    """dtypes() shrinks towards torch's default dtype."""
    assert minimal(tensors(dtype=dtypes(), shape=shapes())).dtype == torch.float32
    assert minimal(dtypes(floating=False)) == torch.int64


def test_minimal_tensor_with_large_sum_is_one_small_element():
    """A tensor whose sum exceeds 5 shrinks to a single element just above 5."""
    t = minimal(tensors(dtype=F32, shape=shapes()), lambda t: t.sum() > 5)
    assert t.numel() == 1 and 5 < t.item() <= 6


def test_minimal_tensor_with_three_elements_is_contiguous_zeros():
    """Sizes shrink to the smallest shape, values to zeros, memory to contiguous."""
    t = minimal(tensors(dtype=torch.int64, shape=shapes(), layout="any"), lambda t: t.numel() >= 3)
    assert t.shape == (3,) and t.is_contiguous() and t.storage_offset() == 0 and not t.any()


def test_minimal_shape():
    """shapes() shrinks to min_dims dims of side min_side."""
    assert minimal(shapes()) == ()
    assert minimal(shapes(min_dims=2, min_side=1)) == (1, 1)


def test_minimal_noncontiguous_tensor_is_small():
    """The minimal non-contiguous tensor is a short zero vector (usually 2 elements; the
    shrinker occasionally stops at 4)."""
    t = minimal(tensors(dtype=F32, shape=shapes(), layout="noncontiguous"))
    assert t.dim() == 1 and 2 <= t.numel() <= 4 and not t.is_contiguous() and not t.any()


# ---- inputs_like ----------------------------------------------------------------------------

Pair = collections.namedtuple("Pair", "p q")


def _example():
    x = torch.randn(4, 3, requires_grad=True)
    y = torch.zeros(4, 3, dtype=torch.int64)
    z = torch.ones(4, dtype=torch.bool)
    w = torch.randn(2, 5, dtype=torch.float64)
    scalar = torch.tensor(1.5)
    return (x, {"a": y, "b": None, "c": 3}, [z, 2.5, "s"], Pair(p=w, q=None), scalar)


def _structure(obj):
    if isinstance(obj, torch.Tensor):
        return ("tensor", obj.dtype, obj.device, obj.dim(), obj.requires_grad)
    if isinstance(obj, (tuple, list)):
        return (type(obj), [_structure(v) for v in obj])
    if isinstance(obj, dict):
        return (type(obj), [(k, _structure(v)) for k, v in obj.items()])
    return ("const", obj)


EXAMPLE = _example()


@SETTINGS
@given(inputs_like(EXAMPLE))
def test_inputs_like_keeps_structure(drawn):
    """Containers, constants, dtypes, devices, ranks and requires_grad match the example."""
    assert _structure(drawn) == _structure(EXAMPLE)
    assert drawn[1]["b"] is None and drawn[1]["c"] == 3 and drawn[2][2] == "s"
    x, y = drawn[0], drawn[1]["a"]
    assert x.is_leaf and x.is_contiguous()
    # dims of example size 4 vary together; so do dims of size 3
    assert x.shape == y.shape and drawn[2][0].shape[0] == x.shape[0]
    assert drawn[4].shape == ()


def test_inputs_like_accepts_a_bare_tensor_and_none():
    """A bare tensor gives tensors; a structure without tensors is returned as it is."""
    assert isinstance(draw_one(inputs_like(torch.ones(2))), torch.Tensor)
    assert draw_one(inputs_like((None, 1, "a"))) == (None, 1, "a")


def test_inputs_like_varies_sizes_independently_per_group():
    """Sizes move away from the example, and different example sizes get different draws."""
    strat = inputs_like((torch.zeros(4, 3), torch.zeros(4, 3)))
    find_any(strat, lambda r: r[0].shape != (4, 3))
    find_any(strat, lambda r: r[0].shape[0] == r[0].shape[1])
    find_any(strat, lambda r: r[0].shape[0] != r[0].shape[1])


@SETTINGS
@given(inputs_like(torch.zeros(3, 3)))
def test_inputs_like_square_stays_square(m):
    """Two dims with the same example size are linked, even within one tensor."""
    assert m.shape[0] == m.shape[1]


def test_inputs_like_link_sizes_false_varies_dims_alone():
    """With link_sizes=False, equal example sizes vary independently."""
    find_any(inputs_like((torch.zeros(4), torch.zeros(4)), link_sizes=False), lambda r: r[0].shape != r[1].shape)


@pytest.mark.parametrize(
    "dynamic, fixed",
    [
        ({0: [0]}, [(0, 1), (0, 2), (1, 0), (1, 1)]),
        ({1: -1}, [(0, 0), (0, 1), (0, 2), (1, 0)]),
        ([(0, 1), (1, 0)], [(0, 0), (0, 2), (1, 1)]),
        (False, [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]),
    ],
    ids=["dict", "dict-negative-int", "pairs", "False"],
)
def test_inputs_like_non_dynamic_dims_keep_their_size(dynamic, fixed):
    """Dims not named in dynamic keep the example size; named ones vary."""
    example = (torch.zeros(2, 3, 4), torch.zeros(5, 6))
    strat = inputs_like(example, dynamic=dynamic, max_side=9)

    @SETTINGS
    @given(strat)
    def check(drawn):
        for index, dim in fixed:
            assert drawn[index].shape[dim] == example[index].shape[dim]

    check()
    if dynamic is not False:
        find_any(strat, lambda r: tuple(r[0].shape) + tuple(r[1].shape) != (2, 3, 4, 5, 6))


@SETTINGS
@given(inputs_like((torch.tensor([[3, 7], [5, 4]]), torch.zeros(2, dtype=torch.uint8), torch.empty(0, dtype=torch.int32),
                    torch.zeros(3), torch.zeros(2, dtype=torch.complex64), torch.zeros(2, dtype=torch.bool))))
def test_inputs_like_values_are_dtype_aware(drawn):
    """Integral values stay within the example's own range; floats within [-10, 10]."""
    ids, u8, empty_example, f, c, b = drawn
    assert ids.dtype == torch.int64 and (ids.numel() == 0 or (ids.min() >= 3 and ids.max() <= 7))
    assert not u8.any() and not empty_example.any()
    assert f.abs().max() <= 10 if f.numel() else True
    assert c.abs().max() <= 10 if c.numel() else True
    assert b.dtype == torch.bool


def test_inputs_like_reaches_integer_bounds_and_zero_size():
    """The example's integer extremes are reachable; min_side=0 reaches zero-size tensors."""
    ids = torch.tensor([3, 7])
    find_any(inputs_like(ids), lambda t: bool((t == 7).any()))
    find_any(inputs_like(ids, min_side=0), lambda t: t.numel() == 0)


@SETTINGS
@given(inputs_like((torch.zeros(2, 3), torch.zeros(3)), min_side=2, max_side=4))
def test_inputs_like_side_bounds(drawn):
    """Every dynamic dim lies in [min_side, max_side]."""
    assert all(2 <= side <= 4 for t in drawn for side in t.shape)


@SETTINGS
@given(inputs_like((torch.zeros(3), torch.zeros(3, dtype=torch.int64)),
                   elements=lambda t: st.just(1.0) if t.is_floating_point() else st.just(-4)))
def test_inputs_like_elements_callable_per_input(drawn):
    """An elements callable chooses a strategy per example tensor."""
    assert (drawn[0] == 1.0).all() and (drawn[1] == -4).all()


@SETTINGS
@given(inputs_like((torch.zeros(3, 4), torch.zeros(1)), dynamic={0: [0, 1]}, layout="noncontiguous", min_side=2))
def test_inputs_like_layout(drawn):
    """layout='noncontiguous' applies where the drawn shape allows it."""
    assert not drawn[0].is_contiguous()
    assert drawn[1].is_contiguous()


@pytest.mark.parametrize("values", ["seeded", "drawn"])
def test_minimal_inputs_like_is_min_side_and_zeros(values):
    """inputs_like shrinks every dynamic dim to min_side and the values to zero (or the value
    nearest zero in range), with either value mode."""
    x, ids = minimal(inputs_like((torch.randn(4, 3), torch.tensor([[2, 9]] * 4)), values=values))
    assert x.shape == (1, 1) and not x.any()
    assert ids.shape == (1, 1) and ids.item() == 2


# ---- inputs_like: seeded and drawn values ---------------------------------------------------


# Hypothesis' engine draws every example from a ConjectureData (a choice sequence) inside a
# BuildContext; these helpers do the same, so tests can count choices and replay a sequence
# exactly as the engine does when it shrinks or replays. Both are Hypothesis internals (stable
# across 6.1xx); the version is pinned by the project's environment.
def _draw_from(strategy, data):
    with BuildContext(data, wrapped_test=None):
        value = data.draw(strategy)
    data.freeze()
    return value


def _choices(strategy, seed=0):
    """One example of ``strategy`` drawn from ``Random(seed)``, and the choice sequence behind it."""
    data = ConjectureData(random=random.Random(seed))
    return _draw_from(strategy, data), data.choices


def _replay(strategy, choices):
    """The example ``strategy`` gives for a recorded choice sequence, as Hypothesis replays one."""
    return _draw_from(strategy, ConjectureData.for_choices(choices))


def _bits(t):
    """The bytes of ``t``'s values in logical order: equal bits, not just equal values."""
    return t.detach().reshape(-1).contiguous().view(torch.uint8)


def _flat(t):
    return t.detach().reshape(-1).tolist()


_UNSIGNED = [
    (name, getattr(torch, name), low, high)
    for name, low, high in [("uint16", 1, 65535), ("uint32", 7, 2**32 - 1), ("uint64", 2**63 - 5, 2**64 - 1)]
    if hasattr(torch, name)
]

#: id, example tensor, inclusive range of the values (None: complex, checked separately), and
#: the constant that kind 0 (and shrinking) gives.
SEEDED = [
    ("float32", torch.zeros(2, 3), (-10, 10), 0),
    ("float64", torch.zeros(2, 3, dtype=torch.float64), (-10, 10), 0),
    ("float16", torch.zeros(2, 3, dtype=torch.float16), (-10, 10), 0),
    ("bfloat16", torch.zeros(2, 3, dtype=torch.bfloat16), (-10, 10), 0),
    ("complex64", torch.zeros(2, 3, dtype=torch.complex64), None, 0),
    ("complex128", torch.zeros(2, 3, dtype=torch.complex128), None, 0),
    ("bool", torch.zeros(2, 3, dtype=torch.bool), (0, 1), False),
    ("uint8", torch.tensor([[200, 255]], dtype=torch.uint8), (200, 255), 200),
    ("int8-full-range", torch.tensor([[-128, 127]], dtype=torch.int8), (-128, 127), 0),
    ("int16-negative", torch.tensor([[-5, -3]], dtype=torch.int16), (-5, -3), -3),
    ("int32-empty-example", torch.empty(2, 0, dtype=torch.int32), (0, 0), 0),
    ("int64-index", torch.tensor([[0, 999]]), (0, 999), 0),
    ("int64-full-range", torch.tensor([[-(2**63), 2**63 - 1]]), (-(2**63), 2**63 - 1), 0),
] + [(name, torch.tensor([[low, high]], dtype=dtype), (low, high), low)
      for name, dtype, low, high in _UNSIGNED]
SEEDED_IDS = [case[0] for case in SEEDED]


def _assert_seeded_range(t, example, value_range):
    assert t.dtype == example.dtype and t.device == example.device
    _assert_no_special_values(t)
    if value_range is None:  # complex: parts within [-7, 7], so the magnitude stays below 10
        assert t.numel() == 0 or (torch.view_as_real(t).abs().max() <= 7 and t.abs().max() <= 10)
    else:
        low, high = value_range
        assert all(low <= v <= high for v in _flat(t))


@pytest.mark.parametrize("name, example, value_range, constant", SEEDED, ids=SEEDED_IDS)
def test_seeded_values_keep_dtype_and_range_in_every_layout(name, example, value_range, constant):
    """Seeded values keep the dtype exactly and stay in inputs_like's ranges (floating [-10, 10],
    complex magnitude at most 10, integral the example's own [min, max]), with no NaN, inf or
    subnormal, in every layout (slice padding and strided base buffers are seeded too)."""

    @SETTINGS
    @given(st.data(), st.sampled_from(fst.LAYOUTS))
    def check(data, layout):
        t = data.draw(inputs_like(example, values="seeded", layout=layout))
        _assert_seeded_range(t, example, value_range)
        if layout == "noncontiguous" and t.numel() >= 2:
            assert not t.is_contiguous()
        elif layout == "contiguous":
            assert t.is_contiguous()

    check()


@pytest.mark.parametrize("name, example, value_range, constant", SEEDED, ids=SEEDED_IDS)
def test_seeded_values_vary_and_shrink_to_the_constant(name, example, value_range, constant):
    """Generation reaches tensors with different values; shrinking reaches the constant (zeros,
    False, or the value nearest zero in the example's range) in every element."""
    strategy = inputs_like(example, values="seeded", dynamic=False)
    if example.numel() >= 2 and value_range != (0, 0):
        find_any(strategy, lambda t: len(set(_flat(t))) > 1)
    assert all(v == constant for v in _flat(minimal(strategy)))
    assert all(v == constant for v in _flat(minimal(inputs_like(example, values="seeded", layout="any"))))


def test_seeded_small_ranges_reach_both_bounds():
    """Integral values are uniform over the whole range: both ends occur."""
    find_any(inputs_like(torch.tensor([-5, -3], dtype=torch.int16)), lambda t: {-5, -3} <= set(_flat(t)))
    find_any(inputs_like(torch.zeros(4, dtype=torch.bool)), lambda t: {False, True} <= set(_flat(t)))


@pytest.mark.parametrize("name, example, value_range, constant", SEEDED, ids=SEEDED_IDS)
def test_seeded_kinds_replay_bit_for_bit(name, example, value_range, constant):
    """A contiguous tensor of fixed shape takes exactly two choices, a kind and a seed (kind 0:
    one, the constant). Each kind, replayed from the same choices, gives the same bits whatever
    the state of torch's global RNG; other seeds give other values; every kind stays in range."""
    if example.numel():
        big = example.reshape(-1).repeat(1024 // example.numel())
    else:
        big = torch.zeros(1024, dtype=example.dtype)  # the same range as the empty example: [0, 0]
    strategy = inputs_like(big, values="seeded", dynamic=False)
    assert all(v == constant for v in _flat(_replay(strategy, (0,))))
    for kind in range(1, fst._base._SEEDED_KINDS):
        by_seed = []
        for seed in (0, 1, fst._base._SEED_MAX):
            torch.manual_seed(seed)
            first = _replay(strategy, (kind, seed))
            torch.manual_seed(seed + 1)
            torch.rand(3)
            assert torch.equal(_bits(_replay(strategy, (kind, seed))), _bits(first))
            _assert_seeded_range(first, big, value_range)
            by_seed.append(_bits(first))
        if value_range != (0, 0):
            assert not torch.equal(by_seed[0], by_seed[1]) and not torch.equal(by_seed[1], by_seed[2])


@pytest.mark.parametrize("name, example, value_range, constant", SEEDED, ids=SEEDED_IDS)
def test_seeded_values_replay_bit_for_bit(name, example, value_range, constant):
    """The same choice sequence gives a bit-identical tensor (with the same strides), however
    torch's global RNG was left: Hypothesis relies on this when it replays and shrinks."""
    strategy = inputs_like(example, values="seeded", layout="any")
    for seed in range(10):
        torch.manual_seed(seed)
        first, choices = _choices(strategy, seed)
        torch.manual_seed(seed + 1000)
        torch.rand(3)
        again = _replay(strategy, choices)
        assert again.stride() == first.stride() and again.storage_offset() == first.storage_offset()
        assert torch.equal(_bits(again), _bits(first))


def test_seeded_failures_shrink_and_replay_without_flakiness():
    """A failure that needs random values is found, shrunk and replayed by Hypothesis: a
    nondeterministic draw would surface as a FlakyFailure instead of the AssertionError."""

    @settings(max_examples=100, deadline=None, database=None)
    @given(inputs_like(torch.zeros(4, 3)))
    def prop(t):
        assert not (t > 9).any()

    with pytest.raises(AssertionError):
        prop()


def test_seeded_tensor_shrinks_as_a_whole_drawn_element_by_element():
    """A seeded tensor shrinks to the constant or stays random as a whole; values='drawn'
    shrinks to zeros plus the one element the failure needs."""
    example = torch.zeros(4, 3)
    big = lambda t: bool((t > 5).any())  # noqa: E731
    seeded = minimal(inputs_like(example, dynamic=False), big)
    drawn = minimal(inputs_like(example, dynamic=False, values="drawn"), big)
    assert int((drawn != 0).sum()) == 1 and 5 < drawn.max().item() <= 6
    assert int((seeded != 0).sum()) > 1 and seeded.abs().max() <= 10


def test_values_default_is_seeded_unless_elements_given():
    """values=None means seeded (a few choices per tensor) without elements, drawn with them."""
    example = torch.zeros(4, 8)
    _, seeded = _choices(inputs_like(example, dynamic=False))
    _, drawn = _choices(inputs_like(example, dynamic=False, values="drawn"))
    _, with_elements = _choices(inputs_like(example, dynamic=False, elements=st.floats(0, 1, width=32)))
    assert len(seeded) <= 2
    assert len(drawn) >= 32 and len(with_elements) >= 32


def test_seeded_large_tensors_cost_a_few_choices():
    """A 64x3x32x32 input, in any layout, takes a handful of choices whatever its size (sizes,
    layout, kind and seed), and its values are random throughout: not one background value plus
    at most 128 drawn ones, as drawn values of a large tensor are."""
    for dynamic in (None, False):
        strategy = inputs_like(torch.zeros(64, 3, 32, 32), dynamic=dynamic, layout="any")
        for seed in range(20):
            t, choices = _choices(strategy, seed)
            assert len(choices) <= 20
            assert dynamic is None or t.shape == (64, 3, 32, 32)
    fixed = inputs_like(torch.zeros(64, 3, 32, 32), dynamic=False)
    assert torch.unique(_replay(fixed, (1, 12345))).numel() > 100_000  # kind 1: uniform in [-10, 10]


def test_drawing_leaves_torch_global_rng_alone():
    """Seeded values come from a private generator: drawing never reads or advances torch's
    global RNG (fxtrace.check relies on this)."""
    example = (torch.zeros(3, 4), torch.tensor([1, 5]), torch.zeros(2, dtype=torch.complex64),
               torch.zeros(2, dtype=torch.bool), torch.zeros(2, 2, dtype=torch.float16))
    torch.manual_seed(2024)
    before = torch.get_rng_state()

    @SETTINGS
    @given(inputs_like(example, layout="any"))
    def check(drawn):
        assert torch.equal(torch.get_rng_state(), before)

    check()
    assert torch.equal(torch.get_rng_state(), before)


def test_flush_subnormals():
    """Seeded float16 values are cast from float32, which can make them subnormal; those are
    flushed to zero (both parts of complex values too), everything else is kept."""
    half = torch.tensor([1e-6, -3e-5, 6.2e-5, -1.0, 0.0], dtype=torch.float16)
    assert fst._draw._flush_subnormals(half).tolist() == [0.0, 0.0, half[2].item(), -1.0, 0.0]
    z = torch.tensor([complex(1e-40, 2.0), complex(-3.0, -1e-41)], dtype=torch.complex64)
    assert fst._draw._flush_subnormals(z).tolist() == [complex(0.0, 2.0), complex(-3.0, 0.0)]


@pytest.mark.parametrize("name, dtype, low, high", _UNSIGNED, ids=[u[0] for u in _UNSIGNED])
def test_wide_unsigned_dtypes(name, dtype, low, high):
    """uint16/32/64 (which lack min/max and index_put kernels) work in inputs_like with either
    value mode and in large tensors() buffers."""
    example = torch.tensor([low, high], dtype=dtype)
    for values in ("seeded", "drawn"):
        t = draw_one(inputs_like(example, values=values))
        assert t.dtype == dtype and all(low <= v <= high for v in _flat(t))
    t = draw_one(tensors(dtype=dtype, shape=300, min_value=low, max_value=high))
    assert t.dtype == dtype and all(low <= v <= high for v in _flat(t))


def test_docstring_examples():
    """The >>> examples in the package's docstrings run and print what they show."""
    import importlib
    import pkgutil

    attempted = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonInteractiveExampleWarning)
        for info in pkgutil.iter_modules(fst.__path__):
            module = importlib.import_module(f"{fst.__name__}.{info.name}")
            result = doctest.testmod(module, extraglobs={"torch": torch})
            assert result.failed == 0, info.name
            attempted += result.attempted
    assert attempted > 0
