"""Recall of ``fxtrace.check``: how many silently wrong traces it detects.

    .venv/bin/python benchmarks/check_recall.py [--examples N] [--only name,name] [--threads T]
                                                [--no-variants]

Every trap of ``tests/traps.py`` (programs that ``torch.jit.trace`` gets silently wrong, and
the "control" programs on which torch.jit raises instead) is traced on its example inputs by
``torch.jit.trace(check_trace=False)`` and by ``fxtrace.trace(guards=False)`` (torch.jit's
behaviour: no guard refuses another path). Each trace is then

1. **judged on the trap's probes** (the ground truth): run from a fresh model on each probe
   alone, and on all probes in order (state carries from call to call, as in eager). A trace
   is *wrong* if it returns a different value than eager on some probe without raising.
   It is *reachable* if it is wrong on a probe alone that a generator of ``fxtrace.check``
   can draw: the example's structure (list lengths, dict keys), the same device, no action
   on the model before the call (``.eval()``); shapes, ranks, dtypes and values may differ.
   Otherwise the row says why not (``after setup``, ``device``, ``structure``, ``across
   calls``: wrong only as a later call of a stateful model). A trace that is never wrong
   but raises on a probe that eager answers (other than a guard's refusal, which
   ``guards=False`` keeps for a tensor's row count) is ``raises`` (a loud failure: an alarm on it
   is right, and counted apart).
2. **checked**: ``fxtrace.check(traced, fresh original, example_inputs=example, seed=0)``
   with defaults (``max_examples`` 100 unless ``--examples``). ``detected``: it raised
   ``PropertyCheckError`` on a shrunk input. A raise on a trace that is wrong on no probe is
   an *alarm on a correct trace* (listed: a probe set is not exhaustive, so read the row),
   unless a fresh trace really is wrong or raises on the shrunk input where eager answers
   (run as a probe): then it is a real error of the trace that no probe has (``found by the
   check``), listed apart and not counted as an alarm.

3. **checked on call sequences**: ``fxtrace.checking.sequences.check_calls`` with the same
   arguments (column ``check_calls``, with ``.train()``/``.eval()`` steps for modules): what
   it finds on traces wrong only across calls or only after a mode switch (``after setup``:
   every setup of the corpus is ``.eval()`` or ``.train()``). ``fxtrace.check`` runs it itself
   when a call of the original changes its state (NOTE [Call sequences]); both figures are
   printed.

Prints one row per trace, then recall per tracer (reachable wrong traces detected /
reachable wrong traces), alarms on traces correct on every probe (each listed: read it, the
probes are not every input), and the time per check (median and max, seconds).
"""
from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
import warnings
from typing import Any, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

import torch  # noqa: E402
from tabulate import tabulate  # noqa: E402
from test_traps import _call, _clone, _same, _trace  # noqa: E402
from traps import TRAPS, Probe, Trap  # noqa: E402

import fxtrace  # noqa: E402
from fxtrace import tree  # noqa: E402
from fxtrace.checking.calls import describe_inputs  # noqa: E402
from fxtrace.checking.refusals import guard_refusal  # noqa: E402
from fxtrace.checking.sequences import check_calls  # noqa: E402

TRACERS = {"jit": "torch.jit.trace", "fxtrace_noguards": "fxtrace guards=False"}


def _outcomes(trap: Trap, impl: str, probes: List[Probe]) -> List[str]:
    """Per probe, calls in order on one model: ``ok`` (eager's value, or a guard's refusal),
    ``wrong`` (another value than eager, no error) or ``raises`` (the trace raised something
    else where eager answered)."""
    traced, error = _trace(trap, impl)
    if error is not None:
        raise error
    eager = trap.make()
    out = []
    for p in probes:
        want, got = _call(eager, p), _call(traced, p)
        if want.error is not None:
            out.append("ok")
        elif got.error is not None:  # a guard's refusal is right: another path, refused
            out.append("ok" if guard_refusal(got.error) is not None else "raises")
        else:
            out.append("ok" if _same(got.value, want.value) else "wrong")
    return out


def _unreachable_why(trap: Trap, probe: Probe) -> Optional[str]:
    if probe.setup is not None:
        return "after setup"
    ex, pr = trap.example_inputs, probe.args
    if str(tree.flatten(ex)[1]) != str(tree.flatten(pr)[1]):
        return "structure"
    devices = {v.device for v in tree.leaves(pr) if isinstance(v, torch.Tensor)}
    if devices - {v.device for v in tree.leaves(ex) if isinstance(v, torch.Tensor)}:
        return "device"
    return None


def judge(trap: Trap, impl: str) -> str:
    """``reachable``, ``raises``, ``wrong (why not reachable)``, ``correct`` or ``trace
    failed``: what the trace does on the trap's probes."""
    probes = trap.probes()
    try:
        in_order = _outcomes(trap, impl, probes)
        alone = [_outcomes(trap, impl, [p])[0] for p in probes]
    except Exception as e:  # noqa: BLE001 - the tracer itself refused the program
        return f"trace failed ({type(e).__name__})"
    whys, raises = [], False
    for p, outcome in zip(probes, alone):
        why = _unreachable_why(trap, p)
        if outcome == "wrong":
            if why is None:
                return "reachable"
            whys.append(why)
        raises |= outcome == "raises" and why is None
    if "wrong" in in_order and not whys:
        whys.append("across calls")
    if whys:
        return f"wrong ({', '.join(sorted(set(whys)))})"
    return "raises" if raises else "correct"


def confirmed(trap: Trap, impl: str, inputs: Any) -> Optional[str]:
    """``wrong`` or ``raises`` when a fresh trace really is wrong (or raises where eager
    answers) on the shrunk input of an alarm: then the alarm is a real error of the trace
    that no probe of the trap has, not a false alarm. None otherwise."""
    if inputs is None or inputs[1]:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outcome = _outcomes(trap, impl, [Probe(tuple(inputs[0]))])[0]
    return outcome if outcome != "ok" else None


def check(trap: Trap, impl: str, examples: Optional[int],
          checker: Any = fxtrace.check) -> Tuple[str, float, str, Any]:
    """``(verdict, seconds, shrunk input, shrunk (args, kwargs))`` of ``checker``
    (``fxtrace.check`` or ``check_calls``) on a fresh trace."""
    traced, error = _trace(trap, impl)
    if error is not None:
        return "n/a", 0.0, "", None
    inputs = None
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            checker(traced, trap.make(), example_inputs=_clone(trap.example_inputs),
                    seed=0, max_examples=examples)
        verdict, shrunk = "passed", ""
    except fxtrace.PropertyCheckError as e:
        if e.inputs is None:
            verdict, shrunk = "nothing compared", ""
        else:
            verdict, inputs = "detected", e.inputs
            shrunk = describe_inputs(*e.inputs)
    except Exception as e:  # noqa: BLE001 - reported as the row's verdict
        verdict, shrunk = f"error ({type(e).__name__})", str(e).splitlines()[0][:60]
    return verdict, time.perf_counter() - start, shrunk, inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=None)
    parser.add_argument("--only", default="")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-variants", action="store_true",
                        help="fxtrace.check with ranks=False, dtypes=False (the baseline)")
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    only = set(filter(None, opts.only.split(",")))
    first = functools.partial(fxtrace.check, ranks=False, dtypes=False) if opts.no_variants \
        else fxtrace.check
    rows, times, seq_times = [], [], []
    # traces wrong only across calls / only after a mode switch: [n, by check_calls,
    # by fxtrace.check's default]
    across, switched = [0, 0, 0], [0, 0, 0]
    seq_alarms: List[str] = []
    counts = {label: [0, 0] for label in TRACERS.values()}  # reachable, detected
    raising = [0, 0]  # traces that raise on a probe eager answers; of them alarmed on
    correct = alarms = 0
    alarm_rows: List[str] = []
    real_rows: List[str] = []  # alarms confirmed on their shrunk input: not false
    for trap in TRAPS:
        if only and trap.name not in only:
            continue
        for impl, label in TRACERS.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                truth = judge(trap, impl)
            verdict, seconds, shrunk, inputs = check(trap, impl, opts.examples, first)
            if verdict == "n/a":
                continue
            times.append(seconds)
            if truth == "reachable":
                counts[label][0] += 1
                counts[label][1] += verdict == "detected"
            elif truth == "raises":
                raising[0] += 1
                raising[1] += verdict == "detected"
            elif truth == "correct":
                real = confirmed(trap, impl, inputs) if verdict == "detected" else None
                if real is not None:  # the probes missed a real error; the check found it
                    truth = f"{real} (found by the check)"
                    real_rows.append(f"{trap.name} / {label}: the trace {real} on {shrunk}")
                else:
                    correct += 1
                    if verdict != "passed":
                        alarms += 1
                        alarm_rows.append(f"{trap.name} / {label}: {verdict} {shrunk}")
            seq, seq_s, _, _ = check(trap, impl, opts.examples, check_calls)
            seq_times.append(seq_s)
            for kind, tally in (("across calls", across), ("after setup", switched)):
                if truth == f"wrong ({kind})":
                    tally[0] += 1
                    tally[1] += seq == "detected"
                    tally[2] += verdict == "detected"
            if truth == "correct" and seq != "passed":
                seq_alarms.append(f"{trap.name} / {label}: {seq}")
            rows.append((trap.name, trap.kind, label, truth, verdict, f"{seconds:.2f}",
                         shrunk[:40], seq))
    print(tabulate(rows, headers=["program", "kind", "tracer", "on probes", "fxtrace.check",
                                  "s", "shrunk input", "check_calls"], tablefmt="simple",
                   disable_numparse=True))
    print()
    reachable = sum(c[0] for c in counts.values())
    detected = sum(c[1] for c in counts.values())
    for label, (n, d) in counts.items():
        print(f"recall, {label}: {d} of {n} reachable silently wrong traces detected "
              f"({100.0 * d / max(1, n):.0f}%)")
    print(f"recall, both: {detected} of {reachable} ({100.0 * detected / max(1, reachable):.0f}%)")
    print(f"traces that raise on a probe eager answers (not silent): {raising[1]} of "
          f"{raising[0]} detected")
    print(f"false alarms on traces correct on every probe: {alarms} of {correct}")
    for line in alarm_rows:
        print(f"  alarm: {line}")
    print(f"real errors no probe has, found by the check and confirmed on its shrunk input "
          f"(fresh trace vs eager): {len(real_rows)}")
    for line in real_rows:
        print(f"  found: {line}")
    print(f"wrong only across calls: check_calls detected {across[1]} of {across[0]}, "
          f"fxtrace.check (its default call sequences) {across[2]} of {across[0]}")
    print(f"wrong only after .train()/.eval(): check_calls detected {switched[1]} of "
          f"{switched[0]}, fxtrace.check (default) {switched[2]} of {switched[0]}")
    print(f"check_calls false alarms on traces correct on every probe: {len(seq_alarms)} of "
          f"{correct}")
    for line in seq_alarms:
        print(f"  check_calls alarm: {line}")
    if seq_times:
        print(f"time per check_calls: median {statistics.median(seq_times):.2f} s, "
              f"max {max(seq_times):.2f} s")
    if times:
        print(f"time per check: median {statistics.median(times):.2f} s, max {max(times):.2f} s, "
              f"{len(times)} checks, total {sum(times):.1f} s")


if __name__ == "__main__":
    main()
