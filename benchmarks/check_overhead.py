"""The cost of checking: fxtrace.trace(check_trace=True) vs torch.jit.trace(check_trace=True),
and fxtrace.check's cost per example relative to two eager forwards.

    .venv/bin/python benchmarks/check_overhead.py [--examples N] [--repeat R] [--threads T]

Runs with one intra-op thread by default: on a shared machine with 2 cores, torch's thread
pool spins against other processes and a 1 ms forward can take 100 ms, which drowns every
figure here in noise.

Table 1, per zoo case, best of R: ``trace`` with 2 check input sets (the example and batch+1).
``check cost`` is (check on) - (check off) for each tracer; ``fx/jit`` the ratio of the check
costs (the issue's target: <= 0.5) and ``total fx/jit`` the ratio of the full times with the
check on. Where torch.jit's own check raises (its graphs differ), its time up to the raise is
used and marked ``*`` (a lower bound of its cost).

Table 2, per zoo case: ``fxtrace.check`` with the default strategy (``inputs_like`` of the
example, auto-dynamic dims), examples N and 2N. ``ms/example`` is the marginal cost of an
example, (T(2N) - T(N)) / (runs(2N) - runs(N)): what an example costs once the one-time work
(save/load, the sampled save/load and re-trace checks, the strategy) is done (noisy: a
difference of two timings); ``ms/ex (2N)`` is T(2N) / runs(2N), one-time work included.
``2 eager fwd``
is the time of two forwards of the original (no_grad, best of 3) on the very inputs the
checker drew, averaged; ``ratio`` the issue's figure (target: <= 1.3).
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
from fxtrace.check.properties import _strategy  # noqa: E402
from fxtrace.check.trace_check import clone_inputs  # noqa: E402
from zoo import BY_NAME  # noqa: E402

CASES = ["mlp", "conv_bn_relu", "residual_block", "lstm", "transformer_encoder"]


def _best(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _jit_on(model, x, checks, repeat):
    best, raised = float("inf"), False
    for _ in range(repeat):
        t0 = time.perf_counter()
        try:
            torch.jit.trace(model, x, check_inputs=checks)
        except torch.jit.TracingCheckError:
            raised = True
        best = min(best, time.perf_counter() - t0)
    return best, raised


def _check_run(traced, model, strategy, examples):
    t0 = time.perf_counter()
    report = fxtrace.check(traced, model, strategy, max_examples=examples, seed=0)
    return time.perf_counter() - t0, int(report.notes[0].split()[0])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--examples", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cases", nargs="*", default=CASES)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    trace_rows, check_rows = [], []
    for name in args.cases:
        case = BY_NAME[name]
        model = case.make()
        x = case.example(case.batch)
        checks = [x, case.example(case.batch + 1)]
        fx_on = _best(lambda: fxtrace.trace(model, x, check_inputs=checks), args.repeat)
        fx_off = _best(lambda: fxtrace.trace(model, x, check_trace=False), args.repeat)
        jit_off = _best(lambda: torch.jit.trace(model, x, check_trace=False), args.repeat)
        jit_on, raised = _jit_on(model, x, checks, args.repeat)
        star = "*" if raised else ""
        fx_cost, jit_cost = fx_on - fx_off, jit_on - jit_off
        trace_rows.append((name, f"{fx_off * 1e3:.1f}", f"{fx_on * 1e3:.1f}",
                           f"{jit_off * 1e3:.1f}", f"{jit_on * 1e3:.1f}{star}",
                           f"{fx_cost * 1e3:.1f}", f"{jit_cost * 1e3:.1f}{star}",
                           f"{fx_cost / max(jit_cost, 1e-9):.2f}{star}",
                           f"{fx_on / jit_on:.2f}{star}"))

        traced = fxtrace.trace(model, x, check_trace=False)
        stateful = [model] if isinstance(model, torch.nn.Module) else []
        base, _ = _strategy(traced, None, None, None, model, stateful)
        drawn = []

        def record(call, drawn=drawn):
            drawn.append(clone_inputs(call[0]))
            return call[0]

        strategy = base.map(record)
        t1, n1 = _check_run(traced, model, strategy, args.examples)
        t2, n2 = _check_run(traced, model, strategy, 2 * args.examples)
        per = (t2 - t1) / max(n2 - n1, 1)
        with torch.no_grad():
            eager = sum(_best(lambda: (model(*a), model(*a)), 3) for a in drawn) / len(drawn)
        amortised = t2 / max(n2, 1)
        check_rows.append((name, f"{n1}/{n2}", f"{t1:.2f}", f"{t2:.2f}", f"{amortised * 1e3:.2f}",
                           f"{per * 1e3:.2f}", f"{eager * 1e3:.2f}", f"{amortised / eager:.1f}",
                           f"{per / eager:.1f}"))
    print(f"check_trace with 2 check input sets (best of {args.repeat}, ms, "
          f"{args.threads} thread(s))")
    print(tabulate(trace_rows, headers=["case", "fx off", "fx on", "jit off", "jit on",
                                        "fx check cost", "jit check cost", "fx/jit",
                                        "total fx/jit"], disable_numparse=True))
    print()
    print(f"fxtrace.check, {args.examples} and {2 * args.examples} examples "
          "(trace vs eager on each; save/load + re-trace on a sample)")
    print(tabulate(check_rows, headers=["case", "runs", "T(N) s", "T(2N) s", "ms/ex (2N)",
                                        "ms/ex marginal", "2 eager fwd ms", "ratio (2N)",
                                        "ratio marginal"], disable_numparse=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
