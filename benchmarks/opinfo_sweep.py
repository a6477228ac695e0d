"""fxtrace vs torch.jit.trace on torch's OpInfo database (float32, CPU), side by side.

Each sample of each op is traced as a plain function of its tensors by both tracers; a
tracer's sample is ok when it traces, equals eager on the example and survives
``torch.jit.save``/``load``. Generalisation: the same program regenerated with other sizes
(where the OpInfo sample function allows), compared with eager. Failures are grouped by
their first error line. The engine lives in ``tests/test_opinfo.py``.

    .venv/bin/python benchmarks/opinfo_sweep.py             # the whole op_db, 2 samples per op
    .venv/bin/python benchmarks/opinfo_sweep.py --quick     # the test suite's subset
    .venv/bin/python benchmarks/opinfo_sweep.py --ops add,view --samples 4 --verbose
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import sys
import time
from typing import Dict, List

import torch
from tabulate import tabulate

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from test_opinfo import QUICK_OPS, SampleResult, load_op_db, op_name, sweep_op  # noqa: E402

import fxtrace  # noqa: E402,F401


def _cause(error: str) -> str:
    """A failure's first line with the varying parts (numbers, names of locals) blanked."""
    text = re.sub(r"\b\d+\b", "N", error)
    text = re.sub(r"for (function|module) \S+:", r"for \1 …:", text)
    return re.sub(r"'[^']*'", "'…'", text)[:110]


def _pct(a: int, b: int) -> str:
    return f"{a}/{b} ({100.0 * a / b:.1f}%)" if b else "-"


def summarise(results: List[SampleResult], verbose: bool) -> str:
    eager_ok = [r for r in results if r.jit is not None]
    counted = [r for r in eager_ok if r.counted]
    rows = []
    for tracer in ("jit", "fx"):
        outs = [getattr(r, tracer) for r in (eager_ok if tracer == "jit" else counted)]
        outs = [o for o in outs if o is not None]
        ok = [o for o in outs if o.ok]
        probed = [o for o in ok if o.probe is not None]
        good = [o for o in probed if o.probe == "ok"]
        guard = [o for o in probed if o.probe == "guard"]
        wrong = [o for o in probed if o.probe in ("wrong", "error")]
        base = len(eager_ok) if tracer == "jit" else len(counted)
        rows.append(["torch.jit.trace" if tracer == "jit" else "fxtrace",
                     f"{'eager ok' if tracer == 'jit' else 'jit ok'}: {base}",
                     _pct(len(ok), base), len(probed), _pct(len(good), len(probed)),
                     len(guard), len(wrong)])
    table = tabulate(rows, headers=["tracer", "samples", "ok", "probed", "probe equal",
                                    "probe refused by guard", "probe wrong/error"],
                     tablefmt="github")
    parts = [table]
    for tracer, pool in (("torch.jit.trace", eager_ok), ("fxtrace (on jit-ok samples)", counted)):
        attr = "jit" if tracer.startswith("torch") else "fx"
        causes: Dict[str, List[str]] = collections.defaultdict(list)
        for r in pool:
            o = getattr(r, attr)
            if o is not None and not o.ok:
                causes[f"[{o.stage}] {_cause(o.error)}"].append(f"{r.op}#{r.index}")
            elif o is not None and o.probe in ("wrong", "error"):
                causes[f"[probe {o.probe}]"].append(f"{r.op}#{r.index}")
        lines = [f"\n{tracer}: failures by cause"]
        for cause, where in sorted(causes.items(), key=lambda kv: -len(kv[1])):
            shown = ", ".join(where if verbose else where[:6]) + ("" if verbose or len(where) <= 6
                                                                  else ", …")
            lines.append(f"  {len(where):4d}  {cause}\n        {shown}")
        parts.append("\n".join(lines) if len(lines) > 1 else f"\n{tracer}: no failures")
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the test suite's subset of ops")
    parser.add_argument("--ops", default="", help="comma-separated op names")
    parser.add_argument("--samples", type=int, default=2, help="samples per op (default 2)")
    parser.add_argument("--verbose", action="store_true", help="list every failing sample")
    parser.add_argument("--no-inplace", action="store_true",
                        help="skip the in-place variants (reported as name_)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.time()
    ops = load_op_db()
    wanted = set(args.ops.split(",")) if args.ops else set(QUICK_OPS) if args.quick else None
    if wanted is not None:
        ops = [op for op in ops if op_name(op) in wanted]
    results: List[SampleResult] = []
    for i, op in enumerate(ops):
        print(f"\r[{i + 1}/{len(ops)}] {op_name(op):40s}", end="", file=sys.stderr, flush=True)
        results.extend(sweep_op(op, args.samples, inplace=not args.no_inplace))
    print(file=sys.stderr)
    print(f"torch {torch.__version__}, {len(ops)} ops, {args.samples} samples per op, "
          f"float32, CPU; {time.time() - start:.0f} s")
    print(summarise(results, args.verbose))


if __name__ == "__main__":
    main()
