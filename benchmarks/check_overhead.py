"""The cost of checking, side by side with torch.jit in one process.

    .venv/bin/python benchmarks/check_overhead.py [--examples N] [--repeat R] [--threads T]
                                                  [--cases mlp,lstm] [--sized resnet,unet]
                                                  [--clock cpu]

Runs with one intra-op thread by default: on a shared 2-core machine torch's thread pool
spins against other processes and a 1 ms forward can take 100 ms, which drowns every figure
here in noise. ``--clock cpu`` reads every figure from this process's CPU time instead of the
wall clock, for a machine that other jobs share (two runs compared that way are still
subject to their cache and memory-bandwidth contention).

**Table 1, check_trace**, per zoo case (``tests/zoo.py``), best of R with the four
configurations interleaved: ``trace`` with 2 check input sets (the example and batch+1).
``check cost`` is (check on) - (check off) for each tracer; ``fx/jit`` is the ratio of the
check costs (the issue's target: <= 0.5) and ``total fx/jit`` the ratio of the full times with
the check on. Where torch.jit's own check raises (its graphs differ), its time up to the raise
is used and marked ``*`` (a lower bound of its cost). The last row is the geometric mean.

**Table 2, fxtrace.check**, per model: the zoo's module cases at their example size, then the
vision models of ``tests/models/vision.py`` (eval mode) at a deployment-like input size. The
default strategy (``inputs_like`` of the example, auto-dynamic dims) draws the inputs; a
forward pre-hook on the original records every input the check runs (skipped ones
included), and those are then run through two eager forwards of the original (no_grad).
After a 3-input warm-up, ``--check-repeat`` rounds each run: a check of N inputs with the
per-input check only (trace vs eager) and the eager forwards on its inputs, the same for 2N,
and 2N with the default sampled checks too (save/load and re-trace, on at most 3 inputs: the
first of each input signature). Every figure is the best over the rounds (one seed: every
round checks the same inputs).

* ``ms/ex`` = (T(2N) - T(N)) / (inputs(2N) - inputs(N)): what one more input costs, one-time
  work (the dynamic-dims probe, Hypothesis' start) excluded; ``2 fwd ms/ex`` the same for the
  two eager forwards; ``ratio/ex`` their quotient, **the issue's figure (target <= 1.3)**;
* ``ratio 2N`` = T(2N) / two forwards over its inputs, one-time work included;
* ``sampled ms`` = the extra time of the sampled save/load and re-trace checks (a fixed cost
  per check: 3 re-captures and a save/load round trip); ``ratio 2N+sampled`` the whole
  default check over the two forwards.

Each example runs the original and the trace once (two forwards), so ``ratio/ex`` is 1 plus
the checker's own per-example overhead (Hypothesis' engine and drawing, fresh input copies,
state restores, the comparison) over two forwards, less what the trace saves over eager:
tiny models measure that overhead, deployment-sized ones the ratio a user sees.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch
from tabulate import tabulate

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from models import vision  # noqa: E402
from zoo import BY_NAME, CASES  # noqa: E402

import fxtrace  # noqa: E402
from fxtrace.checking.plan import strategy_parts  # noqa: E402
from fxtrace.checking.trace_check import clone_inputs  # noqa: E402

#: The clock every figure is read from: wall time, or this process's CPU time (``--clock
#: cpu``: on a shared machine, what the other processes take does not count).
_clock: Callable[[], float] = time.perf_counter

#: Vision models for table 2 and the (batch, height/width) they are checked at.
SIZED = {"resnet": (8, 64), "mobilenet": (8, 64), "unet": (4, 64), "vit": (16, 16)}


def _timed(fn: Callable[[], Any]) -> Tuple[float, bool]:
    t0 = _clock()
    raised = False
    try:
        fn()
    except torch.jit.TracingCheckError:
        raised = True
    return _clock() - t0, raised


def _best(fn: Callable[[], Any], repeat: int) -> float:
    return min(_timed(fn)[0] for _ in range(repeat))


def check_trace_row(name: str, repeat: int) -> Tuple[List[str], float]:
    case = BY_NAME[name]
    model = case.make()
    x = case.example(case.batch)
    checks = [x, case.example(case.batch + 1)]
    runs = {
        "fx_on": lambda: fxtrace.trace(model, x, check_inputs=checks),
        "fx_off": lambda: fxtrace.trace(model, x, check_trace=False),
        "jit_on": lambda: torch.jit.trace(model, x, check_inputs=checks),
        "jit_off": lambda: torch.jit.trace(model, x, check_trace=False),
    }
    best = {k: float("inf") for k in runs}
    raised = False
    for fn in runs.values():  # warm-up: first-time TorchScript type compilation
        _timed(fn)
    for _ in range(repeat):
        for k, fn in runs.items():
            t, r = _timed(fn)
            best[k] = min(best[k], t)
            raised |= r and k == "jit_on"
    star = "*" if raised else ""
    fx_cost, jit_cost = best["fx_on"] - best["fx_off"], best["jit_on"] - best["jit_off"]
    ratio = max(fx_cost, 1e-6) / max(jit_cost, 1e-6)
    ms = {k: f"{v * 1e3:.1f}" for k, v in best.items()}
    return [name, ms["fx_off"], ms["fx_on"], ms["jit_off"], ms["jit_on"] + star,
            f"{fx_cost * 1e3:.1f}", f"{jit_cost * 1e3:.1f}{star}", f"{ratio:.2f}{star}",
            f"{best['fx_on'] / best['jit_on']:.2f}{star}"], ratio


def _eager_pairs(model: torch.nn.Module, drawn: List[Tuple[Any, ...]]) -> float:
    """Seconds of two eager forwards (no_grad) on each input of ``drawn``, summed; inputs
    eager rejects count what the rejection costs (the checker skips those at that price)."""
    t0 = _clock()
    with torch.no_grad():
        for args in drawn:
            try:
                model(*args)
                model(*args)
            except Exception:  # noqa: BLE001 - outside the model's domain
                pass
    return _clock() - t0


def _check_run(traced: Any, model: torch.nn.Module, strategy: Any, examples: int,
               sampled: bool) -> Tuple[float, List[Any]]:
    """(seconds of one fxtrace.check run, the inputs it checked). The inputs are recorded by a
    forward pre-hook of the original, so they are exactly those the check ran eager on (not
    the ones Hypothesis drew beyond the budget). ``sampled=False`` turns off the save/load and
    re-trace checks, which run on a sample of at most 3 inputs."""
    checked: List[Any] = []
    hook = model.register_forward_pre_hook(
        lambda module, args: checked.append(clone_inputs(args)))
    try:
        t0 = _clock()
        fxtrace.check(traced, model, strategy, max_examples=examples, seed=0,
                      save_load=sampled, retrace_stable=sampled)
        elapsed = _clock() - t0
    finally:
        hook.remove()
    return elapsed, checked


def property_row(label: str, model: torch.nn.Module, x: Tuple[Any, ...], examples: int,
                 repeat: int) -> List[str]:
    traced = fxtrace.trace(model, x, check_trace=False)
    # the example's ranks, dtypes and values: the per-input cost of the default draw
    strategy = strategy_parts(traced, None, None, None, model, [model], False, False,
                              False).strategy
    strategy = strategy.map(lambda call: call[0])  # inputs= takes positional inputs
    _check_run(traced, model, strategy, 3, True)  # warm-up: the executors' first runs
    inf = float("inf")
    t1 = t2 = full = e1 = e2 = inf
    n1 = n2 = 0
    # Interleaved, best of ``repeat`` each: a shared machine drifts between rounds, and every
    # figure of a ratio should come from the same minutes. The seed is fixed: every round
    # checks the same inputs.
    for _ in range(repeat):
        t, inputs1 = _check_run(traced, model, strategy, examples, False)
        t1, n1, e1 = min(t1, t), len(inputs1), min(e1, _eager_pairs(model, inputs1))
        t, inputs2 = _check_run(traced, model, strategy, 2 * examples, False)
        t2, n2, e2 = min(t2, t), len(inputs2), min(e2, _eager_pairs(model, inputs2))
        full = min(full, _check_run(traced, model, strategy, 2 * examples, True)[0])
    shape = "x".join(str(s) for s in x[0].shape)
    marginal = (t2 - t1) / (e2 - e1) if e2 > e1 else float("nan")
    return [label, shape, f"{n1}/{n2}", f"{(t2 - t1) / max(n2 - n1, 1) * 1e3:.2f}",
            f"{(e2 - e1) / max(n2 - n1, 1) * 1e3:.2f}", f"{marginal:.2f}",
            f"{t2 / e2:.2f}", f"{max(full - t2, 0.0) * 1e3:.0f}", f"{full / e2:.2f}"]


def _names(text: Optional[str], default: Sequence[str]) -> List[str]:
    return list(default) if text is None else [n for n in text.split(",") if n]


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--check-repeat", type=int, default=3,
                    help="fxtrace.check runs per example count, best taken (table 2)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cases", default=None, help="zoo cases (default: all)")
    ap.add_argument("--sized", default=None, help=f"vision models (default: {','.join(SIZED)})")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall time, or this process's CPU time (for a shared machine)")
    ap.add_argument("--skip-trace", action="store_true", help="only table 2")
    ap.add_argument("--skip-check", action="store_true", help="only table 1")
    args = ap.parse_args(argv)
    global _clock
    _clock = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    zoo = _names(args.cases, [c.name for c in CASES])
    if not args.skip_trace:
        rows, ratios = [], []
        for name in zoo:
            row, ratio = check_trace_row(name, args.repeat)
            rows.append(row)
            ratios.append(ratio)
            print(f"  {name}: fx/jit {row[7]}", file=sys.stderr)
        geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        rows.append(["geometric mean", "", "", "", "", "", "", f"{geo:.2f}", ""])
        print(f"check_trace with 2 check input sets (best of {args.repeat}, ms, "
              f"{args.threads} thread(s))")
        print(tabulate(rows, headers=["case", "fx off", "fx on", "jit off", "jit on",
                                      "fx check cost", "jit check cost", "fx/jit",
                                      "total fx/jit"], disable_numparse=True))
        print()
    if not args.skip_check:
        rows = []
        for name in zoo:
            case = BY_NAME[name]
            model = case.make()
            if not isinstance(model, torch.nn.Module):
                continue
            rows.append(property_row(name, model, case.example(case.batch), args.examples,
                                     args.check_repeat))
            print(f"  {name}: {rows[-1][-2:]}", file=sys.stderr)
        for name in _names(args.sized, SIZED):
            batch, hw = SIZED[name]
            c = vision.BY_NAME[name]
            model = c.make().eval()
            rows.append(property_row(f"{name} (vision)", model, c.example(batch, hw),
                                     args.examples, args.check_repeat))
            print(f"  {name}: {rows[-1][-2:]}", file=sys.stderr)
        print(f"fxtrace.check, {args.examples} and {2 * args.examples} inputs (trace vs eager "
              "on each; save/load + re-trace on a sample)")
        print(tabulate(rows, headers=["model", "example", "inputs N/2N", "ms/ex", "2 fwd ms/ex",
                                      "ratio/ex", "ratio 2N", "sampled ms", "ratio 2N+sampled"],
                       disable_numparse=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
