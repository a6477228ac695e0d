"""Concrete capture: live sizes, specialisations with guards, module frames, lowering errors.

Every test compares the trace with eager on inputs that take the traced path, and checks that
inputs taking another path are refused by a guard rather than answered wrongly.
"""
import copy
import os
import warnings
from typing import Any, Callable

import pytest
import torch
import torch.fx as fx

import fxtrace
from fxtrace.capture.meta import CaptureInfo
from fxtrace.lower.codegen import generate


def _trace(fn: Any, *args: Any, **kw: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fxtrace.TracerWarning)
        return fxtrace.trace(fn, args if len(args) != 1 else args[0], **kw)


def _refused(traced: Callable[..., Any], *args: Any) -> str:
    with pytest.raises(torch.jit.Error) as info:
        traced(*args)
    assert "fxtrace guard failed" in str(info.value)
    return str(info.value)


def branchy(x: torch.Tensor) -> torch.Tensor:
    if x.sum() > 0:
        return x * 2
    return x - 1


def test_data_dependent_branch_is_guarded_at_the_user_line() -> None:
    """A branch on a tensor value warns at the user's line and is checked at run time."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = fxtrace.trace(branchy, torch.ones(3))
    tracer_warnings = [w for w in caught if issubclass(w.category, fxtrace.TracerWarning)]
    assert tracer_warnings and tracer_warnings[0].filename == __file__
    assert torch.equal(traced(torch.full((4,), 3.0)), branchy(torch.full((4,), 3.0)))
    message = _refused(traced, -torch.ones(3))
    assert "test_capture.py" in message and "x.sum() > 0" in message


def test_int_of_size_is_guarded() -> None:
    """``int(x.size(0))`` freezes the batch size: other batch sizes are refused."""
    def f(x: torch.Tensor) -> torch.Tensor:
        n = int(x.size(0))
        return x.view(n, -1)

    traced = _trace(f, torch.ones(2, 3))
    assert torch.equal(traced(torch.ones(2, 3)), f(torch.ones(2, 3)))
    _refused(traced, torch.ones(4, 3))


def test_range_over_size_is_guarded() -> None:
    """A Python loop over a live size unrolls; another length is refused, not mis-summed."""
    def f(x: torch.Tensor) -> torch.Tensor:
        out = x[0]
        for i in range(1, x.size(0)):
            out = out + x[i]
        return out

    traced = _trace(f, torch.rand(3, 2))
    x = torch.rand(3, 2)
    torch.testing.assert_close(traced(x), f(x))
    _refused(traced, torch.rand(5, 2))


def test_item_is_guarded() -> None:
    """``.item()`` used as a Python number is checked against the traced value."""
    def f(x: torch.Tensor) -> torch.Tensor:
        return x * x.max().item()

    traced = _trace(f, torch.tensor([1.0, 2.0]))
    assert torch.equal(traced(torch.tensor([2.0, 0.5])), f(torch.tensor([2.0, 0.5])))
    _refused(traced, torch.tensor([1.0, 3.0]))


def test_live_sizes_generalise_over_batch() -> None:
    """Size arithmetic is recorded, so the trace is correct at other batch sizes."""
    def f(x: torch.Tensor) -> Any:
        b, c, h = x.shape
        y = x.reshape(b, c * h) + torch.zeros(x.size(0), c * h)
        return y[:, : h * 2], x[..., 0], x.numel() // b

    traced = _trace(f, torch.rand(2, 3, 4))
    for batch in (1, 7):
        x = torch.rand(batch, 3, 4)
        got, want = traced(x), f(x)
        torch.testing.assert_close(got[0], want[0])
        torch.testing.assert_close(got[1], want[1])
        assert got[2] == want[2]


def test_closure_constant_and_requires_grad_closure() -> None:
    """A closure tensor becomes a constant; one that requires grad is refused as torch.jit does."""
    c = torch.arange(3.0)
    traced = _trace(lambda x: x + c, torch.ones(3))
    assert isinstance(traced, torch.jit.ScriptFunction)
    assert torch.equal(traced(torch.zeros(3)), c)
    w = torch.ones(3, requires_grad=True)
    with pytest.raises(fxtrace.TraceError, match="requires grad"):
        fxtrace.trace(lambda x: x * w, torch.ones(3))


class _Attention(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, mask: Any = None) -> torch.Tensor:
        y = self.proj(x)
        return y if mask is None else y * mask


class _TwoWays(torch.nn.Module):
    """Calls one submodule with and without a mask: two behaviours, two methods."""

    def __init__(self) -> None:
        super().__init__()
        self.att = _Attention()

    def forward(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return self.att(x) + self.att(x, m)


def test_submodule_called_two_ways_gets_two_methods() -> None:
    """Distinct call behaviours become ``forward`` and ``forward1`` of the submodule."""
    model = _TwoWays()
    x, m = torch.rand(2, 4), torch.rand(2, 4)
    traced = _trace(model, x, m)
    assert traced.att._c._has_method("forward1")
    torch.testing.assert_close(traced(x * 2, m), model(x * 2, m))


class _ReadsParent(torch.nn.Module):
    """A child reading a tensor its caller stored on it: the tensor is lifted into an input."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = torch.nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.sum()
        self.inner.scale = scale
        return self.inner(x) * scale


def test_capture_records_module_frames_and_info() -> None:
    """capture() gives a GraphModule tree with call_module nodes and a CaptureInfo."""
    model = _TwoWays()
    gm = fxtrace.capture(model, (torch.rand(2, 4), torch.rand(2, 4)))
    assert isinstance(gm, fx.GraphModule) and isinstance(gm.att, fx.GraphModule)
    assert [n.target for n in gm.graph.nodes if n.op == "call_module"] == ["att"]
    info = gm.meta["fxtrace"]
    assert isinstance(info, CaptureInfo) and info.module_calls["att"] == 2
    x, m = torch.rand(3, 4), torch.rand(3, 4)
    torch.testing.assert_close(gm(x, m), model(x, m))


def test_trace_module_with_two_methods() -> None:
    """trace_module traces each named method; both run on the result."""
    class Two(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x)

        def scaled(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x) * 2

    model = Two()
    x = torch.rand(2, 3)
    traced = fxtrace.trace_module(model, {"forward": x, "scaled": x})
    torch.testing.assert_close(traced(x), model(x))
    torch.testing.assert_close(traced.scaled(x), model.scaled(x))


def test_codegen_writes_user_lines_and_compile_errors_show_source() -> None:
    """Generated lines carry ``# file:line``; an uncompilable graph raises LoweringError with it."""
    gm = fxtrace.capture(branchy, torch.ones(3))
    source = generate(gm.graph, "forward")
    assert "test_capture.py:" in source.src
    graph = fx.Graph()
    x = graph.placeholder("x")
    graph.output(graph.call_function(torch.add, (x, "not a number")))
    bad = fx.GraphModule(torch.nn.Module(), graph)
    bad.meta["fxtrace"] = CaptureInfo(mode="concrete", is_function=True, name="bad")
    from fxtrace.lower.script import lower_function
    with pytest.raises(fxtrace.LoweringError, match="Generated source"):
        lower_function(bad, "bad")


def test_lifted_tensor_from_caller() -> None:
    """A tensor the child reads from its caller without being passed it stays live."""
    model = _ReadsParent()
    traced = _trace(model, torch.rand(2, 3))
    x = torch.rand(4, 3)
    torch.testing.assert_close(traced(x), model(x))


def test_python_value_from_torch_function_is_guarded() -> None:
    """``torch.equal`` returns a Python bool from tensor values: it is guarded like ``if t``."""
    def f(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x + 1 if torch.equal(x, y) else x - 1

    x = torch.ones(3)
    traced = _trace(f, x, x.clone())
    assert torch.equal(traced(x * 2, x * 2), f(x * 2, x * 2))
    _refused(traced, x, x * 2)


def test_check_warns_on_value_mismatch_and_restores_state() -> None:
    """A trace whose re-trace on check_inputs differs raises as torch.jit does; the model's
    buffers and RNG are as they were after the check (training-mode BatchNorm + dropout)."""
    def f(x: torch.Tensor) -> torch.Tensor:
        return x * float(x.numpy().sum())   # guarded on x; the re-trace bakes another sum

    with pytest.raises(fxtrace.TracingCheckError, match="Graphs differed"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fxtrace.TracerWarning)
            fxtrace.trace(f, torch.ones(2), check_inputs=[(torch.full((2,), 3.0),)])

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4), torch.nn.Dropout(0.5))
    x = torch.rand(8, 4)
    traced = fxtrace.trace(model, x, check_trace=False)
    stats, rng = model[1].running_mean.clone(), torch.random.get_rng_state()
    with warnings.catch_warnings():
        warnings.simplefilter("error", fxtrace.TracerWarning)
        from fxtrace.checking.trace_check import check_trace
        check_trace(traced, model, [((x,), {})], 1e-5, stateful=[model])
    assert torch.equal(model[1].running_mean, stats)
    assert torch.equal(torch.random.get_rng_state(), rng)


def test_store_inputs_keeps_the_example_inputs() -> None:
    """``_store_inputs=True`` keeps the example inputs on the result; False keeps nothing."""
    x = torch.rand(2, 3)
    kept = fxtrace.trace(torch.nn.Linear(3, 1), x)
    assert kept._fxtrace_traced_inputs["forward"][0][0] is x
    dropped = fxtrace.trace(torch.nn.Linear(3, 1), x, _store_inputs=False)
    assert "_fxtrace_traced_inputs" not in dropped.__dict__


def test_guards_false_freezes_like_torch_jit() -> None:
    """With ``guards=False`` the frozen branch answers other inputs as torch.jit.trace does."""
    traced = _trace(branchy, torch.ones(3), guards=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        jit = torch.jit.trace(branchy, torch.ones(3))
    x = torch.full((3,), -2.0)
    assert torch.equal(traced(x), jit(x))
    assert not torch.equal(traced(x), branchy(x))   # the known silent failure, now opt-in
    info = traced._fxtrace_capture.meta["fxtrace"]
    assert [s.guarded for s in info.specialisations] == [False]


def test_unknown_mode_is_rejected() -> None:
    with pytest.raises(fxtrace.InvalidArgument, match="mode"):
        fxtrace.trace(branchy, torch.ones(3), mode="fast")


def test_force_outplace_matches_torch_jit() -> None:
    """``_force_outplace=True`` records in-place ops out of place; results equal eager and
    torch.jit's, and the graph has no in-place method left."""
    def f(x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        y.add_(1).mul_(3)
        return torch.relu_(y - 4)

    traced = _trace(f, torch.rand(3), _force_outplace=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        jit = torch.jit.trace(f, torch.rand(3), _force_outplace=True)
    x = torch.rand(5)
    assert torch.equal(traced(x), f(x)) and torch.equal(traced(x), jit(x))
    nodes = traced._fxtrace_capture.graph.nodes
    assert not [n for n in nodes if isinstance(n.target, str) and n.target.endswith("_")]


def test_dtype_and_device_follow_the_inputs() -> None:
    """``dtype=x.dtype, device=x.device`` lower to expressions: float64 in, float64 out."""
    def f(x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.size(0), dtype=x.dtype, device=x.device) + x.new_ones(1)

    traced = _trace(f, torch.rand(3))
    x = torch.rand(4, dtype=torch.float64)
    assert traced(x).dtype == torch.float64
    torch.testing.assert_close(traced(x), f(x))


def test_dtype_read_that_leaks_into_python_is_guarded() -> None:
    """A dtype compared in Python cannot follow the input: another dtype is refused."""
    def f(x: torch.Tensor) -> torch.Tensor:
        return x * 2 if x.dtype == torch.float16 else x + 1

    traced = _trace(f, torch.rand(3))
    _refused(traced, torch.rand(3, dtype=torch.float64))


def test_scalar_and_none_inputs_are_guarded() -> None:
    """Python scalars and None given as inputs are baked in and checked."""
    def f(x: torch.Tensor, n: int, m: Any) -> torch.Tensor:
        return x * n if m is None else x * m

    traced = _trace(f, torch.rand(3), 2, None)
    x = torch.rand(3)
    torch.testing.assert_close(traced(x, 2, None), f(x, 2, None))
    _refused(traced, x, 3, None)
    _refused(traced, x, 2, torch.ones(3))


def test_train_eval_switch_on_the_trace_is_refused() -> None:
    """Dropout/BatchNorm traced in training mode refuse to run after ``.eval()``."""
    model = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.BatchNorm1d(3)).train()
    traced = fxtrace.trace(model, torch.rand(4, 3), check_trace=False)
    traced.eval()
    _refused(traced, torch.rand(4, 3))
    traced.train()
    traced(torch.rand(4, 3))


def test_namedtuple_output_stays_a_namedtuple() -> None:
    """A namedtuple of tensors comes back with its field names (torch.jit gives a tuple)."""
    import collections
    Pair = collections.namedtuple("Pair", "a b")
    traced = _trace(lambda x: Pair(x, x + 1), torch.rand(2))
    out = traced(torch.zeros(2))
    assert out._fields == ("a", "b") and torch.equal(out.b, torch.ones(2))


@torch.jit.script
def _scripted_loop(x: torch.Tensor, n: int) -> torch.Tensor:
    for _ in range(n):
        x = x * 2
    return x


def test_scripted_function_call_stays_a_call() -> None:
    """A ``@torch.jit.script`` function called from traced code is recorded as a call, so its
    loop runs on the runtime inputs (it used to be invisible and become a constant)."""
    def f(x: torch.Tensor) -> torch.Tensor:
        return _scripted_loop(x + 1, 3) - 1

    traced = _trace(f, torch.ones(2))
    x = torch.rand(4)
    torch.testing.assert_close(traced(x), f(x))


def test_custom_autograd_function_and_attribute_rebinding_warn() -> None:
    """A custom autograd.Function and a traced tensor stored on ``self`` warn at the user line."""
    class Square(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            return x * x

        @staticmethod
        def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
            return g

    class Keeps(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.last = x + 1
            return Square.apply(self.last)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = fxtrace.trace(Keeps(), torch.rand(3))
    messages = [(str(w.message), w.filename) for w in caught
                if issubclass(w.category, fxtrace.TracerWarning)]
    assert any("custom torch.autograd.Function" in m and f == __file__ for m, f in messages)
    assert any("module attribute 'last'" in m and f == __file__ for m, f in messages)
    x = torch.rand(3)
    torch.testing.assert_close(traced(x), (x + 1) ** 2)


class _Logged(torch.nn.Module):
    """A module class with its own ``__setattr__`` that calls the base class's."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("total", torch.zeros(3))
        self.writes = 0

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "total":
            object.__setattr__(self, "writes", self.__dict__.get("writes", 0) + 1)
        super().__setattr__(name, value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.total = self.total + x
        return self.total * 2


def test_state_rebinding_through_a_custom_setattr_and_outside_the_tree() -> None:
    """A class with its own ``__setattr__`` (calling the base one) still has its buffer
    rebinding recorded exactly once; a module reached outside the module tree (in a plain
    list) still warns about a Python attribute change; every class is restored afterwards."""
    class Counter(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls = self.calls + 1
            return x

    class Outer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = _Logged()
            self.hidden = [Counter()]  # not a submodule: outside the tree

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.hidden[0](self.inner(x))

    model = Outer()
    before = {cls: cls.__dict__.get("__setattr__") for cls in (Outer, _Logged, Counter)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = fxtrace.trace(model, torch.ones(3), check_trace=False)
    assert {cls: cls.__dict__.get("__setattr__") for cls in (Outer, _Logged, Counter)} == before
    assert any("Python attribute 'calls'" in str(w.message) and w.filename == __file__
               for w in caught)
    gm = traced._fxtrace_capture
    writes = [n for m in gm.modules() if isinstance(m, torch.fx.GraphModule)
              for n in m.graph.nodes if n.meta.get("fxtrace_state_write")]
    assert len(writes) == 1, writes
    eager = copy.deepcopy(model)  # the trace ran forward once, as torch.jit.trace does
    for _ in range(2):  # the buffer carries over between calls, as in eager
        x = torch.rand(3)
        torch.testing.assert_close(traced(x), eager(x))


def test_gradients_through_the_trace_equal_eager() -> None:
    """Backward through the ScriptModule gives eager's parameter and input gradients."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    traced = fxtrace.trace(model, torch.rand(3, 4))
    x1 = torch.rand(5, 4, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_()
    model(x1).sum().backward()
    eager_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    traced(x2).sum().backward()
    for got, want in zip([p.grad for p in model.parameters()], eager_grads):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(x2.grad, x1.grad)


def test_tensor_escaping_a_module_call_stays_live() -> None:
    """A tensor computed in a submodule and read by the caller through an attribute (a side
    channel) is routed out of the submodule's graph, so it follows the inputs."""
    class Inner(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.saved = x * 2
            return x

    class Outer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = Inner()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.inner(x)
            return y + self.inner.saved

    model = Outer()
    traced = _trace(model, torch.rand(3))
    x = torch.rand(5)
    torch.testing.assert_close(traced(x), model(x))


def test_type_conversion_by_tensor_type_is_recorded() -> None:
    """``x.type(torch.float64)`` returns a new tensor computed from ``x``: it is recorded,
    not frozen as a constant."""
    traced = _trace(lambda x: x.type(torch.float64) * 2, torch.rand(3))
    x = torch.rand(4)
    torch.testing.assert_close(traced(x), x.double() * 2)


class _Steps(torch.nn.Module):
    """Python state: a step counter (read or only logged) and a list of past inputs."""

    def __init__(self, read_steps: bool = True, read_cache: bool = False) -> None:
        super().__init__()
        self.steps = 0
        self.cache: list = []
        self.read_steps, self.read_cache = read_steps, read_cache

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.steps += 1
        self.cache.append(x.detach())
        y = x * self.steps if self.read_steps else x * 2
        return y + torch.stack(self.cache).sum(0) if self.read_cache else y


@pytest.mark.parametrize("read_steps, read_cache, culprit", [
    (True, False, "self.steps (_Steps), changed at"),
    (False, True, "self.cache (_Steps), mutated in place"),
], ids=["counter-read", "list-read"])
def test_python_state_read_by_the_trace_is_refused(read_steps: bool, read_cache: bool,
                                                   culprit: str) -> None:
    """Python state that forward changes and the computation reads cannot live in a trace:
    TraceError at trace time, naming the attribute and the diverging node; the model's Python
    state is as before the trace (a trace is an observation)."""
    model = _Steps(read_steps, read_cache)
    with pytest.raises(fxtrace.TraceError) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore", fxtrace.TracerWarning)
        fxtrace.trace(model, torch.ones(3), check_trace=False)
    message = str(info.value)
    assert culprit in message and "second capture" in message
    assert "register_buffer" in message and os.path.basename(__file__) in message
    assert model.steps == 0 and len(model.cache) == 0


def test_python_state_the_trace_does_not_read_is_kept_with_a_warning() -> None:
    """A counter only kept (not read by the computation) gives the same second capture: the
    trace stands, with the warning at the assignment; guards=False never re-captures."""
    model = _Steps(read_steps=False, read_cache=False)
    with pytest.warns(fxtrace.TracerWarning, match="Python attribute 'steps'"):
        traced = fxtrace.trace(model, torch.ones(3), check_trace=False)
    assert model.steps == 0 and len(model.cache) == 0  # put back: a trace is an observation
    x = torch.rand(4)
    torch.testing.assert_close(traced(x), x * 2)
    reading = _Steps(read_steps=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fxtrace.TracerWarning)
        frozen = fxtrace.trace(reading, torch.ones(3), check_trace=False, guards=False)
    torch.testing.assert_close(frozen(x), x * 1)  # torch.jit.trace's frozen value
    assert reading.steps == 0  # put back with guards=False too


def test_python_state_of_a_module_called_from_a_function_is_refused() -> None:
    """A function tracing a module it closes over: the module's state is watched and put
    back after the second capture too."""
    model = _Steps(read_steps=True)

    def f(x: torch.Tensor) -> torch.Tensor:
        return model(x) + 1

    with pytest.raises(fxtrace.TraceError, match=r"self\.steps"), warnings.catch_warnings():
        warnings.simplefilter("ignore", fxtrace.TracerWarning)
        fxtrace.trace(f, torch.ones(3), check_trace=False)
    assert model.steps == 0


def test_deepcopy_of_a_tensor_is_a_detached_clone() -> None:
    """``copy.deepcopy`` of an input or a parameter inside forward: the copy is a new leaf
    (values, requires_grad, no history); the trace computes and differentiates as eager."""
    class M(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.rand(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = copy.deepcopy(x)
            w = copy.deepcopy(self.w)
            return x + y * w * 2 + self.w

    def f(x: torch.Tensor) -> torch.Tensor:
        y = copy.deepcopy(x)
        y.mul_(2)  # must not reach x
        return x + y

    traced_f = fxtrace.trace(f, torch.ones(3))
    x = torch.rand(4)
    torch.testing.assert_close(traced_f(x), f(x))
    model = M()
    traced = fxtrace.trace(model, torch.ones(3))
    x1 = torch.rand(3, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_()
    eager, got = model(x1), traced(x2)
    torch.testing.assert_close(got, eager)
    eager.sum().backward()
    eager_grads = (x1.grad.clone(), model.w.grad.clone())
    model.zero_grad()
    got.sum().backward()
    torch.testing.assert_close((x2.grad, model.w.grad), eager_grads)


def test_sizes_a_factory_fixed_are_read_back_without_guards() -> None:
    """``torch.zeros(b, 4).size()`` is ``(b, 4)`` by construction: reading it back records no
    size items and no rank guard, the trace stays batch-generic, and a tensor whose shape an
    in-place op changed afterwards is read from the graph again."""
    def f(x: torch.Tensor) -> torch.Tensor:
        b = x.size(0)
        h = torch.zeros(b, 4)
        c = torch.full((b, 4), 2.0)
        if h.size() != c.shape or len(h.shape) != 2:  # plain Python on the fixed sizes
            raise ValueError("never")
        z = torch.zeros(x.size(0), 4)
        z.resize_(x.size(0) * 2, 2)
        return x.sum(1, keepdim=True) + h + c, z.new_ones(z.size(0), z.size(1))

    gm = fxtrace.capture(f, (torch.ones(3, 5),))
    guards = [n for n in gm.graph.nodes if n.target is torch._assert]
    assert not guards, [n.args[1] for n in guards]
    traced = fxtrace.trace(f, torch.ones(3, 5))
    for batch in (1, 6):
        x = torch.rand(batch, 5)
        for got, want in zip(traced(x), f(x)):
            torch.testing.assert_close(got, want)


def test_module_state_left_by_forward_holds_plain_values() -> None:
    """``self.shape = x.shape`` or ``self.sizes.append(x.size(1))`` in forward: assigned
    attributes and mutated containers are put back after tracing; a new attribute stays,
    holding a plain value (int), and using it afterwards does not touch the trace's graphs."""
    class M(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.shape: Any = None
            self.sizes: list = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.shape = x.shape
            self.count = x.size(0) * 2
            self.sizes.append(x.size(1))
            return x * 2

    model = M()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fxtrace.TracerWarning)
        traced = fxtrace.trace(model, torch.ones(3, 4), check_trace=False)
    assert model.shape is None and model.sizes == []
    assert type(model.count) is int and model.count == 6
    nodes = len(traced._fxtrace_capture.graph.nodes)
    _ = model.count * 2  # plain Python now
    assert len(traced._fxtrace_capture.graph.nodes) == nodes

    kept: dict = {}  # outside any module: the traced values outlive the capture

    def f(x: torch.Tensor) -> torch.Tensor:
        kept["n"], kept["shape"] = x.size(0), x.shape
        return x * 2

    traced_f = fxtrace.trace(f, torch.ones(3, 4))
    nodes = len(traced_f._fxtrace_capture.graph.nodes)
    assert kept["n"] + 1 == 4 and kept["n"] == 3 and list(kept["shape"]) == [3, 4]
    assert kept["shape"][-1] == 4 and len(kept["shape"]) == 2
    assert len(traced_f._fxtrace_capture.graph.nodes) == nodes  # nothing recorded late


def test_int_constants_for_float_parameters_are_lowered_as_floats() -> None:
    """``F.interpolate(x, scale_factor=2)``: Python takes the int, TorchScript's overloads of
    interpolate want a float; the trace writes ``2.0`` and works at other sizes."""
    import torch.nn.functional as F

    def f(x: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x, scale_factor=2, mode="nearest")
        return up + F.interpolate(x, scale_factor=[2, 2], mode="bilinear", align_corners=False)

    traced = fxtrace.trace(f, torch.rand(1, 2, 3, 3))
    x = torch.rand(2, 2, 5, 4)
    torch.testing.assert_close(traced(x), f(x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        oracle = torch.jit.trace(f, torch.rand(1, 2, 3, 3))  # torch.jit traces it too
    torch.testing.assert_close(traced(x), oracle(x))
