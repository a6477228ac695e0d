"""The stateful mode of ``fxtrace.check``: call sequences with ``.train()``/``.eval()`` switches
(NOTE [Call sequences]), on by default for a model whose call changes its state."""
from __future__ import annotations

from typing import List

import pytest
import torch
from check_helpers import fx_trace, jit_trace

import fxtrace
from fxtrace.checking.sequences import changes_state, check_calls

pytestmark = [pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")]


_jit = jit_trace
_fx = fx_trace


class Counter(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x * self.calls


class Cache(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.seen: List[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x.detach())
        return torch.stack(self.seen).mean(0)


class Drop(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin, self.drop = torch.nn.Linear(4, 4), torch.nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.lin(x))


class Norm(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin, self.bn = torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4)

    def forward(self, x):
        return self.bn(self.lin(x))


def test_changes_state_sees_counters_caches_and_running_statistics():
    x = torch.randn(3, 4)
    counter, cache, norm = Counter(), Cache(), Norm()
    assert changes_state(counter, ((x,), {})) and counter.calls == 0
    assert changes_state(cache, ((x,), {})) and cache.seen == []
    before = norm.bn.running_mean.clone()
    assert changes_state(norm.train(), ((x,), {}))
    assert torch.equal(norm.bn.running_mean, before) and int(norm.bn.num_batches_tracked) == 0
    assert not changes_state(norm.eval(), ((x,), {}))
    assert not changes_state(Drop().train(), ((x,), {}))  # random, but no state
    assert not changes_state(lambda t: t * 2, ((x,), {}))


def test_a_frozen_counter_fails_the_default_check_with_the_shrunk_sequence():
    x = torch.randn(3)
    model = Counter()
    traced = _jit(Counter(), x)
    with pytest.raises(fxtrace.PropertyCheckError) as caught:
        fxtrace.check(traced, model, example_inputs=(x,), seed=0)
    error = caught.value
    assert error.report.title.startswith("fxtrace.check_calls FAILED: call 2 of the sequence")
    steps = [n for n in error.report.notes if n.startswith("call ")]
    assert len(steps) == 2  # shrunk: the first call that can differ is the second
    assert model.calls == 0


def test_a_mode_switch_the_trace_ignores_is_found():
    """torch.jit's trace of an eval-mode model keeps eval's dropout (none) after .train()."""
    x = torch.randn(3, 4)
    model = Drop().eval()
    traced = _jit(Drop().eval(), x)
    assert fxtrace.check(traced, model, example_inputs=(x,), seed=0).ok  # no state: no calls
    with pytest.raises(fxtrace.PropertyCheckError) as caught:
        fxtrace.check(traced, model, example_inputs=(x,), seed=0, calls=True)
    notes = caught.value.report.notes
    assert ".train()" in notes and not model.training and not traced.training


def test_batchnorm_statistics_after_train_are_compared():
    x = torch.randn(3, 4)
    model = Norm().eval()
    traced = _jit(Norm().eval(), x)
    with pytest.raises(fxtrace.PropertyCheckError) as caught:
        check_calls(traced, model, example_inputs=(x,), seed=0)
    assert ".train()" in str(caught.value)
    assert torch.equal(model.bn.running_mean, torch.zeros(4))


def test_a_guarded_trace_refuses_the_other_mode_and_passes():
    x = torch.randn(3, 4)
    model = Norm().train()
    traced = _fx(Norm().train(), x)
    traced.load_state_dict(model.state_dict())
    report = fxtrace.check(traced, model, example_inputs=(x,), seed=0, max_examples=20)
    note = next(n for n in report.notes if n.startswith("call sequences: "))
    agreed = int(note.split()[4])
    switches = int(note.split(".train()")[0].split()[-1])
    assert agreed > 0 and switches > 0
    assert model.training and int(model.bn.num_batches_tracked) == 0


def test_calls_false_keeps_the_per_input_check():
    x = torch.randn(3)
    report = fxtrace.check(_jit(Counter(), x), Counter(), example_inputs=(x,), seed=0,
                           calls=False)
    assert report.ok and not any(n.startswith("call sequences") for n in report.notes)


class _BumpsInPlace(torch.nn.Module):
    """A counter written in place, which the trace shares with the model (as torch.jit's)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("n", torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.n.add_(1)
        return x + self.n


class _RebindsCounter(_BumpsInPlace):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.n = self.n + 1  # torch.jit.trace drops the rebinding: its n never moves
        return x + self.n


def test_a_buffer_the_trace_shares_is_carried_per_side() -> None:
    # each side keeps its own values of the shared buffer: no false alarm on a right trace
    model = _BumpsInPlace()
    x = torch.zeros(2)
    traced = fx_trace(model, x)
    assert traced.n.data_ptr() == model.n.data_ptr()  # shared
    report = check_calls(traced, model, example_inputs=(x,), max_examples=10, seed=0)
    assert report.counts["calls"] >= 2
    assert fxtrace.check(traced, model, example_inputs=(x,), max_examples=8, seed=0)
    assert model.n.item() == 0.0


def test_a_shared_buffer_the_trace_drops_is_found() -> None:
    model = _RebindsCounter()
    x = torch.zeros(2)
    traced = jit_trace(model, x)  # torch.jit's own trace ran forward once: n is 1 now
    before = model.n
    with pytest.raises(fxtrace.PropertyCheckError, match="differs from eager"):
        check_calls(traced, model, example_inputs=(x,), max_examples=20, seed=0)
    assert model.n is before and model.n.item() == 1.0  # the check changed nothing
