"""Peak resident memory (RSS) a callable adds to the process: ``peak_rss_growth(fn)``.

``tracemalloc`` sees Python's allocator only; tensor storage is allocated by ATen outside it,
so memory is measured here as the kernel sees it: the process's RSS high-water mark
(``VmHWM`` in ``/proc/self/status``), reset just before ``fn`` runs by writing ``5`` to
``/proc/self/clear_refs`` (Linux >= 4.0).

Each measurement runs in a forked child, so that one measurement's leftovers (allocator caches,
modules imported, compiled TorchScript) never lower the next one's figure, and the caller's
process is left as it was. In the child:

* ``torch.set_num_threads(1)`` first: GNU OpenMP's thread pool does not survive ``fork`` (a
  forked child that runs a parallel kernel after its parent did deadlocks);
* glibc's ``malloc`` is told to serve every block above 128 KiB with its own ``mmap``
  (``mallopt(M_MMAP_THRESHOLD)``, which also turns off glibc's sliding threshold), so that a
  freed tensor returns its pages to the kernel at once, as it would in a process whose
  threshold had not slid: RSS then follows the bytes held alive, not the allocator's history.
  The same setting applies to everything measured (eager forward and both tracers) alike;
* ``setup()`` (if given) runs before the reset: imports, building the model, a warmup call of
  something else; its allocations are part of the baseline, not of the growth.

The growth is ``VmHWM after fn - VmRSS before fn`` in bytes: the most memory ``fn`` held at
once above what the process already held.

    from benchmarks.memory import peak_rss_growth
    peak_rss_growth(lambda: model(x))
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import pickle
import re
from typing import Any, Callable, Dict, Optional

__all__ = ["peak_rss_growth", "rss_kib", "measure_case", "MMAP_THRESHOLD"]

#: blocks at least this large get their own mmap in the measuring child (glibc)
MMAP_THRESHOLD = 128 * 1024
_M_MMAP_THRESHOLD = -3  # from glibc's malloc.h
_M_TRIM_THRESHOLD = -1


def rss_kib() -> Dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of this process, in KiB."""
    with open("/proc/self/status") as f:
        status = f.read()
    return {key: int(m.group(1)) for key in ("VmRSS", "VmHWM")
            if (m := re.search(rf"^{key}:\s+(\d+) kB", status, re.M)) is not None}


def _fix_malloc() -> None:
    """Fixed mmap threshold (see the module docstring); silently nothing off glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, MMAP_THRESHOLD)
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_high_water() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _measure(fn: Callable[[], Any], setup: Optional[Callable[[], Any]]) -> int:
    import torch  # the child's own thread setting (see the module docstring)

    torch.set_num_threads(1)
    _fix_malloc()
    if setup is not None:
        setup()
    gc.collect()
    _fix_malloc()  # return what setup freed before taking the baseline
    _reset_high_water()
    before = rss_kib()["VmRSS"]
    fn()
    return (rss_kib()["VmHWM"] - before) * 1024


def peak_rss_growth(fn: Callable[[], Any], setup: Optional[Callable[[], Any]] = None) -> int:
    """Bytes of peak RSS growth while ``fn()`` runs, measured in a forked child.

    ``fn``'s result is dropped in the child; an exception in ``fn`` or ``setup`` is raised
    again here as ``RuntimeError`` naming it. Linux only (``fork``, ``/proc``)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: measure, report, leave without running the parent's atexit hooks
        os.close(read_end)
        result: Any
        try:
            result = ("ok", _measure(fn, setup))
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            result = ("error", f"{type(e).__name__}: {e}")
        with os.fdopen(write_end, "wb") as out:
            pickle.dump(result, out)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as inp:
        data = inp.read()
    os.waitpid(pid, 0)
    if not data:
        raise RuntimeError("the measuring child died without a result")
    status, value = pickle.loads(data)
    if status != "ok":
        raise RuntimeError(f"peak_rss_growth: {value}")
    return int(value)


# ------------------------------------------------------------------------ the memory table

def _chain(x: Any) -> Any:
    """100 pointwise ops (50 times ``x * 1.0001 + 0.1``): eager frees each intermediate."""
    for _ in range(50):
        x = x * 1.0001 + 0.1
    return x


def _cases() -> Dict[str, Any]:
    """name -> (make model, make example, grad enabled) for the table."""
    import sys
    from pathlib import Path

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from zoo import CASES  # noqa: E402 - tests/ holds the zoo

    def big_transformer() -> Any:
        torch.manual_seed(0)
        layer = torch.nn.TransformerEncoderLayer(d_model=512, nhead=8, dim_feedforward=2048,
                                                 batch_first=True)
        return torch.nn.TransformerEncoder(layer, num_layers=6, enable_nested_tensor=False).eval()

    cases: Dict[str, Any] = {
        "pointwise_100_1000x1000": (lambda: _chain, lambda: (torch.randn(1000, 1000),), True),
        "transformer_6x512_no_grad": (big_transformer, lambda: (torch.randn(4, 128, 512),),
                                      False),
    }
    for c in CASES:
        cases[c.name] = (c.make, (lambda c=c: c.example(c.batch)), True)
    return cases


def _tracer(name: str) -> Callable[[Any, Any], Any]:
    import warnings

    import torch

    import fxtrace

    def jit(model: Any, example: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.trace(model, example, check_trace=False)

    def fx(model: Any, example: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fxtrace.trace(model, example, check_trace=False)

    def eager(model: Any, example: Any) -> Any:
        return model(*example)
    return {"eager": eager, "fxtrace": fx, "jit": jit}[name]


def measure_case(make: Callable[[], Any], example: Callable[[], Any], grad: bool,
                 how: str) -> int:
    """Peak RSS growth of one eager forward (``how="eager"``) or one ``check_trace=False``
    trace of a model built (and run once eagerly, and the tracer warmed on a tiny function)
    in ``setup``, so that building, lazy initialisation and imports are the baseline."""
    import torch

    state: Dict[str, Any] = {}
    run = _tracer(how)

    def setup() -> None:
        state["model"], state["example"] = make(), example()
        with torch.set_grad_enabled(grad):
            state["model"](*state["example"])
            if how != "eager":
                run(lambda t: t + 1, (torch.ones(2),))

    def fn() -> None:
        with torch.set_grad_enabled(grad):
            run(state["model"], state["example"])
    return peak_rss_growth(fn, setup)


def main(argv: Optional[list] = None) -> None:
    """Print peak RSS growth (MiB) of an eager forward, fxtrace.trace and torch.jit.trace."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--cases", default="", help="comma-separated names (default: all)")
    args = parser.parse_args(argv)
    cases = _cases()
    names = [n for n in args.cases.split(",") if n] or list(cases)
    mib = 1024 * 1024
    print("| case | eager MiB | fxtrace MiB | torch.jit MiB | fxtrace - eager MiB "
          "| fxtrace / jit |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in names:
        make, example, grad = cases[name]
        got = {how: measure_case(make, example, grad, how) for how in ("eager", "fxtrace", "jit")}
        ratio = f"{got['fxtrace'] / got['jit']:.2f}" if got["jit"] > 0 else "-"
        print(f"| {name} | {got['eager'] / mib:.1f} | {got['fxtrace'] / mib:.1f} "
              f"| {got['jit'] / mib:.1f} | {(got['fxtrace'] - got['eager']) / mib:+.1f} "
              f"| {ratio} |", flush=True)


if __name__ == "__main__":
    main()
