"""Write the table of docs/export.md: ``torch.export.export`` beside ``fxtrace.export``.

    python scripts/export_table.py            # rewrite the block between the markers
    python scripts/export_table.py --print    # print the table only
    python scripts/export_table.py --check    # exit 1 when docs/export.md has drifted
    python scripts/export_table.py --only zoo:mlp,trap:branch_on_sum   # some rows

Every model of the zoo (tests/zoo.py), the vision families in eval mode (tests/models/),
the Hugging Face models (tests/hf_models.py, ``use_cache=False``) and the trap programs
(tests/traps.py) is exported twice:

* ``torch.export``: ``torch.export.export(model, strict=False)`` with ``Dim.AUTO`` on every dim
  of every tensor input (export decides which stay symbolic);
* ``fxtrace``: ``fxtrace.export(model, ...)`` with its defaults (the dims the capture keeps
  live, confirmed by ``probe_dynamic``).

For each: did export succeed (else the exception class), which dims the program keeps
symbolic, and how the program does on the example and on the other inputs of the entry
(other batch sizes, sequence lengths, image sizes; a trap's probes, leaving out those that
switch the model's mode first). ``match``: equal to eager; ``guard``: an fxtrace guard refused;
``refused``: the program's own checks refused (its input checks on a dim export made static,
or an ``_assert_scalar`` runtime assertion); ``wrong``: a
different answer, silently; ``error``: anything else. Inputs eager itself refuses are left out.
The table has no timings; ``tests/test_export.py`` checks rows of it against a fresh run.
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import pathlib
import re
import sys
import warnings
from collections import Counter
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
from torch.export import Dim  # noqa: E402
from torch.utils import _pytree as pytree  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import fxtrace  # noqa: E402
from fxtrace.exporting.program import dim_symbols  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
from doc_block import DocBlock  # noqa: E402

__all__ = ["DOC", "BEGIN", "END", "BLOCK", "Entry", "entries", "row", "table", "block_of", "written",
           "COLUMNS"]

DOC = ROOT / "docs" / "export.md"
BEGIN, END = "<!-- export-table:begin -->", "<!-- export-table:end -->"
BLOCK = DocBlock(DOC, BEGIN, END)
block_of, written = BLOCK.of, BLOCK.replaced
COLUMNS = ["family", "model", "torch.export", "dims", "other inputs", "fxtrace.export", "dims",
           "other inputs"]

Call = Tuple[Tuple[Any, ...], Dict[str, Any]]


@dataclasses.dataclass
class Entry:
    """One model: ``make()`` builds it fresh, ``example`` is the call it is exported at,
    ``others`` the calls it is run on afterwards (the example first)."""

    family: str
    name: str
    make: Callable[[], Any]
    example: Call
    others: List[Call]

    @property
    def key(self) -> str:
        return f"{self.family}:{self.name}"


def _zoo() -> List[Entry]:
    import zoo
    return [Entry("zoo", c.name, c.make, (c.example(c.batch), {}),
                  [(c.example(b), {}) for b in (c.batch + 1, c.batch + 3)])
            for c in zoo.CASES]


def _vision() -> List[Entry]:
    from models.vision import CASES
    return [Entry("vision", c.name, (lambda c=c: c.make().eval()), (c.example(c.batch), {}),
                  [(c.example(b, hw), {}) for b, hw in c.probes]) for c in CASES]


def _hf() -> List[Entry]:
    import hf_models
    return [Entry("hf", c.name, c.fixed, ((), c.inputs(*c.traced)),
                  [((), c.inputs(*o)) for o in c.other]) for c in hf_models.CASES]


def _traps() -> List[Entry]:
    import traps
    return [Entry("trap", t.name, t.make, (t.example_inputs, {}),
                  [(p.args, {}) for p in t.probes() if p.setup is None]) for t in traps.TRAPS]


def entries(families: Sequence[str] = ("zoo", "vision", "hf", "trap")) -> List[Entry]:
    """Every entry of ``families``, in table order."""
    make = {"zoo": _zoo, "vision": _vision, "hf": _hf, "trap": _traps}
    return [e for f in families for e in make[f]()]


class _Function(torch.nn.Module):
    """A plain function as the module ``torch.export.export`` asks for."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


def _auto(t: Any) -> Any:
    return {d: Dim.AUTO for d in range(t.dim())} if isinstance(t, torch.Tensor) else None


def torch_export(model: Any, call: Call) -> torch.export.ExportedProgram:
    """``torch.export.export(strict=False)`` with ``Dim.AUTO`` on every dim."""
    args, kwargs = call
    if isinstance(model, torch.nn.Module):
        names = inspect.signature(model.forward).bind(*args, **kwargs).arguments
        spec: Any = {k: pytree.tree_map(_auto, v) for k, v in names.items()}
    else:
        model = _Function(model)
        spec = {"args": pytree.tree_map(_auto, tuple(args))}
    return torch.export.export(model, tuple(args), dict(kwargs), dynamic_shapes=spec,
                               strict=False)


def _leaves(out: Any) -> List[Any]:
    if hasattr(out, "to_tuple"):  # a transformers ModelOutput
        out = out.to_tuple()
    return pytree.tree_leaves(out)


def _same(got: Any, want: Any) -> bool:
    a, b = _leaves(got), _leaves(want)
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if isinstance(y, torch.Tensor):
            if not (isinstance(x, torch.Tensor) and x.shape == y.shape and x.dtype == y.dtype
                    and torch.allclose(x, y, rtol=1e-4, atol=1e-5, equal_nan=True)):
                return False
        elif x != y:
            return False
    return True


#: The program's own checks: its input checks (a dim export made static) and its runtime
#: assertions (``_assert_scalar``, a fxtrace guard on a size export could not decide).
_REFUSALS = ("Guard failed", "Expected input", "Runtime assertion failed")


def _outcome(program: Any, model: Any, call: Call) -> str:
    """One call of the loaded program beside one call of eager (state carries from call to
    call on both, as in tests/traps.py)."""
    args, kwargs = call
    torch.manual_seed(0)
    try:
        with torch.no_grad():
            want = model(*args, **kwargs)
    except Exception:  # noqa: BLE001 - outside the model's domain: not counted
        return "n/a"
    try:
        torch.manual_seed(0)
        with torch.no_grad():
            got = program(*args, **kwargs)
    except Exception as e:  # noqa: BLE001
        text = str(e)
        if "fxtrace guard failed" in text:
            return "guard"
        return "refused" if any(s in text for s in _REFUSALS) else "error"
    try:
        return "match" if _same(got, want) else "wrong"
    except Exception:  # noqa: BLE001 - an output eager cannot compare with (fake, meta)
        return "wrong"


def _summary(outcomes: List[str]) -> str:
    counts = Counter(o for o in outcomes if o != "n/a")
    order = ("match", "guard", "refused", "wrong", "error")
    return ", ".join(f"{counts[k]} {k}" for k in order if counts[k]) or "-"


_PATH = re.compile(r"^(?:args\[(\d+)\]|kwargs\['([^']+)'\])(.*)\.shape\[(\d+)\]$")


def _dims(ep: torch.export.ExportedProgram) -> str:
    """``input:dim`` of each symbolic dim (``0:1``, ``input_ids:1``); dims of one symbol
    (equal at run time) joined by ``=``."""
    groups: Dict[str, List[str]] = {}
    for path, symbol in dim_symbols(ep):
        m = _PATH.match(path)
        name = path if m is None else f"{m.group(1) or m.group(2)}{m.group(3)}:{m.group(4)}"
        groups.setdefault(symbol, []).append(name)
    return " ".join("=".join(g) for g in groups.values()) or "static"


def _side(export: Callable[[Any, Call], torch.export.ExportedProgram], entry: Entry
          ) -> List[str]:
    try:
        ep = export(entry.make(), entry.example)
    except Exception as e:  # noqa: BLE001 - the refusal is the result
        return [f"fails: {type(e).__name__}", "-", "-"]
    program, model = ep.module(), entry.make()
    outcomes = [_outcome(program, model, c) for c in [entry.example] + entry.others]
    return ["ok", _dims(ep), _summary(outcomes)]


def _fxtrace_export(model: Any, call: Call) -> torch.export.ExportedProgram:
    args, kwargs = call
    return fxtrace.export(model, args if args else None,
                          example_kwarg_inputs=kwargs if not args else None)


def row(entry: Entry) -> List[str]:
    """The table row of ``entry`` (torch.export, then fxtrace.export)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [entry.family, entry.name, *_side(torch_export, entry),
                *_side(_fxtrace_export, entry)]


def markdown(rows: List[List[str]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def table(only: Optional[Sequence[str]] = None,
          families: Sequence[str] = ("zoo", "vision", "hf", "trap")) -> str:
    """The fresh table (markdown); ``only``: the entry keys (``zoo:mlp``) to run."""
    chosen = [e for e in entries(families) if only is None or e.key in only]
    rows = []
    for i, e in enumerate(chosen):
        rows.append(row(e))
        print(f"[{i + 1}/{len(chosen)}] {e.key}", file=sys.stderr, flush=True)  # progress
    return f"torch {torch.__version__}\n\n" + markdown(rows)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--print", action="store_true", dest="print_only")
    p.add_argument("--check", action="store_true")
    p.add_argument("--only", default=None, help="comma-separated entry keys (zoo:mlp)")
    p.add_argument("--families", default="zoo,vision,hf,trap",
                   help="comma-separated families to run (printed only unless all)")
    a = p.parse_args(argv)
    fresh = table(a.only.split(",") if a.only else None, a.families.split(","))
    if a.print_only or a.only or a.families != "zoo,vision,hf,trap":
        print(fresh)
        return 0
    return BLOCK.check_or_write(fresh, a.check)


if __name__ == "__main__":
    sys.exit(main())
