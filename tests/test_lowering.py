"""Lowering of recorded calls Python accepts but TorchScript spells differently.

Each test traces a small program with fxtrace and compares the ScriptFunction with eager on
the example and, where the call is size-polymorphic, on other sizes; errors must be
LoweringErrors naming the user's line.
"""
from __future__ import annotations

import inspect
import io
import sys
import warnings
from typing import Any, Callable, Tuple

import pytest
import torch
import torch.fx as fx
import torch.nn.functional as F

import fxtrace
from fxtrace.capture.meta import TensorMeta
from fxtrace.errors import LoweringError
from fxtrace.lower.schema import normalise_call


def _trace(fn: Callable[..., Any], *args: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return fxtrace.trace(fn, args, check_trace=False)


def _same(a: Any, b: Any) -> None:
    if isinstance(a, (tuple, list)):
        assert isinstance(b, (tuple, list)) and len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
        return
    assert a.dtype == b.dtype and a.shape == b.shape
    torch.testing.assert_close(a, b, equal_nan=True)


def _roundtrip(traced: Any) -> Any:
    buf = io.BytesIO()
    with warnings.catch_warnings():  # torch.jit.save/load's own deprecation notice
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(traced, buf)
        buf.seek(0)
        return torch.jit.load(buf)


def _check(fn: Callable[..., Any], *examples: Tuple[Any, ...], seed: bool = False) -> Any:
    """Trace on the first example; equal to eager on every example and after save/load."""
    traced = _trace(fn, *examples[0])
    loaded = _roundtrip(traced)
    for args in examples:
        for run in (traced, loaded):
            if seed:
                torch.manual_seed(0)
            got = run(*[a.clone() if isinstance(a, torch.Tensor) else a for a in args])
            if seed:
                torch.manual_seed(0)
            _same(fn(*[a.clone() if isinstance(a, torch.Tensor) else a for a in args]), got)
    return traced


# -- factories ----------------------------------------------------------------------------------
def test_factories_with_python_only_keywords() -> None:
    def f(x: torch.Tensor) -> torch.Tensor:
        a = torch.zeros(2, 3, requires_grad=False)
        b = torch.empty(2, 3, dtype=torch.float32, requires_grad=False).fill_(1.0)
        c = torch.linspace(0, 1, steps=3, requires_grad=False)
        d = torch.eye(3, requires_grad=False)
        e = torch.scalar_tensor(2, requires_grad=False)
        return x + a + b + c + d[0] + e

    _check(f, (torch.ones(3),), (torch.rand(2, 3),))


def test_factory_requires_grad_true_is_kept() -> None:
    traced = _trace(lambda x: torch.ones(2, 2, requires_grad=True) * x, torch.ones(2))
    assert traced(torch.ones(2)).requires_grad
    assert "requires_grad_" in traced.code


def test_sizes_as_separate_arguments() -> None:
    def f(x: torch.Tensor) -> torch.Tensor:
        n = x.size(0)
        return x.new_empty(n, 2).fill_(3.0) + torch.full((n, 2), 1.5) + x.new_zeros(n, 2, dtype=torch.float32)

    _check(f, (torch.ones(3, 1),), (torch.ones(5, 1),))


# -- dtype conversions ----------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["byte", "char", "short", "int", "long", "half", "float",
                                    "double", "bfloat16", "bool", "cfloat", "cdouble"])
def test_dtype_methods_with_and_without_memory_format(method: str) -> None:
    x = torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last)

    def f(t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return (getattr(t, method)(), getattr(t, method)(memory_format=torch.contiguous_format))

    traced = _check(f, (x,), (torch.randn(1, 2, 2, 2),))
    out = traced(x)
    assert out[1].is_contiguous() and not out[0].is_contiguous()


# -- random in-place ops with int arguments -----------------------------------------------------
@pytest.mark.parametrize("call", [
    lambda t: t.normal_(0, 1), lambda t: t.uniform_(0, 2), lambda t: t.cauchy_(0, 1),
    lambda t: t.log_normal_(1, 2), lambda t: t.exponential_(2), lambda t: t.geometric_(0.5),
    lambda t: t.random_(0, 10), lambda t: t.bernoulli_(0.5),
])
def test_random_inplace_ops(call: Callable[[torch.Tensor], torch.Tensor]) -> None:
    _check(lambda x: call(x.clone()), (torch.ones(4),), (torch.ones(2, 3),), seed=True)


def test_int_argument_for_float_parameter_from_a_traced_size() -> None:
    # x.size(0) is a traced int; aten::normal_ declares float mean: written float(n)
    traced = _check(lambda x: x.clone().normal_(x.size(0), 1), (torch.ones(4),), (torch.ones(7),),
                    seed=True)
    assert "float(" in traced.code or "float(" in str(traced.graph)


# -- spelling of operators and functions --------------------------------------------------------
def test_pow_recorded_as_tensor_dunder() -> None:
    _check(lambda x: x ** 2 + 2 ** x, (torch.rand(3),), (torch.rand(2, 2),))


def test_input_keyword_is_self() -> None:
    _check(lambda x: torch.sum(input=x, dim=0) + torch.abs(input=x)[0], (torch.rand(3, 2),),
           (torch.rand(4, 2),))


def test_op_overloads_are_spelled_through_torch_ops() -> None:
    traced = _check(lambda x: torch.ops.aten.slice.Tensor(x, 0, 1) + torch.ops.aten.relu.default(x[:-1]),
                    (torch.randn(4, 2),), (torch.randn(6, 3),))
    assert "slice" in traced.code


def test_list_of_optional_tensors() -> None:
    i = torch.tensor([0, 2])

    def f(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return torch.index_put(x, (idx,), torch.ones(2, x.size(1)))

    _check(f, (torch.zeros(3, 2), i), (torch.zeros(4, 5), i))


def test_nonzero_as_tuple() -> None:
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    traced = _check(lambda t: torch.nonzero(t, as_tuple=True), (x,), (torch.eye(3),))
    assert isinstance(traced(x), tuple)
    with pytest.raises(Exception, match="fxtrace guard failed"):
        traced(torch.ones(3))  # another rank: another number of index tensors


def test_nonzero_as_tuple_false_and_method() -> None:
    _check(lambda t: (torch.nonzero(t, as_tuple=False), t.nonzero(as_tuple=True)[0]),
           (torch.tensor([1.0, 0.0, 3.0]),), (torch.tensor([0.0, 1.0]),))


# -- indexing -----------------------------------------------------------------------------------
def test_ellipsis_followed_by_tensor_index() -> None:
    idx = torch.tensor([0, 2])

    def f(x: torch.Tensor, i: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return x[..., i], x[0, ..., i, None]

    traced = _check(f, (torch.rand(2, 3, 4), idx), (torch.rand(5, 1, 3), idx))
    with pytest.raises(Exception, match="fxtrace guard failed"):
        traced(torch.rand(3, 3), idx)  # '...' was traced standing for one dimension


def test_ellipsis_with_tensor_index_assignment() -> None:
    def f(x: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        y[..., i] = 0.0
        return y

    _check(f, (torch.rand(2, 4), torch.tensor([1, 3])), (torch.rand(5, 4), torch.tensor([0])))


# -- Python-defined torch functions -------------------------------------------------------------
def test_adaptive_pool_with_none_in_output_size() -> None:
    def f(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        a = F.adaptive_max_pool3d(x, (None, 2, None), return_indices=True)
        return a[0], F.adaptive_avg_pool2d(x[0], (None, 1))

    _check(f, (torch.rand(2, 3, 4, 5),), (torch.rand(2, 5, 6, 3),))


def test_ctc_loss_with_length_lists() -> None:
    log_probs = torch.randn(12, 2, 5).log_softmax(2)
    targets = torch.randint(1, 5, (2, 6), dtype=torch.long)
    _check(lambda lp, t: F.ctc_loss(lp, t, [12, 10], [6, 4], reduction="none"), (log_probs, targets))


# -- errors -------------------------------------------------------------------------------------
@pytest.fixture
def record_python_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Record Python torch functions as one call even where TorchScript cannot spell it (the
    capture records their inner calls instead, fxtrace/capture/inner_calls.py): the lowering
    error path for a recorded call TorchScript cannot compile, on a known example."""
    monkeypatch.setattr(sys.modules["fxtrace.capture.concrete"], "needs_inner_calls",
                        lambda *args: False)


def test_unloweable_call_names_user_line_and_call(record_python_calls: None) -> None:
    def f(x: torch.Tensor) -> Any:
        return torch.unravel_index(x, (3, 4))  # TorchScript has no aten::unravel_index

    line = inspect.getsourcelines(f)[1] + 1
    with pytest.raises(LoweringError) as info:
        _trace(f, torch.tensor([1, 5]))
    first = str(info.value).splitlines()[0]
    assert f"test_lowering.py:{line}" in first and "unravel_index" in first


def test_python_function_torchscript_cannot_compile_is_a_lowering_error(record_python_calls: None) -> None:
    # F.gaussian_nll_loss uses a comprehension-if, which TorchScript cannot compile
    def f(a: torch.Tensor, b: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.gaussian_nll_loss(a, b, v, reduction="none")

    line = inspect.getsourcelines(f)[1] + 1
    with pytest.raises(LoweringError) as info:
        _trace(f, torch.rand(3), torch.rand(3), torch.rand(3) + 1)
    first = str(info.value).splitlines()[0]
    assert f"test_lowering.py:{line}" in first and "gaussian_nll_loss" in first


# -- the normaliser itself -----------------------------------------------------------------------
def _tensor_node() -> fx.Node:
    node = fx.Graph().placeholder("x")
    node.meta["tensor_meta"] = TensorMeta.of(torch.ones(1))
    return node


def test_normalise_leaves_calls_that_bind_as_recorded() -> None:
    x = _tensor_node()
    assert normalise_call("aten::zeros", ([2, 3],), {}) is None
    assert normalise_call("aten::view", (x, 2, 3), {}) is None  # TorchScript packs the last list
    assert normalise_call("aten::normal_", (x, 0.0, 1.0), {}) is None


def test_normalise_rewrites_into_schema_spelling() -> None:
    norm = normalise_call("aten::zeros", (2, 3), {"requires_grad": True, "dtype": torch.float64})
    assert norm is not None and norm.args == ([2, 3],) and norm.requires_grad
    assert norm.kwargs == {"dtype": torch.float64}
    x = _tensor_node()
    norm = normalise_call("aten::normal_", (x, 0, 1), {})
    assert norm is not None and norm.args[0] is x and norm.args[1:] == (0.0, 1.0)
    assert all(type(a) is float for a in norm.args[1:])
    norm = normalise_call("aten::sum", (), {"input": x, "dim": 0})
    assert norm is not None and norm.args[0] is x


def test_normalise_refuses_what_it_cannot_reproduce() -> None:
    x = _tensor_node()
    # as_tuple=True changes the result type: not a Python-only default that can be dropped
    assert normalise_call("aten::nonzero", (x,), {"as_tuple": True}) is None
    assert normalise_call("aten::zeros", (2, 3), {"requires_grad": x}) is None
    assert normalise_call("aten::no_such_op", (x,), {}) is None


@pytest.mark.parametrize("call", [
    lambda x: x.norm(), lambda x: x.norm(p=2, dim=1), lambda x: x.norm(p="fro"),
    lambda x: x.norm(dim=1, dtype=torch.float64), lambda x: x.split(2, 1),
    lambda x: x.unflatten(1, (2, 2)),
])
def test_python_tensor_methods_with_none_defaults(call: Callable[[torch.Tensor], Any]) -> None:
    # Tensor.norm is a Python wrapper: the capture records its defaults (dim=None, dtype=None)
    _check(call, (torch.rand(3, 4),), (torch.rand(5, 4),))


def test_embedding_max_norm_renormalises_the_weight() -> None:
    # TorchScript's own F.embedding skips the renormalisation: written out by lowering
    idx = torch.tensor([[0, 2], [2, 1]])

    def f(w: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return F.embedding(i, w, max_norm=1.0)

    _check(f, (torch.randn(4, 3) * 10, idx), (torch.randn(6, 5) * 10, idx))
    module = torch.nn.Embedding(4, 3, max_norm=0.5)
    with torch.no_grad():
        module.weight.mul_(10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = fxtrace.trace(module, idx, check_trace=False)
    with torch.no_grad():
        module.weight.mul_(10)  # the capture renormalised in eager: make the rows long again
    assert module.weight[idx.unique()].norm(dim=-1).min() > 0.5
    out = traced(idx)
    assert out.norm(dim=-1).max() <= 0.5 + 1e-5
    assert module.weight[idx.unique()].norm(dim=-1).max() <= 0.5 + 1e-5  # renormalised in place


class _GaussianLoss(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.gaussian_nll_loss(a, b, v, reduction="none")


def test_module_lowering_error_names_user_line_and_module(record_python_calls: None) -> None:
    line = inspect.getsourcelines(_GaussianLoss.forward)[1] + 1
    with pytest.raises(LoweringError) as info:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            fxtrace.trace(_GaussianLoss(), (torch.rand(3), torch.rand(3), torch.rand(3) + 1),
                          check_trace=False)
    first = str(info.value).splitlines()[0]
    assert "_GaussianLoss.forward" in first
    assert f"test_lowering.py:{line}" in first and "gaussian_nll_loss" in first
