"""Capture is per thread: concurrent traces and checks are each correct, and eager calls in
other threads (of the very model being traced, too) are never touched.

NOTE [Thread-local patches] in fxtrace/capture/environment.py says how. This is the stress
test: tracing threads (default check on) run beside eager threads that call the same models
in a loop, and every result is compared with eager.
"""
from __future__ import annotations

import builtins
import math
import threading
import warnings
from typing import Callable, List, Tuple

import torch
from torch import nn

import fxtrace

# What the patches replace, read before any capture runs.
_RANGE, _LOG, _CALL_IMPL = builtins.range, math.log, nn.Module._call_impl


class Deep(nn.Module):
    def __init__(self, n: int = 60) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(8, 8) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.tanh(layer(x)) * 0.9
        return x.view(x.size(0), -1).sum(1)


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x)).relu()
        n = int(math.log(float(y.size(-1))) * 10)  # math on a live size: a patched function
        for _ in range(2):                         # range: a patched builtin
            y = y * 1.5
        return y.flatten(1) + n


def _models() -> List[Tuple[nn.Module, Callable[[int], torch.Tensor]]]:
    torch.manual_seed(0)
    return [(Deep().eval(), lambda b: torch.randn(b, 8)),
            (Small().eval(), lambda b: torch.randn(b, 3, 8, 8))]


def test_concurrent_traces_and_bystander_eager_calls() -> None:
    models = _models()
    errors: List[str] = []
    stop = threading.Event()

    def eager_loop(model: nn.Module, make: Callable[[int], torch.Tensor]) -> None:
        x = make(2)
        with torch.no_grad():
            want = model(x)
        while not stop.is_set():
            with torch.no_grad():
                got = model(x)
            if not torch.equal(got, want):
                errors.append(f"eager {type(model).__name__} changed while tracing")
            if not isinstance(range(3), range) or torch.jit.is_tracing():
                errors.append("a capture's patch acted in a bystander thread")

    def trace_loop(model: nn.Module, make: Callable[[int], torch.Tensor]) -> None:
        for i in range(3):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    traced = fxtrace.trace(model, make(2 + i))
                x = make(2 + i)
                with torch.no_grad():
                    torch.testing.assert_close(traced(x), model(x))
            except Exception as e:  # noqa: BLE001 - collected and reported below
                errors.append(f"trace of {type(model).__name__}: {type(e).__name__}: {e}")

    bystanders = [threading.Thread(target=eager_loop, args=m) for m in models]
    tracers = [threading.Thread(target=trace_loop, args=m) for m in models + models]
    for t in bystanders + tracers:
        t.start()
    for t in tracers:
        t.join(timeout=300)
    stop.set()
    for t in bystanders:
        t.join(timeout=60)
    assert errors == []
    # Nothing stays installed once the captures are over.
    assert builtins.range is _RANGE and math.log is _LOG and nn.Module._call_impl is _CALL_IMPL


def test_patches_are_removed_after_a_failing_capture() -> None:
    class Boom(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for _ in range(x.size(0)):
                x = x + 1
            raise KeyError("boom")

    try:
        fxtrace.trace(Boom(), torch.ones(2))
    except KeyError:
        pass
    assert builtins.range is _RANGE and math.log is _LOG and nn.Module._call_impl is _CALL_IMPL
    assert nn.Module.__dict__.get("__setattr__") is not None  # nn.Module's own, untouched
    assert "__setattr__" not in Boom.__dict__
