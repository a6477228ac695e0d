"""The fuzzer's findings F3, F6, F8-F12, F14 (property_tests/FINDINGS.md), each as a
differential test: fxtrace against eager (right, or a guard that refuses) and against
torch.jit.trace (the oracle's own behaviour on the same program, where it differs).

Invariant: an fxtrace trace is never silently wrong: on its example it returns what eager
returns, elsewhere it returns what eager returns or raises a guard; what it cannot represent
it refuses at trace time."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fxtrace
from fxtrace.checking.trace_check import is_guard_error

pytestmark = [
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated:DeprecationWarning"),
]


def _jit(fn, args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.trace(fn, args, check_trace=False)


def _guarded(fn, *args) -> bool:
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - what is asserted is that it is a guard
        assert is_guard_error(e), e
        return True
    return False


def test_f3_tolist_traces_and_guards_the_values():
    def f(x):
        return x - x.mean().tolist()
    x, other = torch.randn(3, 4), torch.randn(3, 4) + 5
    t = fxtrace.trace(f, x)
    assert torch.equal(t(x), f(x))
    assert _guarded(t, other)                       # the list fed Python: guarded
    assert not torch.allclose(_jit(f, x)(other), f(other))  # torch.jit: silently wrong


def test_f6_type_string_converts():
    def f(x):
        return x.type('torch.DoubleTensor')
    x = torch.randn(3, 4)
    t = fxtrace.trace(f, x)
    for probe in (x, torch.randn(5, 2)):
        assert t(probe).dtype == f(probe).dtype == _jit(f, x)(probe).dtype == torch.float64
        assert torch.equal(t(probe), f(probe))


def test_f8_numpy_round_trip_is_guarded():
    def f(x):
        return torch.from_numpy(x.detach().numpy() * 2)
    x = torch.ones(3, 4)
    t = fxtrace.trace(f, x)
    assert torch.equal(t(x), f(x))
    other = torch.randn(3, 4)
    assert _guarded(t, other)
    assert _guarded(t, x.double())                  # torch.equal alone would accept it
    assert not torch.equal(_jit(f, x)(other), f(other))


def test_f8_write_through_numpy_is_recorded():
    def f(x):
        x.numpy()[...] *= 2
        return x + 1
    t = fxtrace.trace(f, torch.ones(3, 4), check_trace=False)
    j = _jit(f, torch.ones(3, 4))
    a, b, c = torch.ones(3, 4), torch.ones(3, 4), torch.ones(3, 4)
    want = f(a)
    assert torch.equal(t(b), want) and torch.equal(b, a)  # the input is written as eager does
    assert not torch.equal(j(c), want)                    # torch.jit: wrong on its example
    assert _guarded(t, torch.randn(3, 4))


def test_f8_numpy_argument_guards_what_it_read():
    def f(x):
        return x.new_tensor(np.ones((3, 4))) + x
    x = torch.randn(3, 4, dtype=torch.float64)
    t = fxtrace.trace(f, x)
    assert torch.equal(t(x), f(x))
    assert _guarded(t, x.float())                   # eager: float32; the constant is float64


class _Counter(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("count", torch.zeros(()))

    def forward(self, x):
        self.count.fill_(self.count.item() + 1)
        return x * self.count


def test_f9_item_of_a_buffer_is_guarded():
    x = torch.ones(1)
    t = fxtrace.trace(_Counter(), x, check_trace=False)
    j = _jit(_Counter(), x)
    eager = _Counter()
    assert torch.equal(t(x), eager(x))
    want = eager(x)
    assert _guarded(t, x)                           # the buffer moved past the traced value
    j(x)
    assert not torch.equal(j(x), want)              # torch.jit: frozen, silently wrong


class _Running(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("running", torch.zeros(()))

    def forward(self, x):
        self.running = 0.9 * self.running + 0.1 * x.mean()
        return x - self.running


def test_f10_rebinding_a_buffer_to_another_dtype_is_an_assignment():
    x = torch.ones(2, dtype=torch.float64)          # more in tests/test_rebinding.py
    t, j, eager = fxtrace.trace(_Running(), x), _jit(_Running(), x), _Running()
    for _ in range(3):
        want = eager(x)
        assert torch.equal(t(x), want)
        assert t.running.dtype == eager.running.dtype == torch.float64
    assert not torch.equal(j(x), eager(x))          # torch.jit drops the write


def test_f10_rebinding_is_carried_guarded_and_leaves_the_model_alone():
    model = _Running()
    before = model.running
    t = fxtrace.trace(model, torch.ones(2), check_trace=False)
    assert model.running is before and float(before) == 0.0  # a trace is an observation
    eager, j = _Running(), _jit(_Running(), torch.ones(2))
    for _ in range(3):
        want = eager(torch.ones(2))
        assert torch.allclose(t(torch.ones(2)), want)
    j(torch.ones(2))
    assert not torch.allclose(j(torch.ones(2)), eager(torch.ones(2)))
    assert _guarded(t, torch.ones(2, dtype=torch.float64))  # eager would rebind to float64


class _Twice(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("count", torch.zeros(()))

    def forward(self, x):
        self.count = self.count + 1
        self.count = self.count + 1
        return x + self.count


def test_f12_a_buffer_rebound_twice_keeps_the_last_value():
    x = torch.zeros(1)
    t, j, eager = fxtrace.trace(_Twice(), x, check_trace=False), _jit(_Twice(), x), _Twice()
    outs = [(eager(x).item(), t(x).item(), j(x).item()) for _ in range(3)]
    assert [o[0] for o in outs] == [o[1] for o in outs] == [2.0, 4.0, 6.0]
    assert [o[2] for o in outs] != [o[0] for o in outs]


def test_f11_a_dead_random_op_still_draws():
    def f(x):
        x[:, torch.randperm(x.size(1))]
        return x + torch.rand_like(x)
    x = torch.zeros(2, 3)
    outs = []
    for g in (f, fxtrace.trace(f, x, check_trace=False), _jit(f, x)):
        torch.manual_seed(0)
        outs.append(g(x))
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0], outs[2])        # torch.jit drops the draw


def test_f14_check_of_a_guarded_random_value_passes():
    def f(x):
        return x * F.dropout(x, 0.5, training=True).abs().sum().item()
    x = torch.randn(2, 3)
    torch.manual_seed(0)
    t = fxtrace.trace(f, x)                         # default check: no false alarm
    torch.manual_seed(1)
    want = f(x)
    torch.manual_seed(1)
    try:
        assert torch.equal(t(x), want)
    except Exception as e:  # noqa: BLE001 - another RNG state draws another value
        assert is_guard_error(e)


class _RandomBranch(torch.nn.Module):
    def forward(self, x):
        return x * 2 if F.dropout(x, 0.5, self.training).sum().item() > 0 else x


def test_guard_on_a_random_value_is_named_at_trace_time():
    with pytest.warns(torch.jit.TracerWarning, match="comes from a random op"):
        fxtrace.trace(_RandomBranch().train(), torch.randn(4, 4), check_trace=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)
        try:
            fxtrace.trace(_RandomBranch().eval(), torch.randn(4, 4), check_trace=False)
        except torch.jit.TracerWarning as w:
            assert "random op" not in str(w)        # eval: dropout draws nothing


def _calls_agree(fn, trace, args, calls=3):
    """Eager and the trace agree on ``calls`` calls in a row (state carried on both sides)."""
    for _ in range(calls):
        want, got = fn(*args), trace(*args)
        want = want if isinstance(want, tuple) else (want,)
        got = got if isinstance(got, tuple) else (got,)
        if not all(torch.allclose(a, b) for a, b in zip(want, got)):
            return False
    return True


def test_f16_in_place_op_on_a_numpy_constant_starts_from_its_value():
    # seeds 10917 and 21013: the constant kept was the tensor after the capture's mul_
    def f(x):
        v2 = torch.as_tensor(np.cumsum(x.detach().numpy(), -1))
        v3 = v2.mul_(1.5)
        return v3 + x, v2

    def g(x):
        v0 = torch.from_numpy(x.detach().numpy() * 2)   # not seen by the torch function mode
        v1 = v0.mul_(1.5)
        return v1 * x

    x = torch.randn(3, 4)
    for fn in (f, g):
        t = fxtrace.trace(fn, x, check_trace=False)
        assert _calls_agree(fn, t, (x,))
        assert "clone" in t.code                         # the write goes to a clone
        assert not _calls_agree(fn, _jit(fn, x), (x,))    # torch.jit: wrong on its example


def test_f16_write_through_a_view_of_a_numpy_constant():
    def f(x):
        v0 = torch.from_numpy(x.detach().numpy() * 2)
        v0[0].add_(1)                                    # read first, then written through a view
        return v0 * x
    x = torch.randn(3, 4)
    assert _calls_agree(f, fxtrace.trace(f, x, check_trace=False), (x,))


def test_seed_841_a_guard_before_the_write_reads_the_value_made():
    # seed 841: int(argmax) of a NumPy constant, later written in place; the guard read the
    # constant after the capture's add_ and failed on the trace's own example
    def f(x, y):
        v1 = torch.as_tensor(np.cumsum(y.detach().numpy(), axis=-1))
        v2 = v1.roll(int(v1[0].argmax()), 1)
        v1.add_(x)
        return torch.atan2(v2, v1)
    x, y = torch.randn(4, 4, dtype=torch.float64), torch.randn(4, 4, dtype=torch.float64)
    t = fxtrace.trace(f, (x, y), check_trace=False)
    assert _calls_agree(f, t, (x, y))
    assert _guarded(t, x, torch.randn(4, 4, dtype=torch.float64))   # other values: guarded


def test_a_tensor_attribute_written_in_place_stays_shared():
    # the clone is for tensors made anew on every call; the model's own tensor attributes
    # persist across calls, and the trace keeps writing them (as eager does)
    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.acc = torch.zeros(3)

        def forward(self, x):
            self.acc.add_(x)
            return self.acc * 1

    m, e = M(), M()
    t = fxtrace.trace(m, torch.ones(3), check_trace=False)
    assert torch.equal(m.acc, torch.zeros(3))            # the trace is an observation
    for _ in range(3):
        assert torch.equal(t(torch.ones(3)), e(torch.ones(3)))


def _f15_programs():
    # every way the fuzzer's vocabulary hands sizes to NumPy, and a few more
    return {
        "np_size_sum": lambda a: a * float(np.ones(a.shape).sum()),        # silent before
        "np_ones": lambda a: a + torch.from_numpy(np.ones(a.shape, dtype=np.float32)),
        "np_zeros": lambda a: a + torch.from_numpy(np.zeros(a.shape, dtype=np.float32)),
        "np_arange": lambda a: a + torch.from_numpy(np.arange(a.size(1))).to(a.dtype),
        "np_new_tensor": lambda a: a.new_tensor(np.ones((a.size(0), a.size(1)))) + a,
        "np_prod": lambda a: a * float(np.prod(a.shape)),
        "np_star": lambda a: a * float(np.ones((*a.shape,)).sum()),
        "np_expr": lambda a: a * float(np.ones(a.size(0) * 2).sum()),
        "np_named": _np_named,
        "np_unpacked": _np_unpacked,
        "np_list": _np_list,
    }


def _np_list(a):
    n = a.size(0)
    dims = [n, 4]
    return a * float(np.ones(dims).sum())


def _np_named(a):
    seq = a.size(1)                                  # bound to a name, then handed to NumPy
    return a + torch.from_numpy(np.arange(seq)).to(a.dtype)


def _np_unpacked(a):
    rows, cols = a.shape
    return a + torch.from_numpy(np.ones((rows, cols), dtype=np.float32))


def test_f15_a_name_not_handed_to_numpy_stays_live():
    def f(a):
        n = a.size(0)
        out = a.view(n, -1) * 2
        return out + float(np.ones(3).sum())
    t = fxtrace.trace(f, torch.randn(3, 4), check_trace=False)
    for probe in (torch.randn(3, 4), torch.randn(5, 7)):
        assert torch.equal(t(probe), f(probe))


@pytest.mark.parametrize("name", sorted(_f15_programs()))
def test_f15_sizes_numpy_reads_are_guarded(name):
    f = _f15_programs()[name]
    x = torch.randn(3, 4)
    t = fxtrace.trace(f, x, check_trace=False)
    assert torch.allclose(t(x), f(x))
    for other in (torch.randn(5, 4), torch.randn(3, 6)):
        try:
            got = t(other)
        except Exception as e:  # noqa: BLE001 - a guard is the right answer
            assert is_guard_error(e), e
            continue
        assert torch.allclose(got, f(other))           # else right: never silently wrong
    assert _guarded(t, torch.randn(5, 7))
    with pytest.raises((RuntimeError, AssertionError)):  # torch.jit: frozen: raises or wrong
        assert torch.allclose(_jit(f, x)(torch.randn(5, 7)), f(torch.randn(5, 7)))


def test_f15_guard_names_the_users_line_and_warns():
    def f(a):
        return a * float(np.ones(a.shape).sum())
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        t = fxtrace.trace(f, torch.randn(4), check_trace=False)
    ours = [w for w in seen if issubclass(w.category, torch.jit.TracerWarning)]
    assert ours and all(w.filename == __file__ for w in ours), [str(w.message) for w in seen]
    assert any("numpy" in str(w.message) for w in ours)
    err = _error_of(t, torch.randn(2))
    assert is_guard_error(err) and "test_fuzz_findings.py" in str(err) and "numpy" in str(err)


def test_sizes_python_reads_stay_live():
    # builtins, math and Python code read the sizes through their methods: nothing is frozen
    import math

    def f(a):
        n = math.prod(a.shape) + len(tuple(a.shape)) + sum(list(a.shape))
        return a.reshape(-1)[: n - 2 - sum(a.shape)] * 2
    t = fxtrace.trace(f, torch.randn(3, 4), check_trace=False)
    for probe in (torch.randn(3, 4), torch.randn(5, 6)):
        assert torch.equal(t(probe), f(probe))


def _error_of(fn, *args):
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - the error under test
        return e
    raise AssertionError("expected an error")


def test_f15_still_guarded_once_the_interpreter_specialised_the_call():
    # CPython 3.11 runs a call to a C function that it has specialised in PRECALL (after a
    # few calls of the same line): the reader must be found there too
    def f(a):
        return a + torch.from_numpy(np.ones(a.shape, dtype=np.float32))
    for _ in range(12):
        t = fxtrace.trace(f, torch.randn(3, 4), check_trace=False)
        assert _guarded(t, torch.randn(5, 4))


def test_f19_a_guard_on_a_name_starting_with_in_compiles():
    """TorchScript lexes ``not in`` greedily: ``not index_fill_...`` must be parenthesised."""
    def f(y):
        v0 = y.clone()
        v0.index_fill_(1, torch.tensor([0]), -1.0)
        return v0[..., torch.argsort(v0[0])]     # a rank guard on ``index_fill_``

    y = torch.randn(1, 1)
    t = fxtrace.trace(f, y)
    assert torch.equal(t(y), f(y)) and torch.equal(_jit(f, y)(y), f(y))
    assert _guarded(t, torch.randn(1, 1, 1))       # the rank guard is there and compiled


def test_f15_a_file_changed_under_the_same_name_is_read_again():
    """The call-site index follows linecache: code recompiled from other lines under the same
    file name (an edited cell or module) is looked up in its own lines, not the first ones."""
    import linecache
    name = "<f15-edited>"

    def compiled(source):
        linecache.cache[name] = (len(source), None, source.splitlines(True), name)
        namespace = {"np": np, "torch": torch}
        exec(compile(source, name, "exec"), namespace)
        return namespace["f"]

    first = compiled("def f(x):\n    return x * x.size(0)\n")
    fxtrace.trace(first, torch.randn(4))  # indexes the first lines
    second = compiled("def f(x):\n"
                      "    return x + torch.from_numpy(np.arange(x.size(0), dtype=np.float32))\n")
    t = fxtrace.trace(second, torch.randn(4))
    assert _guarded(t, torch.randn(2))  # the size NumPy read is guarded, not silently 4
