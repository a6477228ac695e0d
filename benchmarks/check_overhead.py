"""The cost of checking: fxtrace.trace(check_trace=True) vs torch.jit.trace(check_trace=True),
and fxtrace.check's cost per example relative to two eager forwards.

    .venv/bin/python benchmarks/check_overhead.py [--examples N] [--repeat R]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import torch
from tabulate import tabulate

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import fxtrace  # noqa: E402
from zoo import BY_NAME  # noqa: E402

CASES = ["mlp", "conv_bn_relu", "residual_block", "lstm", "transformer_encoder"]


def _best(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--examples", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    trace_rows, check_rows = [], []
    for name in CASES:
        case = BY_NAME[name]
        model = case.make()
        x = case.example(case.batch)
        checks = [x, case.example(case.batch + 1)]
        fx_on = _best(lambda: fxtrace.trace(model, x, check_inputs=checks), args.repeat)
        fx_off = _best(lambda: fxtrace.trace(model, x, check_trace=False), args.repeat)
        jit_off = _best(lambda: torch.jit.trace(model, x, check_trace=False), args.repeat)
        try:
            jit_on = _best(lambda: torch.jit.trace(model, x, check_inputs=checks), args.repeat)
        except torch.jit.TracingCheckError:
            jit_on = None  # torch.jit's own check rejects its trace (graphs differ)
        trace_rows.append((name, f"{fx_off * 1e3:.1f}", f"{fx_on * 1e3:.1f}",
                           f"{jit_off * 1e3:.1f}",
                           "raises" if jit_on is None else f"{jit_on * 1e3:.1f}",
                           "-" if jit_on is None else
                           f"{(fx_on - fx_off) / max(jit_on - jit_off, 1e-9):.2f}"))
        traced = fxtrace.trace(model, x, check_trace=False)
        with torch.no_grad():
            eager = _best(lambda: (model(*x), model(*x)), args.repeat * 3)
        t0 = time.perf_counter()
        report = fxtrace.check(traced, model, max_examples=args.examples, seed=0)
        total = time.perf_counter() - t0
        runs = int(report.notes[0].split()[0])
        per = total / max(runs, 1)
        check_rows.append((name, runs, f"{total:.2f}", f"{per * 1e3:.1f}", f"{eager * 1e3:.2f}",
                           f"{per / eager:.0f}x"))
    print(f"check_trace with 2 check input sets (best of {args.repeat}, ms)")
    print(tabulate(trace_rows, headers=["case", "fxtrace off", "fxtrace on", "jit off", "jit on",
                                        "check cost fx/jit"], disable_numparse=True))
    print()
    print(f"fxtrace.check, {args.examples} examples (trace vs eager + save/load + re-trace)")
    print(tabulate(check_rows, headers=["case", "runs", "total s", "ms/example",
                                        "2 eager fwd ms", "ratio"], disable_numparse=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
