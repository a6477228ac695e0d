"""One command for issue 14: fxtrace.trace vs torch.jit.trace, every ratio, every case.

Cases: the zoo (tests/zoo.py), ``linear_500`` / ``linear_2000`` (an ``nn.Sequential`` of N
``Linear(32, 32)``), the pointwise chains ``chain_100`` / ``chain_1000`` / ``chain_4000``
(N times ``x = x * 1.0001 + 0.1``: 200, 2,000 and 8,000 recorded ops) and ``decoder``, the
LLM-shaped model of ``benchmarks/decoder.py`` (16 layers, hidden 512, sequence 128).

Columns, both tracers side by side in one process, one intra-op thread, runs interleaved
(fx, jit, fx, jit, ...), ratio = fxtrace / torch.jit (below 1: fxtrace faster or smaller):

* ``trace``: ``trace(model, example, check_trace=False)`` of a freshly built model, median of
  R runs after one unmeasured warmup trace per tracer;
* ``check``: the same with the default ``check_trace=True``;
* ``call``: median latency of one call of the traced result (``no_grad``), calls alternating
  between the two results in blocks of 10 after a warmup;
* ``fresh``: a fresh Python process importing what it traces with (torch; torch and
  fxtrace) and tracing once with ``check_trace=False``: the import and the first trace
  together, wall clock, building the model and its example excluded (the same for both),
  median of F processes;
* ``µs/op``: ``trace`` / the number of ops fxtrace records (call nodes of the whole captured
  graph tree), to show whether the per-op cost stays flat as graphs grow;
* ``peak MB``: peak RSS growth of one ``check_trace=False`` trace, from
  ``benchmarks/memory.py``'s ``peak_rss_growth(fn) -> bytes`` (owned by the memory work of
  issue 14; the column shows ``-`` while that module does not exist).

    python benchmarks/perf.py [--quick] [--cases mlp,decoder] [--clock cpu] [--no-fresh]

``--clock cpu`` times with ``time.process_time`` instead of the wall clock: on a machine
shared with other jobs it is the steadier measure of work done (one thread: CPU time is the
time the tracer would take alone); ``fresh`` is always wall-clock inside the child.
"""
from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [os.path.join(ROOT, "tests"), ROOT, HERE]

import decoder  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from zoo import CASES, ZooCase  # noqa: E402

try:  # the memory column's owner: issue 14's memory work
    from memory import peak_rss_growth  # type: ignore[import-not-found]
except ImportError:
    peak_rss_growth = None

CHAINS = (100, 1000, 4000)
LINEARS = (500, 2000)
BIG_GRAPH = 2500  # above this many ops (or a slow forward): one trace run, no warmup trace


def make_chain(n: int) -> Callable[[torch.Tensor], torch.Tensor]:
    def chain(x: torch.Tensor) -> torch.Tensor:
        for _ in range(n):
            x = x * 1.0001 + 0.1
        return x
    chain.__name__ = f"chain_{n}"
    return chain


def make_linears(n: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(*[nn.Linear(32, 32) for _ in range(n)]).eval()


def _seeded(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


def all_cases() -> List[ZooCase]:
    extra = [ZooCase(f"linear_{n}", (lambda n=n: make_linears(n)), lambda b: (_seeded(b, 32),))
             for n in LINEARS]
    extra += [ZooCase(f"chain_{n}", (lambda n=n: make_chain(n)), lambda b: (_seeded(b, 8),))
              for n in CHAINS]
    extra.append(ZooCase("decoder", decoder.build, lambda b: decoder.example(batch=b), batch=1))
    return list(CASES) + extra


BY_NAME = {c.name: c for c in all_cases()}


def fx_trace(model: Any, example: Tuple[Any, ...], check: bool) -> Any:
    import fxtrace
    return fxtrace.trace(model, example, check_trace=check)


def jit_trace(model: Any, example: Tuple[Any, ...], check: bool) -> Any:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        return torch.jit.trace(model, example, check_trace=check)


TRACERS: Dict[str, Callable[[Any, Tuple[Any, ...], bool], Any]] = {
    "fx": fx_trace, "jit": jit_trace}
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def recorded_ops(model: Any, example: Tuple[Any, ...]) -> int:
    """Call nodes fxtrace records (whole module tree; call_module nodes excluded)."""
    import torch.fx as fx

    import fxtrace
    gm = fxtrace.capture(model, example)
    return sum(1 for sub in gm.modules() if isinstance(sub, fx.GraphModule)
               for n in sub.graph.nodes if n.op in ("call_function", "call_method"))


def time_trace(tracer: str, c: ZooCase, check: bool, clock: Callable[[], float]
               ) -> Optional[float]:
    """Seconds of one trace of a freshly built model (None when the tracer raises)."""
    model, example = c.make(), c.example(c.batch)
    gc.collect()
    start = clock()
    try:
        TRACERS[tracer](model, example, check)
    except Exception:  # noqa: BLE001 - torch.jit's TracingCheckError is a result here
        return None
    return clock() - start


def time_calls(traced: Dict[str, Any], example: Tuple[Any, ...], calls: int,
               clock: Callable[[], float]) -> Dict[str, float]:
    """Median seconds of one call of each result, calls alternating in blocks of 10."""
    times: Dict[str, List[float]] = {name: [] for name in traced}
    with torch.no_grad():
        for fn in traced.values():
            for _ in range(min(10, calls)):
                fn(*example)
        for block in range(0, calls, 10):
            for name, fn in traced.items():
                for _ in range(min(10, calls - block)):
                    start = clock()
                    fn(*example)
                    times[name].append(clock() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def fresh_trace(tracer: str, case: str, timeout: float = 600.0) -> Optional[float]:
    """Wall seconds of the first trace in a new interpreter, ``import fxtrace`` included."""
    code = ("import time; start = time.perf_counter(); import sys; "
            f"sys.path.insert(0, {HERE!r}); import perf; perf._child({tracer!r}, {case!r}, start)")
    cmd = [sys.executable, "-c", code]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                             check=True).stdout
        return float(json.loads(out.strip().splitlines()[-1])["seconds"])
    except (subprocess.SubprocessError, ValueError, KeyError, IndexError):
        return None


def _child(tracer: str, case: str, start: float) -> None:
    """The child side of :func:`fresh_trace`; ``start`` was taken before ``import torch``."""
    torch.set_num_threads(1)
    c = BY_NAME[case]
    built = time.perf_counter()
    model, example = c.make(), c.example(c.batch)
    building = time.perf_counter() - built
    if tracer == "fx":
        import fxtrace
        fxtrace.trace(model, example, check_trace=False)
    else:
        jit_trace(model, example, False)
    print(json.dumps({"seconds": time.perf_counter() - start - building}))


def bench_case(c: ZooCase, reps: int, calls: int, fresh: int, clock: Callable[[], float]
               ) -> Dict[Any, Any]:
    model, example = c.make(), c.example(c.batch)
    t0 = time.perf_counter()
    ops = recorded_ops(model, example)
    big = ops > BIG_GRAPH or time.perf_counter() - t0 > 2.0
    reps = 1 if big else reps
    row: Dict[Any, Any] = {"case": c.name, "ops": ops}
    if not big:  # first-time TorchScript type compilation is not per-trace cost
        for name in TRACERS:
            time_trace(name, c, False, clock)
    for column, check in (("trace", False), ("check", True)):
        samples: Dict[str, List[Optional[float]]] = {name: [] for name in TRACERS}
        for _ in range(reps):
            for name in TRACERS:
                samples[name].append(time_trace(name, c, check, clock))
        for name, s in samples.items():
            row[name, column] = None if None in s else statistics.median(s)  # type: ignore
    traced = {name: TRACERS[name](c.make(), example, False) for name in TRACERS}
    start = time.perf_counter()
    with torch.no_grad():
        model(*example)
    forward = time.perf_counter() - start
    n_calls = max(5, min(calls, int(2.0 / max(forward, 1e-6))))  # ~2 s per tracer at most
    latency = time_calls(traced, example, n_calls, clock)
    for name in TRACERS:
        row[name, "call"] = latency[name]
        row[name, "fresh"] = (statistics.median(
            [v for v in (fresh_trace(name, c.name) for _ in range(fresh)) if v is not None]
            or [float("nan")]) if fresh else None)
        row[name, "mem"] = None
        if peak_rss_growth is not None:
            row[name, "mem"] = peak_rss_growth(functools.partial(
                TRACERS[name], c.make(), c.example(c.batch), False))
    return row


def _ratio(a: Optional[float], b: Optional[float]) -> str:
    return f"{a / b:.2f}" if a is not None and b and a == a and b == b else "-"


def _ms(v: Optional[float]) -> str:
    return "-" if v is None or v != v else (f"{v * 1e3:.1f}" if v < 10 else f"{v * 1e3:.0f}")


def _us(v: Optional[float]) -> str:
    return "-" if v is None else f"{v * 1e6:.0f}"


def _mb(v: Optional[float]) -> str:
    return "-" if v is None else f"{v / 2**20:.0f}"


COLUMNS = (("trace", "trace ms", _ms), ("check", "trace+check ms", _ms),
           ("call", "call µs", _us), ("fresh", "fresh ms", _ms), ("mem", "peak MB", _mb))


def table(rows: List[Dict[Any, Any]]) -> str:
    from tabulate import tabulate
    headers = ["case", "ops"]
    for _, title, _ in COLUMNS:
        headers += [f"{title}\nfx", "\njit", "\nratio"]
    headers += ["µs/op\nfx", "\njit"]
    body = []
    for r in rows:
        line = [r["case"], r["ops"]]
        for key, _, fmt in COLUMNS:
            line += [fmt(r["fx", key]), fmt(r["jit", key]), _ratio(r["fx", key], r["jit", key])]
        line += [_us(r[t, "trace"] / r["ops"]) if r[t, "trace"] and r["ops"] else "-"
                 for t in TRACERS]
        body.append(line)
    return tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)


def summary(rows: List[Dict[Any, Any]]) -> List[str]:
    """Issue 14's targets, each with the worst case of the run."""
    out = []
    for key, target, what in (("trace", 1.2, "trace, check off"), ("check", 0.6, "trace + check"),
                              ("call", 1.0, "call latency"), ("fresh", 1.3, "fresh process")):
        ratios = [(r["fx", key] / r["jit", key], r["case"]) for r in rows
                  if r["fx", key] and r["jit", key] and r["fx", key] == r["fx", key]]
        if not ratios:
            continue
        worst, case = max(ratios)
        met = sum(1 for v, _ in ratios if v <= target)
        out.append(f"{what}: target <= {target}: met on {met}/{len(ratios)} cases; "
                   f"worst {worst:.2f} ({case}); median {statistics.median(v for v, _ in ratios):.2f}")
    chains = [r for r in rows if r["case"].startswith("chain_") and r["fx", "trace"]]
    if len(chains) > 1:
        per_op = [(r["ops"], r["fx", "trace"] / r["ops"], (r["jit", "trace"] or 0) / r["ops"])
                  for r in chains]
        lo = per_op[0][1]
        out.append("per-op trace cost by graph size: " + ", ".join(
            f"{n} ops: fx {f * 1e6:.0f} µs ({f / lo:.2f}x), jit {j * 1e6:.0f} µs"
            for n, f, j in per_op) + " (target: fx within ±20% of the smallest)")
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="1 trace run, 20 calls, 1 fresh process per tracer and case")
    parser.add_argument("--cases", default="", help=f"comma list of {', '.join(BY_NAME)}")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    parser.add_argument("--no-fresh", action="store_true", help="skip the fresh-process column")
    args = parser.parse_args(argv)
    reps, calls, fresh = (1, 20, 1) if args.quick else (3, 100, 2)
    fresh = 0 if args.no_fresh else fresh
    names = [s.strip() for s in args.cases.split(",") if s.strip()] or list(BY_NAME)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    torch.set_num_threads(1)
    for tracer in TRACERS.values():  # imports and first TorchScript compile, unmeasured
        tracer(lambda x: x + 1, (torch.ones(2),), True)
    clock, rows, start = CLOCKS[args.clock], [], time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        rows.append(bench_case(BY_NAME[name], reps, calls, fresh, clock))
        r = rows[-1]  # progress, and the numbers so far should the run be cut short
        print(f"  {name}: {time.perf_counter() - t0:.1f} s; " + ", ".join(
            f"{key} {_ms(r['fx', key])}/{_ms(r['jit', key])} ms"
            for key in ("trace", "check", "fresh")), file=sys.stderr, flush=True)
    print(f"torch {torch.__version__}, threads=1, clock={args.clock}, "
          f"{'quick' if args.quick else 'full'}: median of {reps} trace run(s) (1 above "
          f"{BIG_GRAPH} ops or for a slow forward), latency median of <= {calls} calls, "
          f"fresh median of {fresh} process(es); total {time.perf_counter() - start:.0f} s")
    print(table(rows))
    print()
    print("\n".join(summary(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
