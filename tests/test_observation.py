"""A trace is an observation: after trace/trace_module (success or failure, with or without
the check) every parameter, buffer, tensor attribute, RNG, training flag and Python attribute
of the model is as it was, bitwise."""
from __future__ import annotations

import os
import random
import sys
import warnings
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import pytest
import torch
from torch import nn

import fxtrace


class BNChildInTrain(nn.Module):
    """An eval root whose BatchNorm child is in train mode: its statistics would move."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.eval()
        self.bn.train()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)).relu()


class Counter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("count", torch.zeros(()))
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.count += 1
        return self.lin(x) * self.count


class Dropper(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.lin(x)) + torch.rand_like(x) + random.random() + float(np.random.rand())


class ScalesWeight(nn.Module):
    """Writes its own weight in place (directly, through a view and through .data)."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.scale = torch.ones(4)  # a plain tensor attribute
        self.fail = fail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.lin.weight.mul_(2)
            self.lin.bias[:2].add_(1)
            self.lin.weight.data[0].zero_()
            self.scale.mul_(3)
        if self.fail:
            raise ValueError("user error after the writes")
        return self.lin(x) * self.scale


class PythonState(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.history: List[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.history.append(x.size(0))
        return x * 2


def _fingerprint(model: nn.Module) -> Dict[str, Any]:
    state = {f"p:{k}": v.detach().clone() for k, v in model.named_parameters()}
    state.update({f"b:{k}": v.detach().clone() for k, v in model.named_buffers()})
    for name, m in model.named_modules():
        state[f"training:{name}"] = m.training
        for attr, value in m.__dict__.items():
            if isinstance(value, torch.Tensor) and not attr.startswith("_"):
                state[f"t:{name}.{attr}"] = value.clone()
            elif isinstance(value, (int, float, list)) and not attr.startswith("_"):
                state[f"py:{name}.{attr}"] = list(value) if isinstance(value, list) else value
    state["rng"] = torch.random.get_rng_state()
    state["random"] = random.getstate()
    state["numpy"] = np.random.get_state()[1].copy()
    state["grad"] = torch.is_grad_enabled()
    return state


def _same(a: Dict[str, Any], b: Dict[str, Any]) -> List[str]:
    assert a.keys() == b.keys()
    diff = []
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, torch.Tensor) or isinstance(x, np.ndarray):
            if not (x.shape == y.shape and (x == y).all()):
                diff.append(k)
        elif x != y:
            diff.append(k)
    return diff


CASES: List[Tuple[str, Callable[[], nn.Module], Tuple[int, ...]]] = [
    ("bn-child-in-train", BNChildInTrain, (2, 3, 6, 6)),
    ("buffer-counter", Counter, (2, 4)),
    ("dropout-and-rngs", Dropper, (2, 4)),
    ("weight-written", ScalesWeight, (2, 4)),
    ("weight-written-then-raises", lambda: ScalesWeight(fail=True), (2, 4)),
    ("python-state", PythonState, (3, 4)),
]


@pytest.mark.parametrize("check_trace", [False, True], ids=["no-check", "check"])
@pytest.mark.parametrize("name, make, shape", CASES, ids=[c[0] for c in CASES])
def test_trace_leaves_the_model_as_it_was(name: str, make: Callable[[], nn.Module],
                                          shape: Tuple[int, ...], check_trace: bool) -> None:
    torch.manual_seed(0)
    model = make()
    x = torch.randn(shape)
    before = _fingerprint(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fxtrace.trace(model, x, check_trace=check_trace)
        except (ValueError, fxtrace.FxTraceError, RuntimeError):
            pass  # failing traces must leave the model as it was too
    # The check's eager runs see no torch function mode, but the capture told it which
    # tensors forward writes in place: it copies them around every run.
    assert _same(before, _fingerprint(model)) == []


def test_trace_module_of_several_methods_leaves_state() -> None:
    model = Counter()
    x = torch.randn(2, 4)
    before = _fingerprint(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fxtrace.trace_module(model, {"forward": x}, check_trace=False)
    assert _same(before, _fingerprint(model)) == []


# -- every model in tests/ (the zoo and the traps), traced with the check -----------------------
sys.path.insert(0, os.path.dirname(__file__))
import traps as _traps  # noqa: E402
import zoo as _zoo  # noqa: E402

_STATEFUL = [(f"zoo:{c.name}", c.make, c.example(c.batch)) for c in _zoo.CASES] + [
    (f"trap:{t.name}", t.make, t.example_inputs) for t in _traps.TRAPS]


@pytest.mark.parametrize("name, make, example", _STATEFUL, ids=[c[0] for c in _STATEFUL])
def test_every_test_model_is_left_as_it_was(name: str, make: Callable[[], Any],
                                            example: Tuple[Any, ...]) -> None:
    """trace with its default check, then ``check_inputs`` at another size where the model
    takes one: whether it succeeds or raises, the model's state is bitwise as before."""
    torch.manual_seed(0)
    model = make()
    if not isinstance(model, nn.Module):
        model = _Wrap(model)
    before = _fingerprint(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fxtrace.trace(model, example)
        except Exception:  # noqa: BLE001 - refusing is fine; changing the model is not
            pass
    assert _same(before, _fingerprint(model)) == []


class _Wrap(nn.Module):
    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args: Any) -> Any:
        return self.fn(*args)


class WritesOnLargeBatches(nn.Module):
    """Writes its weight in place only on inputs other than the example: the capture never
    sees the write, the check's runs on ``check_inputs`` do."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.scale = torch.ones(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 3:
            with torch.no_grad():
                self.lin.weight.mul_(2)
                self.scale.add_(1)
        return self.lin(x) * self.scale


@pytest.mark.parametrize("guards", [True, False])
def test_writes_on_later_calls_are_put_back(guards: bool) -> None:
    model = WritesOnLargeBatches()
    x, later = torch.randn(2, 4), torch.randn(5, 4)
    before = _fingerprint(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fxtrace.trace(model, x, check_inputs=[(later,)], guards=guards)
        except Exception:  # noqa: BLE001 - the guard may refuse the check input
            pass
    assert _same(before, _fingerprint(model)) == []
    assert not any("forward wrote parameter" in str(w.message) for w in caught)


@pytest.mark.parametrize("root", [True, False], ids=["root", "child"])
def test_lazy_modules_keep_their_materialisation_and_say_so(root: bool) -> None:
    torch.manual_seed(0)
    model: nn.Module = nn.LazyLinear(3) if root else nn.Sequential(
        nn.LazyConv2d(4, 3), nn.LazyBatchNorm2d(), nn.Flatten(), nn.LazyLinear(2)).eval()
    x = torch.randn(2, 4) if root else torch.randn(2, 3, 6, 6)
    rng = torch.random.get_rng_state()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = fxtrace.trace(model, x)
    lazy = [w for w in caught if "lazy module" in str(w.message)]
    assert lazy and all(w.filename == __file__ for w in lazy)
    assert not any(isinstance(p, nn.parameter.UninitializedParameter) for p in model.parameters())
    assert torch.equal(rng, torch.random.get_rng_state())  # the init's draws are put back
    before = _fingerprint(model)
    fxtrace.trace(model, x)  # a second trace: nothing is lazy any more
    assert _same(before, _fingerprint(model)) == []
    torch.testing.assert_close(traced(x), model(x))
