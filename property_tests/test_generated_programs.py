"""Randomly generated programs (programs.py): trace = eager, save/load = eager, and guards
never let a wrong value through on other inputs.

Run many with ``HYPOTHESIS_PROFILE=thorough python -m pytest property_tests``.
"""
from __future__ import annotations

import io
import warnings

import pytest
import torch
from hypothesis import given, note
from hypothesis import strategies as st
from programs import Program, example_inputs, programs, random_program

import fxtrace
from fxtrace.checking.trace_check import compare_outputs, is_guard_error
from fxtrace.strategies import inputs_like

pytestmark = [
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.save` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning"),
]


def _save_load(traced):
    buf = io.BytesIO()
    torch.jit.save(traced, buf)
    buf.seek(0)
    return torch.jit.load(buf)


def _agree_or_refuse(fn, program, inputs, what):
    want = program(*[t.clone() for t in inputs])
    try:
        got = fn(*[t.clone() for t in inputs])
    except Exception as e:  # a guard refusal is correct; anything else is a failure
        assert is_guard_error(e), f"{what} raised {type(e).__name__}: {e}"
        return "refused"
    problems = compare_outputs(got, want, 1e-5)
    assert not problems, f"{what} gave a wrong value: {problems[0][1]}"
    return "agreed"


@given(program=programs(), shape=st.tuples(st.integers(1, 4), st.integers(1, 5)),
       data=st.data())
def test_trace_and_saved_trace_match_eager_or_refuse(program: Program, shape, data):
    x, y = example_inputs(*shape)
    note(repr(program))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = fxtrace.trace(program, (x, y), check_trace=False)
    loaded = _save_load(traced)
    # at the example inputs the trace must agree, never refuse
    for fn, what in ((traced, "trace"), (loaded, "loaded trace")):
        assert _agree_or_refuse(fn, program, (x, y), what) == "agreed"
    # elsewhere: agree, or refuse with a guard — the same way before and after save/load
    for _ in range(3):
        other = data.draw(inputs_like((x, y)), label="other inputs")
        a = _agree_or_refuse(traced, program, other, "trace")
        b = _agree_or_refuse(loaded, program, other, "loaded trace")
        assert a == b, f"trace {a}, loaded trace {b}"


@pytest.mark.parametrize("seed", range(6))
def test_property_checker_accepts_every_correct_trace(seed: int):
    """fxtrace.check never cries wolf on a guarded trace (it sees refusals, not failures).

    (fxtrace.check runs Hypothesis itself, so it is not nested in ``@given`` here.)"""
    program = random_program(seed)
    x, y = example_inputs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = fxtrace.trace(program, (x, y), check_trace=False)
    report = fxtrace.check(traced, program, max_examples=3, save_load=False, seed=0)
    assert report.ok
