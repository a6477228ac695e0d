"""Verdicts a user can trust: what counts as a guard's refusal, when a check has passed, and
which dims ``probe_dynamic`` varies together."""
from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch
from hypothesis import strategies as st

import fxtrace
from fxtrace.checking.check_report import CheckWarning
from fxtrace.checking.refusals import guard_location, guard_refusal


def _quiet_trace(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fxtrace.trace(fn, *args, **kw)


def _error(fn, *args) -> BaseException:
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - the error under test
        return e
    raise AssertionError("expected an error")


# A guard, then an op that fails for another size: TorchScript's traceback of the shape error
# quotes the guard's source line (with its message) next to the failing line.
def guarded_then_frozen(x):
    if x.sum() > -1e9:                       # a guard that every input passes
        n = int(str(x.size(0)))              # read back from text: unguarded, the example's size
        return x.reshape(n) * 2
    return x


def test_only_the_fired_assertion_is_a_refusal():
    traced = _quiet_trace(guarded_then_frozen, torch.ones(4))
    shape_error = _error(traced, torch.ones(5))
    assert "fxtrace guard failed" in str(shape_error)  # quoted by the traceback ...
    assert guard_refusal(shape_error) is None          # ... but not what fired

    def branchy(x):
        if x.sum() > 0:
            return x * 2
        return x

    refusal = _error(_quiet_trace(branchy, torch.ones(3)), -torch.ones(3))
    message = guard_refusal(refusal)
    assert message is not None and message.startswith("fxtrace guard failed at ")
    assert guard_location(message).endswith(f"test_verdicts.py:{_line_of(branchy, 'if x')}")
    assert guard_refusal(AssertionError("fxtrace guard failed at a.py:3 (x): traced with 1"))
    assert guard_refusal(RuntimeError("shape mismatch")) is None


def _line_of(fn, text: str) -> int:
    import inspect
    lines, start = inspect.getsourcelines(fn)
    return start + next(i for i, line in enumerate(lines) if text in line)


def test_a_trace_error_that_is_no_refusal_fails_the_check():
    """Eager answers, the trace raises a shape error: a failure, shrunk, not a refusal."""
    traced = _quiet_trace(guarded_then_frozen, torch.ones(4))
    with pytest.raises(fxtrace.PropertyCheckError) as info:
        fxtrace.check(traced, guarded_then_frozen, max_examples=20, seed=0, dynamic=True)
    report = info.value.report
    assert report.title == "fxtrace.check FAILED: trace raised"
    assert report.outputs[0].status == "error"
    assert "is invalid for input of size" in report.outputs[0].actual
    (x,), _ = info.value.inputs
    assert x.shape[0] != 4


def far_branch(x):
    if x.sum() > 1000:  # the example takes it; no generated input (values in [-10, 10]) does
        return x * 2
    return x


def test_a_trace_refusing_every_input_does_not_pass():
    traced = _quiet_trace(far_branch, torch.full((4,), 500.0))
    with pytest.raises(fxtrace.PropertyCheckError) as info:
        fxtrace.check(traced, far_branch, max_examples=20, seed=0)
    report = info.value.report
    assert report.title == "fxtrace.check FAILED: no input accepted"
    assert "every generated input was refused by a guard" in report.notes[0]
    line = _line_of(far_branch, "if x")
    # 20 searched, and the example's variants that leave the branch (its own accepted ones
    # do not make the check pass: NOTE [Acceptance])
    assert report.counts["refused"] >= 20
    assert report.notes[1].startswith(f"refused {report.counts['refused']}x by: fxtrace guard "
                                      f"failed at test_verdicts.py:{line}")


def test_few_accepted_inputs_warn_and_the_rate_is_in_the_verdict():
    traced = _quiet_trace(far_branch, torch.full((4,), 500.0))
    # one value in ten is accepted
    inputs = st.integers(0, 9).map(lambda i: torch.full((4,), 300.0 if i == 7 else 1.0))
    with pytest.warns(CheckWarning, match="only .* inputs accepted"):
        report = fxtrace.check(traced, far_branch, inputs, max_examples=60, seed=3, batch=1)
    words = report.notes[0].split()  # "WARNING: only A of N inputs accepted (P%): ..."
    agreed, total = int(words[2]), int(words[4])
    assert 0 < agreed < 0.2 * total
    assert report.title.endswith(f"{agreed} of {total} inputs accepted "
                                 f"({100 * agreed / total:.0f}%)")


def test_most_inputs_accepted_no_warning():
    def f(x):
        return x * 2

    traced = _quiet_trace(f, torch.ones(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckWarning)
        report = fxtrace.check(traced, f, max_examples=10, seed=0)
    n = report.counts["inputs"]  # 10 searched, and the example under each rank/dtype variant
    assert n > 10 and report.counts["agreed"] == n
    assert report.title.endswith(f"{n} of {n} inputs accepted (100%)")


def same_length(ids, mask):
    # a model's own consistency check (as BERT's mask handling has): resizing one input
    # alone takes the other branch, which the trace refuses
    if ids.shape[1] == mask.shape[1]:
        return ids * mask
    return ids


def test_probe_dynamic_links_dims_of_the_same_example_size():
    ids, mask = torch.ones(2, 8), torch.ones(2, 8)
    traced = _quiet_trace(same_length, (ids, mask))
    report = fxtrace.probe_dynamic(traced, same_length)
    rows = {(d.input, d.dim): d for d in report.dims}
    assert rows[(0, 1)].status == "dynamic" and rows[(0, 1)].linked == "1:1"
    assert rows[(1, 1)].status == "dynamic" and rows[(1, 1)].linked == "0:1"
    assert rows[(0, 0)].linked == "1:0"
    assert "linked" in str(report) and "1:1" in str(report)
    alone = fxtrace.probe_dynamic(traced, same_length, link_sizes=False)
    assert alone.status(0, 1) == "specialised" and alone.dims[1].linked == ""


def test_probe_dynamic_falls_back_to_one_dim_when_linking_breaks_eager():
    lin = torch.nn.Linear(4, 3)
    traced = _quiet_trace(lin, torch.ones(4, 4))   # batch 4 beside 4 features: coincidence
    report = fxtrace.probe_dynamic(traced, lin)
    assert report.status(0, 0) == "dynamic" and report.dims[0].linked == ""
    assert report.status(0, 1) == "n/a"


def test_import_fxtrace_loads_no_checker_cli_or_tables():
    code = ("import sys, fxtrace\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('hypothesis', 'tabulate') or "
            "m in ('fxtrace.cli', 'fxtrace.inspect', 'fxtrace.inspect.tables', "
            "'fxtrace.strategies', 'fxtrace.checking.properties', 'fxtrace.checking.dynamic')]\n"
            "assert not bad, bad\n"
            "assert callable(fxtrace.check) and 'hypothesis' in sys.modules\n"
            "assert fxtrace.probe_dynamic.__module__ == 'fxtrace.checking.dynamic'\n"
            "import fxtrace.checking.trace_check\n"
            "assert callable(fxtrace.check) and fxtrace.inspect.check_table\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_bert_probe_links_ids_and_mask_and_the_refusal_quotes_the_fired_guard():
    """On BERT, a shape error's traceback quotes the training-mode guard of an encoder layer;
    the refusal is the sdpa guard that fired, and input_ids/attention_mask resize together."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=37)
    model = transformers.BertModel(cfg).eval()
    ids = torch.randint(0, 99, (1, 8))
    mask = torch.ones(1, 8, dtype=torch.long)
    traced = _quiet_trace(model, example_kwarg_inputs={"input_ids": ids, "attention_mask": mask},
                          strict=False)
    report = fxtrace.probe_dynamic(traced, model)
    assert [(d.status, d.linked) for d in report.dims] == [
        ("dynamic", "1:0"), ("dynamic", "1:1"), ("dynamic", "0:0"), ("dynamic", "0:1")]
    one = {"input_ids": ids[:, :1], "attention_mask": mask[:, :1]}   # q_length 1: refused
    error = _error(lambda: traced(**one))
    fired = guard_refusal(error)
    # the traceback quotes an encoder layer's training-mode guard, which never fires on a
    # model traced and called in eval mode; the guard that fired is another one
    assert "module in eval mode" in str(error)
    assert fired is not None and "module in eval mode" not in fired
    result = fxtrace.check(traced, model, max_examples=20, seed=0)
    refusal = next(n for n in result.notes if n.startswith("first refusal: "))
    assert "fxtrace guard failed at " in refusal and "module in eval mode" not in refusal


def frozen_length(x):
    n = len(x.tolist())               # traced with guards=False: the example's length, unguarded
    return x.reshape(n, 1) * 2


def test_a_trace_raising_a_shape_error_on_half_the_inputs_fails():
    """Half of the inputs have the example's length (agreed), half another one, where the
    trace raises a shape error that no guard raised: the check fails on one of those, with
    the error, not ``PASSED`` with refusals."""
    traced = _quiet_trace(frozen_length, torch.ones(4), guards=False)
    inputs = st.tuples(st.sampled_from([4, 5]), st.integers(0, 9)).map(
        lambda p: torch.full((p[0],), float(p[1])))
    with pytest.raises(fxtrace.PropertyCheckError) as info:
        fxtrace.check(traced, frozen_length, inputs, max_examples=12, seed=0, batch=1)
    report = info.value.report
    assert report.title == "fxtrace.check FAILED: trace raised"
    assert "is invalid for input of size 5" in report.outputs[0].actual
    (x,), _ = info.value.inputs
    assert x.shape == (5,) and float(x.sum()) == 0.0  # shrunk: values to zero, length kept
    assert report.counts["refused"] == 0


@pytest.mark.slow
def test_bert_with_a_mask_longer_than_the_ids_is_a_failure_not_a_refusal():
    """Issue 18: eager BERT takes an attention mask one token longer than the ids; the trace
    raises a shape error. That is a failure with the input and the error (it was counted as a
    guard's refusal and the check PASSED with 0 inputs agreed)."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=99, hidden_size=16, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=17)
    model = transformers.BertModel(cfg).eval()
    ids = torch.randint(0, 99, (1, 8))
    traced = _quiet_trace(model, example_kwarg_inputs={
        "input_ids": ids, "attention_mask": torch.ones(1, 8, dtype=torch.long)}, strict=False)
    longer = st.integers(2, 6).map(lambda n: {
        "input_ids": torch.randint(0, 99, (1, n), generator=torch.Generator().manual_seed(n)),
        "attention_mask": torch.ones(1, n + 1, dtype=torch.long)})
    with torch.no_grad():  # eager takes it
        model(**longer.example())
    with pytest.raises(fxtrace.PropertyCheckError) as info:
        fxtrace.check(traced, model, longer, max_examples=5, seed=0, batch=1)
    report = info.value.report
    assert report.title == "fxtrace.check FAILED: trace raised"
    assert report.outputs[0].actual.startswith("RuntimeError: The size of tensor a (")
    note = next(n for n in report.notes if n.startswith("trace raised: "))
    assert "must match the size of tensor b" in note and "fxtrace guard failed" not in note
    assert "RuntimeError: RuntimeError" not in note
    _, kwargs = info.value.inputs
    assert kwargs["attention_mask"].shape[1] == kwargs["input_ids"].shape[1] + 1
