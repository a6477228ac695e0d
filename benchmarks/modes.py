"""Capture modes side by side: torch.fx.symbolic_trace, fxtrace symbolic, concrete and auto.

Over the zoo models (``tests/zoo.py``), the vision families (``tests/models/vision.py``, eval
mode) and the Hugging Face models of ``tests/hf_models.py`` (``use_cache=False``), for each:

* ``fx``        — ``torch.fx.symbolic_trace(model)`` succeeds (the oracle of what fx follows);
* ``symbolic`` / ``concrete`` — ``fxtrace.trace(..., mode=M, check_trace=False)`` succeeds;
* ``auto``      — the mode ``mode="auto"`` chose;
* ``guards S`` / ``C`` — ``torch._assert`` guard nodes in the symbolic / concrete capture
  tree (a symbolic capture's guards are those of its leaves and of its non-tensor inputs);
* ``other batch S`` / ``C`` — of the two other batch sizes, how many give eager's outputs
  (a guard failure or an error counts as not generalising);
* ``trace ms S`` / ``C`` — one ``check_trace=False`` trace of a fresh model, after one
  unmeasured warmup trace of the first model (timings are printed with ``--timings`` only:
  they are not part of the drift-tested table of docs/modes.md).

    python benchmarks/modes.py [--timings] [--family zoo,vision,hf] [--models mlp,resnet]
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.fx as fx  # noqa: E402

import fxtrace  # noqa: E402
from fxtrace.capture.meta import GUARD  # noqa: E402
from fxtrace.checking.agreement import same_values  # noqa: E402

__all__ = ["Case", "Row", "cases", "measure", "run", "COLUMNS", "TIMING_COLUMNS"]

Inputs = Tuple[Tuple[Any, ...], Dict[str, Any]]
COLUMNS = ["family", "model", "fx", "symbolic", "concrete", "auto", "guards S", "guards C",
           "other batch S", "other batch C"]
TIMING_COLUMNS = ["family", "model", "trace ms S", "trace ms C"]


@dataclasses.dataclass(frozen=True)
class Case:
    """One model: ``make()`` builds it fresh; ``inputs(batch)`` its (args, kwargs)."""

    family: str
    name: str
    make: Callable[[], Any]
    inputs: Callable[[int], Inputs]
    batch: int
    others: Tuple[int, int]
    strict: bool = True


@dataclasses.dataclass
class Row:
    case: Case
    fx: str
    modes: Dict[str, str]            # "symbolic"/"concrete" -> "yes" or the error type
    auto: str
    guards: Dict[str, Optional[int]]
    general: Dict[str, Optional[int]]
    ms: Dict[str, Optional[float]]

    def cells(self) -> List[str]:
        both = ("symbolic", "concrete")
        return [self.case.family, self.case.name, self.fx, self.modes["symbolic"],
                self.modes["concrete"], self.auto,
                *("-" if self.guards[m] is None else str(self.guards[m]) for m in both),
                *("-" if self.general[m] is None else f"{self.general[m]}/2" for m in both)]

    def timing_cells(self) -> List[str]:
        return [self.case.family, self.case.name,
                *("-" if self.ms[m] is None else f"{self.ms[m]:.0f}"
                  for m in ("symbolic", "concrete"))]


def _positional(example: Callable[[int], Tuple[Any, ...]], batch: int) -> Inputs:
    return example(batch), {}


def _keywords(inputs: Callable[[int, int], Dict[str, Any]], length: int, batch: int) -> Inputs:
    return (), inputs(batch, length)


def _eval(make: Callable[[], Any]) -> Any:
    return make().eval()


def cases(families: Sequence[str] = ("zoo", "vision", "hf")) -> List[Case]:
    """Every model of the three families, in a fixed order."""
    out: List[Case] = []
    if "zoo" in families:
        import zoo
        for z in zoo.CASES:
            out.append(Case("zoo", z.name, z.make, functools.partial(_positional, z.example),
                            z.batch, (3, 5)))
    if "vision" in families:
        from models import vision
        for v in vision.CASES:
            out.append(Case("vision", v.name, functools.partial(_eval, v.make),
                            functools.partial(_positional, v.example), v.batch, (1, 5),
                            strict=v.strict))
    if "hf" in families:
        import hf_models
        for h in hf_models.CASES:
            out.append(Case("hf", h.name, h.fixed,
                            functools.partial(_keywords, h.inputs, h.traced[1]),
                            h.traced[0], (1, 3), strict=False))
    return out


def _guards(traced: Any) -> int:
    gm = traced._fxtrace_capture
    return sum(1 for sub in gm.modules() if isinstance(sub, fx.GraphModule)
               for n in sub.graph.nodes if n.meta.get(GUARD))


def _trace(case: Case, model: Any, mode: str) -> Any:
    args, kwargs = case.inputs(case.batch)
    with torch.no_grad():
        if kwargs:
            return fxtrace.trace(model, example_kwarg_inputs=kwargs, check_trace=False,
                                 strict=case.strict, mode=mode)
        return fxtrace.trace(model, args, check_trace=False, strict=case.strict, mode=mode)


def _generalises(case: Case, model: Any, traced: Any) -> int:
    n = 0
    for batch in case.others:
        args, kwargs = case.inputs(batch)
        try:
            with torch.no_grad():
                n += same_values(traced(*args, **kwargs), model(*args, **kwargs))
        except Exception:  # noqa: BLE001 - a guard failure or an error: does not generalise
            pass
    return n


def measure(case: Case) -> Row:
    """One row: every capture of a fresh model (so one mode's run cannot help another)."""
    try:
        fx.symbolic_trace(case.make())
        fx_ok = "yes"
    except Exception as e:  # noqa: BLE001 - the oracle's failure is a result
        fx_ok = f"no ({type(e).__name__})"
    modes: Dict[str, str] = {}
    guards: Dict[str, Optional[int]] = {}
    general: Dict[str, Optional[int]] = {}
    ms: Dict[str, Optional[float]] = {}
    for mode in ("symbolic", "concrete"):
        model = case.make()
        start = time.perf_counter()
        try:
            traced = _trace(case, model, mode)
        except Exception as e:  # noqa: BLE001 - a failing mode is a result
            modes[mode], guards[mode], general[mode], ms[mode] = \
                f"no ({type(e).__name__})", None, None, None
            continue
        ms[mode] = (time.perf_counter() - start) * 1e3
        modes[mode], guards[mode] = "yes", _guards(traced)
        general[mode] = _generalises(case, model, traced)
    try:
        auto = _trace(case, case.make(), "auto")._fxtrace_capture.meta["fxtrace"].mode
    except Exception as e:  # noqa: BLE001
        auto = f"no ({type(e).__name__})"
    return Row(case, fx_ok, modes, auto, guards, general, ms)


def run(families: Sequence[str] = ("zoo", "vision", "hf"),
        models: Optional[Sequence[str]] = None) -> List[Row]:
    warnings.simplefilter("ignore")
    chosen = [c for c in cases(families) if models is None or c.name in models]
    if chosen:  # warm up imports and TorchScript's compiler, so the first timing is not theirs
        for mode in ("symbolic", "concrete"):
            _trace(chosen[0], chosen[0].make(), mode)
    return [measure(c) for c in chosen]


def markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", default="zoo,vision,hf")
    p.add_argument("--models", default="")
    p.add_argument("--timings", action="store_true")
    a = p.parse_args(argv)
    rows = run(a.family.split(","), a.models.split(",") if a.models else None)
    print(markdown(COLUMNS, [r.cells() for r in rows]))
    if a.timings:
        print()
        print(markdown(TIMING_COLUMNS, [r.timing_cells() for r in rows]))


if __name__ == "__main__":
    main()
