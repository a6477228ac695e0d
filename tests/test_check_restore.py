"""The check's cheap restores (NOTE [Trusted counters] in ``fxtrace.state``): buffers copied
back by version counter only where the model's classes cannot write past one, and every run
started from one saved RNG state (torch's generators only before fxtrace's own trace)."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn as nn

import fxtrace
from fxtrace.state import RngStates, StateSnapshot, preserved_state


class Counts(nn.Module):
    """Adds a counter it bumps in place (the version counter moves)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("n", torch.zeros(1))
        self.register_buffer("other", torch.ones(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.n.add_(1)
        return x + self.n


class CountsThroughData(Counts):
    """The same counter bumped through ``.data``: no version counter moves."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.n.data.add_(1)
        return x + self.n


def _snapshot(model: nn.Module, trusted: bool) -> StateSnapshot:
    snap = StateSnapshot([model], parameters=True)
    snap.trust_versions = trusted
    return snap


@pytest.mark.parametrize("trusted", [False, True])
def test_restore_puts_back_counted_writes(trusted: bool) -> None:
    model = Counts()
    snap = _snapshot(model, trusted)
    for _ in range(3):
        with preserved_state([model], always=True, snapshot=snap):
            out = model(torch.zeros(2))
        assert out.tolist() == [1.0, 1.0]  # every run starts from n = 0
    assert model.n.item() == 0.0 and model.other.tolist() == [1.0, 1.0, 1.0]


def test_untrusted_restore_puts_back_writes_past_the_counter() -> None:
    model = CountsThroughData()
    snap = _snapshot(model, False)
    with preserved_state([model], always=True, snapshot=snap):
        model(torch.zeros(2))
    assert model.n.item() == 0.0


def test_trusted_restore_copies_only_moved_buffers() -> None:
    # the contract the check relies on: with trusted counters, a write that moves no counter
    # is not copied back by a restore (so the check must not trust such a model)
    model = CountsThroughData()
    snap = _snapshot(model, True)
    with preserved_state([model], always=True, snapshot=snap):
        model(torch.zeros(2))
    assert model.n.item() == 1.0


@pytest.mark.parametrize("cls", [Counts, CountsThroughData])
def test_check_restores_every_run(cls: type) -> None:
    # CountsThroughData's class writes past a counter: the check does not trust the counters,
    # and every eager run still starts from n = 0 (a trusted restore would let n grow and
    # raise a false alarm on the second input)
    model = cls()
    x = torch.zeros(2)
    traced = fxtrace.trace(model, x, check_trace=False)
    model.n.zero_()
    report = fxtrace.check(traced, model, max_examples=8, seed=0)
    assert report.counts["agreed"] >= 8
    assert model.n.item() == 0.0


def _draws() -> tuple:
    return (torch.rand(2).tolist(), random.random(), float(np.random.rand()))


def test_runs_start_from_the_snapshot_rng() -> None:
    model = Counts()
    snap = StateSnapshot([model])
    torch.manual_seed(1)
    random.seed(1)
    np.random.seed(1)
    snap.rng = saved = RngStates()
    seen = []
    for _ in range(2):
        with preserved_state([model], always=True, snapshot=snap):
            seen.append(_draws())
    assert seen[0] == seen[1]  # each body started from the same states
    with preserved_state([model], always=True, snapshot=snap, script_body=True):
        torch_draw = torch.rand(2).tolist()
        python_draw = random.random()
    assert torch_draw == seen[0][0]  # torch's generator set back
    assert python_draw != seen[0][1]  # Python's left where the last body left it
    saved.restore()
    assert _draws() == seen[0]


def test_check_leaves_rng_bitwise() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5)).train()
    x = torch.randn(2, 3)
    traced = fxtrace.trace(model, x, check_trace=False)
    cpu, py, npy = torch.random.get_rng_state(), random.getstate(), np.random.get_state()
    try:
        fxtrace.check(traced, model, max_examples=6, seed=0)
    except fxtrace.PropertyCheckError:
        pass  # whatever the verdict, the generators are put back bitwise
    assert torch.equal(torch.random.get_rng_state(), cpu)
    assert random.getstate() == py
    after = np.random.get_state()
    assert after[0] == npy[0] and np.array_equal(after[1], npy[1]) and after[2:] == npy[2:]

