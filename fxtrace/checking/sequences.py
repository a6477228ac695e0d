"""``check_calls``: a trace and its original called in turn, state carried from call to call.

``fxtrace.check`` runs every input from the same saved state, so a trace that drifts from
eager only *across* calls (a Python counter frozen to a constant, a rebound buffer whose
update torch.jit drops, a cache of past inputs) passes it. Here Hypothesis draws a sequence of
2 to ``length`` input sets; each is given to the trace and then to the original, each on its
own state (never restored between the calls of a sequence), and after every call the outputs
and the common entries of ``state_dict()`` are compared. A guard's refusal ends the sequence
(a correct refusal; the state of the two sides is then no longer comparable). The shrunk
failing sequence is raised as :class:`~fxtrace.PropertyCheckError`.

Invariant: every sequence starts from the state both sides had when ``check_calls`` was
called (buffers, training flags, RNG, rebound tensor attributes, a trace's written constants;
restored after each sequence and at the end), so sequences are independent and replayable.
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from hypothesis import assume, given
from hypothesis import seed as hypothesis_seed
from hypothesis import settings as Settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from ..errors import PropertyCheckError
from ..inspect.report import CheckReport, OutputCheck
from .attributes import KeptAttributes
from .calls import Call, describe_inputs
from .check_report import Failure
from .refusals import error_text, guard_refusal
from .trace_check import compare_outputs, isolated_state, owning_module, run_isolated

__all__ = ["check_calls"]

_TITLE = "fxtrace.check_calls"


def _state(module: Any) -> Dict[str, torch.Tensor]:
    return dict(module.state_dict()) if isinstance(module, torch.nn.Module) else {}


def _state_problems(traced: Any, original: Any, tolerance: float) -> List[str]:
    """The common ``state_dict`` entries whose values differ."""
    a, b = _state(traced), _state(original)
    out = []
    for key in sorted(a.keys() & b.keys()):
        problems = compare_outputs(a[key], b[key], tolerance)
        if problems:
            out.append(f"state_dict[{key!r}]: {problems[0][1].splitlines()[0]}")
    return out


class _Runner:
    """Runs one sequence on both sides from the saved state."""

    def __init__(self, traced: Any, original: Any, stateful: List[Any],
                 tolerance: float) -> None:
        self.traced, self.original, self.stateful = traced, original, stateful
        self.tolerance = tolerance
        self.kept = KeptAttributes(stateful)
        self.counts = {"sequences": 0, "calls": 0, "refused": 0, "skipped": 0}

    def sequence(self, calls: Sequence[Call]) -> None:
        self.counts["sequences"] += 1
        ran = 0
        with self.kept.kept(), isolated_state(self.stateful):
            for number, call in enumerate(calls):
                if not self._one(calls, number, call):
                    break
                ran += 1
        assume(ran >= 2)  # a sequence of fewer calls checks nothing fxtrace.check does not

    def _one(self, calls: Sequence[Call], number: int, call: Call) -> bool:
        """One call on both sides (state carried); False ends the sequence."""
        try:
            want = run_isolated(self.original, call[0], call[1], [])
        except Exception:  # noqa: BLE001 - outside the original's domain
            self.counts["skipped"] += 1
            return False
        try:
            got = run_isolated(self.traced, call[0], call[1], [])
        except Exception as e:  # noqa: BLE001
            if guard_refusal(e) is not None:
                self.counts["refused"] += 1
                return False
            raise Failure("trace raised", _as_call(calls, number), want=want,
                          detail=error_text(e)) from e
        self.counts["calls"] += 1
        problems = [p for _, p in compare_outputs(got, want, self.tolerance)]
        problems += _state_problems(self.traced, self.original, self.tolerance)
        if problems:
            raise Failure(f"call {number + 1} of the sequence differs from eager",
                          _as_call(calls, number), got=got, want=want,
                          detail="\n".join(problems))
        return True


def _as_call(calls: Sequence[Call], number: int) -> Call:
    """The failing call; the sequence up to it is in ``Failure.detail``'s report notes."""
    return calls[number]


def check_calls(traced: Any, original: Any, inputs: Any = None, *,
                example_inputs: Any = None, length: int = 4,
                max_examples: Optional[int] = None, tolerance: float = 1e-5,
                seed: Optional[int] = None, settings: Optional[Settings] = None
                ) -> CheckReport:
    """Check ``traced`` against ``original`` on sequences of calls (module docstring).

    ``inputs``/``example_inputs`` as for :func:`fxtrace.check` (the strategy of one input set;
    default: the example's, with rank and dtype variants, as ``fxtrace.check``'s default).
    ``length``: the longest sequence (at least 2). ``max_examples``: sequences to run.
    Returns a :class:`~fxtrace.inspect.CheckReport`; raises
    :class:`~fxtrace.PropertyCheckError` with the shrunk failing sequence in its notes, or
    when no sequence of two calls could be run."""
    from .properties import _settings, _strategy
    root = owning_module(original)
    stateful: List[Any] = [root] if root is not None else []
    strategy = _strategy(traced, inputs, None, example_inputs, original, stateful)
    stateful += [traced] if isinstance(traced, torch.nn.Module) and traced is not root else []
    runner = _Runner(traced, original, stateful, tolerance)
    seen: List[Tuple[Sequence[Call], Failure]] = []

    def test(calls: List[Call]) -> None:
        try:
            runner.sequence(calls)
        except Failure as f:
            seen.append((calls, f))
            raise

    test_fn = given(st.lists(strategy, min_size=2, max_size=max(2, length)))(test)
    test_fn = _settings(settings, max_examples)(test_fn)
    if seed is not None:
        test_fn = hypothesis_seed(seed)(test_fn)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        try:
            test_fn()
        except Failure:
            calls, failure = seen[-1]
            raise PropertyCheckError(_failure_text(calls, failure, seed),
                                     _report(failure, calls, runner, seed),
                                     failure.call) from None
        except Unsatisfiable:
            pass
    report = CheckReport(outputs=[OutputCheck(path="out", status="ok")],
                         title=f"{_TITLE}: {runner.counts['sequences']} sequences, "
                               f"{runner.counts['calls']} calls agreed",
                         notes=[f"{k}: {v}" for k, v in runner.counts.items()],
                         counts=dict(runner.counts))
    if runner.counts["calls"] == 0:
        report.outputs = [OutputCheck(path="out", status="error", actual="no call compared")]
        raise PropertyCheckError(f"{_TITLE}: no sequence of two calls could be compared "
                                 "(every input refused or outside eager's domain)", report)
    return report


def _report(failure: Failure, calls: Sequence[Call], runner: _Runner,
            seed: Optional[int]) -> CheckReport:
    notes = [f"call {i + 1}: {describe_inputs(*c)}" for i, c in enumerate(calls)]
    notes += [failure.detail, f"hypothesis seed: {seed}"]
    return CheckReport(outputs=[OutputCheck(path="out", status="mismatch")],
                       title=f"{_TITLE} FAILED: {failure.kind}", notes=notes,
                       counts=dict(runner.counts))


def _failure_text(calls: Sequence[Call], failure: Failure, seed: Optional[int]) -> str:
    lines = [f"{_TITLE} FAILED: {failure.kind}"]
    lines += [f"  call {i + 1}: {describe_inputs(*c)}" for i, c in enumerate(calls)]
    lines += ["  " + line for line in failure.detail.splitlines()[:6]]
    return "\n".join(lines)
