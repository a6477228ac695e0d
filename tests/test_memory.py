"""Memory while tracing: the capture holds the example's intermediates only as long as eager.

NOTE [Value lifetime] (fxtrace/capture/frames.py): the value map holds tensors weakly.
"""
from __future__ import annotations

import sys
import weakref
from pathlib import Path
from typing import List

import torch

import fxtrace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from memory import peak_rss_growth  # noqa: E402


def test_an_intermediate_dies_when_user_code_drops_it() -> None:
    alive: List[bool] = []

    def f(x: torch.Tensor) -> torch.Tensor:
        y = x * 2
        ref = weakref.ref(y)
        z = y + 1
        del y
        alive.append(ref() is not None)
        return z

    x = torch.randn(3)
    traced = fxtrace.trace(f, (x,), check_trace=False)
    assert alive == [False]
    torch.testing.assert_close(traced(x), x * 2 + 1)


class Inner(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x - 1)


_ALIVE: List[bool] = []  # (a module's own list would be put back after the trace)


class Outer(torch.nn.Module):
    """A submodule's result dropped by the caller is freed; one kept is still recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = Inner()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.inner(x)
        ref = weakref.ref(a)
        b = self.inner(a * 3)
        del a
        _ALIVE.extend([ref() is not None, b is not None])
        return b


def test_submodule_results_are_freed_and_kept_ones_recorded() -> None:
    m = Outer()
    x = torch.randn(4)
    _ALIVE.clear()
    traced = fxtrace.trace(m, (x,), check_trace=False)
    assert _ALIVE == [False, True]
    torch.testing.assert_close(traced(x), torch.relu(torch.relu(x - 1) * 3 - 1))


def test_id_reuse_after_death_is_not_confused_with_the_dead_tensor() -> None:
    """Many short-lived intermediates (ids get reused) still give a correct trace."""
    def f(x: torch.Tensor) -> torch.Tensor:
        for i in range(200):
            x = torch.sin(x) + i * 0.001
        return x

    x = torch.randn(5)
    traced = fxtrace.trace(f, (x,))
    y = torch.randn(5)
    torch.testing.assert_close(traced(y), f(y))


def _chain(x: torch.Tensor) -> torch.Tensor:
    for _ in range(50):
        x = x * 1.0001 + 0.1
    return x


def test_peak_memory_of_a_pointwise_chain_is_that_of_eager() -> None:
    """100 pointwise ops on 4 MB: eager frees each intermediate. Holding them (as before
    NOTE [Value lifetime]) grew the trace by ~380 MB; now it stays within a few tensors of
    eager's peak."""
    x = torch.randn(1000, 1000)
    warm = (torch.ones(2),)

    def setup() -> None:
        fxtrace.trace(lambda t: t + 1, warm, check_trace=False)

    eager = peak_rss_growth(lambda: _chain(x))
    traced = peak_rss_growth(lambda: fxtrace.trace(_chain, (x,), check_trace=False), setup)
    four_mb = x.numel() * x.element_size()
    assert eager < 10 * four_mb  # the measurement itself works: a few tensors
    assert traced < eager + 5 * four_mb, (eager, traced)


def test_peak_rss_growth_sees_tensor_storage() -> None:
    held = peak_rss_growth(lambda: torch.ones(64, 1024, 1024))  # 256 MiB
    assert 200 * 2**20 < held < 400 * 2**20
