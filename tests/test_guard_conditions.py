"""Guard conditions written as one test inside the guard's ``if`` (NOTE [Guard conditions],
``fxtrace/lower/guard_conditions.py``): same verdicts, same messages, fewer instructions."""
from __future__ import annotations

import math
import operator
import warnings

import pytest
import torch
import torch.fx as fx

import fxtrace
from fxtrace.capture.meta import GUARD
from fxtrace.lower.codegen import generate
from fxtrace.lower.script import lower_function


def _trace(model: torch.nn.Module, x: torch.Tensor) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fxtrace.TracerWarning)
        return fxtrace.trace(model, (x,))


class Holder(torch.nn.Module):
    def __init__(self, layer: torch.nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


def test_training_flag_is_tested_directly_and_still_raises() -> None:
    x = torch.randn(2, 3, 4, 4)
    traced = _trace(Holder(torch.nn.BatchNorm2d(3)).eval(), x)
    code = traced.layer.code
    assert "if training:" in code and "__not__" not in code and "torch.eq(" not in code
    torch.testing.assert_close(traced(x), torch.nn.functional.batch_norm(
        x, torch.zeros(3), torch.ones(3), torch.ones(3), torch.zeros(3)))
    traced.layer.train()
    with pytest.raises(torch.jit.Error, match="traced with the module in eval mode"):
        traced(x)
    traced.layer.eval()
    with pytest.raises(torch.jit.Error, match="traced with rank of input is 4"):
        traced(torch.randn(2, 3, 4))
    # traced in training mode: the guard raises when the flag is off
    dropout = _trace(Holder(torch.nn.Dropout(0.0)).train(), x)
    code = dropout.layer.code
    assert "if torch.__not__(training):" in code and "torch.eq(" not in code, code
    with pytest.raises(torch.jit.Error, match="traced with the module in training mode"):
        dropout.eval()(x)


def _guarded(cond_of, share: bool = False) -> fx.GraphModule:
    """``f(a, b)`` asserting ``cond_of(graph, a, b)``; ``share``: the condition also feeds
    the output, so it cannot move into the guard."""
    g = fx.Graph()
    a, b = g.placeholder("a", float), g.placeholder("b", float)
    cond = cond_of(g, a, b)
    guard = g.call_function(torch._assert, (cond, "fxtrace guard failed: the test's guard"))
    guard.meta[GUARD] = True
    g.output(g.call_function(operator.add, (a, b)) if not share else cond)
    return fx.GraphModule(torch.nn.Module(), g)


CONDITIONS = {
    "eq": lambda g, a, b: g.call_function(operator.eq, (a, b)),
    "ne": lambda g, a, b: g.call_function(operator.ne, (a, b)),
    "lt": lambda g, a, b: g.call_function(operator.lt, (a, b)),
    "not_ge": lambda g, a, b: g.call_function(
        operator.not_, (g.call_function(operator.ge, (a, b)),)),
    "not_not_le": lambda g, a, b: g.call_function(operator.not_, (g.call_function(
        operator.not_, (g.call_function(operator.le, (a, b)),)),)),
}
HOLDS = {"eq": operator.eq, "ne": operator.ne, "lt": operator.lt,
         "not_ge": lambda a, b: not a >= b, "not_not_le": operator.le}


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_written_condition_keeps_every_verdict_nan_included(name: str) -> None:
    gm = _guarded(CONDITIONS[name])
    src = generate(gm.graph, "f", method=False).src
    assert src.count("    if ") == 1 and "__not__" not in src and "not not" not in src, src
    fn = lower_function(gm, "f")
    values = (0.0, 1.0, -1.0, math.nan, math.inf)
    for a in values:
        for b in values:
            if HOLDS[name](a, b):
                assert fn(a, b) == a + b or math.isnan(a + b)
            else:
                with pytest.raises(torch.jit.Error, match="the test's guard"):
                    fn(a, b)


def test_a_condition_with_other_users_stays_a_statement() -> None:
    gm = _guarded(CONDITIONS["eq"], share=True)
    src = generate(gm.graph, "f", method=False).src
    assert "if not eq:" in src, src
    fn = lower_function(gm, "f")
    assert fn(1.0, 1.0) is True
    with pytest.raises(torch.jit.Error, match="the test's guard"):
        fn(1.0, 2.0)
