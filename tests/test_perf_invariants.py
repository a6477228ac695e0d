"""What the speed work (issue 14) must not change: a trace stays an observation of the
garbage collector's state, the cached schema binding answers as the uncached one, and
submodules sharing a TorchScript type (one compilation per distinct method), within one trace
or across traces, keep their own state, code and saved form."""
from __future__ import annotations

import gc
import threading
import weakref
from typing import Callable, List

import pytest
import torch

import fxtrace
from fxtrace.capture.gcpause import paused_gc
from fxtrace.lower import schema


def _seen_gc(seen: List[bool]):
    def f(x: torch.Tensor) -> torch.Tensor:
        seen.append(gc.isenabled())
        return x * 2 + 1
    return f


@pytest.mark.parametrize("enabled", [True, False])
def test_trace_leaves_the_collector_as_it_found_it(enabled: bool) -> None:
    seen: List[bool] = []
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        traced = fxtrace.trace(_seen_gc(seen), (torch.ones(3),))
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()
    assert seen[0] is False  # paused while the capture ran the function
    assert torch.equal(traced(torch.ones(3)), torch.full((3,), 3.0))


def test_a_failing_trace_resumes_the_collector() -> None:
    def bad(x: torch.Tensor) -> torch.Tensor:
        raise ValueError("boom")
    assert gc.isenabled()
    with pytest.raises(ValueError):
        fxtrace.trace(bad, (torch.ones(2),))
    assert gc.isenabled()


def test_nested_and_concurrent_pauses_restore_once_the_last_one_ends() -> None:
    assert gc.isenabled()
    inside = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with paused_gc():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    assert inside.wait(10)
    with paused_gc():
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert not gc.isenabled()  # the other thread's pause is still open
    release.set()
    thread.join(10)
    assert gc.isenabled()


def test_threads_tracing_at_once_leave_the_collector_enabled() -> None:
    errors: List[BaseException] = []

    def work() -> None:
        try:
            for _ in range(3):
                fxtrace.trace(lambda x: torch.relu(x) + 1, (torch.randn(4),), check_trace=False)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert gc.isenabled()


@pytest.mark.parametrize("args, kwargs", [
    ((torch.ones(2), 2.0), {}),
    ((torch.ones(2), 2), {}),
    ((torch.ones(2), torch.ones(2)), {}),
    ((torch.ones(2), torch.ones(2)), {"alpha": 2}),
    ((torch.ones(2), "x"), {}),
    ((torch.ones(2),), {"other": 1.0}),
])
def test_cached_binding_answers_as_binding_every_schema(args, kwargs) -> None:
    def uncached() -> bool:
        return any(schema._bind(s, args, kwargs, convert=False) is not None
                   for s in schema._schemas("aten::add"))
    first = schema.binds_as_recorded("aten::add", args, kwargs)
    second = schema.binds_as_recorded("aten::add", args, kwargs)  # from the cache
    assert first == second == uncached()


# -- NOTE [Shared method types]: one compilation per distinct generated method ------------------
class _Branchy(torch.nn.Module):
    """Same class, different graphs: ``double`` decides the traced forward."""

    def __init__(self, double: bool) -> None:
        super().__init__()
        self.double = double
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lin(x)
        return y * 2 if self.double else y + 1


def _count_defines(monkeypatch: pytest.MonkeyPatch) -> List[str]:
    from fxtrace.lower import script
    seen: List[str] = []
    original = script._define
    script._TYPE_CACHE.clear()  # counts of this process's first trace of a class

    def counting(define, what, source):  # type: ignore[no-untyped-def]
        seen.append(what)
        return original(define, what, source)
    monkeypatch.setattr(script, "_define", counting)
    return seen


def _types(traced: torch.jit.ScriptModule) -> List[str]:
    return [m._c._type().qualified_name() for _, m in traced.named_modules()]


def test_equal_submodules_compile_their_method_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from fxtrace.lower import script
    model = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(12)], torch.nn.ReLU(),
                                torch.nn.Linear(4, 4, bias=False))
    x = torch.randn(3, 4)
    seen = _count_defines(monkeypatch)
    traced = fxtrace.trace(model, (x,), check_trace=False)
    # root forward, Linear with bias, ReLU, Linear without bias
    assert len(seen) == 4, seen
    types = _types(traced)
    assert len(set(types[1:13])) == 1 and len(set(types)) == 4
    for i in range(12):  # shared type, own state
        assert getattr(traced, str(i)).weight is model[i].weight
    assert torch.equal(traced(x), model(x))
    monkeypatch.setattr(script, "SHARE_TYPES", False)
    separate = fxtrace.trace(model, (x,), check_trace=False)
    assert len(set(_types(separate))) == 15
    assert [m.code for _, m in traced.named_modules()] == \
        [m.code for _, m in separate.named_modules()]


@pytest.mark.filterwarnings("ignore:.*torch.jit.*deprecated:DeprecationWarning")
def test_shared_types_save_and_reload(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh(), torch.nn.Linear(4, 4))
    x = torch.randn(2, 4)
    traced = fxtrace.trace(model, (x,), check_trace=False)
    path = tmp_path / "m.pt"
    torch.jit.save(traced, str(path))
    loaded = torch.jit.load(str(path))
    assert torch.equal(loaded(x), model(x))
    assert not torch.equal(getattr(loaded, "0").weight, getattr(loaded, "2").weight)


def test_same_class_with_different_graphs_keeps_separate_types(
        monkeypatch: pytest.MonkeyPatch) -> None:
    model = torch.nn.Sequential(_Branchy(True), _Branchy(False), _Branchy(True))
    x = torch.randn(2, 4)
    seen = _count_defines(monkeypatch)
    traced = fxtrace.trace(model, (x,), check_trace=False)
    # root, one Linear, two distinct _Branchy forwards
    assert len(seen) == 4, seen
    types = _types(traced)
    branchy = [types[i] for i, (name, _) in enumerate(traced.named_modules())
               if name in ("0", "1", "2")]
    assert branchy[0] == branchy[2] != branchy[1]
    assert torch.equal(traced(x), model(x))


class _Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 2, 3, padding=1, bias=False)
        self.bn = torch.nn.BatchNorm2d(2)
        self.register_buffer("scale", torch.ones(1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)) * self.scale) + x


def _layout(traced: torch.jit.ScriptModule) -> List[object]:
    out: List[object] = []
    for name, m in traced.named_modules():
        script = m._actual_script_module if "_actual_script_module" in m.__dict__ else m
        ct = script._concrete_type
        out.append((name, type(m).__name__, m.original_name, m.code, sorted(m.__dict__),
                    sorted(script.__dict__), sorted(ct.get_attributes()),
                    [n for n, _ in ct.get_modules()], sorted(m._c._method_names()),
                    [n for n, _ in m.named_parameters()], [n for n, _ in m.named_buffers()]))
    return out


def test_the_built_shell_is_the_one_tracedmodule_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Types, attributes, Python wrappers and code as torch's own TracedModule makes them."""
    from fxtrace.lower import script
    model = torch.nn.Sequential(_Block(), _Block(), torch.nn.Flatten()).eval()
    x = torch.randn(1, 2, 4, 4)
    fast = fxtrace.trace(model, (x,), check_trace=False)
    monkeypatch.setattr(script, "SHARE_TYPES", False)
    slow = fxtrace.trace(model, (x,), check_trace=False)
    assert _layout(fast) == _layout(slow)
    assert type(fast) is type(slow) is torch.jit.TopLevelTracedModule
    assert torch.equal(fast(x), slow(x))


def test_a_trace_does_not_import_numpy_random() -> None:
    """The state snapshot reads NumPy's global generator only once ``numpy.random`` exists
    (importing it to read it cost more than the rest of the snapshot)."""
    import subprocess
    import sys
    code = ("import sys, torch, fxtrace\n"
            "fxtrace.trace(lambda x: x * 2, (torch.ones(2),))\n"
            "print('numpy.random' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr


def test_numpy_draws_in_a_capture_are_put_back() -> None:
    np_random = pytest.importorskip("numpy.random")

    def draws(x: torch.Tensor) -> torch.Tensor:
        return x * float(np_random.rand())
    before = np_random.get_state()[1].copy()
    fxtrace.trace(draws, (torch.ones(2),), check_trace=False)
    assert (np_random.get_state()[1] == before).all()


class _WithConstant(torch.nn.Module):
    """A plain tensor attribute: a constant of the trace, registered on each module's type."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.c = torch.full((4,), value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.c


def test_modules_with_tensor_constants_keep_their_own_values() -> None:
    model = torch.nn.Sequential(_WithConstant(2.0), _WithConstant(3.0))
    x = torch.ones(2, 4)
    traced = fxtrace.trace(model, (x,), check_trace=False)
    assert torch.equal(traced(x), model(x))
    assert torch.equal(traced(x), torch.full((2, 4), 6.0))


# -- NOTE [Types shared across traces]: a later trace of the same class compiles nothing new ----
class _Cell(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 2, 3, padding=1)
        self.register_buffer("scale", torch.full((1,), 0.5), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x) * self.scale) + x


class _Stack(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList([_Cell(), _Cell()])
        self.head = torch.nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x.flatten(1))


def _count_inferences(monkeypatch: pytest.MonkeyPatch) -> List[object]:
    seen: List[object] = []
    original = torch.jit._recursive.get_module_concrete_type

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        if not isinstance(args[0], torch.jit.ScriptModule):  # a built child: its own type
            seen.append(args[0])
        return original(*args, **kwargs)
    monkeypatch.setattr(torch.jit._recursive, "get_module_concrete_type", counting)
    return seen


@pytest.fixture
def across(monkeypatch: pytest.MonkeyPatch) -> None:
    """Types shared across traces, which is off by default (NOTE [Types shared across
    traces]: concurrent lowerings can still pair a cached parent type with a child type of
    their own)."""
    from fxtrace.lower import script
    monkeypatch.setattr(script, "SHARE_ACROSS_TRACES", True)


def _trace(model: torch.nn.Module, x: torch.Tensor) -> torch.jit.ScriptModule:
    """One call site: the generated methods' comments name the same user lines."""
    return fxtrace.trace(model, (x,), check_trace=False)


def test_a_second_trace_of_the_same_class_compiles_nothing_new(
        monkeypatch: pytest.MonkeyPatch, across: None) -> None:
    x = torch.randn(1, 2, 4, 4)
    defines = _count_defines(monkeypatch)
    inferences = _count_inferences(monkeypatch)
    first_model = _Stack().eval()
    first = _trace(first_model, x)
    # methods: root, _Cell, Conv2d, Linear; types: those and the ModuleList
    assert len(defines) == 4 and len(inferences) == 5, (defines, inferences)
    defines.clear()
    inferences.clear()
    model = _Stack().eval()
    second = _trace(model, x)
    assert defines == ["_Stack.forward"] and len(inferences) == 1, (defines, inferences)
    for (name, a), (_, b) in zip(first.named_modules(), second.named_modules()):
        assert a._c._method_names() == b._c._method_names(), name
        assert not a._c._has_method("forward") or a.code == b.code, name
        if name:  # the root's type is the trace's own
            assert a._c._type() == b._c._type(), name
    assert second.head.weight is model.head.weight is not first.head.weight
    assert getattr(second.blocks, "1").scale is model.blocks[1].scale
    assert torch.equal(second(x), model(x)) and torch.equal(first(x), first_model(x))


def _twin(activation: Callable[[torch.Tensor], torch.Tensor]) -> torch.nn.Module:
    class Twin(torch.nn.Module):  # one name, two classes
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return activation(self.lin(x))
    return torch.nn.Sequential(Twin())


def test_classes_with_one_name_and_different_code_never_share(
        monkeypatch: pytest.MonkeyPatch, across: None) -> None:
    x = torch.randn(2, 4)
    defines = _count_defines(monkeypatch)
    models = [_twin(torch.relu), _twin(torch.sigmoid)]
    traced = [_trace(m, x) for m in models]
    assert sum(what.startswith("Twin.forward") for what in defines) == 2, defines
    assert getattr(traced[0], "0")._c._type() != getattr(traced[1], "0")._c._type()
    for m, t in zip(models, traced):
        assert torch.equal(t(x), m(x))


def test_methods_of_one_trace_never_leak_into_another(across: None) -> None:
    class TwoMethods(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(x)

        def extra(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(x) * 2

    x = torch.randn(2, 4)
    both = fxtrace.trace_module(TwoMethods(), {"forward": (x,), "extra": (x,)},
                                check_trace=False)
    plain = _trace(TwoMethods(), x)
    assert both._c._has_method("extra") and not plain._c._has_method("extra")
    for traced in (both, plain):
        assert traced.lin._c._method_names() == ["forward"]


def test_the_cache_keeps_no_model_alive_and_drops_entries_whose_objects_died(
        across: None) -> None:
    from fxtrace.lower import script
    x = torch.randn(1, 2, 4, 4)
    model = _Stack()
    traced = _trace(model, x)
    refs = [weakref.ref(model), weakref.ref(model.head.weight), weakref.ref(traced)]
    del model, traced
    gc.collect()
    assert [r() for r in refs] == [None, None, None]
    assert 0 < len(script._TYPE_CACHE) <= script._TYPE_CACHE._size

    class Resolved:
        pass
    cache = script._TypeCache(2)
    obj = Resolved()
    cache.put(("key", id(obj)), "type", (weakref.ref(obj),))
    assert cache.get(("key", id(obj))) == "type"
    key = ("key", id(obj))
    del obj
    gc.collect()
    assert cache.get(key) is None and len(cache) == 0  # an id reused later never matches
    for i in range(3):
        cache.put(i, i, ())
    assert len(cache) == 2 and cache.get(0) is None and cache.get(2) == 2


def test_threads_tracing_one_class_at_once_keep_their_own_state(across: None) -> None:
    x = torch.randn(1, 2, 4, 4)
    errors: List[BaseException] = []

    def work() -> None:
        try:
            for _ in range(3):
                model = _Stack().eval()
                traced = _trace(model, x)
                assert traced.head.weight is model.head.weight
                assert torch.equal(traced(x), model(x))
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
