"""Where one fxtrace.trace spends its time, phase by phase, next to torch.jit.trace's total.

Each phase is timed by wrapping the function fxtrace's pipeline calls for it (CPU time,
``time.process_time``, one thread; the best of R traces of a freshly built model):

* ``capture``: running the model under the recorder (``capture_concrete``);
* ``assemble``: building the GraphModule tree from the recorded graphs;
* ``passes``: the capture passes (DCE, CSE, DCE);
* ``shell``: torch.jit's ``TracedModule`` construction of the module tree (torch.jit.trace
  pays the same for the original module);
* ``generate``: writing the TorchScript source; ``define``: compiling it;
* ``check``: ``check_trace=True`` minus ``check_trace=False``.

    python benchmarks/phases.py [--repeat 3] mlp chain_1000 linear_500 decoder
    python benchmarks/phases.py --ab fxtrace.lower.script.SHARE_TYPES linear_500 mlp
    python benchmarks/phases.py --ab fxtrace.lower.script.SHARE_ACROSS_TRACES mlp lstm

``--ab MODULE.FLAG``: A/B in one process: each case is measured with the boolean switch
``FLAG`` of ``MODULE`` off (A, the code before the change it guards) and on (B), rounds
interleaved, best of R per side; prints both lines and B/A of the check-off total.
"""
from __future__ import annotations

import argparse
import collections
import gc
import importlib
import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from perf import BY_NAME, jit_trace  # noqa: E402

import fxtrace  # noqa: E402
import fxtrace.api as api  # noqa: E402
from fxtrace.lower import script  # noqa: E402

_spent: Dict[str, float] = collections.defaultdict(float)


def _wrap(owner: Any, name: str, label: str) -> None:
    original = getattr(owner, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            _spent[label] += time.process_time() - start
    setattr(owner, name, timed)


_wrap(api, "capture_concrete", "capture")
_wrap(api, "assemble", "assemble")
_wrap(api, "run_passes", "passes")
_wrap(script, "generate", "generate")
_wrap(script, "_define", "define")
_depth = [0]


def _shell_timer(original: Callable[..., Any]) -> Callable[..., Any]:
    """Time the outermost of nested shell constructions only (TracedModule recurses)."""
    def timed(*args: Any, **kwargs: Any) -> Any:
        _depth[0] += 1
        start = time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            _depth[0] -= 1
            if _depth[0] == 0:
                _spent["shell"] += time.process_time() - start
    return timed


# the TracedModule shell: torch.jit's recursion, and fxtrace's modules built without it
# (NOTE [Shared method types]), built outside TracedModule.__init__
torch.jit._trace.TracedModule.__init__ = _shell_timer(  # type: ignore[method-assign]
    torch.jit._trace.TracedModule.__init__)
script._traced = _shell_timer(script._traced)  # type: ignore[attr-defined]
PHASES = ("capture", "assemble", "passes", "shell", "generate", "define")


def _best(fn: Callable[[], Any], repeat: int) -> Dict[str, float]:
    best: Optional[Dict[str, float]] = None
    for _ in range(repeat):
        _spent.clear()
        gc.collect()
        start = time.process_time()
        fn()
        total = time.process_time() - start
        if best is None or total < best["total"]:
            best = dict(_spent, total=total)
    assert best is not None
    return best


def report(name: str, repeat: int) -> str:
    """One line: fxtrace's phases for case ``name``, and torch.jit's totals."""
    c = BY_NAME[name]
    example = c.example(c.batch)
    fxtrace.trace(c.make(), example, check_trace=False)  # first-use costs, unmeasured
    jit_trace(c.make(), example, False)
    fx = _best(lambda: fxtrace.trace(c.make(), example, check_trace=False), repeat)
    checked = _best(lambda: fxtrace.trace(c.make(), example), repeat)
    jit = _best(lambda: jit_trace(c.make(), example, False), repeat)
    try:
        jit_check = f"+{(_best(lambda: jit_trace(c.make(), example, True), repeat)['total'] - jit['total']) * 1e3:.1f}"
    except Exception as e:  # noqa: BLE001 - torch.jit's own check rejects transformer_encoder
        jit_check = type(e).__name__
    parts = ", ".join(f"{p} {fx.get(p, 0.0) * 1e3:.1f}" for p in PHASES)
    other = fx["total"] - sum(fx.get(p, 0.0) for p in PHASES)
    return (f"{name}: fx {fx['total'] * 1e3:.1f} ms = {parts}, other {other * 1e3:.1f}; "
            f"check +{(checked['total'] - fx['total']) * 1e3:.1f} | jit {jit['total'] * 1e3:.1f}"
            f" ms (shell {jit.get('shell', 0.0) * 1e3:.1f}), check {jit_check}")


def _fx_total(name: str, repeat: int) -> Dict[str, float]:
    c = BY_NAME[name]
    example = c.example(c.batch)
    return _best(lambda: fxtrace.trace(c.make(), example, check_trace=False), repeat)


def ab(name: str, flag: str, repeat: int) -> str:
    """fxtrace's check-off phases for case ``name`` with ``flag`` off and on (see --ab)."""
    module_name, attr = flag.rsplit(".", 1)
    module = importlib.import_module(module_name)
    before = getattr(module, attr)
    c = BY_NAME[name]
    fxtrace.trace(c.make(), c.example(c.batch), check_trace=False)  # first-use costs
    best: Dict[bool, Dict[str, float]] = {}
    try:
        for _ in range(repeat):  # interleaved: a load change hits both sides alike
            for side in (False, True):
                setattr(module, attr, side)
                got = _fx_total(name, 1)
                if side not in best or got["total"] < best[side]["total"]:
                    best[side] = got
    finally:
        setattr(module, attr, before)
    lines = []
    for side in (False, True):
        fx = best[side]
        parts = ", ".join(f"{p} {fx.get(p, 0.0) * 1e3:.1f}" for p in PHASES)
        other = fx["total"] - sum(fx.get(p, 0.0) for p in PHASES)
        lines.append(f"  {'B' if side else 'A'} {attr}={side}: fx {fx['total'] * 1e3:.1f} ms = "
                     f"{parts}, other {other * 1e3:.1f}")
    ratio = best[True]["total"] / best[False]["total"]
    return f"{name}: B/A {ratio:.2f}\n" + "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", default=["mlp", "transformer_encoder", "chain_1000",
                                                     "linear_500"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ab", default=None, metavar="MODULE.FLAG",
                        help="A/B of a boolean switch in one process (see the docstring)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for name in args.cases:
        print(ab(name, args.ab, args.repeat) if args.ab else report(name, args.repeat),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
