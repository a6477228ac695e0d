"""fxtrace.trace vs torch.jit.trace on the vision models (tests/models/vision.py), side by side.

For every model (and mode, default ``eval_no_grad``) and both tracers:

* ``trace ms``  — ``trace(model, example, check_trace=False)`` of a freshly built model, median
  of R runs after one unmeasured warmup trace;
* ``check ms``  — ``trace(..., check_trace=True)`` minus ``trace ms`` (medians): the cost of
  the default check (fxtrace re-runs and compares; torch.jit re-traces, diffs graphs, re-runs).
  ``TracingCheckError`` when torch.jit's check raises;
* ``call µs``   — median latency of one call of the result in the mode's grad context, calls
  alternating between the two tracers' results in blocks, after a warmup;
* ``peak KiB``  — ``tracemalloc`` peak over one ``check_trace=False`` trace: Python-heap only
  (fxtrace records in Python, torch.jit in C++: this is fxtrace's Python-side overhead, not
  total memory; see benchmarks/README.md).

Ratios are fxtrace / torch.jit (below 1: fxtrace faster / smaller).

    python benchmarks/models.py [--quick] [--modes eval_no_grad,train] [--models vit,unet]
"""
from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
import tracemalloc
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from models import harness  # noqa: E402
from models.vision import BY_NAME, CASES, MODES, set_mode  # noqa: E402
from tabulate import tabulate  # noqa: E402

TRACERS = ("fxtrace", "jit")


def _trace(tracer: str, name: str, mode: str, check: bool) -> Any:
    c = BY_NAME[name]
    model = set_mode(c.make(), mode)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with harness.grad_context(mode):
            return harness.TRACERS[tracer](model, c.example(c.batch), c.strict, check)


def _timed(fn: Callable[[], Any]) -> Optional[float]:
    start = time.perf_counter()
    try:
        fn()
    except Exception:  # noqa: BLE001 - torch.jit's TracingCheckError
        return None
    return (time.perf_counter() - start) * 1000


def measure(name: str, mode: str, repeats: int, calls: int) -> Dict[str, Dict[str, Any]]:
    out: Dict[str, Dict[str, Any]] = {t: {} for t in TRACERS}
    for tracer in TRACERS:  # warmup: first-time TorchScript type compilation
        _trace(tracer, name, mode, False)
    for check in (False, True):
        samples: Dict[str, List[Optional[float]]] = {t: [] for t in TRACERS}
        for _ in range(repeats):
            for tracer in TRACERS:
                samples[tracer].append(_timed(functools.partial(_trace, tracer, name, mode, check)))
        for tracer in TRACERS:
            ok = [s for s in samples[tracer] if s is not None]
            out[tracer]["trace+check" if check else "trace"] = (
                statistics.median(ok) if len(ok) == len(samples[tracer]) else None)
    for tracer in TRACERS:
        tracemalloc.start()
        _trace(tracer, name, mode, False)
        out[tracer]["peak"] = tracemalloc.get_traced_memory()[1] / 1024
        tracemalloc.stop()
    c = BY_NAME[name]
    inputs = c.example(c.batch)
    results = {t: _trace(t, name, mode, False) for t in TRACERS}
    lat: Dict[str, List[float]] = {t: [] for t in TRACERS}
    for t in TRACERS:
        for _ in range(5):
            harness.run(results[t], inputs, mode)
    for _ in range(max(1, calls // 10)):
        for t in TRACERS:
            for _ in range(10):
                start = time.perf_counter()
                harness.run(results[t], inputs, mode)
                lat[t].append((time.perf_counter() - start) * 1e6)
    for t in TRACERS:
        out[t]["call"] = statistics.median(lat[t])
        tc, tr = out[t]["trace+check"], out[t]["trace"]
        out[t]["check"] = None if tc is None else max(0.0, tc - tr)
    return out


def _fmt(v: Optional[float], digits: int = 1) -> str:
    return "TracingCheckError" if v is None else f"{v:.{digits}f}"


def _ratio(a: Optional[float], b: Optional[float]) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 trace run, 20 calls")
    parser.add_argument("--modes", default="eval_no_grad", help=f"comma list of {MODES}")
    parser.add_argument("--models", default=",".join(c.name for c in CASES))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    repeats, calls = (1, 20) if args.quick else (3, 100)
    header = ["model", "mode"]
    for col in ("trace ms", "check ms", "call µs", "peak KiB"):
        header += [f"{col} fx", "jit", "ratio"]
    table = []
    for mode in args.modes.split(","):
        for name in args.models.split(","):
            print(f"{name}/{mode} ...", file=sys.stderr, flush=True)
            m = measure(name, mode, repeats, calls)
            f, j = m["fxtrace"], m["jit"]
            row = [name, mode]
            for key, digits in (("trace", 1), ("check", 1), ("call", 0), ("peak", 0)):
                row += [_fmt(f[key], digits), _fmt(j[key], digits), _ratio(f[key], j[key])]
            table.append(row)
    print(f"torch {torch.__version__}, threads=1, {repeats} trace run(s), "
          f"latency = median of {calls} calls")
    print(tabulate(table, headers=header, tablefmt="github", disable_numparse=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
