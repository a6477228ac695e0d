"""``.tolist()`` of 0-d to 3-d int, float and bool tensors (issue 11): the nested list is
returned or branched on, the trace is guarded on the tensor's value, saved and reloaded, and
equals eager on the example; another value raises the guard. Differential against eager."""
from __future__ import annotations

import io
import warnings

import pytest
import torch

import fxtrace
from fxtrace.checking.trace_check import is_guard_error

pytestmark = [
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.save` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning"),
]


def returned(x):
    return x.tolist()


def branched(x):
    v = x.tolist()
    first = v
    while isinstance(first, list):
        first = first[0] if first else 0
    return (x * 2, v) if first else (x * 3, v)


SHAPES = [(), (3,), (2, 3), (2, 2, 2)]
DTYPES = [torch.int64, torch.float32, torch.bool]


def _example(shape, dtype):
    n = torch.Size(shape).numel()
    return (torch.arange(n).reshape(shape) % 3).to(dtype)


def _other(x):
    y = x.clone()
    flat = y.view(-1)
    flat[0] = 1 if not bool(flat[0]) else 0
    return y


def _roundtrip(t):
    buf = io.BytesIO()
    torch.jit.save(t, buf)
    buf.seek(0)
    return torch.jit.load(buf)


@pytest.mark.parametrize("fn", [returned, branched])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_tolist_is_traced_guarded_and_reloads(fn, dtype, shape):
    x = _example(shape, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = fxtrace.trace(fn, (x,))  # default check
    loaded = _roundtrip(t)
    want = fn(x)
    for got in (t(x), loaded(x)):
        assert repr(got) == repr(want)  # nested lists: values and Python types (int/float/bool)
    with pytest.raises(Exception) as raised:
        t(_other(x))
    assert is_guard_error(raised.value)


@pytest.mark.parametrize("values", [[[1.0, float("nan")], [float("inf"), -2.0]],
                                    [float("nan")]], ids=["2d", "1d"])
def test_tolist_of_nan_passes_its_own_guard(values):
    def f(x):
        return x * len(x.tolist()), x.tolist()
    x = torch.tensor(values)
    t = fxtrace.trace(f, (x,))  # the default check runs the guard on the example
    assert repr(_roundtrip(t)(x)) == repr(f(x))
    for other in (torch.nan_to_num(x, 5.0), torch.zeros_like(x)):
        with pytest.raises(Exception) as raised:
            t(other)
        assert is_guard_error(raised.value)
