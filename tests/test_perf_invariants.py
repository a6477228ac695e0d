"""What the speed work (issue 14) must not change: a trace stays an observation of the
garbage collector's state, and the cached schema binding answers as the uncached one."""
from __future__ import annotations

import gc
import threading
from typing import List

import pytest
import torch

import fxtrace
from fxtrace.capture.gcpause import paused_gc
from fxtrace.lower import schema


def _seen_gc(seen: List[bool]):
    def f(x: torch.Tensor) -> torch.Tensor:
        seen.append(gc.isenabled())
        return x * 2 + 1
    return f


@pytest.mark.parametrize("enabled", [True, False])
def test_trace_leaves_the_collector_as_it_found_it(enabled: bool) -> None:
    seen: List[bool] = []
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        traced = fxtrace.trace(_seen_gc(seen), (torch.ones(3),))
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()
    assert seen[0] is False  # paused while the capture ran the function
    assert torch.equal(traced(torch.ones(3)), torch.full((3,), 3.0))


def test_a_failing_trace_resumes_the_collector() -> None:
    def bad(x: torch.Tensor) -> torch.Tensor:
        raise ValueError("boom")
    assert gc.isenabled()
    with pytest.raises(ValueError):
        fxtrace.trace(bad, (torch.ones(2),))
    assert gc.isenabled()


def test_nested_and_concurrent_pauses_restore_once_the_last_one_ends() -> None:
    assert gc.isenabled()
    inside = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with paused_gc():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    assert inside.wait(10)
    with paused_gc():
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert not gc.isenabled()  # the other thread's pause is still open
    release.set()
    thread.join(10)
    assert gc.isenabled()


def test_threads_tracing_at_once_leave_the_collector_enabled() -> None:
    errors: List[BaseException] = []

    def work() -> None:
        try:
            for _ in range(3):
                fxtrace.trace(lambda x: torch.relu(x) + 1, (torch.randn(4),), check_trace=False)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert gc.isenabled()


@pytest.mark.parametrize("args, kwargs", [
    ((torch.ones(2), 2.0), {}),
    ((torch.ones(2), 2), {}),
    ((torch.ones(2), torch.ones(2)), {}),
    ((torch.ones(2), torch.ones(2)), {"alpha": 2}),
    ((torch.ones(2), "x"), {}),
    ((torch.ones(2),), {"other": 1.0}),
])
def test_cached_binding_answers_as_binding_every_schema(args, kwargs) -> None:
    def uncached() -> bool:
        return any(schema._bind(s, args, kwargs, convert=False) is not None
                   for s in schema._schemas("aten::add"))
    first = schema.binds_as_recorded("aten::add", args, kwargs)
    second = schema.binds_as_recorded("aten::add", args, kwargs)  # from the cache
    assert first == second == uncached()
