"""The verdict of ``fxtrace.check``: counts, refusal rate, the report and its notes.

NOTE [Acceptance]
A guard refusing an input is a correct answer, but a check whose inputs were all refused has
compared nothing and proves nothing. So the verdict states how many of the inputs eager
accepted the trace accepted too (``accepted``), fails when that is none of the generated ones
(:class:`~fxtrace.PropertyCheckError`, naming the guards that refused most; the example
itself under a rank, dtype or index variant, checked after the search, does not count: it has
the example's own values), and warns (:class:`CheckWarning`, and a ``WARNING`` note) when
fewer than :data:`LOW_ACCEPTANCE` of them were accepted.
"""
from __future__ import annotations

import collections
import dataclasses
import re
from typing import Any, Dict, List, Optional, Tuple

import torch

from .. import tree
from ..inspect.report import CheckReport, OutputCheck
from .calls import Call, abbrev, describe, describe_inputs
from .refusals import guard_location
from .trace_check import compare_outputs, leaf_errors

__all__ = ["CheckWarning", "LOW_ACCEPTANCE", "Stats", "Failure", "count_notes", "leaf_rows",
           "add_agreed_leaves", "merge_desc", "failure_report", "refusal_report", "low_acceptance_note"]

#: Below this share of accepted inputs (of those eager accepts) the check warns.
LOW_ACCEPTANCE = 0.2


class CheckWarning(UserWarning):
    """``fxtrace.check`` passed, but compared few inputs (see NOTE [Acceptance])."""


@dataclasses.dataclass
class Stats:
    """What one ``fxtrace.check`` run saw."""

    examples: int = 0  # inputs run
    batches: int = 0  # Hypothesis examples (each a list of inputs)
    agreed: int = 0
    refused: int = 0
    skipped: int = 0
    spurious: int = 0
    sampled: int = 0
    covered: int = 0  # inputs run after the search: the example under each variant
    covered_agreed: int = 0  # of them, agreed on
    first_refusal: str = ""
    first_skip: str = ""
    leaves: Dict[str, OutputCheck] = dataclasses.field(default_factory=dict)
    # guard location (or message) -> (refusals, one message)
    guards: Dict[str, List[Any]] = dataclasses.field(default_factory=dict)

    @property
    def counts(self) -> Dict[str, int]:
        """The counts a :class:`~fxtrace.inspect.CheckReport` carries."""
        return {"inputs": self.examples, "agreed": self.agreed, "refused": self.refused,
                "skipped": self.skipped}

    @property
    def checked(self) -> int:
        """Inputs eager accepted: each was either agreed on or refused by a guard."""
        return self.agreed + self.refused

    def refuse(self, call: Call, message: str) -> None:
        self.refused += 1
        self.first_refusal = self.first_refusal or f"{describe_inputs(*call)}: {message}"
        entry = self.guards.setdefault(guard_location(message) or message, [0, message])
        entry[0] += 1

    def top_guards(self, n: int = 3) -> List[Tuple[int, str]]:
        """``(refusals, message)`` of the ``n`` guards that refused most."""
        counts = collections.Counter({k: v[0] for k, v in self.guards.items()})
        return [(c, self.guards[k][1]) for k, c in counts.most_common(n)]


class Failure(Exception):
    """One failing input, raised inside Hypothesis (which shrinks it and re-raises)."""

    def __init__(self, kind: str, call: Call, got: Any = None, want: Any = None,
                 detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind, self.call, self.got, self.want, self.detail = kind, call, got, want, detail


def _acceptance(stats: Stats) -> str:
    share = 100.0 * stats.agreed / stats.checked if stats.checked else 0.0
    return f"{stats.agreed} of {stats.checked} inputs accepted ({share:.0f}%)"


def count_notes(stats: Stats) -> List[str]:
    """The notes every report carries: counts, acceptance, the first refusal and skip."""
    runs = f"{stats.examples} inputs run in {stats.batches} Hypothesis examples"
    if stats.covered:
        runs = (f"{stats.examples} inputs run ({stats.examples - stats.covered} in "
                f"{stats.batches} Hypothesis examples, {stats.covered} the example under each "
                "rank, dtype and index variant)")
    notes = [f"{runs}: {stats.agreed} agreed, {stats.refused} refused by a "
             f"guard (a correct refusal, not a pass), {stats.skipped} skipped (eager raised)"]
    if stats.refused:
        notes.append(f"acceptance: {_acceptance(stats)}; the rest were refused by a guard")
    if stats.sampled:
        notes.append(f"save/load and re-trace checked on {stats.sampled} of them (first of each "
                     "input signature)")
    if stats.spurious:
        notes.append(f"{stats.spurious} refusals were spurious: the re-trace on the input gave "
                     "the same graph (a guard stricter than needed; not wrong)")
    if len(stats.guards) > 1:
        notes.append("refused most by: " + "; ".join(
            f"{abbrev(m, 90)} ({c}x)" for c, m in stats.top_guards()))
    if stats.first_refusal:
        notes.append(f"first refusal: {stats.first_refusal}")
    if stats.first_skip:
        notes.append(f"first skip: {stats.first_skip}")
    return notes


def low_acceptance_note(stats: Stats) -> Optional[str]:
    """The warning text when some but fewer than :data:`LOW_ACCEPTANCE` inputs were accepted."""
    if not stats.agreed or stats.agreed >= LOW_ACCEPTANCE * stats.checked:
        return None
    return (f"WARNING: only {_acceptance(stats)}: the trace was compared with eager on "
            f"{stats.agreed} input(s) only; most inputs take another path than the example "
            "(pass dynamic= or inputs= closer to the inputs the trace is meant for)")


def refusal_report(stats: Stats, title: str) -> CheckReport:
    """The report when every generated input eager accepted was refused: nothing was
    compared but, at most, variants of the example itself (NOTE [Acceptance])."""
    searched = stats.checked - stats.covered_agreed
    notes = [f"every generated input was refused by a guard ({stats.refused} of "
             f"{searched}): the trace was compared with eager on none, so the check "
             "has not passed"]
    if stats.covered_agreed:
        notes[0] += (f" (it agreed on {stats.covered_agreed} rank, dtype or index variant(s) "
                     "of the example itself only)")
    notes += [f"refused {c}x by: {m}" for c, m in stats.top_guards()]
    notes.append("pass inputs= or dynamic= (dynamic=False keeps the example's sizes) for "
                 "inputs the trace accepts, or re-trace on inputs like the ones it must take")
    notes += count_notes(stats)
    return CheckReport(outputs=[OutputCheck(path="out", status="error",
                                            actual="every input refused")],
                       title=f"{title} FAILED: no input accepted", notes=notes,
                       counts=stats.counts)


def leaf_rows(got: Any, want: Any, tolerance: float, divergence: Optional[str]
              ) -> List[OutputCheck]:
    """One row per output leaf of a failing input: ``mismatch`` or ``ok`` with its errors."""
    a = tree.leaves_with_paths(got, "out")
    b = tree.leaves_with_paths(want, "out")
    if [p for p, _ in a] != [p for p, _ in b]:
        return [OutputCheck(path="out", status="mismatch",
                            expected="leaves " + ", ".join(p for p, _ in b),
                            actual="leaves " + ", ".join(p for p, _ in a),
                            first_divergence=divergence)]
    rows = []
    for (path, x), (_, y) in zip(a, b):
        bad = bool(compare_outputs(x, y, tolerance))
        row = OutputCheck(path=path, status="mismatch" if bad else "ok",
                          expected=describe(y), actual=describe(x),
                          first_divergence=divergence if bad else None)
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and \
                x.shape == y.shape and x.dtype == y.dtype:
            row.max_abs, row.max_rel = leaf_errors(x, y)
        rows.append(row)
    return rows


def add_agreed_leaves(stats: Stats, got: Any, want: Any) -> None:
    """Fold the errors of an agreed output (compared already: every leaf is ``ok``) into the
    report's per-leaf maxima; a leaf's row is described on first sight only."""
    for (path, x), (_, y) in zip(tree.leaves_with_paths(got, "out"),
                                 tree.leaves_with_paths(want, "out")):
        errors: Tuple[Optional[float], Optional[float]] = (None, None)
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            errors = leaf_errors(x, y)
        row = stats.leaves.get(path)
        if row is None:
            stats.leaves[path] = OutputCheck(path=path, status="ok", expected=describe(y),
                                             actual=describe(x), max_abs=errors[0],
                                             max_rel=errors[1])
        else:
            row.expected = merge_desc(row.expected, describe(y))
            row.actual = merge_desc(row.actual, describe(x))
            row.max_abs = _max(row.max_abs, errors[0])
            row.max_rel = _max(row.max_rel, errors[1])


_TENSOR_DESC = re.compile(r"Tensor\(([^,]*), (.+)\)$")


def merge_desc(a: str, b: str) -> str:
    """``Tensor(2x3, float32)`` and ``Tensor(5x3, float32)`` -> ``Tensor(?x3, float32)``: the
    description of a leaf over inputs of varied sizes (``?``: a dim that varied)."""
    ma, mb = _TENSOR_DESC.match(a), _TENSOR_DESC.match(b)
    if a == b or not ma or not mb or ma.group(2) != mb.group(2):
        return a
    da, db = ma.group(1).split("x"), mb.group(1).split("x")
    if len(da) != len(db):
        return a
    dims = "x".join(x if x == y else "?" for x, y in zip(da, db))
    return f"Tensor({dims}, {ma.group(2)})"


def _max(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


_RAISED = ("trace raised", "loaded trace raised", "re-trace raised")


def failure_report(failure: Failure, divergence: Optional[str], explanation: str,
                   tolerance: float, stats: Stats, seed: Optional[int]) -> CheckReport:
    """The report of a shrunk failing input (``divergence``: its first diverging node)."""
    args, kwargs = failure.call
    rows = leaf_rows(failure.got, failure.want, tolerance, divergence or "-") \
        if failure.got is not None and failure.want is not None else []
    if not rows or failure.kind in _RAISED:
        rows = [OutputCheck(path="out", status="error",
                            expected=describe(failure.want) if failure.want is not None else "",
                            actual=abbrev(failure.detail, 60), first_divergence=divergence)]
    if failure.kind.startswith("graph"):
        for r in rows:  # the graph is wrong for this input, whatever the values say
            if r.status == "ok":
                r.status = "ok (by luck)"
            r.first_divergence = divergence or "-"
    notes = [f"input: {describe_inputs(args, kwargs)}"]
    if explanation:
        notes.append(explanation)
    if failure.detail and failure.kind not in _RAISED[:2]:
        notes.append(failure.detail)
    elif failure.detail:
        notes.append(f"{failure.kind}: {failure.detail}")
    notes += count_notes(stats)
    if seed is not None:
        notes.append(f"hypothesis seed: {seed}")
    return CheckReport(outputs=rows, title=f"fxtrace.check FAILED: {failure.kind}", notes=notes,
                       counts=stats.counts)
