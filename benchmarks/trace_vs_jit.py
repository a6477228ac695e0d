"""fxtrace.trace vs torch.jit.trace on the model zoo, side by side in one process.

For every zoo case (tests/zoo.py) and the synthetic ``chain_N`` functions (N times
``x = x * 1.0001 + 0.1``, i.e. 2N recorded ops) it measures, for both tracers:

* trace time with ``check_trace=False`` and with ``check_trace=True`` (median of R runs of a
  freshly built model, after one unmeasured warmup trace per tracer and case);
* traced-call latency: median of N calls of the result after a warmup;
* peak Python-heap memory of one ``check_trace=False`` trace, measured with ``tracemalloc``
  (skipped for graphs above BIG_GRAPH ops, and for the chains with ``--quick``)
  (allocations made through Python's allocator, which includes Python objects created by
  fx/TorchScript bindings but NOT tensor storage or C++ allocations of the JIT);
* per-op trace time: the ``check_trace=False`` time divided by the number of ops fxtrace
  records (call nodes of the captured fx graph tree), to show how cost grows with graph size.

Ratios are fxtrace / torch.jit (below 1: fxtrace is faster / smaller). The process's max RSS
growth (``resource.getrusage``) over the whole run is printed as a footnote only: it is a
high-water mark, so it cannot be attributed to one tracer when both run in one process.

``benchmarks/perf.py`` supersedes this script for issue 14 (first trace in a fresh process,
the 500/2000-Linear and decoder cases, the targets' summary); this one keeps the Python-heap
column.

Run from the repository root::

    python benchmarks/trace_vs_jit.py [--quick] [--cases mlp,lstm,chain_1000]
"""
from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import sys
import time
import tracemalloc
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.fx as fx
from tabulate import tabulate

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from zoo import CASES, ZooCase  # noqa: E402

import fxtrace  # noqa: E402

CHAIN_SIZES = (100, 1000, 4000)
BIG_GRAPH = 2500  # above this many ops: one trace repetition, no warmup trace, no tracemalloc


def make_chain(n: int) -> Callable[[torch.Tensor], torch.Tensor]:
    def chain(x: torch.Tensor) -> torch.Tensor:
        for _ in range(n):
            x = x * 1.0001 + 0.1
        return x
    chain.__name__ = f"chain_{n}"
    return chain


def all_cases() -> List[ZooCase]:
    chains = [ZooCase(f"chain_{n}", (lambda n=n: make_chain(n)),
                      lambda b: (torch.randn(b, 8, generator=torch.Generator().manual_seed(0)),))
              for n in CHAIN_SIZES]
    return list(CASES) + chains


def jit_trace(model: Any, example: Tuple[Any, ...], check_trace: bool) -> Any:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        return torch.jit.trace(model, example, check_trace=check_trace)


def fx_trace(model: Any, example: Tuple[Any, ...], check_trace: bool) -> Any:
    return fxtrace.trace(model, example, check_trace=check_trace)


TRACERS: Dict[str, Callable[[Any, Tuple[Any, ...], bool], Any]] = {
    "fxtrace": fx_trace, "jit": jit_trace}


def recorded_ops(model: Any, example: Tuple[Any, ...]) -> int:
    """Call nodes fxtrace records (whole module tree; call_module nodes excluded)."""
    gm = fxtrace.capture(model, example)
    return sum(1 for sub in gm.modules() if isinstance(sub, fx.GraphModule)
               for n in sub.graph.nodes if n.op in ("call_function", "call_method"))


def time_one_trace(tracer: Callable[..., Any], c: ZooCase, check: bool) -> Tuple[float, str]:
    """Seconds of one trace of a freshly built model (``nan`` and the error's type on failure)."""
    model, example = c.make(), c.example(c.batch)
    gc.collect()
    t0 = time.perf_counter()
    try:
        tracer(model, example, check)
    except Exception as e:  # noqa: BLE001 - a tracer's own failure is a result here
        return float("nan"), type(e).__name__
    return time.perf_counter() - t0, ""


def time_calls(traced: Dict[str, Any], example: Tuple[Any, ...], warmup: int, calls: int
               ) -> Dict[str, float]:
    """Median seconds of one call of each traced program, after ``warmup`` calls (lets the
    profiling executor settle). Calls alternate between the tracers in blocks of 10, so that
    load changes on a shared machine hit both alike."""
    times: Dict[str, List[float]] = {name: [] for name in traced}
    with torch.no_grad():
        for fn in traced.values():
            for _ in range(warmup):
                fn(*example)
        for block in range(0, calls, 10):
            for name, fn in traced.items():
                for _ in range(min(10, calls - block)):
                    t0 = time.perf_counter()
                    fn(*example)
                    times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def peak_python_heap(tracer: Callable[..., Any], c: ZooCase) -> Optional[int]:
    """tracemalloc peak (bytes) over one check_trace=False trace of a fresh model."""
    model, example = c.make(), c.example(c.batch)
    gc.collect()
    tracemalloc.start()
    try:
        tracer(model, example, False)
        return tracemalloc.get_traced_memory()[1]
    except Exception:  # noqa: BLE001
        return None
    finally:
        tracemalloc.stop()


def ratio(a: Optional[float], b: Optional[float]) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def ms(v: Optional[float], err: str = "") -> str:
    return err or ("-" if v is None else f"{v * 1e3:.1f}")


def us(v: Optional[float]) -> str:
    return "-" if v is None else f"{v * 1e6:.0f}"


def kib(v: Optional[int]) -> str:
    return "-" if v is None else f"{v / 1024:.0f}"


def bench_case(c: ZooCase, reps: int, warmup: int, calls: int, memory: bool) -> Dict[str, Any]:
    model, example = c.make(), c.example(c.batch)
    ops = recorded_ops(model, example)
    big = ops > BIG_GRAPH
    reps = 1 if big else reps
    row: Dict[str, Any] = {"case": c.name, "ops": ops}
    if not big:  # one unmeasured trace each: first-time TorchScript type compilation is not
        for tracer in TRACERS.values():  # per-trace cost, and would land in the first column
            time_one_trace(tracer, c, False)
    for column, check in (("trace", False), ("check", True)):
        samples: Dict[str, List[float]] = {name: [] for name in TRACERS}
        for _ in range(reps):  # interleaved: fx, jit, fx, jit, ...
            for name, tracer in TRACERS.items():
                seconds, err = time_one_trace(tracer, c, check)
                samples[name].append(seconds)
                row[name, column + "_err"] = err
        for name in TRACERS:
            row[name, column] = (None if row[name, column + "_err"]
                                 else statistics.median(samples[name]))
    traced = {}
    for name, tracer in TRACERS.items():
        try:
            traced[name] = tracer(c.make(), example, False)
        except Exception:  # noqa: BLE001
            pass
    latency = time_calls(traced, example, warmup, calls)
    for name, tracer in TRACERS.items():
        row[name, "call"] = latency.get(name)
        row[name, "mem"] = peak_python_heap(tracer, c) if memory and not big else None
    return row


def table(rows: List[Dict[str, Any]]) -> str:
    headers = ["case", "ops",
               "trace ms\nfx", "\njit", "\nratio",
               "trace+check ms\nfx", "\njit", "\nratio",
               "call µs\nfx", "\njit", "\nratio",
               "py peak KiB\nfx", "\njit", "\nratio",
               "µs/op\nfx", "\njit"]
    body = []
    for r in rows:
        f, j = "fxtrace", "jit"
        body.append([
            r["case"], r["ops"],
            ms(r[f, "trace"], r[f, "trace_err"]), ms(r[j, "trace"], r[j, "trace_err"]),
            ratio(r[f, "trace"], r[j, "trace"]),
            ms(r[f, "check"], r[f, "check_err"]), ms(r[j, "check"], r[j, "check_err"]),
            ratio(r[f, "check"], r[j, "check"]),
            us(r[f, "call"]), us(r[j, "call"]), ratio(r[f, "call"], r[j, "call"]),
            kib(r[f, "mem"]), kib(r[j, "mem"]), ratio(r[f, "mem"], r[j, "mem"]),
            us(r[f, "trace"] / r["ops"]) if r[f, "trace"] and r["ops"] else "-",
            us(r[j, "trace"] / r["ops"]) if r[j, "trace"] and r["ops"] else "-",
        ])
    return tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="fewer repetitions (1 trace, 20 calls), no tracemalloc for chains")
    parser.add_argument("--cases", default="",
                        help="comma-separated case names (zoo names and chain_100/1000/4000)")
    args = parser.parse_args(argv)
    reps, warmup, calls = (1, 5, 20) if args.quick else (3, 10, 100)
    cases = all_cases()
    if args.cases:
        wanted = [s.strip() for s in args.cases.split(",") if s.strip()]
        known = {c.name: c for c in cases}
        unknown = [w for w in wanted if w not in known]
        if unknown:
            parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(known)}")
        cases = [known[w] for w in wanted]

    torch.set_num_threads(1)  # stable timings on a small machine; same for both tracers
    # warm both tracers up (first TorchScript compile, imports) outside every measurement
    for tracer in TRACERS.values():
        tracer(lambda x: x + 1, (torch.ones(2),), True)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    rows = []
    for c in cases:
        t0 = time.perf_counter()
        memory = not (args.quick and c.name.startswith("chain_"))
        rows.append(bench_case(c, reps, warmup, calls, memory))
        print(f"  {c.name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"torch {torch.__version__}, fxtrace {fxtrace.__version__}, threads=1, "
          f"{'quick' if args.quick else 'full'}: {reps} trace run(s) (1 above {BIG_GRAPH} ops), "
          f"call latency = median of {calls} after {warmup} warmup")
    print(table(rows))
    chains = [r for r in rows if r["case"].startswith("chain_") and r["fxtrace", "trace"]]
    if len(chains) > 1:
        print("\nper-op trace time (check_trace=False) by graph size: " + ", ".join(
            f"{r['ops']} ops: fx {us(r['fxtrace', 'trace'] / r['ops'])} µs/op, "
            f"jit {us(r['jit', 'trace'] / r['ops']) if r['jit', 'trace'] else '-'} µs/op"
            for r in chains))
    print(f"process max RSS grew by {(rss1 - rss0) / 1024:.0f} MiB over the run "
          f"(high-water mark, both tracers together); total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
