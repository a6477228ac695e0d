"""``check_calls``: a trace and its original called in turn, state carried from call to call.

``fxtrace.check`` runs every input from the same saved state, so a trace that drifts from
eager only *across* calls (a Python counter frozen to a constant, a rebound buffer whose
update torch.jit drops, a cache of past inputs) passes it. Here Hypothesis draws a sequence of
2 to ``length`` input sets; each is given to the trace and then to the original, each on its
own state (never restored between the calls of a sequence), and after every call the outputs
and the common entries of ``state_dict()`` are compared. A guard's refusal ends the sequence
(a correct refusal; the state of the two sides is then no longer comparable). The shrunk
failing sequence is raised as :class:`~fxtrace.PropertyCheckError`.

Mode switches: where both sides are modules (a trace is a ``ScriptModule`` with its own
``training`` flag, so it accepts ``.train()``/``.eval()`` as if it covered both modes), a
sequence may also hold ``.eval()`` and ``.train()`` steps, applied to both sides. A trace
frozen in one mode (dropout, BatchNorm statistics) then differs from eager after the switch;
an fxtrace trace guarded on the flag refuses (a correct refusal, ending the sequence).

Invariant: every sequence starts from the state both sides had when ``check_calls`` was
called (buffers, training flags, RNG, rebound tensor attributes, a trace's written constants;
restored after each sequence and at the end), so sequences are independent and replayable.
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from hypothesis import assume, given
from hypothesis import seed as hypothesis_seed
from hypothesis import settings as Settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from hypothesis.strategies import SearchStrategy

from ..errors import PropertyCheckError
from ..inspect.report import CheckReport, OutputCheck
from .attributes import KeptAttributes
from .calls import Call, describe_inputs
from .check_report import Failure
from .plan import hypothesis_settings
from .plan import strategy as plan_strategy
from .refusals import error_text, guard_refusal
from .trace_check import compare_outputs, isolated_state, owning_module, run_isolated

__all__ = ["check_calls", "changes_state", "Step"]

_TITLE = "fxtrace.check_calls"

#: One step of a sequence: a call, or a mode switch of both sides ("train" / "eval").
Step = Union[Call, str]


def _state(module: Any) -> Dict[str, torch.Tensor]:
    return dict(module.state_dict()) if isinstance(module, torch.nn.Module) else {}


def _key(t: torch.Tensor) -> Tuple[int, int, Tuple[int, ...], torch.dtype]:
    """One tensor's memory, whichever Python object holds it."""
    return (t.untyped_storage().data_ptr(), int(t.storage_offset()), tuple(t.shape), t.dtype)


class _SharedState:
    """The tensors both sides hold. A trace shares its model's parameters and buffers (as
    torch.jit's does), so in a sequence each side would also see the other's in-place updates
    (``self.n.add_(1)`` counted twice per step). Each side keeps its own values of them
    instead, swapped in before its call; both start from the sequence's start state."""

    def __init__(self, traced: Any, original: Any) -> None:
        sides = [dict(m.state_dict(keep_vars=True)) if isinstance(m, torch.nn.Module) else {}
                 for m in (traced, original)]
        theirs = {_key(t) for t in sides[1].values() if isinstance(t, torch.Tensor)}
        mine: Dict[Any, torch.Tensor] = {}
        for t in sides[0].values():
            if isinstance(t, torch.Tensor) and _key(t) in theirs:
                mine.setdefault(_key(t), t)
        self.tensors = list(mine.values())
        self.values: Dict[str, List[torch.Tensor]] = {}
        self.holder = ""

    def start(self) -> None:
        """A new sequence: both sides at the current (start) values."""
        start = [t.detach().clone() for t in self.tensors]
        self.values, self.holder = {"traced": start, "original": start}, ""

    def enter(self, side: str) -> None:
        """Put ``side``'s values into the shared tensors (the other side's saved first)."""
        if not self.tensors or self.holder == side:
            return
        with torch.no_grad():
            if self.holder:
                self.values[self.holder] = [t.detach().clone() for t in self.tensors]
            for t, v in zip(self.tensors, self.values[side]):
                t.copy_(v)
        self.holder = side

    def state(self, module: Any, side: str) -> Dict[str, torch.Tensor]:
        """``module``'s ``state_dict`` as ``side`` has it (shared tensors: its own values)."""
        out = _state(module)
        if self.holder in ("", side) or not self.tensors:
            return out
        mine = {_key(t): v for t, v in zip(self.tensors, self.values[side])}
        return {k: mine.get(_key(v), v) if isinstance(v, torch.Tensor) else v
                for k, v in out.items()}


def _state_problems(a: Dict[str, Any], b: Dict[str, Any], tolerance: float) -> List[str]:
    """The common ``state_dict`` entries (of the trace, of the original) whose values differ."""
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
        self.shared = _SharedState(traced, original)
        self.counts = {"sequences": 0, "calls": 0, "refused": 0, "skipped": 0, "switches": 0}
        self.at = 0

    def sequence(self, steps: Sequence[Step]) -> None:
        self.counts["sequences"] += 1
        ran = 0
        with self.kept.kept(), isolated_state(self.stateful):
            self.shared.start()
            for number, step in enumerate(steps):
                if isinstance(step, str):
                    self._switch(step)
                    continue
                if not self._one(steps, number, step):
                    break
                ran += 1
        assume(ran >= 2)  # a sequence of fewer calls checks nothing fxtrace.check does not

    def _switch(self, mode: str) -> None:
        """``.train()`` / ``.eval()`` on both sides (restored with the sequence's state)."""
        self.counts["switches"] += 1
        for side in (self.traced, self.original):
            if isinstance(side, torch.nn.Module):
                side.train(mode == "train")

    def _one(self, calls: Sequence[Step], number: int, call: Call) -> bool:
        """One call on both sides (state carried); False ends the sequence."""
        self.at = number  # a failure's sequence ends here (the steps after it are noise)
        try:
            self.shared.enter("original")
            want = run_isolated(self.original, call[0], call[1], [])
        except Exception:  # noqa: BLE001 - outside the original's domain
            self.counts["skipped"] += 1
            return False
        try:
            self.shared.enter("traced")
            got = run_isolated(self.traced, call[0], call[1], [])
        except Exception as e:  # noqa: BLE001
            if guard_refusal(e) is not None:
                self.counts["refused"] += 1
                return False
            raise Failure("trace raised", _as_call(calls, number), want=want,
                          detail=error_text(e)) from e
        self.counts["calls"] += 1
        problems = [p for _, p in compare_outputs(got, want, self.tolerance)]
        problems += _state_problems(self.shared.state(self.traced, "traced"),
                                    self.shared.state(self.original, "original"),
                                    self.tolerance)
        if problems:
            nth = sum(1 for step in calls[:number + 1] if not isinstance(step, str))
            raise Failure(f"call {nth} of the sequence differs from eager",
                          _as_call(calls, number), got=got, want=want,
                          detail="\n".join(problems))
        return True


def _as_call(calls: Sequence[Step], number: int) -> Call:
    """The failing call; the sequence up to it is in ``Failure.detail``'s report notes."""
    step = calls[number]
    assert not isinstance(step, str)
    return step


def _fingerprint(root: torch.nn.Module) -> List[Any]:
    """What a call can change on ``root``'s tree: buffer and parameter values, and each
    module's own attributes (tensors by identity, containers by length, plain values)."""
    out: List[Any] = [(k, v.detach().clone()) for k, v in root.state_dict().items()
                      if isinstance(v, torch.Tensor)]
    for path, m in root.named_modules():
        for name, value in m.__dict__.items():
            if name.startswith("_") or name == "training":
                continue
            if isinstance(value, torch.Tensor):
                out.append((path, name, id(value)))
            elif isinstance(value, (list, dict, set)):
                out.append((path, name, type(value), len(value)))
            elif isinstance(value, (int, float, bool, str, type(None))):
                out.append((path, name, value))
    return out


def _same_fingerprint(a: List[Any], b: List[Any]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if len(x) == 2 and len(y) == 2 and isinstance(x[1], torch.Tensor):
            if x[0] != y[0] or not isinstance(y[1], torch.Tensor) or \
                    x[1].shape != y[1].shape or not torch.equal(x[1], y[1]):
                return False
        elif x != y:
            return False
    return True


def changes_state(original: Any, call: Call) -> bool:
    """Whether one call of the module ``original`` on ``call`` changes its state (buffers,
    tensor attributes rebound, Python counters and containers): then its trace can be wrong
    across calls, which only call sequences show. State is restored afterwards; a function,
    or a call that raises, is taken as stateless."""
    root = owning_module(original)
    if root is None:
        return False
    kept = KeptAttributes([root])
    with kept.kept(), isolated_state([root]), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        before = _fingerprint(root)
        saved = {id(m): dict(m.__dict__) for m in root.modules()}
        try:
            original(*call[0], **call[1])
        except Exception:  # noqa: BLE001 - outside the original's domain: no verdict
            return False
        finally:
            after = _fingerprint(root)
            for m in root.modules():  # Python attributes: put back what forward assigned
                for name, value in saved[id(m)].items():
                    if m.__dict__.get(name) is not value:
                        m.__dict__[name] = value
                for name in [n for n in m.__dict__ if n not in saved[id(m)]]:
                    del m.__dict__[name]
    return not _same_fingerprint(before, after)


def check_calls(traced: Any, original: Any, inputs: Any = None, *,
                example_inputs: Any = None, length: int = 4,
                max_examples: Optional[int] = None, tolerance: float = 1e-5,
                seed: Optional[int] = None, settings: Optional[Settings] = None,
                modes: Optional[bool] = None) -> CheckReport:
    """Check ``traced`` against ``original`` on sequences of calls (module docstring).

    ``inputs``/``example_inputs`` as for :func:`fxtrace.check` (the strategy of one input set;
    default: the example's, with rank and dtype variants, as ``fxtrace.check``'s default).
    ``length``: the longest sequence of calls (at least 2). ``max_examples``: sequences to
    run. ``modes``: also ``.train()``/``.eval()`` steps between calls (default: when both
    sides are modules). Returns a :class:`~fxtrace.inspect.CheckReport`; raises
    :class:`~fxtrace.PropertyCheckError` with the shrunk failing sequence in its notes, or
    when no sequence of two calls could be run."""
    root = owning_module(original)
    stateful: List[Any] = [root] if root is not None else []
    strategy: SearchStrategy = plan_strategy(traced, inputs, None, example_inputs, original,
                                         stateful)
    stateful += [traced] if isinstance(traced, torch.nn.Module) and traced is not root else []
    if modes is None:
        modes = isinstance(traced, torch.nn.Module) and root is not None
    if modes:  # a call first in one_of: what a failing sequence shrinks towards
        strategy = st.one_of(strategy, st.sampled_from(["eval", "train"]))
    runner = _Runner(traced, original, stateful, tolerance)
    seen: List[Tuple[Sequence[Step], Failure]] = []

    def test(calls: List[Step]) -> None:
        try:
            runner.sequence(calls)
        except Failure as f:
            seen.append((calls[:runner.at + 1], f))
            raise

    size = max(2, length) * (2 if modes else 1)
    test_fn = given(st.lists(strategy, min_size=2, max_size=size))(test)
    test_fn = hypothesis_settings(settings, max_examples)(test_fn)
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


def _steps(calls: Sequence[Step]) -> List[str]:
    """``call 1: args[0]=...``, ``.eval()``: the steps of a sequence, numbered by call."""
    out, number = [], 0
    for step in calls:
        if isinstance(step, str):
            out.append(f".{step}()")
        else:
            number += 1
            out.append(f"call {number}: {describe_inputs(*step)}")
    return out


def _report(failure: Failure, calls: Sequence[Step], runner: _Runner,
            seed: Optional[int]) -> CheckReport:
    notes = _steps(calls)
    notes += [failure.detail, f"hypothesis seed: {seed}"]
    return CheckReport(outputs=[OutputCheck(path="out", status="mismatch")],
                       title=f"{_TITLE} FAILED: {failure.kind}", notes=notes,
                       counts=dict(runner.counts))


def _failure_text(calls: Sequence[Step], failure: Failure, seed: Optional[int]) -> str:
    lines = [f"{_TITLE} FAILED: {failure.kind}"]
    lines += [f"  {step}" for step in _steps(calls)]
    lines += ["  " + line for line in failure.detail.splitlines()[:6]]
    return "\n".join(lines)
