"""Randomly generated programs (programs.py, vocab.py) through eager, fxtrace.trace and
torch.jit.trace (differential.py).

Default run: Hypothesis programs over the vocabulary minus the entries of known findings
(``known.KNOWN``, each one a class in FINDINGS.md) must never be silently wrong, never crash
fxtrace, and never refuse their own example inputs; each finding's repro still fails as
described (``xfail(strict=True)``: when it is fixed, move it out of ``known.KNOWN``).
Slow run (``-m slow``): ~500 seeded programs over the whole vocabulary, with the fuzzer's
three acceptance criteria. Run many with ``HYPOTHESIS_PROFILE=thorough``.
"""
from __future__ import annotations

import io
import os
import sys
import warnings

import pytest
import torch
from differential import classify, group_key, run_program
from hypothesis import given, note
from known import REPROS, allowed_entries
from programs import example_inputs, programs, random_program

import fxtrace

pytestmark = [
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.save` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated:DeprecationWarning"),
]

#: fxtrace outcomes that break its promise (or crash it) on a program eager runs.
BAD = ("fx-wrong-example", "fx-wrong", "fx-crash", "fx-guard-on-example", "timeout")


@given(program=programs(entries=allowed_entries()))
def test_fxtrace_agrees_with_eager_or_guards(program):
    note(program.source)
    note(repr(program.inputs))
    record = run_program(program, timeout_s=60, jit=False)
    fx_class, _ = classify(record)
    note(repr(record.get("fx")))
    assert fx_class not in BAD, group_key(record)


@given(program=programs(entries=allowed_entries(), families=["elementwise", "views", "sizes"]))
def test_saved_trace_matches_trace(program):
    """A trace and its torch.jit.save/load round trip agree or refuse alike."""
    if program.is_module:
        return
    x, y = example_inputs(*program.inputs.shape)
    note(program.source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            traced = fxtrace.trace(program.make(), (x, y), check_trace=False, strict=False)
        except fxtrace.errors.FxTraceError:
            return  # a refusal at trace time is judged by the differential test
    buf = io.BytesIO()
    torch.jit.save(traced, buf)
    buf.seek(0)
    loaded = torch.jit.load(buf)
    for shape in (program.inputs.shape, (program.inputs.shape[0] + 1, program.inputs.shape[1])):
        inputs = example_inputs(*shape, seed=3)
        outcomes = []
        for fn in (traced, loaded):
            try:
                outcomes.append(("ok", fn(*[t.clone() for t in inputs])))
            except Exception as e:  # noqa: BLE001 - a refusal must be the same on both
                outcomes.append(("raised", type(e).__name__))
        assert outcomes[0][0] == outcomes[1][0], outcomes
        if outcomes[0][0] == "ok":
            torch.testing.assert_close(outcomes[1][1], outcomes[0][1])


@pytest.mark.parametrize("seed", range(4))
def test_property_checker_accepts_every_correct_trace(seed: int):
    """fxtrace.check never cries wolf on a guarded trace (it sees refusals, not failures)."""
    traced = None
    while traced is None:
        program = random_program(seed, families=["elementwise", "views", "branches"],
                                 max_steps=4)
        seed += 100
        if program.is_module:
            continue
        x, y = example_inputs(*program.inputs.shape)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                traced = fxtrace.trace(program.make(), (x, y), check_trace=False, strict=False)
            except fxtrace.TraceError as e:  # a dict output TorchScript cannot type (as jit)
                assert "mixing value types" in str(e)
    report = fxtrace.check(traced, program.make(), max_examples=12, save_load=False, seed=0)
    assert report.ok


@pytest.mark.parametrize("finding", sorted(REPROS))
def test_known_finding_still_reproduces(finding: str):
    """Each FINDINGS.md repro gives the class it is filed under (the day it is fixed, this
    fails: drop the finding from known.py and FINDINGS.md)."""
    program, want = REPROS[finding]
    record = run_program(program, timeout_s=60, jit=False)
    got, _ = classify(record)
    assert got == want, (finding, got, group_key(record))


@pytest.mark.slow
def test_fuzz_500_programs_against_torch_jit_trace():
    """The fuzzer's acceptance criteria on 500 seeded programs (all families): fxtrace's
    trace-error rate at most torch.jit.trace's, no crash (an error from fxtrace that is not
    an FxTraceError), no silently wrong result. Expected to fail until FINDINGS.md is fixed."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "scripts"))
    from fuzz_programs import fuzz, summarise

    records = fuzz(500, seed=0, jobs=1, check_every=0)
    summary = summarise(records)
    fx, jit = summary["fx"], summary["jit"]
    fx_errors = fx.get("fx-crash", 0) + fx.get("fx-refused", 0)
    wrong = fx.get("fx-wrong", 0) + fx.get("fx-wrong-example", 0)
    problems = []
    if fx_errors > jit.get("jit-trace-error", 0):
        problems.append(f"fxtrace trace errors {fx_errors} > torch.jit.trace's "
                        f"{jit.get('jit-trace-error', 0)}")
    if fx.get("fx-crash", 0):
        problems.append(f"{fx['fx-crash']} crashes inside fxtrace")
    if wrong:
        problems.append(f"{wrong} silently wrong results")
    groups = "\n".join(f"{g['count']:5} seed {g['seed']}: {k}"
                       for k, g in summary["groups"].items() if not k.startswith("jit"))
    assert not problems, "; ".join(problems) + "\n" + groups
