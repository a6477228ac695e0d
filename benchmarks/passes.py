"""What the graph passes buy at run time: call latency of the traced ScriptModule on the zoo.

For every zoo case (tests/zoo.py) it builds, from the same concrete capture pipeline:

* ``none``: the capture lowered as it comes out of ``capture_concrete`` + ``assemble``, with
  no pass at all (what ``fxtrace/api.py``'s ``_capture`` does minus ``run_passes``);
* ``trace``: ``fxtrace.trace(model, example, check_trace=False)``, i.e. the capture passes
  ``CAPTURE_PASSES`` (dead code elimination, CSE, ``call_ops_directly``, ``merge_guards``,
  dead code elimination);
* ``default``: the capture run through ``fxtrace.passes.DEFAULT_PASSES`` (adds constant
  folding) and lowered;
* ``fold_bn``: ``fxtrace.trace(model, example, check_trace=False, fold_batchnorm=True)``;
* ``jit``: ``torch.jit.trace(model, example, check_trace=False)`` (torch.jit's own check
  rejects TransformerEncoder: its two traces differ in mangled type names).

and reports the median latency of one call (under ``no_grad``) over N calls after a warmup,
the calls of the five results interleaved in blocks of 10 so that load changes hit all alike,
plus the node count of each capture tree. Every result is built with ``check_trace=False``:
running the trace check first leaves some ScriptModules measurably slower afterwards
(TransformerEncoder: about 12%, whatever the passes), which would hide what the passes do.
Ratios are relative to ``none`` (below 1: faster) and to ``jit``.

Run from the repository root::

    python benchmarks/passes.py [--calls 1000] [--cases conv_bn_relu,residual_block]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.fx as fx
from tabulate import tabulate

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from zoo import CASES, ZooCase  # noqa: E402

import fxtrace  # noqa: E402
from fxtrace.capture.assemble import assemble  # noqa: E402
from fxtrace.capture.concrete import capture_concrete  # noqa: E402
from fxtrace.capture.meta import CaptureInfo  # noqa: E402
from fxtrace.lower.script import lower_function, lower_module  # noqa: E402
from fxtrace.passes import DEFAULT_PASSES, count_nodes, run_passes  # noqa: E402
from fxtrace.state import preserved_state  # noqa: E402

VARIANTS = ("none", "trace", "default", "fold_bn", "jit")


def _name(model: Any) -> str:
    if isinstance(model, torch.nn.Module):
        return type(model).__name__
    return getattr(model, "__name__", "fn")


def raw_capture(model: Any, example: Tuple[Any, ...]) -> fx.GraphModule:
    """The concrete capture with no pass, as ``fxtrace.api._capture`` builds it."""
    root = model if isinstance(model, torch.nn.Module) else None
    name = _name(model)
    methods = [("forward", model, example, {})]
    info = CaptureInfo(mode="concrete", is_function=root is None, name=name,
                       training=bool(root.training) if root is not None else False,
                       options={"guards": True, "force_outplace": False})
    with preserved_state([root] if root is not None else [], always=False):
        tracer, root_trace = capture_concrete(methods, root=root, name=name)
    return assemble(tracer, root_trace, info, None if root is not None else model)


def lower(gm: fx.GraphModule, model: Any) -> Any:
    if isinstance(model, torch.nn.Module):
        script = lower_module(gm)
        script.__dict__["_fxtrace_capture"] = gm
        return script
    fn = lower_function(gm, _name(model))
    fn._fxtrace_capture = gm  # type: ignore[attr-defined]
    return fn


def build(variant: str, c: ZooCase) -> Tuple[Any, Optional[int]]:
    """``(callable, nodes in the capture tree or None)`` for one variant of case ``c``."""
    model, example = c.make(), c.example(c.batch)
    if variant == "jit":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.trace(model, example, check_trace=False), None
    if variant == "none":
        gm = raw_capture(model, example)
        return lower(gm, model), count_nodes(gm)
    if variant == "default":
        gm, _ = run_passes(raw_capture(model, example), DEFAULT_PASSES)
        return lower(gm, model), count_nodes(gm)
    traced = fxtrace.trace(model, example, check_trace=False,
                           fold_batchnorm=variant == "fold_bn")
    return traced, count_nodes(traced._fxtrace_capture)


def time_calls(fns: Dict[str, Callable[..., Any]], example: Tuple[Any, ...], warmup: int,
               calls: int) -> Dict[str, float]:
    """Median seconds of one call of each, after ``warmup`` calls; interleaved by 10s."""
    times: Dict[str, List[float]] = {name: [] for name in fns}
    with torch.no_grad():
        for fn in fns.values():
            for _ in range(warmup):
                fn(*example)
        for block in range(0, calls, 10):
            for name, fn in fns.items():
                for _ in range(min(10, calls - block)):
                    t0 = time.perf_counter()
                    fn(*example)
                    times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def check_outputs(fns: Dict[str, Callable[..., Any]], model: Any, example: Tuple[Any, ...]
                  ) -> None:
    """Every variant computes what eager computes (fold_bn within float rounding)."""
    def leaves(v: Any) -> List[Any]:
        return [x for item in v for x in leaves(item)] if isinstance(v, (tuple, list)) else [v]
    with torch.no_grad():
        want = leaves(model(*example))
        for name, fn in fns.items():
            got = leaves(fn(*example))
            for g, w in zip(got, want):
                torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5,
                                           msg=lambda m, name=name: f"{name}: {m}")


def bench_case(c: ZooCase, warmup: int, calls: int) -> Dict[str, Any]:
    row: Dict[str, Any] = {"case": c.name}
    fns: Dict[str, Callable[..., Any]] = {}
    for variant in VARIANTS:
        try:
            fns[variant], row[variant, "nodes"] = build(variant, c)
        except Exception as e:  # noqa: BLE001 - a variant's own failure is a result here
            row[variant, "error"] = type(e).__name__
    example = c.example(c.batch)
    check_outputs(fns, c.make(), example)
    for variant, seconds in time_calls(fns, example, warmup, calls).items():
        row[variant, "call"] = seconds
    return row


def _us(v: Optional[float]) -> str:
    return "-" if v is None else f"{v * 1e6:.1f}"


def _ratio(a: Optional[float], b: Optional[float]) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def table(rows: List[Dict[str, Any]]) -> str:
    headers = ["case", "nodes\nnone", "\ntrace", "\nfold_bn",
               "call µs\nnone", "\ntrace", "\ndefault", "\nfold_bn", "\njit",
               "÷ none\ntrace", "\ndefault", "\nfold_bn",
               "÷ jit\ntrace", "\nfold_bn"]
    body = []
    for r in rows:
        call = {v: r.get((v, "call")) for v in VARIANTS}
        body.append([
            r["case"], r.get(("none", "nodes"), "-"), r.get(("trace", "nodes"), "-"),
            r.get(("fold_bn", "nodes"), "-"),
            *(r.get((v, "error")) or _us(call[v]) for v in VARIANTS),
            _ratio(call["trace"], call["none"]), _ratio(call["default"], call["none"]),
            _ratio(call["fold_bn"], call["none"]),
            _ratio(call["trace"], call["jit"]), _ratio(call["fold_bn"], call["jit"]),
        ])
    return tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000, help="timed calls per variant")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls first")
    parser.add_argument("--cases", default="", help="comma-separated zoo case names")
    args = parser.parse_args(argv)
    cases = list(CASES)
    if args.cases:
        known = {c.name: c for c in cases}
        wanted = [s.strip() for s in args.cases.split(",") if s.strip()]
        unknown = [w for w in wanted if w not in known]
        if unknown:
            parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(known)}")
        cases = [known[w] for w in wanted]
    torch.set_num_threads(1)
    start = time.perf_counter()
    rows = []
    for c in cases:
        t0 = time.perf_counter()
        rows.append(bench_case(c, args.warmup, args.calls))
        print(f"  {c.name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    print(f"torch {torch.__version__}, fxtrace {fxtrace.__version__}, threads=1, call latency = "
          f"median of {args.calls} after {args.warmup} warmup; "
          f"total {time.perf_counter() - start:.0f} s")
    print(table(rows))


if __name__ == "__main__":
    main()
