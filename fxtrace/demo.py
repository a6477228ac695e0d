"""The fxtrace demo: trace the seed examples end to end and prove the results stand alone.

Run it with ``fxtrace demo`` (or ``python -m fxtrace.demo``, ``make demo``). For each case it

1. traces with ``fxtrace.trace`` (``check_trace=True``: trace and eager agree on the example);
2. prints the capture's tables (``nodes``; for the conv net also ``modules`` and
   ``specialisations``);
3. runs trace and eager at another batch size and compares (OK/FAIL, max abs error);
4. saves with ``torch.jit.save`` and reloads every file in a fresh Python process that only
   imports torch (importing fxtrace there is made impossible), runs the reloaded programs on
   the saved inputs and compares their outputs with eager;

then prints a summary table. The exit status is 0 only if every step of every case passed.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
import types
import warnings
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

import torch

import fxtrace
import fxtrace.inspect as fi
from fxtrace import tree

__all__ = ["main", "EXAMPLES", "CASES", "load_examples", "run_case", "summary_table"]

_JIT_DEPRECATION = r".*torch\.jit.*deprecated"


@contextlib.contextmanager
def _quiet_jit_deprecation() -> Iterator[None]:
    """torch 2.13 deprecates torch.jit.save/load; silence exactly that warning, here only."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_JIT_DEPRECATION, category=DeprecationWarning)
        yield


# --------------------------------------------------------------------------- the seed examples

#: The code the demo traces. It is written to ``seed_examples.py`` in the demo's working
#: directory and imported from there, as user code would be: fxtrace attributes every node to
#: the first source line outside fxtrace and torch, so code inside this package would show no
#: useful locations.
EXAMPLES = textwrap.dedent('''\
    import torch
    from torch import nn


    def foo(x, y):
        return 2 * x + y


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3)

        def forward(self, x):
            return self.conv(x)


    class ConvNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.relu = nn.ReLU()
            self.pool = nn.MaxPool2d(2)
            self.fc = nn.Linear(8 * 8 * 8, 10)

        def forward(self, x):
            x = self.pool(self.relu(self.bn(self.conv(x))))
            x = x.view(x.size(0), -1)
            return self.fc(x)
''')


def load_examples(directory: str) -> types.ModuleType:
    """Write :data:`EXAMPLES` to ``directory/seed_examples.py`` and import it."""
    path = os.path.join(directory, "seed_examples.py")
    with open(path, "w") as f:
        f.write(EXAMPLES)
    spec = importlib.util.spec_from_file_location("seed_examples", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclasses.dataclass
class Case:
    """One demo case: what to trace, on what, and which batch size to generalise to."""

    name: str
    code: str  # how the user writes the trace call
    build: Callable[[Any], Tuple[Any, Any]]  # examples module -> (what to trace, eager reference)
    example: Callable[[], Tuple[torch.Tensor, ...]]
    other: Callable[[], Tuple[torch.Tensor, ...]]  # another batch size
    tables: Tuple[str, ...] = ("nodes",)


def _net(ex: Any) -> Tuple[Any, Any]:
    n = ex.Net()
    return n.forward, n


def _net_module(ex: Any) -> Tuple[Any, Any]:
    n = ex.Net()
    return n, n


def _convnet(ex: Any) -> Tuple[Any, Any]:
    m = ex.ConvNet().eval()
    with torch.no_grad():  # non-trivial running statistics so that BN does something
        m.bn.running_mean.uniform_(-0.5, 0.5)
        m.bn.running_var.uniform_(0.5, 2.0)
    return m, m


CASES: List[Case] = [
    Case("foo", "fxtrace.trace(foo, (torch.rand(3), torch.rand(3)))",
         lambda ex: (ex.foo, ex.foo), lambda: (torch.rand(3), torch.rand(3)),
         lambda: (torch.rand(7), torch.rand(7))),
    Case("Net via n.forward", "fxtrace.trace(n.forward, torch.rand(1, 1, 3, 3))",
         _net, lambda: (torch.rand(1, 1, 3, 3),), lambda: (torch.rand(4, 1, 3, 3),)),
    Case("Net via n", "fxtrace.trace(n, torch.rand(1, 1, 3, 3))",
         _net_module, lambda: (torch.rand(1, 1, 3, 3),), lambda: (torch.rand(4, 1, 3, 3),)),
    Case("ConvNet (eval)", "fxtrace.trace(ConvNet().eval(), torch.randn(2, 3, 16, 16))",
         _convnet, lambda: (torch.randn(2, 3, 16, 16),), lambda: (torch.randn(5, 3, 16, 16),),
         tables=("nodes", "modules", "specialisations")),
]


# --------------------------------------------------------------------------- one case

@dataclasses.dataclass
class Result:
    name: str
    type: str = "-"
    check: str = "n/a"
    batch: str = "n/a"
    reload: str = "n/a"
    max_err: float = 0.0
    problems: List[str] = dataclasses.field(default_factory=list)
    # kept for the fresh-process step
    eager_outputs: List[Any] = dataclasses.field(default_factory=list)
    saved: bool = False

    @property
    def ok(self) -> bool:
        return (self.check, self.batch, self.reload) == ("OK", "OK", "OK")


def _max_abs(a: Any, b: Any) -> float:
    """The largest absolute difference over the leaves of two outputs (inf: they differ in
    structure, shape or a non-tensor value)."""
    xs, ys = list(tree.leaves(a)), list(tree.leaves(b))
    if len(xs) != len(ys):
        return float("inf")
    return max((_leaf_max_abs(x, y) for x, y in zip(xs, ys)), default=0.0)


def _leaf_max_abs(a: Any, b: Any) -> float:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape or a.numel() == 0:
            return float("inf") if a.shape != b.shape else 0.0
        return float((a.detach().double() - b.detach().double()).abs().max())
    return 0.0 if a == b else float("inf")


def _compare(actual: Any, expected: Any) -> Tuple[bool, float]:
    err = _max_abs(actual, expected)
    try:
        torch.testing.assert_close(actual, expected)
    except AssertionError:
        return False, err
    return True, err


def _header(text: str, char: str = "=") -> None:
    print()
    print(char * 78)
    print(text)
    print(char * 78)


def _type_name(traced: Any) -> str:
    if isinstance(traced, torch.jit.ScriptFunction):
        return "ScriptFunction"
    if isinstance(traced, torch.jit.ScriptModule):
        return "ScriptModule"
    return type(traced).__name__


def run_case(index: int, case: Case, ex: Any, workdir: str, fmt: str) -> Result:
    res = Result(case.name)
    _header(f"[{index + 1}/{len(CASES)}] {case.name}:  {case.code}")
    func, eager = case.build(ex)
    example, other = case.example(), case.other()
    try:
        traced = fxtrace.trace(func, example)  # check_trace=True is the default
    except Exception as e:  # noqa: BLE001 - report and go on with the next case
        res.check = "FAIL"
        res.problems.append(f"trace failed: {type(e).__name__}: {e}")
        print(f"trace FAILED: {type(e).__name__}: {e}")
        return res
    res.type, res.check = _type_name(traced), "OK"
    print(f"result: {type(traced).__module__}.{type(traced).__name__} ({res.type}); "
          "check_trace: OK")
    for name in case.tables:
        print(f"\n-- {name} --")
        print(fi.TABLES[name](traced, fmt=fmt))

    print("\n-- generalisation to another batch size --")
    with torch.no_grad():
        for label, inputs in (("example", example), ("other batch", other)):
            expected = eager(*inputs)
            try:
                ok, err = _compare(traced(*inputs), expected)
            except Exception as e:  # noqa: BLE001 - e.g. a guard refusing the new shape
                ok, err = False, float("inf")
                res.problems.append(f"{label}: trace raised {type(e).__name__}: "
                                    f"{str(e).strip().splitlines()[-1]}")
            shapes = ", ".join("x".join(map(str, t.shape)) for t in inputs)
            print(f"  {label:<12} inputs {shapes:<18} {'OK' if ok else 'FAIL'}  "
                  f"max abs err {err:.3g}")
            res.max_err = max(res.max_err, err)
            res.eager_outputs.append(expected)
            if label == "other batch":
                res.batch = "OK" if ok else "FAIL"
                if not ok:
                    res.problems.append(f"batch {shapes}: trace and eager differ (max abs err "
                                        f"{err:.3g})")

    path = os.path.join(workdir, f"case{index}.pt")
    try:
        with _quiet_jit_deprecation():
            torch.jit.save(traced, path)
        torch.save([list(example), list(other)], os.path.join(workdir, f"case{index}_in.pt"))
        res.saved = True
        print(f"\nsaved {os.path.basename(path)} ({os.path.getsize(path)} bytes) for the "
              "fresh-process reload")
    except Exception as e:  # noqa: BLE001
        res.reload = "FAIL"
        res.problems.append(f"torch.jit.save failed: {type(e).__name__}: {e}")
        print(f"\ntorch.jit.save FAILED: {type(e).__name__}: {e}")
    return res


# --------------------------------------------------------------------------- fresh process

#: Runs in a new interpreter: torch only. ``sys.modules["fxtrace"] = None`` makes any import of
#: fxtrace (direct, or by unpickling something that names it) fail.
CHILD = textwrap.dedent(r'''
    import json, sys, warnings
    sys.modules["fxtrace"] = None
    import torch
    warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated",
                            category=DeprecationWarning)
    workdir, names = sys.argv[1], sys.argv[2:]
    report = {}
    with torch.no_grad():
        for name in names:
            try:
                m = torch.jit.load(f"{workdir}/{name}.pt")
                inputs = torch.load(f"{workdir}/{name}_in.pt")
                torch.save([m(*args) for args in inputs], f"{workdir}/{name}_out.pt")
                report[name] = "ok"
            except Exception as e:
                report[name] = f"{type(e).__name__}: {e}"
    report["fxtrace imported"] = [k for k, v in sys.modules.items()
                                  if k.split(".")[0] == "fxtrace" and v is not None]
    print(json.dumps(report))
''')


def reload_in_fresh_process(results: Sequence[Result], workdir: str) -> None:
    _header("save / reload in a fresh process (python -I -c ..., imports torch only)")
    names = [f"case{i}" for i, r in enumerate(results) if r.saved]
    if not names:
        print("nothing was saved")
        return
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-I", "-c", CHILD, workdir, *names],
                          capture_output=True, text=True, timeout=300, cwd=workdir)
    elapsed = time.perf_counter() - t0
    report = None
    if proc.returncode == 0 and proc.stdout.strip():
        try:
            report = json.loads(proc.stdout.strip().splitlines()[-1])
        except ValueError:
            report = None
    if report is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        print(f"the fresh process failed (exit {proc.returncode}): " + " | ".join(tail))
        for r in results:
            if r.saved:
                r.reload = "FAIL"
                r.problems.append("fresh process failed: " + " | ".join(tail))
        return
    leaked = report.pop("fxtrace imported", [])
    print(f"child process: exit {proc.returncode} in {elapsed:.1f} s; fxtrace modules "
          f"imported there: {leaked or 'none'}")
    for i, r in enumerate(results):
        name = f"case{i}"
        if not r.saved:
            continue
        status = report.get(name, "missing from the child's report")
        if status != "ok":
            r.reload = "FAIL"
            r.problems.append(f"reload: {status}")
            print(f"  {r.name:<20} FAIL  {status}")
            continue
        outputs = torch.load(os.path.join(workdir, f"{name}_out.pt"))
        ok, err = True, 0.0
        for got, expected in zip(outputs, r.eager_outputs):
            same, e = _compare(got, expected)
            ok, err = ok and same, max(err, e)
        ok = ok and len(outputs) == len(r.eager_outputs) and not leaked
        r.reload = "OK" if ok else "FAIL"
        r.max_err = max(r.max_err, err)
        if not ok:
            r.problems.append(f"reloaded outputs differ from eager (max abs err {err:.3g})"
                              if not leaked else f"fxtrace was imported in the child: {leaked}")
        print(f"  {r.name:<20} {'OK' if ok else 'FAIL'}  reloaded vs eager on "
              f"{len(outputs)} input sets, max abs err {err:.3g}")


# --------------------------------------------------------------------------- main

def summary_table(results: Sequence[Result], fmt: str = "simple") -> str:
    from tabulate import tabulate

    rows = [(r.name, r.type, r.check, r.batch, r.reload, f"{r.max_err:.3g}") for r in results]
    return tabulate(rows, headers=["case", "type", "check", "batch-generalises",
                                   "save/reload-in-fresh-process", "max abs err"],
                    tablefmt=fmt, disable_numparse=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the demo; returns 0 only if every case passes every step."""
    parser = argparse.ArgumentParser(
        prog="fxtrace demo",
        description="Trace the seed examples (foo, Net via n.forward and n, a small conv net), "
                    "check them, generalise to another batch size, save and reload them in a "
                    "fresh process without fxtrace, and print a summary. Exit 0 only if all "
                    "pass.")
    parser.add_argument("--format", default="simple", metavar="FMT",
                        help="table format (any tabulate tablefmt; default: simple)")
    parser.add_argument("--keep", metavar="DIR",
                        help="write the saved files to DIR and keep them (default: a temporary "
                             "directory, removed at the end)")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    t0 = time.perf_counter()
    torch.manual_seed(0)
    print(f"fxtrace {fxtrace.__version__} demo  (torch {torch.__version__}, "
          f"python {sys.version.split()[0]})")
    with contextlib.ExitStack() as stack:
        if args.keep:
            os.makedirs(args.keep, exist_ok=True)
            workdir = os.path.abspath(args.keep)
        else:
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="fxtrace-demo-"))
        ex = load_examples(workdir)
        _header("the seed examples (seed_examples.py)")
        print(EXAMPLES.rstrip())
        results = []
        for i, case in enumerate(CASES):
            try:
                results.append(run_case(i, case, ex, workdir, args.format))
            except Exception as e:  # noqa: BLE001 - a bug in a step: report it as a failure
                traceback.print_exc()
                results.append(Result(case.name, check="FAIL",
                                      problems=[f"{type(e).__name__}: {e}"]))
        reload_in_fresh_process(results, workdir)
    _header("summary")
    print(summary_table(results, args.format))
    failed = [r for r in results if not r.ok]
    for r in failed:
        for p in r.problems or ["did not pass"]:
            print(f"  {r.name}: {p}")
    elapsed = time.perf_counter() - t0
    if failed:
        print(f"\ndemo FAILED: {len(failed)} of {len(results)} cases ({elapsed:.1f} s)")
        return 1
    print(f"\ndemo passed: all {len(results)} cases traced, checked, generalised to another "
          f"batch size and reloaded without fxtrace ({elapsed:.1f} s)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
