"""False alarms of ``fxtrace.check`` on correct traces: every zoo, vision and Hugging Face model
of ``tests/``.

    .venv/bin/python benchmarks/check_alarms.py [--examples N] [--only name,name] [--no-hf]

Each model is traced by ``fxtrace.trace`` with its defaults (guards on, ``check_trace=True``;
Hugging Face models with ``strict=False`` and their ``use_cache=False`` fix, keyword inputs)
and checked with ``fxtrace.check(traced, model, seed=0)`` with default settings (auto dynamic
dims, rank, dtype and index variants). A sound trace answers as eager does or refuses with a
guard, so any ``PropertyCheckError`` is an alarm: the row shows its title and shrunk input,
and the script exits 1. The zoo is also traced by ``torch.jit.trace``: an alarm there is
listed with ``confirmed`` when a fresh trace really differs from eager (or raises) on the
shrunk input — a real error of torch.jit's trace, not a false alarm.

Vision models are checked in eval mode and in training mode (dropout and BatchNorm: both
sides run from the same RNG state and buffers).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from typing import Any, Callable, Iterator, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

import torch  # noqa: E402
from tabulate import tabulate  # noqa: E402

import fxtrace  # noqa: E402
from fxtrace.checking.calls import describe_inputs  # noqa: E402
from fxtrace.checking.trace_check import clone_inputs, compare_outputs  # noqa: E402

#: (name, tracer, make_trace() -> (traced, model), example for check or None)
Case = Tuple[str, str, Callable[[], Tuple[Any, Any]], Any]


def _quiet(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _zoo() -> Iterator[Case]:
    from zoo import CASES
    for c in CASES:
        def make(c: Any = c, tracer: str = "fxtrace") -> Tuple[Any, Any]:
            model = c.make()
            example = c.example(c.batch)
            if tracer == "jit":
                # check_trace=False: torch.jit's own check fails on some (graphs differ)
                return _quiet(torch.jit.trace, model, example, check_trace=False), model
            return _quiet(fxtrace.trace, model, example), model
        yield f"zoo/{c.name}", "fxtrace", make, c.example(c.batch)
        yield f"zoo/{c.name}", "torch.jit.trace", \
            lambda c=c, make=make: make(c, "jit"), c.example(c.batch)


def _vision() -> Iterator[Case]:
    from models.vision import CASES, set_mode
    for c in CASES:
        for mode in ("eval", "train"):
            def make(c: Any = c, mode: str = mode) -> Tuple[Any, Any]:
                model = set_mode(c.make(), mode)
                return _quiet(fxtrace.trace, model, c.example(c.batch), strict=c.strict), model
            yield f"vision/{c.name} ({mode})", "fxtrace", make, None


def _hf() -> Iterator[Case]:
    try:
        import transformers  # noqa: F401
    except ImportError:
        return
    from hf_models import CASES
    for c in CASES:
        def make(c: Any = c) -> Tuple[Any, Any]:
            model = c.fixed()
            return _quiet(fxtrace.trace, model, example_kwarg_inputs=c.inputs(*c.traced),
                          strict=False), model
        yield f"hf/{c.name}", "fxtrace", make, None


def _confirmed(traced: Any, model: Any, inputs: Any) -> bool:
    """Does the trace really differ from eager (or raise) on the shrunk input?"""
    args, kwargs = inputs
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.manual_seed(0)
            want = model(*clone_inputs(args), **clone_inputs(kwargs))
        except Exception:  # noqa: BLE001 - eager refuses it: not a real error of the trace
            return False
        try:
            torch.manual_seed(0)
            got = traced(*clone_inputs(args), **clone_inputs(kwargs))
        except Exception as e:  # noqa: BLE001
            return "fxtrace guard failed" not in str(e)
        return bool(compare_outputs(got, want, 1e-5))


def run(case: Case, examples: Optional[int]) -> Tuple[str, ...]:
    name, tracer, make, example = case
    try:
        traced, model = make()
    except Exception as e:  # noqa: BLE001 - the tracer refused the model: nothing to check
        return name, tracer, "n/a", "0", f"trace failed: {type(e).__name__}"
    start = time.perf_counter()
    verdict, detail = "passed", ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = fxtrace.check(traced, model, example_inputs=example, seed=0,
                                   max_examples=examples)
        c = report.counts
        detail = f"{c['agreed']} agreed, {c['refused']} refused, {c['skipped']} skipped"
    except fxtrace.PropertyCheckError as e:
        verdict = "ALARM"
        detail = e.report.title.split(": ", 1)[-1]
        if e.inputs is not None:
            detail += f" on {describe_inputs(*e.inputs)}"
            if tracer != "fxtrace" and _confirmed(traced, model, e.inputs):
                verdict = "confirmed"
    return name, tracer, verdict, f"{time.perf_counter() - start:.2f}", detail[:110]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=None)
    parser.add_argument("--only", default="")
    parser.add_argument("--no-hf", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    only = set(filter(None, opts.only.split(",")))
    cases: List[Case] = [*_zoo(), *_vision(), *([] if opts.no_hf else _hf())]
    rows = []
    for case in cases:
        if only and not any(o in case[0] for o in only):
            continue
        rows.append(run(case, opts.examples))
        print("  ".join(rows[-1]), file=sys.stderr, flush=True)
    print(tabulate(rows, headers=["model", "tracer", "fxtrace.check", "s", "detail"],
                   tablefmt="simple", disable_numparse=True))
    alarms = [r for r in rows if r[2] == "ALARM"]
    confirmed = [r for r in rows if r[2] == "confirmed"]
    print(f"\nfalse alarms: {len(alarms)} of {len(rows)} checks"
          f"{' (' + ', '.join(f'{r[0]} {r[1]}' for r in alarms) + ')' if alarms else ''}; "
          f"real errors of torch.jit traces confirmed on the shrunk input: {len(confirmed)}")
    seconds = sorted(float(r[3]) for r in rows)
    if seconds:
        print(f"time per check: median {seconds[len(seconds) // 2]:.2f} s, max {seconds[-1]:.2f} s")
    return 1 if alarms else 0


if __name__ == "__main__":
    sys.exit(main())
