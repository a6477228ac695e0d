"""``fxtrace.check`` finds traces that are wrong only at another rank or dtype, on any trace
(torch.jit.trace'd, torch.jit.load'ed, fxtrace's), without alarming on correct traces."""
from __future__ import annotations

import functools
import io

import pytest
import torch
from check_helpers import fx_trace, jit_trace

import fxtrace
from fxtrace.checking.variants import Variant, dtype_tolerance, find_variants

# torch.jit.trace is the oracle here: its deprecation notices and TracerWarnings are not
# under test.
pytestmark = [pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")]


_jit = jit_trace
_fx = functools.partial(fx_trace, check_trace=True)


# ------------------------------------------------------------------ wrong only at another rank
def unsqueeze_if_2d(x):
    if x.dim() == 2:
        x = x.unsqueeze(0)
    return x * 2


def ellipsis_select(x):
    return x[..., 0]


def ellipsis_tail(x):
    return x[..., -2:]


def sum_every_dim(x):
    for _ in range(x.dim()):
        x = x.sum(0)
    return x


RANK_TRAPS = [(unsqueeze_if_2d, (3, 4)), (ellipsis_select, (2, 3, 4)),
              (ellipsis_tail, (2, 3, 4)), (sum_every_dim, (3, 4))]


# ----------------------------------------------------------------- wrong only at another dtype
def zeros_like_dtype(x):
    return torch.zeros(3, dtype=x.dtype) + x.sum()


def finfo_min(x):
    return torch.tensor(torch.finfo(x.dtype).min) + x


DTYPE_TRAPS = [zeros_like_dtype, finfo_min]


# ------------------------------------------------------------------ correct traces (controls)
def shape_generic(x):
    return (x.relu() * 2 + 1).sum(-1)


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(4, 3)

    def forward(self, x):
        return torch.tanh(self.lin(x))


def guarded_branch(x):
    if x.dim() == 2:
        return x.unsqueeze(0) * 2
    return x * 2


def _detected(traced, original, example) -> fxtrace.PropertyCheckError:
    with pytest.raises(fxtrace.PropertyCheckError) as caught:
        fxtrace.check(traced, original, example_inputs=example, seed=0, max_examples=100)
    return caught.value


@pytest.mark.parametrize("fn,shape", RANK_TRAPS, ids=[f.__name__ for f, _ in RANK_TRAPS])
def test_rank_traps_are_detected(fn, shape):
    x = torch.randn(*shape)
    error = _detected(_jit(fn, x), fn, (x,))
    (shrunk,), _ = error.inputs
    assert shrunk.dim() != x.dim()  # only another rank shows it


@pytest.mark.parametrize("fn", DTYPE_TRAPS, ids=[f.__name__ for f in DTYPE_TRAPS])
def test_dtype_traps_are_detected(fn):
    x = torch.randn(3)
    error = _detected(_jit(fn, x), fn, (x,))
    (shrunk,), _ = error.inputs
    assert shrunk.dtype != torch.float32
    assert "differs" in error.report.title


def test_without_variants_the_traps_pass():
    """What ranks= and dtypes= add: with them off, the same checks pass (the baseline)."""
    x = torch.randn(3, 4)
    fxtrace.check(_jit(sum_every_dim, x), sum_every_dim, example_inputs=(x,), seed=0,
                  ranks=False, dtypes=False)
    y = torch.randn(3)
    fxtrace.check(_jit(zeros_like_dtype, y), zeros_like_dtype, example_inputs=(y,), seed=0,
                  dtypes=False)


def test_explicit_dynamic_varies_only_what_it_names():
    x = torch.randn(3, 4)
    traced = _jit(sum_every_dim, x)
    fxtrace.check(traced, sum_every_dim, example_inputs=(x,), seed=0, dynamic={0: [0]})
    with pytest.raises(fxtrace.PropertyCheckError):
        fxtrace.check(traced, sum_every_dim, example_inputs=(x,), seed=0, dynamic={0: [0]},
                      ranks=True)


def _controls():
    x, net = torch.randn(3, 4), Net().eval()
    yield "jit shape-generic", _jit(shape_generic, x), shape_generic, (x,)
    yield "jit Linear", _jit(net, x), net, (x,)
    yield "fxtrace guarded rank branch", _fx(guarded_branch, x), guarded_branch, (x,)
    yield "fxtrace shape-generic", _fx(shape_generic, x), shape_generic, (x,)
    yield "fxtrace dtype of input", _fx(zeros_like_dtype, torch.randn(3)), zeros_like_dtype, \
        (torch.randn(3),)


@pytest.mark.parametrize("name", [c[0] for c in _controls()])
def test_controls_never_alarm(name):
    _, traced, original, example = next(c for c in _controls() if c[0] == name)
    report = fxtrace.check(traced, original, example_inputs=example, seed=0, max_examples=60)
    assert report.ok and report.counts["agreed"] > 0


def test_a_loaded_jit_trace_is_checked_like_any_trace():
    x = torch.randn(2, 3, 4)
    buf = io.BytesIO()
    torch.jit.save(_jit(ellipsis_select, x), buf)
    buf.seek(0)
    loaded = torch.jit.load(buf)
    error = _detected(loaded, ellipsis_select, (x,))
    assert error.inputs[0][0].dim() != 3
    good = torch.jit.load(io.BytesIO(_saved(_jit(shape_generic, x))))
    assert fxtrace.check(good, shape_generic, example_inputs=(x,), seed=0).ok


def _saved(traced) -> bytes:
    buf = io.BytesIO()
    torch.jit.save(traced, buf)
    return buf.getvalue()


def test_variants_are_only_those_eager_takes():
    net = Net().eval()
    rank, dtype = find_variants(net, ((torch.randn(3, 4),), {}), [net])
    assert {v.kind for v in rank} == {"rank+1", "rank-1"}
    assert dtype == []  # a float32 Linear refuses float64/float16/bfloat16 inputs in eager

    def indexer(x, i):
        return x[i]
    rank, dtype = find_variants(indexer, ((torch.randn(5), torch.tensor([1, 2])), {}), [])
    assert Variant("dtype", (1,), torch.int32) in dtype
    assert Variant("dtype", (0,), torch.float64) in dtype
    assert Variant("rank-1", (0, 1)) not in rank  # x[scalar] of a 0-d tensor: eager refuses


def test_variant_application_and_tolerance():
    x = torch.randn(3, 4, requires_grad=True)
    (a,), _ = Variant("rank+1", (0,)).apply(((x,), {}))
    assert a.shape == (2, 3, 4) and a.requires_grad and torch.equal(a[1], x.detach())
    (b,), _ = Variant("rank-1", (0,)).apply(((x,), {}))
    assert b.shape == (4,)
    (c,), kw = Variant("dtype", (0,), torch.float16).apply(((x,), {"k": 1}))
    assert c.dtype == torch.float16 and kw == {"k": 1}
    assert dtype_tolerance(((c,), {}), 1e-5) == 1e-2
    assert dtype_tolerance(((x,), {}), 1e-6) == 1e-6


class RebindCounter(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("count", torch.zeros(()))

    def forward(self, x):
        self.count = self.count + 1   # binds a new buffer tensor
        return x * self.count


class Hidden(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.h = torch.zeros(3)

    def forward(self, x):
        out = torch.tanh(x + self.h)
        self.h = out.detach()         # a plain tensor attribute, rebound
        return out


def test_every_run_starts_from_the_same_state_on_both_sides():
    """A stateful model whose trace is right call by call (fxtrace keeps the state as its own
    buffer or tensor constant) checks clean: eager's rebound buffer and tensor attribute and
    the trace's in-place written constant are all put back after every run."""
    x = torch.randn(3)
    counter = RebindCounter()
    traced = _fx(RebindCounter(), x, guards=False, check_trace=False)
    traced.load_state_dict(counter.state_dict())  # the capture ran forward once
    report = fxtrace.check(traced, counter,
                           example_inputs=(x,), seed=0, max_examples=40)
    assert report.ok and report.counts["agreed"] > 10
    assert float(counter.count) == 0.0
    hidden = Hidden()
    # calls=False: call by call only (sequences find the trace's real error: the state it
    # writes in place is (3,), and a (2, 3) input after a (3,) one raises)
    report = fxtrace.check(_fx(Hidden(), x, guards=False, check_trace=False), hidden,
                           example_inputs=(x,), seed=0, max_examples=40, ranks=False,
                           dtypes=False, calls=False)
    assert report.ok and torch.equal(hidden.h, torch.zeros(3))


def test_torch_jit_misses_state_but_the_check_compares_call_by_call():
    """torch.jit freezes the rebound state as a constant: call by call from the same state it
    agrees with eager, so the per-input check passes it; the call sequences that
    ``fxtrace.check`` runs for a model whose call changes its state find it."""
    x = torch.randn(3)
    traced = _jit(RebindCounter(), x)
    traced.load_state_dict(RebindCounter().state_dict())
    assert fxtrace.check(traced, RebindCounter(), example_inputs=(x,), seed=0, calls=False).ok
    with pytest.raises(fxtrace.PropertyCheckError) as caught:
        fxtrace.check(traced, RebindCounter(), example_inputs=(x,), seed=0)
    text = str(caught.value)
    assert "fxtrace.check_calls FAILED" in text and "state_dict['count']" in text
    assert text.rstrip().splitlines()[1].startswith("  call 1: ")


class PyCounter(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x * self.calls


def test_call_sequences_find_what_drifts_across_calls():
    from fxtrace.checking.sequences import check_calls
    x = torch.randn(3)
    traced = _jit(PyCounter(), x)        # the count of the tracing call, frozen
    model = PyCounter()
    # call by call: right
    assert fxtrace.check(traced, model, example_inputs=(x,), seed=0, calls=False).ok
    with pytest.raises(fxtrace.PropertyCheckError) as caught:
        check_calls(traced, model, example_inputs=(x,), seed=0)
    assert "call 1" in str(caught.value) and model.calls == 0  # state put back
    # a trace that keeps the state right: sequences agree, outputs and state_dict
    counter = RebindCounter()
    fx_counter = _fx(RebindCounter(), x, guards=False, check_trace=False)
    fx_counter.load_state_dict(counter.state_dict())
    report = check_calls(fx_counter, counter, example_inputs=(x,), seed=0, max_examples=30)
    assert report.counts["calls"] >= 60 and float(counter.count) == 0.0
    jit_counter = _jit(RebindCounter(), x)
    jit_counter.load_state_dict(counter.state_dict())
    with pytest.raises(fxtrace.PropertyCheckError) as caught:
        check_calls(jit_counter, counter, example_inputs=(x,), seed=0, max_examples=30)
    assert "state_dict['count']" in str(caught.value)
