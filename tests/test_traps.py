"""The trap suite (fxtrace issue #3, "How to prove it").

Every program in ``tests/traps.py`` is one that ``torch.jit.trace`` gets *silently* wrong. Each
trap is traced on its example inputs by ``torch.jit.trace``, by ``fxtrace.trace`` (guards on,
the default) and by ``fxtrace.trace(guards=False)``, then run on probe inputs that take another
path; eager (on a fresh model, on cloned inputs) is the oracle. Outcomes per probe:

* ``correct`` -- the result matches eager (values within tolerance, same dtype/shape/device);
* ``refused`` -- the trace (or the traced program) raises: a guard or another clear error;
* ``silently wrong`` -- it returns a value that differs from eager.

Asserted:

1. ``test_trap_is_real``: torch.jit.trace is silently wrong on at least one probe of every trap
   (otherwise the program is not a trap and must be fixed);
2. ``test_fxtrace_never_silently_wrong``: fxtrace (guards on) is never silently wrong. Traps
   fxtrace still gets wrong are ``xfail(strict=True)`` with a diagnosis in ``PENDING``;
3. ``test_guards_off_agrees_with_jit``: ``fxtrace.trace(guards=False)`` computes what
   torch.jit.trace computes, except where torch.jit is the buggy one (fxtrace without guards
   matches eager because it kept the value live: sizes, ranks, dtypes).

``test_outcome_table`` prints the table at the end of the run. ``python tests/test_traps.py``
prints it too; ``--markdown`` prints the markdown table pasted into ``docs/soundness.md``.
"""
from __future__ import annotations

import functools
import os
import sys
import warnings
from typing import Any, Dict, List, Optional, Tuple

import pytest
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from traps import CATEGORIES, TRAPS, Trap  # noqa: E402

import fxtrace  # noqa: E402

CORRECT, REFUSED, WRONG = "correct", "refused", "silently wrong"
RTOL, ATOL = 1e-4, 1e-5

#: Traps on which fxtrace (guards on) is silently wrong today, with the diagnosis. Each is an
#: xfail(strict=True): remove the entry when the fix lands (the test then fails if it is kept).
PENDING: Dict[str, str] = {}

#: Traps where fxtrace(guards=False) and torch.jit.trace disagree and fxtrace is not the one
#: that matches eager: xfail(strict=True) on test_guards_off_agrees_with_jit.
GUARDS_OFF_PENDING: Dict[str, str] = {
}


# --------------------------------------------------------------------------------- running
def _clone(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, (tuple, list)):
        return type(value)(_clone(v) for v in value)
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    return value


def _same(a: Any, b: Any) -> bool:
    """Equal as results: tensors of the same dtype, shape and device with close values."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        if a.dtype != b.dtype or a.shape != b.shape or a.device != b.device:
            return False
        if a.device.type == "meta":
            return True
        if a.is_floating_point() or a.is_complex():
            return bool(torch.allclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True))
        return bool(torch.equal(a, b))
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _short_error(e: BaseException) -> str:
    text = str(e).strip()
    marker = "fxtrace guard failed at "
    if marker in text:
        where = text[text.index(marker) + len(marker):].split(" ", 1)[0].rstrip(":")
        return f"guard at {where}"
    first = text.splitlines()[0] if text else ""
    for line in text.splitlines():  # TorchScript puts the Python exception last
        if line.startswith(("RuntimeError:", "IndexError:", "ValueError:", "TypeError:")):
            first = line
    return f"{type(e).__name__}: {first[:70]}"


class Result:
    """What one implementation did on one probe: a value or an error."""

    def __init__(self, value: Any = None, error: Optional[BaseException] = None) -> None:
        self.value, self.error = value, error

    def outcome(self, eager: "Result") -> str:
        if self.error is not None:
            return REFUSED
        return CORRECT if _same(self.value, eager.value) else WRONG


def _restore(traced: Any, fresh: Any) -> None:
    """Give a traced module the state a fresh model has (the trace ran forward once)."""
    if isinstance(fresh, nn.Module):
        traced.load_state_dict(fresh.state_dict())
        traced.train(fresh.training)


def _call(model: Any, probe: Any) -> Result:
    try:
        if probe.setup is not None:
            probe.setup(model)
        torch.manual_seed(1)
        with torch.no_grad():
            return Result(model(*_clone(probe.args)))
    except Exception as e:  # noqa: BLE001 -- every error is an outcome
        return Result(error=e)


def _trace(trap: Trap, impl: str) -> Tuple[Any, Optional[BaseException]]:
    model = trap.make()
    fresh = trap.make()
    torch.manual_seed(0)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            if impl == "jit":
                traced = torch.jit.trace(model, _clone(trap.example_inputs), check_trace=False)
            else:
                traced = fxtrace.trace(model, _clone(trap.example_inputs), check_trace=False,
                                       guards=(impl == "fxtrace"))
    except Exception as e:  # noqa: BLE001
        return None, e
    _restore(traced, fresh)
    return traced, None


@functools.lru_cache(maxsize=None)
def run_trap(name: str) -> Dict[str, List[Result]]:
    """``{impl: [Result per probe]}`` for impl in eager, jit, fxtrace, fxtrace_noguards."""
    trap = next(t for t in TRAPS if t.name == name)
    probes = trap.probes()
    results: Dict[str, List[Result]] = {}
    eager = trap.make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results["eager"] = [_call(eager, p) for p in probes]
    for impl in ("jit", "fxtrace", "fxtrace_noguards"):
        traced, error = _trace(trap, impl)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results[impl] = [Result(error=error) if error is not None else _call(traced, p)
                             for p in probes]
    return results


def outcomes(name: str, impl: str) -> List[str]:
    res = run_trap(name)
    return [r.outcome(e) for r, e in zip(res[impl], res["eager"])]


def summary(name: str, impl: str) -> str:
    """The worst outcome over the probes: silently wrong > refused > correct."""
    got = outcomes(name, impl)
    return WRONG if WRONG in got else REFUSED if REFUSED in got else CORRECT


def detail(name: str, impl: str) -> str:
    """The first error of a refusing implementation, shortened."""
    for r in run_trap(name)[impl]:
        if r.error is not None:
            return _short_error(r.error)
    return ""


def guards_off_disagreements(name: str) -> List[str]:
    """Probes where fxtrace(guards=False) and torch.jit differ *and* fxtrace is not the one
    matching eager (where it is, torch.jit is the known-buggy side)."""
    res = run_trap(name)
    out = []
    for i, (fx, jit, eager) in enumerate(zip(res["fxtrace_noguards"], res["jit"], res["eager"])):
        if fx.error is not None and jit.error is not None:
            continue
        if fx.error is not None and "container check" in str(fx.error):
            continue  # fxtrace checks container lengths even with guards=False: a refusal

        if fx.error is None and jit.error is None and _same(fx.value, jit.value):
            continue
        if fx.error is None and _same(fx.value, eager.value):
            continue  # fxtrace kept the value live; torch.jit froze it
        what = (f"fxtrace raised {_short_error(fx.error)}" if fx.error is not None else
                f"jit raised {_short_error(jit.error)}" if jit.error is not None else
                "different values")
        out.append(f"probe {i}: {what}")
    return out


# ------------------------------------------------------------------------------------ tables
HEADERS = ["trap", "category", "torch.jit.trace", "fxtrace", "fxtrace (guards=False)", "why"]


def rows(markdown: bool = False) -> List[List[str]]:
    table = []
    for t in TRAPS:
        fx = summary(t.name, "fxtrace")
        why = detail(t.name, "fxtrace") if fx == REFUSED else ""
        if t.name in PENDING:
            fx = f"{fx} (pending)"
        name = f"`{t.name}`" if markdown else t.name
        if t.kind == "control":
            name += " (control)"
        table.append([name, t.category, summary(t.name, "jit"), fx,
                      summary(t.name, "fxtrace_noguards"), why])
    return table


def totals() -> str:
    counts = {impl: {o: 0 for o in (CORRECT, REFUSED, WRONG)}
              for impl in ("jit", "fxtrace", "fxtrace_noguards")}
    for t in TRAPS:
        for impl in counts:
            counts[impl][summary(t.name, impl)] += 1
    return "; ".join(f"{impl}: " + ", ".join(f"{n} {o}" for o, n in c.items())
                     for impl, c in counts.items())


def render(markdown: bool = False) -> str:
    from tabulate import tabulate
    text = tabulate(rows(markdown), headers=HEADERS, tablefmt="github" if markdown else "simple")
    return f"{text}\n\n{len(TRAPS)} traps. {totals()}"


# ------------------------------------------------------------------------------------- tests
def _marks(t: Trap, pending: Dict[str, str]) -> List[Any]:
    return [pytest.mark.xfail(strict=True, reason=pending[t.name])] if t.name in pending else []


TRAP_IDS = [t.name for t in TRAPS]


@pytest.mark.parametrize("trap", TRAPS, ids=TRAP_IDS)
def test_trap_is_real(trap: Trap) -> None:
    """torch.jit.trace returns a silently wrong result on at least one probe (a "control"
    program instead makes torch.jit.trace raise: it is kept because fxtrace must not be worse)."""
    got = outcomes(trap.name, "jit")
    if trap.kind == "control":
        assert WRONG not in got and REFUSED in got, f"{trap.name}: torch.jit.trace gives {got}"
    else:
        assert WRONG in got, f"{trap.name} is not a trap: torch.jit.trace gives {got}"


@pytest.mark.parametrize("trap", [pytest.param(t, marks=_marks(t, PENDING)) for t in TRAPS],
                         ids=TRAP_IDS)
def test_fxtrace_never_silently_wrong(trap: Trap) -> None:
    """fxtrace either computes what eager computes or raises."""
    got = outcomes(trap.name, "fxtrace")
    assert WRONG not in got, f"fxtrace is silently wrong on {trap.name}: {got} ({trap.note})"


@pytest.mark.parametrize("trap", [pytest.param(t, marks=_marks(t, GUARDS_OFF_PENDING))
                                  for t in TRAPS], ids=TRAP_IDS)
def test_guards_off_agrees_with_jit(trap: Trap) -> None:
    """guards=False freezes what torch.jit freezes (or keeps live what torch.jit gets wrong)."""
    assert guards_off_disagreements(trap.name) == []


def test_suite_covers_the_issue() -> None:
    assert len([t for t in TRAPS if t.kind == "trap"]) >= 35
    wanted = {"data-dependent branch", "loop over size", "len", "int(size)",
              "Ellipsis at another rank", "dtype/device", "optional argument", "state mutation",
              "train/eval", ".item() arithmetic", "torch.tensor from sizes",
              "size-dependent split/chunk", "nonzero"}
    assert wanted <= set(CATEGORIES)
    assert all(len([t for t in TRAPS if t.category == c]) >= 2 for c in wanted)
    assert set(PENDING) | set(GUARDS_OFF_PENDING) <= set(TRAP_IDS), "unknown trap pending"


def test_outcome_table(capsys: pytest.CaptureFixture) -> None:
    """Print the outcome table (last test of the file); fxtrace's silent-wrong count outside
    PENDING is zero."""
    text = render()
    with capsys.disabled():
        print("\n\nfxtrace trap suite: outcomes on probe inputs that take another path\n")
        print(text)
        print()
    wrong = [t.name for t in TRAPS if summary(t.name, "fxtrace") == WRONG and t.name not in PENDING]
    assert wrong == []


if __name__ == "__main__":
    print(render(markdown="--markdown" in sys.argv))


def test_soundness_doc_matches_a_fresh_run() -> None:
    """docs/soundness.md shows the outcome table of this run (outcome columns, row by row)."""
    import pathlib
    doc = (pathlib.Path(__file__).resolve().parent.parent / "docs" / "soundness.md").read_text()
    block = doc.split("<!-- trap-table:start -->")[1].split("<!-- trap-table:end -->")[0]

    def outcome_rows(text: str) -> List[List[str]]:
        rows_ = [[c.strip() for c in line.strip().strip("|").split("|")]
                 for line in text.splitlines() if line.startswith("| `")]
        return [r[:5] for r in rows_]

    assert outcome_rows(block) == outcome_rows(render(markdown=True))
