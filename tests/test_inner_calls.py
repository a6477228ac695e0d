"""Python torch functions TorchScript cannot spell (recorded by their inner calls), bools
returned by torch calls (live, guarded only where Python decides), and custom
``autograd.Function``s (a gradient through the trace is never silently wrong). Each result is
compared with eager, on the example and on inputs of other sizes, and after save/load."""
from __future__ import annotations

import io
import warnings
from typing import Any, Callable, Tuple

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fxtrace


def _trace(fn: Any, example: Tuple[Any, ...], **kw: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fxtrace.trace(fn, example, **kw)


def _reloaded(traced: Any) -> Any:
    buf = io.BytesIO()
    torch.jit.save(traced, buf)
    buf.seek(0)
    return torch.jit.load(buf)


def _gnll(a: torch.Tensor, b: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return F.gaussian_nll_loss(a, b, v.abs() + 0.1)


def _lce(x: torch.Tensor, w: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return F.linear_cross_entropy(x, w, t)


def _triplet(a: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    return F.triplet_margin_with_distance_loss(a, p, n, distance_function=nn.PairwiseDistance())


def _triplet_lambda(a: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    return F.triplet_margin_with_distance_loss(
        a, p, n, distance_function=lambda x, y: (x - y).abs().sum(-1), margin=0.5)


def _unravel(i: torch.Tensor) -> Any:
    return torch.unravel_index(i, (3, 4))


def _three(n: int) -> Tuple[torch.Tensor, ...]:
    return torch.randn(n, 5), torch.randn(n, 5), torch.randn(n, 5)


CASES = [
    ("gaussian_nll_loss", _gnll, _three),
    ("linear_cross_entropy", _lce,
     lambda n: (torch.randn(n, 4), torch.randn(6, 4), torch.randint(0, 6, (n,)))),
    ("triplet-module-distance", _triplet, _three),
    ("triplet-lambda-distance", _triplet_lambda, _three),
    ("unravel_index", _unravel, lambda n: (torch.randint(0, 12, (n,)),)),
]


@pytest.mark.parametrize("name, fn, make", CASES, ids=[c[0] for c in CASES])
def test_python_functions_are_recorded_by_what_they_do(
        name: str, fn: Callable[..., Any], make: Callable[[int], Tuple[Any, ...]]) -> None:
    torch.manual_seed(0)
    traced = _trace(fn, make(3))
    code = "\n".join(line for line in traced.code.splitlines() if "guard failed" not in line)
    assert not any(f in code for f in ("gaussian_nll_loss", "unravel_index", "triplet_margin",
                                       "linear_cross_entropy")), code
    loaded = _reloaded(traced)
    for n in (3, 7):
        inputs = make(n)
        torch.testing.assert_close(traced(*inputs), fn(*inputs))
        torch.testing.assert_close(loaded(*inputs), fn(*inputs))


def test_functions_torchscript_spells_stay_one_call() -> None:
    """The inner calls are recorded only where TorchScript cannot spell the call itself."""
    def f(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return F.smooth_l1_loss(a, b) + F.softmax(a, -1).sum()

    traced = _trace(f, (torch.randn(2, 3), torch.randn(2, 3)))
    assert "smooth_l1_loss" in traced.code and "softmax" in traced.code


# -- bools ---------------------------------------------------------------------------------
def _equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(a, b)


def _allclose_in_tuple(a: torch.Tensor, b: torch.Tensor) -> Any:
    return a * 2, torch.allclose(a, b)


def _is_nonzero(a: torch.Tensor) -> bool:
    return torch.is_nonzero(a.sum())


@pytest.mark.parametrize("fn", [_equal, _allclose_in_tuple, _is_nonzero])
def test_returned_bools_are_live(fn: Callable[..., Any]) -> None:
    x = torch.randn(3, 4)
    n = fn.__code__.co_argcount
    with warnings.catch_warnings():
        warnings.simplefilter("error", fxtrace.TracerWarning)  # nothing is specialised
        traced = fxtrace.trace(fn, (x, x.clone())[:n])
    loaded = _reloaded(traced)
    for inputs in ((x, x.clone()), (x, x + 1), (torch.zeros(2), torch.ones(2)),
                   (-x, x)):
        inputs = inputs[:n]
        want = fn(*inputs)
        for got in (traced(*inputs), loaded(*inputs)):
            torch.testing.assert_close(got, want)
            assert type(got if isinstance(got, bool) else got[1]) is bool


def test_a_bool_python_branches_on_is_guarded() -> None:
    def pick(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        same = torch.equal(a, b)
        if same:
            return a * 2
        return b

    x = torch.randn(3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = fxtrace.trace(pick, (x, x.clone()))
    assert any("equal() == True" in str(w.message) and w.filename == __file__ for w in caught)
    torch.testing.assert_close(traced(x, x.clone()), x * 2)
    with pytest.raises(torch.jit.Error, match="guard failed"):
        traced(x, x + 1)


def test_a_live_bool_looks_like_a_bool_to_python() -> None:
    seen = {}

    def f(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        same = torch.equal(a, b)
        seen["repr"], seen["str"], seen["hash"] = repr(same), f"{same}", hash(same)
        return a + int(same)

    x = torch.randn(3)
    traced = _trace(f, (x, x.clone()))
    assert seen == {"repr": "True", "str": "True", "hash": hash(True)}
    torch.testing.assert_close(traced(x, x.clone()), x + 1)


# -- custom autograd.Function ----------------------------------------------------------------
class _Scaled(torch.autograd.Function):
    """Forward x * x, backward 100 * grad: the recorded ops' gradient (2x) is not its own."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x * x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad * 100


class _UsesFunction(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Scaled.apply(self.lin(x)).sum(-1)


def test_custom_function_gradient_never_silently_wrong() -> None:
    torch.manual_seed(0)
    model = _UsesFunction()
    traced = _trace(model, (torch.randn(2, 3),))  # the default check runs under no_grad
    x = torch.randn(4, 3)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x))
    with torch.inference_mode():
        torch.testing.assert_close(traced(x), model(x))
    # eager's gradient uses the custom backward: the trace must not hand out another one
    model(x).sum().backward()
    eager_grad = model.lin.weight.grad.clone()
    model.zero_grad()
    with pytest.raises(torch.jit.Error, match="_Scaled.*backward is not part of it"):
        traced(x).sum().backward()
    assert model.lin.weight.grad is None or torch.equal(model.lin.weight.grad,
                                                        torch.zeros_like(eager_grad))
    for loaded in (_reloaded(traced),):
        with pytest.raises(torch.jit.Error, match="_Scaled"):
            loaded(x)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), model(x))


def test_custom_function_on_inputs_without_grad_runs() -> None:
    traced = _trace(lambda a: _Scaled.apply(a) + 1, (torch.randn(3),))
    x = torch.randn(5)
    torch.testing.assert_close(traced(x), x * x + 1)  # grad mode on, nothing requires grad
    with pytest.raises(torch.jit.Error, match="custom torch.autograd.Function"):
        traced(x.requires_grad_())


def test_custom_function_guard_is_kept_without_guards() -> None:
    traced = _trace(lambda a: _Scaled.apply(a), (torch.randn(3),), guards=False)
    with pytest.raises(torch.jit.Error, match="_Scaled"):
        traced(torch.randn(3, requires_grad=True))
