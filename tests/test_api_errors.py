"""Bad input to ``fxtrace.trace`` / ``trace_module`` / ``capture``: a clear error, nothing changed.

Where torch.jit.trace rejects the same mistake, the exception type is compared with
torch.jit's (called inside ``warnings.catch_warnings`` so its deprecation warnings stay quiet).
Every error test also checks that no global state was left behind (``unchanged``): the
patches of ``nn.Module.__call__``/``_call_impl`` and of module classes' ``__setattr__``, torch
function modes, grad mode, RNG state, warning filters, ``torch.jit.is_tracing()``.
"""
from __future__ import annotations

import contextlib
import operator
import os
import traceback
import warnings
from typing import Any, Callable, Iterator, List

import pytest
import torch
import torch.nn as nn

import fxtrace

x = torch.randn(2, 3)


def f(x):
    return x * 2


class M(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(3, 3)

    def forward(self, x):
        return self.lin(x)

    def other(self, x):
        return x + 1


# ------------------------------------------------------------------------------------ helpers

def function_mode_depth() -> int:
    return torch._C._len_torch_function_stack()


@contextlib.contextmanager
def unchanged(*modules: nn.Module) -> Iterator[None]:
    """Assert that the block leaves global tracing state, and ``modules``, as it found them."""
    call, call_impl = nn.Module.__call__, nn.Module._call_impl
    classes = {type(m) for mod in modules for m in mod.modules()} | {nn.Module}
    setattrs = {cls: cls.__dict__.get("__setattr__") for cls in classes}
    modes = function_mode_depth()
    grad = torch.is_grad_enabled()
    rng = torch.get_rng_state()
    filters = list(warnings.filters)
    flags = [(name, m.training) for mod in modules for name, m in mod.named_modules()]
    state = [{k: v.detach().clone() for k, v in mod.state_dict().items()} for mod in modules]
    yield
    assert nn.Module.__call__ is call, "nn.Module.__call__ is still patched"
    assert nn.Module._call_impl is call_impl, "nn.Module._call_impl is still patched"
    assert {cls: cls.__dict__.get("__setattr__") for cls in classes} == setattrs, \
        "a module class's __setattr__ is still patched"
    assert function_mode_depth() == modes, "a torch function mode is still active"
    assert function_mode_depth() == 0
    assert not torch.jit.is_tracing(), "torch.jit.is_tracing() is still True"
    assert torch.is_grad_enabled() == grad, "grad mode changed"
    assert torch.equal(torch.get_rng_state(), rng), "RNG state changed"
    assert warnings.filters == filters, "warnings.filters changed"
    assert [(n, m.training) for mod in modules for n, m in mod.named_modules()] == flags
    for mod, saved in zip(modules, state):
        now = mod.state_dict()
        assert list(now) == list(saved)
        for k, v in saved.items():
            assert torch.equal(now[k], v), f"{k} changed"


def jit_error(call: Callable[[Any], Any]) -> type:
    """The exception type torch.jit raises for ``call(torch.jit)``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        try:
            call(torch.jit)
        except Exception as e:  # noqa: BLE001 - we want torch.jit's type, whatever it is
            return type(e)
    raise AssertionError("torch.jit accepted the call")


def check_like_jit(call: Callable[[Any], Any], match: str, *modules: nn.Module) -> Exception:
    """fxtrace raises an exception of torch.jit's type for ``call`` whose message matches."""
    expected = jit_error(call)
    with unchanged(*modules):
        with pytest.raises(expected, match=match) as info:
            call(fxtrace)
    return info.value


# ------------------------------------------------------------------------- argument checking

@pytest.mark.parametrize("api", ["trace", "capture"])
@pytest.mark.parametrize("func", [3, "f", None, object()], ids=["int", "str", "None", "object"])
def test_non_callable_func(api: str, func: Any) -> None:
    with unchanged():
        with pytest.raises(fxtrace.InvalidArgument, match=r"\bfunc\b") as info:
            getattr(fxtrace, api)(func, x)
    assert type(func).__name__ in str(info.value)
    assert os.path.basename(__file__) in str(info.value), "message points at the caller"


@pytest.mark.parametrize("api", ["trace", "capture"])
@pytest.mark.parametrize("func", [f, M()], ids=["function", "module"])
def test_no_example_inputs(api: str, func: Any) -> None:
    with unchanged():
        with pytest.raises(fxtrace.InvalidArgument, match="example_inputs") as info:
            getattr(fxtrace, api)(func)
    assert "example_kwarg_inputs" in str(info.value)
    # torch.jit fails with a TypeError here; InvalidArgument is one, so old handlers still work
    assert isinstance(info.value, jit_error(lambda lib: lib.trace(f)))


def test_example_kwarg_inputs_not_a_dict() -> None:
    with unchanged():
        with pytest.raises(fxtrace.InvalidArgument, match="example_kwarg_inputs"):
            fxtrace.trace(f, x, example_kwarg_inputs=[x])
        with pytest.raises(fxtrace.InvalidArgument, match="example_kwarg_inputs"):
            fxtrace.trace(f, example_kwarg_inputs=[x])


def test_example_inputs_not_iterable() -> None:
    with unchanged():
        with pytest.raises(fxtrace.InvalidArgument, match="example_inputs") as info:
            fxtrace.trace(f, object())
    assert "object" in str(info.value)
    assert isinstance(info.value, jit_error(lambda lib: lib.trace(f, object())))  # TypeError


@pytest.mark.parametrize("api", ["trace", "capture"])
def test_object_where_tensor_needed_is_rejected(api: str) -> None:
    with unchanged():
        with pytest.raises(fxtrace.InvalidArgument, match="object"):
            getattr(fxtrace, api)(f, (object(),))


@pytest.mark.parametrize("api", ["trace", "capture"])
def test_object_where_tensor_needed_names_the_argument(api: str) -> None:
    with pytest.raises(fxtrace.InvalidArgument, match=r"example_inputs\[0\]") as info:
        getattr(fxtrace, api)(f, (object(),))
    assert "'x'" in str(info.value), "the message names the parameter too"


def test_tracing_other_method_like_jit() -> None:
    m = M()
    err = check_like_jit(lambda lib: lib.trace(m.other, x), "trace_module", m)
    assert isinstance(err, AttributeError)


def test_trace_module_non_module_like_jit() -> None:
    err = check_like_jit(lambda lib: lib.trace_module(f, {"forward": x}), r"nn\.Module")
    assert isinstance(err, AttributeError)


@pytest.mark.parametrize("inputs", [x, (x,), [("forward", x)]], ids=["tensor", "tuple", "list"])
def test_trace_module_non_dict_like_jit(inputs: Any) -> None:
    m = M()
    err = check_like_jit(lambda lib: lib.trace_module(m, inputs), "dictionary", m)
    assert isinstance(err, AttributeError)


def test_trace_module_unknown_method_like_jit() -> None:
    m = M()
    check_like_jit(lambda lib: lib.trace_module(m, {"nope": x}), "nope", m)


def test_trace_module_unknown_method_names_it() -> None:
    m = M()
    with unchanged(m):
        with pytest.raises(fxtrace.InvalidArgument, match="'nope'.*M"):
            fxtrace.trace_module(m, {"nope": x})


def test_unknown_kwarg_module_like_jit() -> None:
    m = M()
    err = check_like_jit(lambda lib: lib.trace(m, example_kwarg_inputs={"y": x}), "'y'", m)
    assert isinstance(err, NameError)
    assert "[x]" in str(err), "the message lists the valid argument names"


def test_unknown_kwarg_function() -> None:
    """torch.jit fails by calling ``f(y=...)`` (TypeError); fxtrace checks the names first."""
    with unchanged():
        with pytest.raises((NameError, TypeError), match="'y'") as info:
            fxtrace.trace(f, example_kwarg_inputs={"y": x})
    assert "[x]" in str(info.value)


def test_unknown_kwarg_function_message_names_the_function() -> None:
    with pytest.raises(NameError) as info:
        fxtrace.trace(f, example_kwarg_inputs={"y": x})
    assert "forward()" not in str(info.value) and "f()" in str(info.value)


@pytest.mark.parametrize("target", ["function", "module"])
def test_optimize_warns_like_jit(target: str) -> None:
    func = f if target == "function" else M()

    def categories(lib: Any) -> List[type]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            lib.trace(func, x, optimize=True, check_trace=False)
        return [w.category for w in caught if "optimize" in str(w.message)]

    expected = categories(torch.jit)
    assert expected == [FutureWarning]
    assert categories(fxtrace) == expected


@pytest.mark.parametrize("target", ["function", "module"])
def test_optimize_warning_points_at_caller(target: str) -> None:
    func = f if target == "function" else M()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fxtrace.trace(func, x, optimize=True, check_trace=False)
    where = [w.filename for w in caught if issubclass(w.category, FutureWarning)]
    assert where == [__file__], where


# --------------------------------------------------------------- user code raising in capture

class UserError(Exception):
    pass


TRACING_SEEN: List[bool] = []


class Raising(nn.Module):
    """Changes everything fxtrace promises to restore, then raises."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.bn = nn.BatchNorm1d(3)
        self.drop = nn.Dropout(0.5)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        TRACING_SEEN.append(torch.jit.is_tracing())  # outside the model: not put back
        self.drop(self.bn(x))          # updates running stats, draws random numbers
        self.calls.add_(1)
        torch.rand(3)
        self.eval()
        torch.set_grad_enabled(False)
        raise UserError("user code failed")  # USER-LINE


def raising_function(x):
    x * 2
    torch.rand(3)
    torch.set_grad_enabled(False)
    raise UserError("function failed")  # USER-LINE


def _user_line(func: Callable[..., Any]) -> int:
    import inspect
    lines, start = inspect.getsourcelines(func)
    return start + next(i for i, line in enumerate(lines) if "# USER-LINE" in line)


def _assert_user_frame(exc: BaseException, func: Callable[..., Any]) -> None:
    frames = traceback.extract_tb(exc.__traceback__)
    line = _user_line(func)
    assert any(fr.filename == __file__ and fr.lineno == line for fr in frames), \
        "".join(traceback.format_list(frames))


@pytest.mark.parametrize("api", ["trace", "trace_module", "capture"])
@pytest.mark.parametrize("grad", [True, False], ids=["grad", "no_grad"])
def test_user_exception_in_module_restores_everything(api: str, grad: bool) -> None:
    m = Raising().train()
    TRACING_SEEN.clear()
    with torch.set_grad_enabled(grad):
        with unchanged(m):
            with pytest.raises(UserError, match="user code failed") as info:
                if api == "trace_module":
                    fxtrace.trace_module(m, {"forward": x})
                else:
                    getattr(fxtrace, api)(m, x)
    assert TRACING_SEEN == [True]
    assert m.training and m.bn.training and m.calls.item() == 0
    _assert_user_frame(info.value, Raising.forward)


@pytest.mark.parametrize("api", ["trace", "capture"])
def test_user_exception_in_function_restores_everything(api: str) -> None:
    with unchanged():
        with pytest.raises(UserError, match="function failed") as info:
            getattr(fxtrace, api)(raising_function, x)
    _assert_user_frame(info.value, raising_function)


def test_user_exception_after_a_module_call_restores_everything() -> None:
    """The exception is raised while a submodule frame is open (inside a child's forward)."""
    class Child(nn.Module):
        def forward(self, x):
            raise UserError("child failed")

    class Parent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 3)
            self.child = Child()

        def forward(self, x):
            return self.child(self.lin(x))

    m = Parent()
    with unchanged(m):
        with pytest.raises(UserError, match="child failed"):
            fxtrace.trace(m, x)
    # and a later trace of a healthy model still works
    traced = fxtrace.trace(M(), x)
    torch.testing.assert_close(traced(x), M()(x))


@pytest.mark.parametrize("api", ["trace", "capture"])
def test_is_tracing_inside_capture_only(api: str) -> None:
    seen: List[bool] = []

    def g(x):
        seen.append(torch.jit.is_tracing())
        return x + 1

    kwargs = {"check_trace": False} if api == "trace" else {}
    with unchanged():
        getattr(fxtrace, api)(g, x, **kwargs)
    assert seen == [True]
    assert not torch.jit.is_tracing()
    if api == "trace":  # check_trace re-traces g (tracing) and runs it eagerly (not tracing)
        seen.clear()
        fxtrace.trace(g, x, check_trace=True)
        assert seen.count(True) == 2 and seen.count(False) >= 1 and seen[0] is True


def test_successful_trace_leaves_no_state_behind() -> None:
    m = M()
    with unchanged(m):
        fxtrace.trace(m, x)
        fxtrace.capture(m, x)
        fxtrace.trace(f, x)


# ------------------------------------------------------------- notes and converted errors

def test_user_exception_gets_one_note_naming_the_call() -> None:
    """trace() of a module runs through trace_module(): still one fxtrace note, not two."""
    exc = UserError("once")
    m = Raising().train()
    m.forward = lambda x: (_ for _ in ()).throw(exc)  # type: ignore[method-assign]
    with pytest.raises(UserError) as info:
        fxtrace.trace(m, x)
    assert info.value is exc
    notes = [n for n in info.value.__notes__ if n.startswith("fxtrace: ")]
    assert len(notes) == 1, notes
    assert os.path.basename(__file__) in notes[0]


def _fails_after_first_call() -> Callable[[Any], Any]:
    calls: List[int] = []

    def flaky(x):
        calls.append(1)
        if len(calls) > 1:
            raise UserError("second call")
        return x * 2
    return flaky


def test_user_exception_in_check_retrace_passes_unchanged_like_jit() -> None:
    assert jit_error(lambda lib: lib.trace(_fails_after_first_call(), x)) is UserError
    with unchanged():
        with pytest.raises(UserError, match="second call"):
            fxtrace.trace(_fails_after_first_call(), x)


def test_error_raised_without_user_frames_is_called_internal(monkeypatch: Any) -> None:
    """An exception from fxtrace's own code (no user line in its traceback) becomes an
    InternalError of the same builtin type, chained to it, and marked as a possible fxtrace
    bug naming fxtrace's line."""
    import fxtrace.api as api

    # a builtin that fails when called with (gm, name): no Python frame of this file
    monkeypatch.setattr(api, "lower_function", operator.itemgetter("nope"))
    with pytest.raises(TypeError) as info:
        fxtrace.trace(f, x)
    err = info.value
    assert isinstance(err, fxtrace.errors.InternalError) and isinstance(err, TypeError)
    assert type(err.__cause__) is TypeError and str(err) == str(err.__cause__)
    note = next(n for n in err.__notes__ if n.startswith("fxtrace: "))
    assert "fxtrace bug" in note and "test_api_errors.py" in note and "api.py" in note


def test_recursion_error_is_short_and_names_the_function() -> None:
    def again(x):
        return again(x * 1)

    with unchanged():
        with pytest.raises(RecursionError) as info:
            fxtrace.trace(again, x)
    err = info.value
    assert isinstance(err, fxtrace.errors.RecursionTraceError)
    assert "again()" in str(err) and os.path.basename(__file__) in str(err)
    assert err.__cause__ is None and err.__suppress_context__, "the 1000 frames stay hidden"
    # and the stack is usable afterwards: a normal trace works
    torch.testing.assert_close(fxtrace.trace(f, x)(x), f(x))


def test_argument_errors_raise_before_user_code_runs() -> None:
    ran: List[int] = []

    def g(x, y):
        ran.append(1)
        return x + y

    for call in (lambda: fxtrace.trace(g, (x,)),
                 lambda: fxtrace.trace(g, example_kwarg_inputs={"x": x, "z": x}),
                 lambda: fxtrace.trace(g, (x, x), check_inputs=x),
                 lambda: fxtrace.trace(g, (x, x), check_inputs=[(x,)]),
                 lambda: fxtrace.trace(g, (x, x), strict="no")):
        with pytest.raises(fxtrace.FxTraceError):
            call()
    assert ran == []
