"""A trace is an observation: after trace/trace_module (success or failure, with or without
the check) every parameter, buffer, tensor attribute, RNG, training flag and Python attribute
of the model is as it was, bitwise."""
from __future__ import annotations

import random
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
