"""torch.jit.trace's input-handling behaviours, differentially: fxtrace against
torch.jit.trace and eager on the same programs and inputs (the oracle is torch.jit where it is
right, eager always)."""
from __future__ import annotations

import collections
import warnings
from typing import Any, Callable, NamedTuple, Tuple

import pytest
import torch
from torch import nn

import fxtrace
from fxtrace import tree


def _both(fn: Any, example: Tuple[Any, ...], **kw: Any) -> Tuple[Any, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return (fxtrace.trace(fn, example, check_trace=False, **kw),
                torch.jit.trace(fn, example, check_trace=False, **kw))


def _agree(fx: Callable[..., Any], jit: Callable[..., Any], eager: Callable[..., Any],
           *inputs: Any) -> None:
    want = eager(*inputs)
    torch.testing.assert_close(fx(*inputs), want)
    torch.testing.assert_close(jit(*inputs), want)


def test_the_same_tensor_at_two_positions_is_two_inputs() -> None:
    t = torch.ones(2)

    def add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + 2 * b

    fx, jit = _both(add, (t, t))
    _agree(fx, jit, add, torch.ones(2), 3 * torch.ones(2))


def test_the_same_dict_at_two_positions_is_two_inputs() -> None:
    d = {"a": torch.ones(2), "b": torch.ones(2)}

    def f(p: dict, q: dict) -> torch.Tensor:
        return p["a"] + q["b"] * 2

    fx, jit = _both(f, (d, d), strict=False)
    d1, d2 = {"a": torch.ones(2), "b": torch.ones(2)}, {"a": 3 * torch.ones(2), "b": 5 * torch.ones(2)}
    _agree(fx, jit, f, d1, d2)


class _ParamPlus(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.arange(3.0))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.w * 10 + y


def test_a_parameter_passed_as_the_example_input_is_an_input() -> None:
    model = _ParamPlus()
    fx, jit = _both(model, (model.w,))
    _agree(fx, jit, model, torch.zeros(3))


class _Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(8, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return self.mha(q, k, k)[0]  # its code branches on ``query is key``


def test_identity_branches_take_the_general_path() -> None:
    torch.manual_seed(0)
    model = _Attention().eval()
    q = torch.randn(5, 2, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = fxtrace.trace(model, (q, q))  # the default check runs too
    q2, k2 = torch.randn(5, 2, 8), torch.randn(5, 2, 8)
    torch.testing.assert_close(traced(q2, k2), model(q2, k2), atol=1e-6, rtol=1e-5)


def test_a_traced_function_called_inside_a_traced_function() -> None:
    x = torch.randn(3, 4)
    inner = fxtrace.trace(lambda a: a * 2, (x,))

    def outer(a: torch.Tensor) -> torch.Tensor:
        return inner(a) + 1

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = fxtrace.trace(outer, (x,))
    y = torch.randn(5, 4)
    torch.testing.assert_close(traced(y), y * 2 + 1)


class _Pair(NamedTuple):
    a: torch.Tensor
    b: torch.Tensor


@pytest.mark.parametrize("structure", ["nested-tuple", "dict-of-tuples", "ordered-dict",
                                       "namedtuple-in-dict"])
def test_nested_outputs_keep_their_structure(structure: str) -> None:
    """Output containers go through the value tree (fxtrace/tree.py) alone."""
    def f(a: torch.Tensor) -> Any:
        if structure == "nested-tuple":
            return a, (a + 1, a + 2, (a * 3,)), a - 1
        if structure == "ordered-dict":
            return collections.OrderedDict([("z", a + 1), ("a", a * 2)])
        if structure == "namedtuple-in-dict":
            return {"p": _Pair(a, a + 1), "q": _Pair(a * 2, a - 1)}
        return {"x": (a, a + 1), "y": (a * 2, a - 1)}

    fx, jit = _both(f, (torch.randn(2, 3),), strict=False)
    y = torch.randn(4, 3)
    got, via_jit, want = fx(y), jit(y), tree.plain(f(y))  # TorchScript returns plain containers
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(via_jit, want)
    assert list(tree.leaves_with_paths(got)) and [p for p, _ in tree.leaves_with_paths(got)] == [
        p for p, _ in tree.leaves_with_paths(want)]


@pytest.mark.parametrize("where", ["root", "child"])
def test_backward_hooks_are_refused_as_torch_jit_does(where: str) -> None:
    """torch.jit raises ValueError for a module tree with backward hooks; a trace that
    dropped them silently would change every later backward."""
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    (model if where == "root" else model[0]).register_full_backward_hook(
        lambda *a: None)
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="backward hooks"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(model, x)
    with pytest.raises(ValueError, match="backward hook") as info:
        fxtrace.trace(model, x)
    assert isinstance(info.value, fxtrace.FxTraceError)
    assert ("'0'" in str(info.value)) == (where == "child")


def test_a_module_calling_a_traced_function_saves_and_loads() -> None:
    """The traced callee carries torch.jit's ``__torch__.`` qualified name, so the loader of
    the caller finds it."""
    import io

    inner = fxtrace.trace(lambda a: a * 2, (torch.randn(3),))
    assert inner.qualified_name.startswith("__torch__.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outer = fxtrace.trace(lambda a: inner(a) + 1, (torch.randn(3),))
        buf = io.BytesIO()
        torch.jit.save(outer, buf)
        buf.seek(0)
        loaded = torch.jit.load(buf)
    y = torch.randn(5)
    torch.testing.assert_close(loaded(y), y * 2 + 1)


class _ExportChild(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x).relu()

    @torch.jit.export
    def scale(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) * 3


class _Exports(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.child = _ExportChild()
        self.k = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.child(x) + 1

    @torch.jit.export
    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.child.scale(x) * self.k


def _reload(module: Any) -> Any:
    import io

    buf = io.BytesIO()
    torch.jit.save(module, buf)
    buf.seek(0)
    return torch.jit.load(buf)


def test_exported_methods_are_compiled_onto_the_trace() -> None:
    """torch.jit.trace scripts ``@torch.jit.export`` methods onto its result (the user
    marked them for TorchScript); fxtrace's result has them too, saved and reloaded."""
    torch.manual_seed(0)
    model = _Exports().eval()
    x = torch.randn(2, 3)
    fx, jit = _both(model, (x,))
    assert type(fx).__name__ == type(jit).__name__
    y = torch.randn(5, 3)
    for traced in (fx, jit, _reload(fx)):
        torch.testing.assert_close(traced(y), model(y))
        torch.testing.assert_close(traced.head(y), model.head(y))
        torch.testing.assert_close(traced.child.scale(y), model.child.scale(y))
    assert fx.code.count("relu") == 0 and "forward" in fx.code  # forward is the trace's


class _TwoMethods(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.lin = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).relu()

    def head(self, y: torch.Tensor) -> torch.Tensor:
        return self.lin(y).sigmoid()


@pytest.mark.parametrize("check", [False, True], ids=["no-check-inputs", "check-inputs"])
def test_trace_module_of_several_methods_saves_and_reloads(check: bool) -> None:
    torch.manual_seed(0)
    model = _TwoMethods().eval()
    inputs = {"forward": torch.randn(1, 1, 6, 6), "head": torch.randn(3, 4)}
    kw: Any = {"check_inputs": [{"forward": torch.randn(2, 1, 7, 7),
                                  "head": torch.randn(5, 4)}]} if check else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fx = fxtrace.trace_module(model, inputs, **kw)
        jit = torch.jit.trace_module(model, inputs, **kw)
    x, y = torch.randn(2, 1, 8, 8), torch.randn(6, 4)
    for traced in (fx, jit, _reload(fx)):
        torch.testing.assert_close(traced(x), model(x))
        torch.testing.assert_close(traced.head(y), model.head(y))


def _cummax_out(a: torch.Tensor) -> Any:
    values, indices = torch.empty(0), torch.empty(0, dtype=torch.long)
    torch.cummax(a, 1, out=(values, indices))
    return values, indices


def _write_through_view(a: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    target = torch.zeros(12)
    target.view(-1)[idx] = a.flatten()[:2]
    return target


def _tolist_0d(a: torch.Tensor) -> torch.Tensor:
    return a * a.argmax().tolist()


def _tolist_1d(a: torch.Tensor) -> torch.Tensor:
    return a * sum(a.long().tolist())


def _variable(a: torch.Tensor) -> torch.Tensor:
    return a + torch.autograd.Variable(torch.ones(4))


def _masked_write(a: torch.Tensor) -> torch.Tensor:
    b = a.clone()
    b[a > 0] = 0.0
    return b


def _powers(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a ** 2 + a ** b


_X = torch.randn(3, 4)
VALID = [
    ("cummax-out", _cummax_out, (_X,), (torch.randn(5, 4),)),
    ("index-put-through-view", _write_through_view, (_X, torch.tensor([1, 3])),
     (_X * 2, torch.tensor([4, 5]))),
    ("tolist-0d-guard", _tolist_0d, (torch.tensor([1., 3., 2.]),), (torch.tensor([2., 6., 4.]),)),
    ("tolist-1d-guard", _tolist_1d, (torch.tensor([1., 3., 2.]),), (torch.tensor([1.2, 3.1, 2.5]),)),
    ("variable-in-forward", _variable, (_X,), (torch.randn(5, 4),)),
    ("masked-write", _masked_write, (_X,), (torch.randn(3, 4),)),
    ("pow-operator", _powers, (_X.abs(), torch.rand(3, 4)), (_X.abs() * 2, torch.rand(3, 4))),
]


@pytest.mark.parametrize("name, fn, example, probe", VALID, ids=[v[0] for v in VALID])
def test_valid_programs_trace_as_with_torch_jit(name: str, fn: Callable[..., Any],
                                               example: Tuple[Any, ...],
                                               probe: Tuple[Any, ...]) -> None:
    """Programs torch.jit.trace traces: fxtrace traces them too, equal to eager (and to
    torch.jit) on another input, and after save/load."""
    fx, jit = _both(fn, example)
    _agree(fx, jit, fn, *probe)
    torch.testing.assert_close(_reload(fx)(*probe), fn(*probe))


def test_iterating_over_a_tensor_warns_as_torch_jit() -> None:
    def rows(a: torch.Tensor) -> torch.Tensor:
        return torch.stack([r * 2 for r in a])

    for lib in (torch.jit, fxtrace):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            lib.trace(rows, (torch.randn(3, 4),), check_trace=False)
        assert any(issubclass(w.category, torch.jit.TracerWarning) and
                   "Iterating over a tensor" in str(w.message) for w in caught), lib


def test_dict_input_with_extra_keys() -> None:
    """torch.jit ignores keys the trace did not read; so does fxtrace with ``guards=False``.
    With guards on (the default) the number of keys is guarded: a program that looks a key
    up only when present would be silently wrong otherwise (docs/differences.md)."""
    d = {"a": torch.ones(2), "b": torch.ones(2)}

    def f(dd: dict) -> torch.Tensor:
        return dd["a"] * 2

    bigger = {"a": torch.ones(2), "b": torch.ones(2), "c": torch.ones(2)}
    fx, jit = _both(f, (d,), strict=False)
    fx_off = _trace_quiet(f, (d,), strict=False, guards=False)
    torch.testing.assert_close(jit(bigger), f(bigger))
    torch.testing.assert_close(fx_off(bigger), f(bigger))
    with pytest.raises(torch.jit.Error, match="dict of 2 items"):
        fx(bigger)


def _trace_quiet(fn: Any, example: Tuple[Any, ...], **kw: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fxtrace.trace(fn, example, check_trace=False, **kw)


def test_a_scripted_function_calling_a_traced_function_saves_and_loads() -> None:
    inner = fxtrace.trace(lambda a: a * 2, (torch.randn(3),))

    @torch.jit.script
    def outer(a: torch.Tensor) -> torch.Tensor:
        return inner(a) + 1

    y = torch.randn(5)
    torch.testing.assert_close(_reload(outer)(y), y * 2 + 1)
