"""Traced-call latency: fxtrace.trace (plain and with ``fxtrace.optimize``) vs torch.jit.trace.

Every model is traced in eval mode under ``torch.no_grad()`` (the inference setting; the
transformers then take their fused kernels in eager, torch.jit and fxtrace alike) and called
in the same context. Per model: one warmup of ``--warmup`` calls per program (the profiling
executor settles), then ``--calls`` calls, alternating between the programs in blocks of 10 so
that load changes on a shared machine hit all alike; the figure is the median call in µs.
One intra-op thread (``torch.set_num_threads(1)``), as in the other benchmarks.

Columns: ``fxtrace / jit`` (plain trace) and ``optimized / jit`` (``fxtrace.optimize`` of
the trace: the passes of ``docs/passes.md``); below 1 fxtrace is faster.

``--clock instructions`` counts the CPU instructions of a call with callgrind (valgrind
must be installed; ``--calls 300`` counts 10 calls per program, each program saved and
loaded in a child process): the µs columns are then thousands of instructions, and the
ratios do not move with the load of a shared machine. ``--clock cpu`` times with the calling
thread's CPU clock (``time.thread_time``; with one intra-op thread the call runs on it), so
other processes on a shared machine do not count; each sample is then the mean of a block of
10 calls (the CPU clock is coarser than a call of the smallest models), the figure the median
over blocks. ``--before`` adds the plain trace as it was lowered before issue 14's latency
work (no ``call_ops_directly``/``merge_guards`` in the capture passes, guard conditions as
separate statements: NOTE [Guard conditions]), built in the same process, for an A/B
comparison.

    python benchmarks/latency.py [--calls 400] [--models mlp,resnet]
                                 [--clock wall|cpu|instructions] [--before]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from models import vision  # noqa: E402
from zoo import CASES as ZOO  # noqa: E402

import fxtrace  # noqa: E402

__all__ = ["models", "traced_programs", "call_latency", "main"]

Model = Tuple[Callable[[], Any], Callable[[], Tuple[Any, ...]], bool]  # make, example, strict


def _transformer_6x256() -> torch.nn.Module:
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(d_model=256, nhead=8, dim_feedforward=1024,
                                             batch_first=True)
    return torch.nn.TransformerEncoder(layer, num_layers=6, enable_nested_tensor=False)


def models() -> Dict[str, Model]:
    """name -> (make an eval-mode model or a function, make its example inputs, strict)."""
    out: Dict[str, Model] = {}
    for c in ZOO:
        out[c.name] = (c.make, (lambda c=c: c.example(c.batch)), True)
    for v in vision.CASES:
        out[v.name] = ((lambda v=v: v.make().eval()), (lambda v=v: v.example(v.batch)),
                       v.strict)
    out["transformer_6x256"] = ((lambda: _transformer_6x256().eval()),
                                (lambda: (torch.randn(2, 64, 256),)), True)
    return out


def _trace_before(model: Any, example: Tuple[Any, ...], strict: bool) -> Any:
    """``fxtrace.trace`` as lowered before the latency work of issue 14 (see ``--before``)."""
    import fxtrace.api as api
    import fxtrace.lower.codegen as codegen
    now = (api.CAPTURE_PASSES, codegen.inlined_conditions)
    api.CAPTURE_PASSES = [p for p in now[0]
                          if p.__name__ not in ("call_ops_directly", "merge_guards")]
    codegen.inlined_conditions = lambda graph: set()  # type: ignore[assignment]
    try:
        return fxtrace.trace(model, example, strict=strict)
    finally:
        api.CAPTURE_PASSES, codegen.inlined_conditions = now


def traced_programs(make: Callable[[], Any], example: Tuple[Any, ...], strict: bool = True,
                    before: bool = False) -> Dict[str, Any]:
    """``{"jit": ..., "fxtrace": ..., "optimized": ...}`` of one model, traced under no_grad
    (with ``before``, also ``"before"``: :func:`_trace_before`)."""
    model = make()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {"jit": torch.jit.trace(model, example, strict=strict),
               "fxtrace": fxtrace.trace(model, example, strict=strict),
               "optimized": fxtrace.optimize(fxtrace.trace(model, example, strict=strict))}
        if before:
            out["before"] = _trace_before(model, example, strict)
    return out


def call_latency(programs: Dict[str, Any], example: Tuple[Any, ...], warmup: int,
                 calls: int, clock: str = "wall") -> Dict[str, float]:
    """Median µs of one call of each program (see the module docstring)."""
    times: Dict[str, List[float]] = {name: [] for name in programs}
    with torch.no_grad():
        for fn in programs.values():
            for _ in range(warmup):
                fn(*example)
        for block in range(0, calls, 10):
            n = min(10, calls - block)
            for name, fn in programs.items():
                if clock == "cpu":
                    t0 = time.thread_time()
                    for _ in range(n):
                        fn(*example)
                    times[name].append((time.thread_time() - t0) / n)
                    continue
                for _ in range(n):
                    t0 = time.perf_counter()
                    fn(*example)
                    times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) * 1e6 for name, ts in times.items()}


def _example_setup(example: Tuple[Any, ...]) -> str:
    """Python source rebuilding tensors of ``example``'s shapes and dtypes as ``x0, x1, ...``
    (callgrind's child process takes no tensors from its parent)."""
    lines = ["import torch", "torch.manual_seed(0)"]
    for i, v in enumerate(example):
        shape = tuple(v.shape)
        lines.append(f"x{i} = torch.randn({shape}, dtype={v.dtype})" if v.is_floating_point()
                     else f"x{i} = torch.zeros({shape}, dtype={v.dtype})")
    return "\n".join(lines)


def call_instructions(programs: Dict[str, Any], example: Tuple[Any, ...], calls: int
                      ) -> Dict[str, float]:
    """CPU instructions of one call of each program (mean of ``calls`` calls after a warmup),
    counted by callgrind through ``torch.utils.benchmark``: deterministic, whatever else runs
    on the machine. Each program is saved and loaded in a child process (its TorchScript, as
    ``torch.jit.load`` gives it back); inputs are random tensors of the example's shapes."""
    import os

    from torch.utils.benchmark import CopyIfCallgrind, Timer
    # the child runs ``python`` from PATH and insists on this interpreter
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]
    stmt = "with torch.no_grad(): p(" + ", ".join(f"x{i}" for i in range(len(example))) + ")"
    setup = _example_setup(example) + "\nwith torch.no_grad():\n" + \
        "".join(f"    {stmt.split(': ', 1)[1]}\n" for _ in range(5))
    out: Dict[str, float] = {}
    for name, program in programs.items():
        timer = Timer(stmt, setup=setup, globals={"p": CopyIfCallgrind(program)})
        stats = timer.collect_callgrind(number=calls, repeats=1)
        stats = stats[0] if isinstance(stats, tuple) else stats
        out[name] = stats.counts(denoise=True) / calls
    return out


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--models", default="", help="comma-separated names (default: all)")
    parser.add_argument("--clock", choices=("wall", "cpu", "instructions"), default="wall",
                        help="instructions: callgrind's count (valgrind), in thousands")
    parser.add_argument("--before", action="store_true",
                        help="add the trace as lowered before issue 14's latency work")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    table = models()
    names = [n for n in args.models.split(",") if n] or list(table)
    extra = (" before µs |", " before / jit |") if args.before else ("", "")
    print(f"| model | jit µs | fxtrace µs | optimized µs |{extra[0]} fxtrace / jit | "
          f"optimized / jit |{extra[1]}")
    print("| --- " * (6 + 2 * args.before) + "|")
    for name in names:
        make, example_of, strict = table[name]
        example = example_of()
        programs = traced_programs(make, example, strict, args.before)
        got = call_instructions(programs, example, max(1, args.calls // 30)) \
            if args.clock == "instructions" else \
            call_latency(programs, example, args.warmup, args.calls, args.clock)
        if args.clock == "instructions":
            got = {k: v / 1e3 for k, v in got.items()}  # printed in thousands, not µs
        jit = got["jit"]
        row = [name, f"{jit:.0f}", f"{got['fxtrace']:.0f}", f"{got['optimized']:.0f}"]
        row += [f"{got['before']:.0f}"] if args.before else []
        row += [f"{got['fxtrace'] / jit:.2f}", f"{got['optimized'] / jit:.2f}"]
        row += [f"{got['before'] / jit:.2f}"] if args.before else []
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
