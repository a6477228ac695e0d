"""fxtrace's checks: check_trace (torch.jit semantics), fxtrace.check, probe_dynamic, the plugin."""
from __future__ import annotations

import copy
import importlib.metadata
import warnings

import pytest
import torch
import torch.nn as nn
from hypothesis import strategies as st

import fxtrace
import fxtrace.checking.trace_check  # noqa: F401 - must not rebind fxtrace.check
from fxtrace.checking.trace_check import check_trace, compare_outputs
from fxtrace.inspect import check_table
from fxtrace.state import StateSnapshot

pytest_plugins = ["pytester"]

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.save` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning"),
]


def _quiet_trace(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return fxtrace.trace(*args, **kwargs)


# --------------------------------------------------------------------------- names


def test_check_is_the_function_even_after_submodule_imports():
    import fxtrace.checking.dynamic  # noqa: F401
    import fxtrace.checking.properties  # noqa: F401
    assert callable(fxtrace.check) and fxtrace.check.__name__ == "check"
    assert issubclass(fxtrace.PropertyCheckError, fxtrace.FxTraceError)
    assert issubclass(fxtrace.PropertyCheckError, AssertionError)


# --------------------------------------------------------------------------- check_trace catches


def loop(x):
    for i in range(x.size(0)):
        x = x + i
    return x


def branch(x):
    if x.sum() > 0:
        return x * 2
    return x - 1


def test_graph_that_changes_with_loop_count():
    with pytest.raises(fxtrace.TracingCheckError) as info:
        _quiet_trace(loop, torch.ones(3), check_inputs=[(torch.ones(4),)])
    msg = str(info.value)
    assert "Graphs differed across invocations" in msg
    assert "first divergence at row" in msg           # the diff table
    assert "for i in range(x.size(0)):" in msg         # both source lines
    assert "fxtrace guard failed" in msg               # the user's (guard) error


def test_graph_that_changes_with_branch():
    with pytest.raises(torch.jit.TracingCheckError) as info:
        _quiet_trace(branch, torch.ones(3), check_inputs=[(torch.ones(3),), (-torch.ones(3),)])
    msg = str(info.value)
    assert "operator.eq(%bool_1, True)" in msg and "operator.eq(%bool_1, False)" in msg
    assert "sub = .sub(%x, 1)" in msg


def test_constant_that_differs():
    calls = [0]

    def f(x):
        calls[0] += 1
        return x + torch.tensor([float(calls[0])])

    with pytest.raises(fxtrace.TracingCheckError) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        fxtrace.trace(f, torch.ones(1))
    assert "torch.tensor([1.0])" in str(info.value) and "torch.tensor([2.0])" in str(info.value)


def test_dead_code_that_differs_is_not_a_divergence():
    """The check compares raw captures first and falls back to the graphs after the capture
    passes: a difference only in dead code is no divergence, a live one still is."""
    calls = [0]

    def f(x):
        calls[0] += 1
        if calls[0] % 2 == 0:
            x.sin()  # dead (its value is dropped) on every other call
        return x * 2

    traced = fxtrace.trace(f, torch.ones(3), check_inputs=[(torch.ones(3),), (torch.ones(5),)])
    x = torch.rand(4)
    torch.testing.assert_close(traced(x), x * 2)
    # the trace, then per check input a re-trace (with the dead sin) and an eager run
    assert calls[0] == 5

    def g(x):
        calls[0] += 1
        return x.sin() if calls[0] % 2 == 0 else x * 2

    with pytest.raises(fxtrace.TracingCheckError, match="Graphs differed"):
        fxtrace.trace(g, torch.ones(3))


def test_raw_structure_comparison():
    """``same_structure`` agrees with ``graph_diff``: equal captures, a changed constant."""
    from fxtrace.checking.graphs import graph_diff, same_structure, structure_of

    def f(x, c):
        return x + torch.tensor([c])

    a = fxtrace.capture(f, (torch.ones(2), 1.0))
    b = fxtrace.capture(f, (torch.ones(2), 1.0))
    c = fxtrace.capture(f, (torch.ones(2), 2.0))
    assert same_structure(structure_of(a), structure_of(b)) and graph_diff(a, b) is None
    assert not same_structure(structure_of(a), structure_of(c))
    assert graph_diff(a, c) is not None


def _warnings_of(traced, func, tolerance=1e-5):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        check_trace(traced, func, [((torch.arange(4.0),), {})], tolerance, stateful=[])
    return [str(x.message) for x in w if issubclass(x.category, torch.jit.TracerWarning)]


def test_dtype_change_hidden_by_double():
    # torch.jit compares ``orig.double()`` with ``ref.double()``: equal values, different dtype.
    got = _warnings_of(lambda x: x * 2, lambda x: (x * 2).double())
    assert len(got) == 1 and "torch.float32" in got[0] and "torch.float64" in got[0]


def test_missing_output():
    got = _warnings_of(lambda x: (x, ), lambda x: (x, x + 1))
    assert len(got) == 1 and "output structure differs" in got[0]


def test_wrong_output_deep_in_nested_dict():
    got = _warnings_of(lambda x: {"a": {"b": [x, x + 1]}, "c": x},
                       lambda x: {"a": {"b": [x, x + 2]}, "c": x})
    assert len(got) == 1 and "Output nr 2." in got[0] and "output['a']['b'][1]" in got[0]


def test_compare_nan_only_equal_to_nan():
    nan = torch.tensor([float("nan"), 1.0])
    assert compare_outputs(nan, nan.clone(), 1e-5) == []
    assert compare_outputs(nan, torch.tensor([0.0, 1.0]), 1e-5)
    assert compare_outputs(torch.zeros(2), torch.zeros(2, device="meta"), 1e-5)


# --------------------------------------------------------------------------- no crying wolf


class BnDrop(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.bn(self.lin(x))) + nn.functional.dropout(x, 0.3, self.training)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}, torch.random.get_rng_state()


def _same_state(a, b):
    (sa, ra), (sb, rb) = a, b
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa) and \
        torch.equal(ra, rb)


def test_training_mode_dropout_and_batchnorm_pass_without_warnings():
    torch.manual_seed(0)
    model = BnDrop().train()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        fxtrace.trace(model, torch.randn(5, 4),
                      check_inputs=[(torch.randn(3, 4),), (torch.randn(8, 4),)])
    assert [str(x.message) for x in w if issubclass(x.category, torch.jit.TracerWarning)] == []


def test_other_batch_sizes_of_a_shape_generic_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    model(torch.randn(1, 3, 6, 6))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        fxtrace.trace(model.eval(), torch.randn(2, 3, 6, 6),
                      check_inputs=[(torch.randn(b, 3, 6, 6),) for b in (1, 5, 3)])
    assert [x for x in w if issubclass(x.category, torch.jit.TracerWarning)] == []


# --------------------------------------------------------------------------- state hygiene


def test_state_after_trace_is_the_same_with_and_without_check():
    torch.manual_seed(1)
    base = BnDrop().train()
    x = torch.randn(6, 4)
    results = []
    for check in (True, False):
        model = copy.deepcopy(base)
        torch.manual_seed(7)
        _quiet_trace(model, x, check_trace=check, check_inputs=[(x,), (x[:3],)])
        results.append(_state(model))
    assert _same_state(*results)


def test_property_check_leaves_model_and_rng_bitwise_unchanged():
    torch.manual_seed(2)
    model = BnDrop().train()
    traced = _quiet_trace(model, torch.randn(6, 4))
    before = _state(model)
    report = fxtrace.check(traced, model, max_examples=5)
    assert report.ok and _same_state(before, _state(model))
    assert model.training and all(m.training for m in model.modules())


# --------------------------------------------------------------------------- fxtrace.check


def test_check_passes_and_returns_a_report():
    traced = _quiet_trace(branch, torch.ones(3))
    report = fxtrace.check(traced, branch, max_examples=15, seed=0)
    assert report.ok
    table = check_table(report)
    assert "refused by a guard" in table and "out" in table


def test_check_shrinks_a_failure_to_a_small_input(tmp_path):
    def f(x):
        y = x * 2
        if x.sum() > 0:
            y = y + 1
        return y.relu()

    traced = _quiet_trace(f, torch.ones(3, 4), guards=False)
    repro = tmp_path / "repro.pt"
    with pytest.raises(fxtrace.PropertyCheckError) as info:
        fxtrace.check(traced, f, max_examples=60, seed=1, repro_path=str(repro))
    err = info.value
    (x,), _ = err.inputs
    assert x.numel() == 1 and float(x.sum()) <= 0           # shrunk: 1x1, the branch not taken
    row = err.report.outputs[0]
    assert row.status == "mismatch" and row.max_abs == 1.0
    # NOTE [Frozen line]: the report names the frozen `if`, the first diverging node follows
    line = f.__code__.co_firstlineno + 2
    assert row.first_divergence == f"frozen at test_check.py:{line}"
    assert any(n.startswith(f"frozen line: test_check.py:{line} (if x.sum() > 0:)")
               for n in err.report.notes)
    assert "%add (test_check.py:" in str(err) and "max abs" in str(err)
    saved = torch.load(repro)
    assert torch.equal(saved["args"][0], x)


def test_check_with_a_user_strategy_and_wrong_trace():
    def f(x):
        return x * float(x.abs().max())  # frozen without a guard when guards=False

    traced = _quiet_trace(f, torch.ones(2), guards=False)
    strategy = st.floats(-3, 3).map(lambda v: (torch.tensor([v, 1.0]),))
    with pytest.raises(fxtrace.PropertyCheckError) as info:
        fxtrace.check(traced, f, strategy, max_examples=30, seed=2)
    assert info.value.report.outputs[0].status == "mismatch"


def test_check_reports_when_nothing_could_be_checked():
    def f(x):
        raise ValueError("never")

    traced = _quiet_trace(lambda x: x + 1, torch.ones(2))
    with pytest.raises(fxtrace.PropertyCheckError, match="no example could be checked"):
        fxtrace.check(traced, f, max_examples=5, save_load=False, retrace_stable=False)


# --------------------------------------------------------------------------- probe_dynamic


def test_probe_dynamic():
    def f(x):
        return x * float(x.shape[0]) + x.size(1)

    traced = _quiet_trace(f, torch.ones(3, 2))
    report = fxtrace.probe_dynamic(traced, f)
    assert report.status(0, 0) == "specialised" and report.status(0, 1) == "dynamic"
    assert report.dims[0].location.startswith("test_check.py:")
    assert "specialised" in str(report)


# --------------------------------------------------------------------------- pytest plugin


def test_pytest_plugin_fixture(pytester):
    pytester.makepyfile(
        """
        import torch, fxtrace, warnings

        def test_ok(fxtrace_check):
            traced = fxtrace.trace(lambda x: x * 2, torch.ones(3))
            assert fxtrace_check(traced, lambda x: x * 2).ok

        def test_bad(fxtrace_check):
            def f(x):
                return x * float(x.abs().max())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                traced = fxtrace.trace(f, torch.ones(2), guards=False)
            fxtrace_check(traced, f)
        """)
    loaded = any(e.value == "fxtrace.checking.pytest_plugin"
                 for e in importlib.metadata.entry_points(group="pytest11"))
    args = [] if loaded else ["-p", "fxtrace.checking.pytest_plugin"]
    # -rN: no short test summary (under CI=true pytest prints each failure's whole message
    # there, which would count as a second report)
    result = pytester.runpytest_inprocess(*args, "--fxtrace-examples", "20", "-p",
                                          "no:cacheprovider", "-rN")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*fxtrace.check found a counterexample*", "*max abs*"])
    # the report once: not again as the context of pytest's failure
    out = result.stdout.str()
    assert "During handling of the above exception" not in out
    assert out.count("fxtrace.check FAILED") == 1
    assert "DEBUG    torch.__trace" not in out


# --------------------------------------------------------------------------- cost of checking


class WritesBufferThroughData(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("count", torch.zeros(1))

    def forward(self, x):
        self.count.data.add_(1)  # bypasses the version counter
        return x + 1


def test_buffer_written_through_data_is_restored():
    model = WritesBufferThroughData()
    _quiet_trace(model, torch.ones(2), check_inputs=[(torch.ones(2),), (torch.ones(3),)])
    assert float(model.count) == 0.0  # nothing: a trace and its check are observations


class WritesParameter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(2))

    def forward(self, x):
        with torch.no_grad():
            self.w.mul_(2)
        return x * self.w


def test_parameter_written_in_forward_is_put_back_after_the_check():
    """The capture saw forward write ``w`` in place, so the check copies it around its eager
    runs too: after trace + check, ``w`` is bitwise as before, with no warning needed."""
    model = WritesParameter()
    before = model.w.detach().clone()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        fxtrace.trace(model, torch.ones(2))
    assert torch.equal(model.w, before)
    assert not any("in place" in str(x.message) for x in w)


def test_parameter_written_only_by_eager_runs_is_reported():
    """A write the capture did not see (forward writes only on later calls) is warned about,
    naming the parameter: the check does not copy parameters up front."""
    class WritesLater(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(2))
            self.calls = []

        def forward(self, x):
            if len(self.calls) > 0:
                with torch.no_grad():
                    self.w.mul_(2)
            self.calls.append(1)
            return x * self.w

    snapshot = StateSnapshot([WritesLater()], parameters=True)
    model = snapshot.flags[0][0]
    model(torch.ones(2))
    model(torch.ones(2))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        snapshot.restore()
    assert any("forward wrote parameter(s) w in place" in str(x.message) for x in w)


def test_save_load_and_retrace_run_on_a_sample():
    calls = []

    def f(x):
        calls.append(1)
        return x * 2

    traced = _quiet_trace(f, torch.ones(3, 2))
    calls.clear()
    report = fxtrace.check(traced, f, max_examples=40, seed=0, dynamic=True)
    runs = int(report.notes[0].split()[0])
    sampled = [n for n in report.notes if n.startswith("save/load and re-trace checked on")]
    assert sampled and int(sampled[0].split()[5]) <= 3
    # eager once per example, plus the capture's run of each sampled re-trace
    assert len(calls) <= runs + 3
    calls.clear()
    fxtrace.check(traced, f, max_examples=10, seed=0, dynamic=True, sample=None)
    assert len(calls) == 2 * 10


@pytest.mark.parametrize("batch", [0, -1, 1.5, True, "4"], ids=repr)
def test_check_rejects_a_bad_batch(batch):
    traced = _quiet_trace(lambda x: x * 2, torch.ones(3))
    with pytest.raises(fxtrace.InvalidArgument, match="batch"):
        fxtrace.check(traced, lambda x: x * 2, batch=batch)


@pytest.mark.parametrize("batch", [1, 4])
def test_check_batches_inputs_within_the_budget(batch):
    """``max_examples`` bounds the inputs checked while searching, whatever the batch; with
    batch > 1 Hypothesis examples carry several inputs each; a failure still shrinks to one
    small input."""
    seen = []

    def f(x):
        seen.append(x.shape)
        return x * 2

    traced = _quiet_trace(f, torch.ones(3, 2))
    seen.clear()
    report = fxtrace.check(traced, f, max_examples=24, seed=0, batch=batch, dynamic=True,
                           save_load=False, retrace_stable=False)
    words = report.notes[0].split()  # "N inputs run in M Hypothesis examples: ..."
    inputs, examples = words[0], words[4]
    assert int(inputs) == len(seen) <= 24
    assert int(inputs) >= 12  # the budget is mostly used
    if batch == 1:
        assert int(examples) == int(inputs)

    unguarded = fxtrace.trace(branch, torch.ones(3), guards=False, check_trace=False)
    with pytest.raises(fxtrace.PropertyCheckError) as info:
        fxtrace.check(unguarded, branch, max_examples=40, seed=3, batch=batch, dynamic=True)
    (x,), _ = info.value.inputs
    assert x.numel() == 1 and bool(x.sum() <= 0)


def test_equal_recaptures_are_not_assembled(monkeypatch):
    """The check compares each re-capture with the trace's kept structure straight from the
    tracer: an equal one is never assembled into GraphModules nor run through the passes."""
    import fxtrace.api as api

    assembled = []
    real = api.assemble
    monkeypatch.setattr(api, "assemble", lambda *a, **k: assembled.append(1) or real(*a, **k))
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    fxtrace.trace(model, torch.rand(2, 4), check_inputs=[(torch.rand(2, 4),),
                                                          (torch.rand(5, 4),)])
    assert len(assembled) == 1  # the trace itself; both re-captures matched raw
    with pytest.raises(fxtrace.TracingCheckError):
        _quiet_trace(loop, torch.ones(3), check_inputs=[(torch.ones(4),)])
    assert len(assembled) == 3  # a differing re-capture is assembled for the report


@pytest.mark.parametrize("got, want, expected", [
    ([1.0, 2.0, 0.0], [1.0, 2.5, 0.0], (0.5, 0.2)),
    ([1.0, 0.1], [1.0, 0.0], (0.1, float("inf"))),          # expected 0, error not
    ([float("nan"), 1.0], [float("nan"), 1.5], (0.5, 1 / 3)),  # NaN matches NaN
    ([float("inf"), 1.0], [float("inf"), 1.0], (0.0, 0.0)),
    ([float("nan"), 1.0], [2.0, 1.0], (float("inf"), float("inf"))),
], ids=["plain", "zero-expected", "nan-both", "inf-both", "nan-one"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_leaf_errors(got, want, expected, dtype):
    """Max abs / rel errors of the report, in the fast path and the special cases alike."""
    from fxtrace.checking.trace_check import leaf_errors

    abs_err, rel_err = leaf_errors(torch.tensor(got, dtype=dtype), torch.tensor(want, dtype=dtype))
    assert abs_err == pytest.approx(expected[0], rel=1e-6)
    assert rel_err == pytest.approx(expected[1], rel=1e-6)
