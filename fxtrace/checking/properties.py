"""``fxtrace.check``: property-check a trace against the original with Hypothesis.

For every generated input set (default: ``fxtrace.strategies.inputs_like`` of the example
inputs the trace was taken with):

* **trace = eager**: the trace and the original, run from the same state (parameters, buffers,
  training flags, RNG, grad mode; restored after each run) on fresh copies of the input, give
  the same output leaves (structure, type, dtype, device, shape, then values with
  ``tolerance`` relative and a dtype-aware absolute tolerance; NaN equals only NaN). A guard
  failure of the trace is a *correct refusal*: counted, never a pass of a wrong output.
* **save/load = eager**: the trace saved with ``torch.jit.save`` to a ``BytesIO`` and loaded
  back gives the same answers, and refuses exactly the inputs the trace refuses.
* **re-tracing is stable**: where the trace accepts an input, capturing the original again on
  that input gives a structurally equal graph; a difference is a specialisation without a
  guard (the trace would have given a wrong answer on some input like it).

A failure is shrunk by Hypothesis and raised as :class:`PropertyCheckError` carrying a
:class:`fxtrace.inspect.CheckReport` (print it with ``fxtrace.inspect.check_table``): the
input shapes and dtypes, each output leaf with its max abs/rel error, and the first fx node
whose value diverges (:mod:`fxtrace.checking.divergence`). On success the report is returned.
"""
from __future__ import annotations

import dataclasses
import io
import math
import warnings
from typing import Any, Dict, List, Optional, Tuple

import torch
from hypothesis import HealthCheck, Verbosity, assume, given
from hypothesis import seed as hypothesis_seed
from hypothesis import settings as Settings
from hypothesis.errors import Flaky, Unsatisfiable
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from ..errors import InvalidArgument, PropertyCheckError
from ..inspect.report import CheckReport, OutputCheck
from .divergence import first_divergence
from .graphs import capture_of, retrace_diff
from ..state import StateSnapshot
from .trace_check import (compare_outputs, flatten_outputs, is_guard_error, isolated_state,
                          leaf_errors, owning_module, plain_tuples, run_isolated)

__all__ = ["check", "PropertyCheckError", "describe", "describe_inputs"]


def describe(value: Any) -> str:
    """``Tensor(2x3, float32)`` for a tensor, ``repr`` (shortened) for anything else."""
    if isinstance(value, torch.Tensor):
        shape = "x".join(str(s) for s in value.shape) or "()"
        dtype = str(value.dtype).replace("torch.", "")
        dev = "" if value.device.type == "cpu" else f", {value.device}"
        return f"Tensor({shape}, {dtype}{dev})"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def describe_inputs(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> str:
    """``x: Tensor(2x3, float32), mask: None``-style text of an input set's leaves."""
    leaves = flatten_outputs(args, "args") + flatten_outputs(kwargs, "kwargs")
    return ", ".join(f"{p}={describe(v)}" for p, v in leaves)


@dataclasses.dataclass
class _Stats:
    examples: int = 0  # inputs run
    batches: int = 0  # Hypothesis examples (each a list of inputs)
    agreed: int = 0
    refused: int = 0
    skipped: int = 0
    spurious: int = 0
    sampled: int = 0
    first_refusal: str = ""
    first_skip: str = ""
    leaves: Dict[str, OutputCheck] = dataclasses.field(default_factory=dict)


class _Sampler:
    """Which examples also get the save/load and re-trace checks.

    The first example of each new *signature* (shapes, dtypes and other leaves of the input,
    and whether the trace refused it), up to ``budget`` examples; every example once a failure
    was found (Hypothesis is then shrinking it, and a shrunk input must be checked in full).
    An input seen before (by content) is not checked in full again: its first check passed
    or was not taken, and either way a replay gives the same verdict. ``budget=None``: every
    example.
    """

    def __init__(self, budget: Optional[int]) -> None:
        self.budget = budget
        self.failing = False
        self.signatures: set = set()
        self.decided: Dict[Any, bool] = {}

    def take(self, args: Tuple[Any, ...], kwargs: Dict[str, Any], refused: bool) -> bool:
        if self.budget is None:
            return True
        leaves = flatten_outputs(args, "args") + flatten_outputs(kwargs, "kwargs")
        signature = (refused,) + tuple(
            (p, tuple(v.shape), v.dtype) if isinstance(v, torch.Tensor) else (p, type(v))
            for p, v in leaves)
        key = (signature,) + tuple(_content(v) for _, v in leaves)
        if key in self.decided:
            # checked in full once already (Hypothesis draws an input again, e.g. a list
            # element it copied): once is enough, unless a failure is being shrunk
            return self.failing
        take = self.failing or (signature not in self.signatures and
                                len(self.signatures) < self.budget)
        if take:
            self.signatures.add(signature)
        self.decided[key] = take
        return take


def _content(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        t = v.detach()
        if t.numel() <= 65536 and t.layout == torch.strided:
            try:
                return hash(t.cpu().contiguous().numpy().tobytes())
            except (TypeError, RuntimeError):  # no numpy dtype (bfloat16, ...)
                pass
        return float(t.double().sum()) if t.numel() else 0.0
    try:
        return hash(v)
    except TypeError:
        return repr(v)


class _Failure(Exception):
    """One failing example, raised inside Hypothesis (which shrinks it and re-raises)."""

    def __init__(self, kind: str, call: Tuple[Tuple[Any, ...], Dict[str, Any]], got: Any = None,
                 want: Any = None, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind, self.call, self.got, self.want, self.detail = kind, call, got, want, detail


def _as_call(value: Any, kw_mode: bool) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
    if kw_mode and isinstance(value, dict):
        return (), dict(value)
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return value, {}
    return (value,), {}


def _example_call(traced: Any, example_inputs: Any
                  ) -> Tuple[Optional[Tuple[Tuple[Any, ...], Dict[str, Any]]], bool]:
    stored = getattr(traced, "_fxtrace_traced_inputs", None)
    if stored is None:
        stored = getattr(traced, "__dict__", {}).get("_fxtrace_traced_inputs")
    kw_mode = False
    if isinstance(stored, dict) and "forward" in stored:
        s_args, s_kwargs = stored["forward"]
        kw_mode = not s_args and bool(s_kwargs)
        if example_inputs is None:
            return (tuple(s_args), dict(s_kwargs)), kw_mode
    if example_inputs is None:
        return None, kw_mode
    return _as_call(example_inputs, kw_mode), kw_mode


def _strategy(traced: Any, inputs: Any, dynamic: Any, example_inputs: Any, original: Any,
              stateful: List[torch.nn.Module]) -> Tuple[SearchStrategy, bool]:
    from ..strategies import inputs_like
    from .dynamic import eager_dynamic_dims

    example, kw_mode = _example_call(traced, example_inputs)
    if isinstance(inputs, SearchStrategy):
        if dynamic is not None:
            raise InvalidArgument("fxtrace.check: dynamic= shapes the default strategy; it cannot "
                                  "be combined with an inputs= strategy")
        return inputs.map(lambda v: _as_call(v, kw_mode)), kw_mode
    if inputs is not None:  # concrete example inputs (as the CLI passes them)
        example = _as_call(inputs, kw_mode)
    if example is None:
        raise InvalidArgument("fxtrace.check needs inputs: pass inputs= (a strategy or example "
                              "inputs) or example_inputs=, or a trace made with _store_inputs=True")
    args, kwargs = example
    base = kwargs if kw_mode else args
    if dynamic is None:  # auto: the dims at which the original itself takes other sizes
        dynamic = eager_dynamic_dims(original, args, kwargs, stateful) or False
    strat = inputs_like(base, dynamic=dynamic)
    return strat.map(lambda v: _as_call(v, kw_mode)), kw_mode


def _save_load(traced: Any) -> Any:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(traced, buf)
        buf.seek(0)
        return torch.jit.load(buf)


def _settings(base: Optional[Settings], max_examples: Optional[int]) -> Settings:
    parent = base if base is not None else Settings()
    kw: Dict[str, Any] = dict(
        deadline=None, report_multiple_bugs=False,
        suppress_health_check=list(parent.suppress_health_check) + [
            HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    if base is None:
        kw["database"] = None
    if max_examples is not None:
        kw["max_examples"] = max_examples
    if parent.verbosity == Verbosity.normal:
        kw["verbosity"] = Verbosity.quiet  # the report replaces Hypothesis' own printout
    return Settings(parent, **kw)


def _leaf_rows(got: Any, want: Any, tolerance: float, divergence: Optional[str]
               ) -> List[OutputCheck]:
    a, b = flatten_outputs(got, "out"), flatten_outputs(want, "out")
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


def check(traced: Any, original: Any, inputs: Any = None, *, max_examples: Optional[int] = None,
          tolerance: float = 1e-5, dynamic: Any = None, example_inputs: Any = None,
          save_load: bool = True, retrace_stable: bool = True, sample: Optional[int] = 3,
          seed: Optional[int] = None, batch: int = 4,
          settings: Optional[Settings] = None, repro_path: Optional[str] = None
          ) -> CheckReport:
    """Property-check ``traced`` against ``original`` on inputs generated by Hypothesis.

    Args:
        traced: an fxtrace trace (ScriptModule / ScriptFunction).
        original: the module or function it was traced from.
        inputs: a Hypothesis strategy drawing positional inputs (a tuple, or one value; a dict
            of keyword inputs when the trace was taken with ``example_kwarg_inputs``), or
            concrete example inputs to derive the default strategy from, or None (default:
            ``inputs_like`` of the example inputs stored on the trace, or ``example_inputs``).
        max_examples: the most inputs to check while searching (default: ``max_examples`` of
            the active Hypothesis settings profile); shrinking a failure runs more.
        tolerance: relative tolerance (the absolute one is dtype-aware).
        dynamic: which dims vary, in ``inputs_like``'s format. Default (None): *auto*, the
            dims at which the original itself accepts other sizes (probed on the example
            inputs, alone or with the dims of the same example size); True: every dim.
        example_inputs: the example inputs, when the trace does not store them.
        save_load: also check a ``torch.jit.save``/``load`` round trip (default True).
        retrace_stable: also check that re-tracing an accepted input gives the same graph.
        sample: on how many inputs the save/load and re-trace checks run (default 3: the
            first input of each new input signature — shapes, dtypes, accepted or refused —
            up to 3; all of them while a failure is shrunk). None: on every distinct input.
            The trace-vs-eager check runs on every input.
        seed: a Hypothesis seed, for a reproducible run.
        batch: inputs per Hypothesis example, on average (default 4): each example draws a
            list of 1 to ``2 * batch - 1`` inputs and checks them one by one. Hypothesis'
            own cost per example (about 1 ms) is then shared by the inputs; a failing list
            shrinks to the one failing input first. 1: one input per example.
        settings: Hypothesis settings to start from (default: the active profile).
        repro_path: on failure, ``torch.save`` ``{"args", "kwargs", "kind", "seed"}`` there.

    Returns:
        A :class:`fxtrace.inspect.CheckReport` (every leaf ``ok``, counts in ``notes``).

    Raises:
        PropertyCheckError: on the shrunk failing input, with the report; also when no input
            could be checked at all (eager raised on every one).
    """
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise InvalidArgument(f"fxtrace.check: batch must be an int >= 1, got {batch!r}")
    root = owning_module(original)
    stateful = [root] if root is not None else []
    strategy, _ = _strategy(traced, inputs, dynamic, example_inputs, original, stateful)
    limit = max_examples if max_examples is not None else _settings(settings, None).max_examples
    calls = strategy.map(lambda call: [call]) if batch == 1 else \
        st.lists(strategy, min_size=1, max_size=2 * batch - 1)
    gm = capture_of(traced)
    loaded = _save_load(traced) if save_load else None
    stats = _Stats()
    sampler = _Sampler(sample)
    canon: Dict[Any, List[str]] = {}  # the trace's canonical graphs, computed once
    snapshot: List[Optional[StateSnapshot]] = [None]  # taken inside the outer isolated_state

    def stable(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Optional[Any]:
        """The graph difference of a re-trace on this input (None: the same graph)."""
        return retrace_diff(gm, root, original, "forward", args, kwargs, snapshot=snapshot[0],
                            cache=canon)

    def one(call: Tuple[Tuple[Any, ...], Dict[str, Any]]) -> bool:
        """Check one input; False when it lies outside the original's domain (skipped)."""
        args, kwargs = call
        stats.examples += 1
        snap = snapshot[0]
        try:
            want = plain_tuples(run_isolated(original, args, kwargs, stateful, snap))
        except Exception as e:  # noqa: BLE001 - outside the original's domain
            stats.skipped += 1
            stats.first_skip = stats.first_skip or (
                f"{describe_inputs(args, kwargs)}: eager raised {type(e).__name__}: "
                f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}")
            return False
        refused = None
        try:
            got = run_isolated(traced, args, kwargs, stateful, snap)
        except Exception as e:  # noqa: BLE001
            if not is_guard_error(e):
                raise _Failure("trace raised", call, want=want,
                               detail=f"{type(e).__name__}: {_guard_line(e)}") from e
            refused, got = e, None
        if refused is None and compare_outputs(got, want, tolerance):
            raise _Failure("trace output differs from eager", call, got=got, want=want)
        # the once-per-kind checks: save/load and re-trace stability on a sample of the inputs
        full = (loaded is not None or (retrace_stable and gm is not None)) and \
            sampler.take(args, kwargs, refused is not None)
        if full:
            stats.sampled += 1
        got_loaded = None
        if full and loaded is not None:
            try:
                got_loaded = run_isolated(loaded, args, kwargs, stateful, snap)
            except Exception as e:  # noqa: BLE001
                if not (is_guard_error(e) and refused is not None):
                    raise _Failure("loaded trace raised", call, want=want,
                                   detail=f"{type(e).__name__}: {_guard_line(e)}") from e
            else:
                if refused is not None:
                    raise _Failure("loaded trace accepts what the trace refuses", call,
                                   got=got_loaded, want=want, detail=_guard_line(refused))
        if refused is not None:
            stats.refused += 1
            stats.first_refusal = stats.first_refusal or (
                f"{describe_inputs(args, kwargs)}: {_guard_line(refused)}")
            if full and retrace_stable and gm is not None:
                try:
                    diff = stable(args, kwargs)
                except Exception:  # noqa: BLE001
                    return True
                if diff is None:
                    stats.spurious += 1
            return True
        if got_loaded is not None and compare_outputs(got_loaded, want, tolerance):
            raise _Failure("loaded trace output differs from eager", call, got=got_loaded,
                           want=want)
        if full and retrace_stable and gm is not None:
            try:
                diff = stable(args, kwargs)
            except Exception as e:  # noqa: BLE001
                raise _Failure("re-trace raised", call, got=got, want=want,
                               detail=f"{type(e).__name__}: {e}") from e
            if diff is not None:
                raise _Failure("graph changes with the input but no guard fired", call, got=got,
                               want=want, detail=diff.message("trace", "re-trace"))
        stats.agreed += 1
        _add_agreed_leaves(stats, got, want)
        return True

    def one_batch(batch_calls: List[Tuple[Tuple[Any, ...], Dict[str, Any]]]) -> None:
        checked = spent = False
        stats.batches += 1
        try:
            for call in batch_calls:
                if stats.examples >= limit and not sampler.failing:
                    spent = True  # the search budget is spent (shrinking is not limited)
                    break
                checked |= one(call)
        except _Failure:
            sampler.failing = True  # shrinking: every candidate gets every check
            raise
        # every input run was outside the original's domain: an invalid example
        assume(checked or spent)

    test = given(calls)(one_batch)
    # Hypothesis' lists of 1..2b-1 inputs hold about 0.6 b on average (it favours short
    # lists): ask for about limit / (0.6 b) examples, so that the budget is used and few
    # examples are drawn only to be skipped.
    test = _settings(settings, max(1, math.ceil(limit / max(1.0, 0.6 * batch))))(test)
    if seed is not None:
        test = hypothesis_seed(seed)(test)
    with isolated_state(stateful), torch.no_grad():
        snapshot[0] = StateSnapshot(stateful, parameters=True)
        try:
            test()
        except _Failure as failure:
            report = _failure_report(failure, traced, original, gm, root, tolerance, stats, seed)
            if repro_path is not None:
                torch.save({"args": failure.call[0], "kwargs": failure.call[1],
                            "kind": failure.kind, "seed": seed}, repro_path)
                report.notes.append(f"repro: inputs saved to {repro_path} (torch.load it: "
                                    "{'args', 'kwargs', 'kind', 'seed'})")
            raise PropertyCheckError(_message(report), report, failure.call) from None
        except Unsatisfiable:
            pass  # reported below: no example could be checked
        except Flaky as e:
            report = CheckReport(title="fxtrace.check: a failure did not reproduce (flaky)",
                                 outputs=[OutputCheck(path="out", status="error")],
                                 notes=[str(e).splitlines()[0]])
            raise PropertyCheckError(_message(report), report) from e
    outputs = list(stats.leaves.values()) or [OutputCheck(path="out", status="skipped")]
    report = CheckReport(outputs=outputs, title=f"fxtrace.check: trace vs eager"
                         f"{', save/load' if save_load else ''}"
                         f"{', re-trace' if retrace_stable and gm is not None else ''}",
                         notes=_count_notes(stats))
    if stats.agreed + stats.refused == 0:
        report.outputs = [OutputCheck(path="out", status="error", actual="no example checked")]
        raise PropertyCheckError(_message(report) + "\nno example could be checked: eager raised "
                                 "on every generated input; pass inputs= or dynamic=", report)
    return report


def _add_agreed_leaves(stats: _Stats, got: Any, want: Any) -> None:
    """Fold the errors of an agreed output (compared already: every leaf is ``ok``) into the
    report's per-leaf maxima; a leaf's row is described on first sight only."""
    for (path, x), (_, y) in zip(flatten_outputs(got, "out"), flatten_outputs(want, "out")):
        errors = (None, None)
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            errors = leaf_errors(x, y)
        row = stats.leaves.get(path)
        if row is None:
            stats.leaves[path] = OutputCheck(path=path, status="ok", expected=describe(y),
                                             actual=describe(x), max_abs=errors[0],
                                             max_rel=errors[1])
        else:
            row.max_abs = _max(row.max_abs, errors[0])
            row.max_rel = _max(row.max_rel, errors[1])


def _max(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _guard_line(e: BaseException) -> str:
    text = str(e)
    i = text.find("fxtrace guard failed")
    if i >= 0:
        return text[i:].splitlines()[0]
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return lines[-1] if lines else type(e).__name__


def _count_notes(stats: _Stats) -> List[str]:
    notes = [f"{stats.examples} inputs run in {stats.batches} Hypothesis examples: "
             f"{stats.agreed} agreed, {stats.refused} refused by a "
             f"guard (a correct refusal, not a pass), {stats.skipped} skipped (eager raised)"]
    if stats.sampled:
        notes.append(f"save/load and re-trace checked on {stats.sampled} of them (first of each "
                     "input signature)")
    if stats.spurious:
        notes.append(f"{stats.spurious} refusals were spurious: the re-trace on the input gave "
                     "the same graph (a guard stricter than needed; not wrong)")
    if stats.first_refusal:
        notes.append(f"first refusal: {stats.first_refusal}")
    if stats.first_skip:
        notes.append(f"first skip: {stats.first_skip}")
    return notes


def _failure_report(failure: _Failure, traced: Any, original: Any, gm: Any,
                    root: Optional[torch.nn.Module], tolerance: float, stats: _Stats,
                    seed: Optional[int]) -> CheckReport:
    args, kwargs = failure.call
    divergence, explanation = None, ""
    if gm is not None:
        try:
            divergence, explanation = first_divergence(gm, original, root, "forward", args,
                                                       kwargs, tolerance)
        except Exception as e:  # noqa: BLE001 - diagnostics must not hide the failure
            explanation = f"first divergence not found: {type(e).__name__}: {e}"
    rows = _leaf_rows(failure.got, failure.want, tolerance, divergence or "-") \
        if failure.got is not None and failure.want is not None else []
    if not rows or failure.kind in ("trace raised", "loaded trace raised", "re-trace raised"):
        rows = [OutputCheck(path="out", status="error",
                            expected=describe(failure.want) if failure.want is not None else "",
                            actual=abbrev(failure.detail, 60), first_divergence=divergence)]
    if failure.kind.startswith("graph"):
        for r in rows:
            if r.status == "ok":
                r.status = "ok (by luck)"
    notes = [f"input: {describe_inputs(args, kwargs)}"]
    if explanation:
        notes.append(explanation)
    if failure.detail and failure.kind not in ("trace raised", "loaded trace raised"):
        notes.append(failure.detail)
    elif failure.detail:
        notes.append(f"{failure.kind}: {failure.detail}")
    notes += _count_notes(stats)
    if seed is not None:
        notes.append(f"hypothesis seed: {seed}")
    return CheckReport(outputs=rows, title=f"fxtrace.check FAILED: {failure.kind}", notes=notes)


def abbrev(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _message(report: CheckReport) -> str:
    from ..inspect import check_table
    return "\n" + check_table(report, max_width=60)
