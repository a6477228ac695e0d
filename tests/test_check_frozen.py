"""``fxtrace.check`` on the last two trap kinds (a dtype branch crossing float/int, an index
value frozen by ``int(i)``), its coverage of every variant, and failure reports that name the
frozen line (NOTE [Frozen line]) for any trace."""
from __future__ import annotations

import inspect

import pytest
import torch
from check_helpers import fx_trace, jit_trace
from hypothesis import given

import fxtrace
from fxtrace.checking.frozen import frozen_line
from fxtrace.checking.variants import Variant, find_int_ranges, find_variants
from fxtrace.strategies import inputs_like

# torch.jit.trace is the oracle here: its deprecation notices and TracerWarnings are not
# under test.
pytestmark = [pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")]


_jit = jit_trace
_fx = fx_trace


def _line(fn, text: str) -> int:
    lines, start = inspect.getsourcelines(fn)
    return start + next(i for i, line in enumerate(lines) if text in line)


def _failure(traced, fn, example, **kw) -> fxtrace.PropertyCheckError:
    with pytest.raises(fxtrace.PropertyCheckError) as caught:
        fxtrace.check(traced, fn, example_inputs=example, seed=0, **kw)
    return caught.value


# ------------------------------------------------------------------- float <-> int variants
def halve(x):
    if x.is_floating_point():
        return x / 2
    return x // 2


@pytest.mark.parametrize("tracer", ["jit", "fxtrace guards=False"])
def test_a_branch_on_is_floating_point_is_found_with_an_integer_input(tracer):
    x = torch.randn(4)
    traced = _jit(halve, x) if tracer == "jit" else _fx(halve, x, guards=False)
    (shrunk,), _ = _failure(traced, halve, (x,)).inputs
    assert shrunk.dtype == torch.int64  # the other family; within floats it agrees


def test_float_int_variants_only_where_eager_runs_them():
    _, dtype = find_variants(halve, ((torch.randn(4),), {}), [])
    assert Variant("dtype", (0,), torch.int64) in dtype
    lin = torch.nn.Linear(4, 2)
    _, dtype = find_variants(lin, ((torch.randn(3, 4),), {}), [lin])
    assert dtype == []  # a float32 Linear takes no int64 (nor float64) input

    def embed(ids):
        return torch.nn.functional.one_hot(ids, 5)
    _, dtype = find_variants(embed, ((torch.tensor([1, 2]),), {}), [])
    assert all(v.dtype != torch.float32 for v in dtype)  # one_hot refuses floats in eager


# --------------------------------------------------------------------------- index ranges
def pick(x, i):
    return x[int(i)]


@pytest.mark.parametrize("tracer", ["jit", "fxtrace guards=False"])
def test_an_index_frozen_by_int_is_found_within_the_range_eager_takes(tracer):
    x, i = torch.randn(4, 2), torch.tensor(1)
    traced = _jit(pick, x, i) if tracer == "jit" else _fx(pick, x, i, guards=False)
    error = _failure(traced, pick, (x, i))
    (_, shrunk), _ = error.inputs
    assert int(shrunk) != 1 and -4 <= int(shrunk) <= 3


def test_int_ranges_end_where_eager_raises():
    x, i = torch.randn(4, 2), torch.tensor(1)
    assert find_int_ranges(pick, ((x, i), {}), []) == {1: (-4, 3)}
    emb = torch.nn.Embedding(10, 3)
    ids = torch.tensor([[2, 5]])
    assert find_int_ranges(emb, ((ids,), {}), [emb]) == {0: (0, 9)}
    # no edge: widened by the last probe step on each side
    assert find_int_ranges(lambda n: n * 2, ((torch.tensor(3),), {}), []) == {0: (-5, 11)}
    assert find_int_ranges(lambda b: b, ((torch.tensor(True),), {}), []) == {}


@given(inputs_like((torch.zeros(3), torch.tensor([1, 2])), int_ranges={1: (-4, 7)}))
def test_inputs_like_int_ranges_bound_the_values(drawn):
    x, i = drawn
    assert i.dtype == torch.int64 and -4 <= int(i.min()) and int(i.max()) <= 7


@pytest.mark.parametrize("bad,match", [({0: (0, 1)}, "not an integral dtype"),
                                       ({1: (3, 2)}, "low <= high"),
                                       ({5: (0, 1)}, "names input 5"),
                                       ([(1, 0, 1)], "must be a dict")])
def test_inputs_like_int_ranges_are_checked(bad, match):
    with pytest.raises(Exception, match=match):
        inputs_like((torch.zeros(3), torch.tensor([1, 2])), int_ranges=bad)


def test_indices_false_keeps_the_example_values():
    x, i = torch.randn(4, 2), torch.tensor(1)
    report = fxtrace.check(_jit(pick, x, i), pick, example_inputs=(x, i), seed=0,
                           indices=False, ranks=False, dtypes=False)
    assert report.ok


# ---------------------------------------------------------------------------- frozen lines
def branch(x):
    y = x * 2
    if x.sum() > 0:
        y = y * 3
    return y


def loop(x):
    out = x[0]
    for i in range(1, x.size(0)):
        out = out + x[i]
    return out


@pytest.mark.parametrize("tracer", ["jit", "fxtrace guards=False"])
@pytest.mark.parametrize("fn,frozen", [(branch, "if x.sum() > 0:"),
                                       (loop, "for i in range(1, x.size(0)):")],
                         ids=["branch", "loop"])
def test_a_failure_names_the_frozen_line_not_the_body(tracer, fn, frozen):
    x = torch.ones(3, 4)
    traced = _jit(fn, x) if tracer == "jit" else _fx(fn, x, guards=False)
    error = _failure(traced, fn, (x,))
    where = f"test_check_frozen.py:{_line(fn, frozen)}"
    assert error.report.outputs[0].first_divergence == f"frozen at {where}"
    note = next(n for n in error.report.notes if n.startswith("frozen line: "))
    assert note.startswith(f"frozen line: {where} ({frozen}): the trace keeps what the example")
    text = str(error)
    assert "(re-trace only)" not in text.split("\n")[3]  # the table row names the frozen line
    assert "RuntimeError: RuntimeError" not in text


def test_frozen_line_is_none_when_the_input_takes_the_example_path(capfd):
    x = torch.ones(3, 4)
    assert frozen_line(branch, None, ((x,), {}), ((x + 1,), {})) is None
    found = frozen_line(branch, None, ((x,), {}), ((-x,), {}))
    assert found is not None and found.code == "if x.sum() > 0:"
    assert found.traced == "traced with bool gave True"
    # the guard fired inside the graph: nothing printed (a GraphModule called directly
    # prints its generated code to stderr when a node raises)
    assert capfd.readouterr().err == ""


class Gate(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.register_buffer("seen", torch.zeros(()))

    def forward(self, x):
        self.seen += 1
        h = self.lin(x)
        if h.mean() > 0:
            return h.relu()
        return h


def test_frozen_line_leaves_the_module_as_it_was():
    torch.manual_seed(0)
    gate = Gate()
    before = {k: v.clone() for k, v in gate.state_dict().items()}
    x = torch.randn(2, 4)
    h = gate.lin(x).mean()
    other = -x if (gate.lin(-x).mean() > 0) != (h > 0) else x * 0 - 100
    rng = torch.random.get_rng_state()
    frozen_line(gate, gate, ((x,), {}), ((other,), {}))
    assert all(torch.equal(before[k], v) for k, v in gate.state_dict().items())
    assert torch.equal(rng, torch.random.get_rng_state())


def test_the_divergence_search_logs_no_structured_trace_records(monkeypatch):
    """A trace's graph that raises on the failing input (the loop past the input's length) is
    run by the recording interpreter: torch's fx Interpreter would log a structured-trace
    record per raise (empty DEBUG lines under a test run's log capture) and append "While
    executing" to the error; the recorder does neither."""
    import torch.fx.interpreter as interpreter

    from fxtrace.checking.divergence import record
    from fxtrace.checking.graphs import capture_of
    records = []
    monkeypatch.setattr(interpreter, "trace_structured", lambda *a, **k: records.append(a))
    traced = _fx(loop, torch.ones(3, 4), guards=False)
    gm = capture_of(traced)
    log = record(gm, (torch.ones(1, 4),), {})
    assert log and records == []
    error = _failure(traced, loop, (torch.ones(3, 4),))
    assert "While executing" not in str(error) and records == []
