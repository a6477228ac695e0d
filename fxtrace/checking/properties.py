"""``fxtrace.check``: property-check a trace against the original with Hypothesis.

For every generated input set (default: ``fxtrace.strategies.inputs_like`` of the example
inputs the trace was taken with):

* **trace = eager**: the trace and the original, run from the same state (parameters, buffers,
  training flags, RNG, grad mode; restored after each run) on fresh copies of the input, give
  the same output leaves (structure, type, dtype, device, shape, then values with
  ``tolerance`` relative and a dtype-aware absolute tolerance; NaN equals only NaN). A guard of
  the trace firing is a *correct refusal* (counted, never a pass of a wrong output); any other
  error of the trace where eager answers is a failure (NOTE [Guard refusal]).
* **save/load = eager**: the trace saved with ``torch.jit.save`` to a ``BytesIO`` and loaded
  back gives the same answers, and refuses exactly the inputs the trace refuses.
* **re-tracing is stable**: where the trace accepts an input, capturing the original again on
  that input gives a structurally equal graph; a difference is a specialisation without a
  guard (the trace would have given a wrong answer on some input like it).

A failure is shrunk by Hypothesis and raised as :class:`PropertyCheckError` carrying a
:class:`fxtrace.inspect.CheckReport` (print it with ``fxtrace.inspect.check_table``): the
input shapes and dtypes, each output leaf with its max abs/rel error, and the first fx node
whose value diverges (:mod:`fxtrace.checking.divergence`). A check that compared no input has
not passed (NOTE [Acceptance] in :mod:`fxtrace.checking.check_report`). On success the report
is returned, with the share of accepted inputs.
"""
from __future__ import annotations

import io
import math
import warnings
from typing import Any, Dict, List, Optional, Tuple

import torch
from hypothesis import HealthCheck, Phase, Verbosity, assume, given
from hypothesis import seed as hypothesis_seed
from hypothesis import settings as Settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky, Unsatisfiable
from hypothesis.strategies import SearchStrategy

from ..capture.meta import INFO
from ..errors import InvalidArgument, PropertyCheckError
from ..inspect.report import CheckReport, OutputCheck
from ..lower.quiet import quiet_jit
from ..state import StateSnapshot
from ..strategies import inputs_like
from .calls import Call, as_call, describe, describe_inputs, example_call
from .check_report import (
    CheckWarning,
    Failure,
    Stats,
    count_notes,
    failure_report,
    low_acceptance_note,
    refusal_report,
)
from .check_run import InputChecker, Sampler
from .divergence import first_divergence
from .dynamic import eager_dynamic_dims
from .graphs import capture_of
from .trace_check import isolated_state, owning_module
from .variants import Variant, find_variants, with_batch_variants, with_variants

__all__ = ["check", "PropertyCheckError", "CheckWarning", "describe", "describe_inputs"]

_TITLE = "fxtrace.check"


def _strategy(traced: Any, inputs: Any, dynamic: Any, example_inputs: Any, original: Any,
              stateful: List[torch.nn.Module], ranks: Optional[bool] = None,
              dtypes: Optional[bool] = None) -> SearchStrategy:
    """The strategy of input sets (as calls), each with its own rank and dtype variant."""
    return with_variants(*_strategy_parts(traced, inputs, dynamic, example_inputs, original,
                                          stateful, ranks, dtypes))


def _strategy_parts(traced: Any, inputs: Any, dynamic: Any, example_inputs: Any,
                    original: Any, stateful: List[torch.nn.Module], ranks: Optional[bool],
                    dtypes: Optional[bool]) -> Tuple[SearchStrategy, List[Variant],
                                                     List[Variant]]:
    """The strategy of input sets (as calls): the dims it varies; and the rank and dtype
    changes the original accepts (:mod:`fxtrace.checking.variants`)."""
    example, kw_mode = example_call(traced, example_inputs)
    if isinstance(inputs, SearchStrategy):
        if dynamic is not None or ranks or dtypes:
            raise InvalidArgument("fxtrace.check: dynamic=, ranks= and dtypes= shape the default "
                                  "strategy; they cannot be combined with an inputs= strategy")
        return inputs.map(lambda v: as_call(v, kw_mode)), [], []
    if inputs is not None:  # concrete example inputs (as the CLI passes them)
        example = as_call(inputs, kw_mode)
    if example is None:
        raise InvalidArgument("fxtrace.check needs inputs: pass inputs= (a strategy or example "
                              "inputs) or example_inputs=, or a trace made with _store_inputs=True")
    args, kwargs = example
    base = kwargs if kw_mode else args
    # auto (None): with dynamic=None only; an explicit dynamic= says exactly what varies
    ranks = dynamic is None if ranks is None else ranks
    dtypes = dynamic is None if dtypes is None else dtypes
    if dynamic is None:  # auto: the dims at which the original itself takes other sizes
        dynamic = eager_dynamic_dims(original, args, kwargs, stateful) or False
    base_calls = inputs_like(base, dynamic=dynamic).map(lambda v: as_call(v, kw_mode))
    rank, dtype = find_variants(original, (tuple(args), dict(kwargs)), stateful,
                                ranks=bool(ranks), dtypes=bool(dtypes))
    return base_calls, rank, dtype


def _save_load(traced: Any) -> Any:
    buf = io.BytesIO()
    with quiet_jit():
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
    # Hypothesis' explain phase re-runs the shrunk failure many times to annotate its own
    # printout, which the check's report replaces: about half of a failing check's time
    kw["phases"] = tuple(p for p in parent.phases if p != Phase.explain)
    if max_examples is not None:
        kw["max_examples"] = max_examples
    if parent.verbosity == Verbosity.normal:
        kw["verbosity"] = Verbosity.quiet  # the report replaces Hypothesis' own printout
    return Settings(parent, **kw)


def check(traced: Any, original: Any, inputs: Any = None, *, max_examples: Optional[int] = None,
          tolerance: float = 1e-5, dynamic: Any = None, example_inputs: Any = None,
          save_load: bool = True, retrace_stable: bool = True, sample: Optional[int] = 3,
          seed: Optional[int] = None, batch: int = 4,
          settings: Optional[Settings] = None, repro_path: Optional[str] = None,
          ranks: Optional[bool] = None, dtypes: Optional[bool] = None) -> CheckReport:
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
        ranks: also draw inputs of another rank (a leading dim added or dropped, per tensor
            input or all together) where eager takes them on the example. Default (None):
            unless ``dynamic=False``. False: never.
        dtypes: also draw inputs of another floating dtype (float32, float64, float16,
            bfloat16) or integer width (int64, int32) where eager takes them on the example;
            the relative tolerance is raised to what float16/bfloat16 allow. Default (None):
            with ``dynamic=None`` only. False: never; True: always.

    Returns:
        A :class:`fxtrace.inspect.CheckReport` (every leaf ``ok``; counts and the share of
        accepted inputs in ``title`` and ``notes``). Fewer than 20% accepted warns
        (:class:`CheckWarning`; NOTE [Acceptance]).

    Raises:
        PropertyCheckError: on the shrunk failing input (a wrong output, or an error of the
            trace that is not a guard's refusal), with the report; also when no input could
            be compared at all: eager raised on every one, or the trace refused every one.
    """
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise InvalidArgument(f"fxtrace.check: batch must be an int >= 1, got {batch!r}")
    root = owning_module(original)
    stateful = [root] if root is not None else []
    strategy, rank, dtype = _strategy_parts(traced, inputs, dynamic, example_inputs, original,
                                            stateful, ranks, dtypes)
    limit = max_examples if max_examples is not None else _settings(settings, None).max_examples
    gm = capture_of(traced)
    stats = Stats()
    loaded = _save_load(traced) if save_load else None
    checker = InputChecker(traced, original, loaded, gm, root, tolerance, retrace_stable,
                           Sampler(sample), stats)
    # The trace (and its loaded copy) keep state of their own (buffers, a rebound tensor
    # attribute): every run starts from the saved state of both sides, or a trace that is
    # right call by call would drift from an eager side that is restored after each run.
    stateful += [m for m in (traced, loaded) if isinstance(m, torch.nn.Module)
                 and all(m is not s for s in stateful)]
    checker.stateful = stateful
    test = _search(checker, strategy, limit, batch, settings, seed, (rank, dtype))
    with isolated_state(stateful), torch.no_grad():
        written = gm.meta[INFO].written if gm is not None and INFO in gm.meta else []
        checker.snapshot = StateSnapshot(stateful, parameters=True, copies=written)
        try:
            test()
        except Failure as failure:
            _raise_failure(failure, checker, tolerance, seed, repro_path)
        except Unsatisfiable:
            pass  # reported below: no example could be checked
        except Flaky as e:
            report = CheckReport(title=f"{_TITLE}: a failure did not reproduce (flaky)",
                                 outputs=[OutputCheck(path="out", status="error")],
                                 notes=[str(e).splitlines()[0]])
            raise PropertyCheckError(_message(report), report) from e
    title = (f"{_TITLE}: trace vs eager{', save/load' if save_load else ''}"
             f"{', re-trace' if checker.retrace else ''}")
    return _verdict(stats, title)


def _search(checker: InputChecker, strategy: SearchStrategy, limit: int, batch: int,
            settings: Optional[Settings], seed: Optional[int],
            variants: Tuple[List[Variant], List[Variant]] = ([], [])) -> Any:
    """The Hypothesis test: lists of input sets, checked one by one within ``limit``. One
    rank and one dtype variant is drawn per list, after the list (so the inputs drawn at the
    example's rank and dtype are those a check without variants draws)."""
    calls = strategy.map(lambda call: [call]) if batch == 1 else \
        st.lists(strategy, min_size=1, max_size=2 * batch - 1)
    calls = with_batch_variants(calls, *variants)
    stats, sampler = checker.stats, checker.sampler

    def one_batch(batch_calls: List[Call]) -> None:
        checked = spent = False
        stats.batches += 1
        try:
            for call in batch_calls:
                if stats.examples >= limit and not sampler.failing:
                    spent = True  # the search budget is spent (shrinking is not limited)
                    break
                checked |= checker.one(call)
        except Failure:
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
    return test


def _raise_failure(failure: Failure, checker: InputChecker, tolerance: float,
                   seed: Optional[int], repro_path: Optional[str]) -> None:
    args, kwargs = failure.call
    divergence, explanation = None, ""
    if checker.gm is not None:
        try:
            divergence, explanation = first_divergence(checker.gm, checker.original,
                                                       checker.root, "forward", args, kwargs,
                                                       tolerance)
        except Exception as e:  # noqa: BLE001 - diagnostics must not hide the failure
            explanation = f"first divergence not found: {type(e).__name__}: {e}"
    report = failure_report(failure, divergence, explanation, tolerance, checker.stats, seed)
    if repro_path is not None:
        torch.save({"args": args, "kwargs": kwargs, "kind": failure.kind, "seed": seed},
                   repro_path)
        report.notes.append(f"repro: inputs saved to {repro_path} (torch.load it: "
                            "{'args', 'kwargs', 'kind', 'seed'})")
    raise PropertyCheckError(_message(report), report, failure.call) from None


def _verdict(stats: Stats, title: str) -> CheckReport:
    """The report of a search without failure; raises when nothing was compared."""
    if stats.checked == 0:
        report = CheckReport(outputs=[OutputCheck(path="out", status="error",
                                                  actual="no example checked")],
                             title=title, notes=count_notes(stats), counts=stats.counts)
        raise PropertyCheckError(_message(report) + "\nno example could be checked: eager "
                                 "raised on every generated input; pass inputs= or dynamic=",
                                 report)
    if stats.agreed == 0:
        report = refusal_report(stats, _TITLE)
        raise PropertyCheckError(_message(report), report)
    share = 100.0 * stats.agreed / stats.checked
    report = CheckReport(outputs=list(stats.leaves.values()),
                         title=f"{title}: {stats.agreed} of {stats.checked} inputs accepted "
                               f"({share:.0f}%)", notes=count_notes(stats),
                         counts=stats.counts)
    warning = low_acceptance_note(stats)
    if warning is not None:
        report.notes.insert(0, warning)
        warnings.warn(f"fxtrace.check: {warning}", CheckWarning, stacklevel=3)
    return report


def _message(report: CheckReport) -> str:
    from ..inspect import check_table
    return "\n" + check_table(report, max_width=60)
