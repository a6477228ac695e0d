"""A catalogue of mistakes: each gets a clear fxtrace error, and nothing is changed by it.

Every row of ``CASES`` builds fresh objects (``make``), calls the API (``call(lib, env)``,
with ``lib`` fxtrace or torch.jit) and states what must happen:

- ``error``: the exact fxtrace class raised; ``None`` marks a legitimate input, whose trace
  must then equal eager (``eager``). A user's own exception is expected as the very object
  the program raised (``env["exc"]``), with fxtrace's note added.
- ``culprit``: text the message must contain (the argument, key, object or function at
  fault); every fxtrace error must also name this file (the user's line).
- ``jit``: ``"same"``: torch.jit.trace rejects the call too, and fxtrace's error is also the
  builtin type torch.jit raised (a differential assertion); ``"accepts"``: torch.jit lets
  the mistake through silently (asserted, so the divergence stays deliberate); ``None``: an
  fxtrace-only API or option.

After every error the model's parameters, buffers and training flags, the RNG state, grad
mode and fxtrace's patches of torch are bitwise as before.
"""
from __future__ import annotations

import builtins
import dataclasses
import math
import os
import warnings
from typing import Any, Callable, Dict, List, Optional

import pytest
import torch
import torch.nn as nn

import fxtrace
from fxtrace.errors import (
    FxTraceError,
    InvalidArgument,
    InvalidAttribute,
    InvalidInput,
    InvalidOption,
    MissingForward,
    RecursionTraceError,
    TraceError,
    UnknownArgumentName,
)

Env = Dict[str, Any]
HERE = os.path.basename(__file__)


# ------------------------------------------------------------------------------ the programs

def f(x):
    return x * 2


def f2(x, y):
    return x * y


def fkw(x, **kw):
    return x * kw["scale"]


def fkw_any(x, **kw):
    return x * sum(kw.values())


def kwonly(x, *, scale):
    return x * scale


def posonly(x, /):
    return x * 2


def varargs(*xs):
    return xs[0] + xs[1]


def recurse(x):
    return recurse(x + 1)


class M(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.bn = nn.BatchNorm1d(3)

    def forward(self, x):
        return self.bn(self.lin(x))

    def helper(self, x):
        return x + 1


class KwForward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x, **kwargs):
        return self.lin(x) * kwargs["scale"]


class Defaults(nn.Module):
    def forward(self, x, y=None):
        return x if y is None else x + y


class NoSuperInit(nn.Module):
    def __init__(self) -> None:  # noqa: D107 - the mistake under test
        self.scale = 2

    def forward(self, x):
        return x * self.scale


class Holder(nn.Module):
    def __init__(self, child: Any) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.child = child

    def forward(self, x):
        return self.child(self.lin(x))


class Recursive(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x):
        return self.forward(self.lin(x))


class PingPong(nn.Module):
    """Two instances that call each other through a reference kept outside the module tree."""

    def forward(self, x):
        return self.other(x * 2)


class UserError(Exception):
    def __init__(self, code: int, detail: str) -> None:  # two required arguments
        super().__init__(f"user failure {code}: {detail}")
        self.code = code


class Raising(nn.Module):
    """Changes what fxtrace promises to restore, then raises ``exc``."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(3)
        self.drop = nn.Dropout(0.5)
        self.exc = exc

    def forward(self, x):
        self.drop(self.bn(x))  # running stats move, random numbers are drawn
        torch.rand(3)
        self.eval()
        raise self.exc


class NoForward(nn.Module):
    pass


class DictOut(nn.Module):
    def __init__(self, make: Callable[[Any], Any]) -> None:
        super().__init__()
        self.make = make

    def forward(self, x):
        return self.make(x)


class ListIn(nn.Module):
    def forward(self, xs):
        return xs[0]


class Named(nn.Module):
    """A submodule and a buffer under a name chosen by the test (keywords, digits, ...)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.add_module(name, nn.Linear(3, 3))
        self.register_buffer(name + "_b", torch.full((3,), 0.5))
        self.name = name

    def forward(self, x):
        return getattr(self, self.name)(x) * getattr(self, self.name + "_b")


# ------------------------------------------------------------------------------ the catalogue

def x_() -> torch.Tensor:
    return torch.randn(4, 3, generator=torch.Generator().manual_seed(0))


def env_of(**objects: Any) -> Callable[[], Env]:
    """A ``make`` giving ``x`` (4x3), ``y`` and the objects built by the given factories."""
    def make() -> Env:
        env: Env = {"x": x_(), "y": x_() + 1}
        env.update({k: v() for k, v in objects.items()})
        return env
    return make


def with_cycle() -> Holder:
    holder = Holder(nn.ReLU())
    holder.child = nn.Sequential(nn.ReLU())
    holder.child.add_module("back", holder)  # holder.child.back is holder
    return holder


def self_loop() -> M:
    m = M()
    m.loop = m
    return m


def ping_pong() -> PingPong:
    a, b = PingPong(), PingPong()
    object.__setattr__(a, "other", b)
    object.__setattr__(b, "other", a)
    return a


class TwoInputs(nn.Module):
    def forward(self, x, y):
        return x + y


def hooked_two_inputs() -> nn.Module:
    """forward takes two inputs; a pre-hook makes the second from the first."""
    m = TwoInputs()
    m.register_forward_pre_hook(lambda mod, args: (args[0], args[0] * 2))
    return m


@dataclasses.dataclass
class Case:
    id: str
    call: Callable[[Any, Env], Any]
    error: Optional[type]
    culprit: str = ""
    jit: Optional[str] = "same"
    make: Callable[[], Env] = dataclasses.field(default_factory=lambda: env_of(m=M))
    eager: Optional[Callable[[Any, Env], None]] = None
    xfail: str = ""  # a known fxtrace defect outside argument handling (reported), strict


def raising(exc: Callable[[], BaseException]) -> Callable[[], Env]:
    def make() -> Env:
        env = env_of()()
        env["exc"] = exc()
        env["m"] = Raising(env["exc"])
        return env
    return make


def same_as_eager(run: Callable[[Any, Env], Any], eager: Callable[[Env], Any]
                  ) -> Callable[[Any, Env], None]:
    def check(traced: Any, env: Env) -> None:
        torch.testing.assert_close(run(traced, env), eager(env))
    return check


def not_kw(lib: Any) -> Dict[str, Any]:
    """fxtrace-only keywords, left out when the same call goes to torch.jit."""
    return {} if lib is torch.jit else {"guards": True}


T = fxtrace  # noqa: N816 - short alias in the table below
CASES: List[Case] = [
    # -- func ------------------------------------------------------------------------------
    Case("func-int", lambda L, e: L.trace(3, e["x"]), InvalidInput, "int"),
    Case("func-None", lambda L, e: L.trace(None, e["x"]), InvalidInput, "NoneType"),
    Case("func-str", lambda L, e: L.trace("f", e["x"]), InvalidInput, "'f'"),
    Case("capture-func-int", lambda L, e: L.capture(3, e["x"]), InvalidInput, "int", jit=None),
    # -- example_inputs / example_kwarg_inputs ----------------------------------------------
    Case("no-inputs-function", lambda L, e: L.trace(f), InvalidInput, "example_inputs"),
    Case("no-inputs-module", lambda L, e: L.trace(e["m"]), InvalidInput, "example_inputs"),
    Case("capture-no-inputs", lambda L, e: L.capture(e["m"]), InvalidInput, "example_inputs",
         jit=None),
    Case("kwarg-inputs-list-function", lambda L, e: L.trace(f, example_kwarg_inputs=[e["x"]]),
         InvalidInput, "example_kwarg_inputs"),
    Case("kwarg-inputs-list-module", lambda L, e: L.trace(e["m"], example_kwarg_inputs=[e["x"]]),
         InvalidInput, "example_kwarg_inputs"),
    Case("both-inputs-function",
         lambda L, e: L.trace(f, e["x"], example_kwarg_inputs={"x": e["x"]}),
         InvalidArgument, "both example_inputs and example_kwarg_inputs", jit="accepts"),
    Case("both-inputs-module",
         lambda L, e: L.trace(e["m"], e["x"], example_kwarg_inputs={"x": e["x"]}),
         InvalidArgument, "both example_inputs and example_kwarg_inputs", jit="accepts"),
    Case("unknown-keyword-function", lambda L, e: L.trace(f, example_kwarg_inputs={"y": e["x"]}),
         UnknownArgumentName, "'y' is not in f()'s arguments"),
    Case("unknown-keyword-module",
         lambda L, e: L.trace(e["m"], example_kwarg_inputs={"y": e["x"]}),
         UnknownArgumentName, "'y' is not in M.forward()'s arguments"),
    Case("unknown-keyword-capture",
         lambda L, e: L.capture(e["m"], example_kwarg_inputs={"y": e["x"]}),
         UnknownArgumentName, "[x]", jit=None),
    Case("tensor-key-function", lambda L, e: L.trace(f, example_kwarg_inputs={e["x"]: e["x"]}),
         UnknownArgumentName, "key of type Tensor"),
    Case("int-key-module", lambda L, e: L.trace(e["m"], example_kwarg_inputs={0: e["x"]}),
         UnknownArgumentName, "key of type int"),
    Case("inputs-not-iterable", lambda L, e: L.trace(f, object()), InvalidArgument, "object"),
    Case("inputs-int", lambda L, e: L.trace(f, 3), InvalidArgument, "got int"),
    Case("inputs-str", lambda L, e: L.trace(f, "abc"), InvalidInput, "example_inputs is a str"),
    Case("too-many-inputs-function", lambda L, e: L.trace(f, (e["x"], e["x"])), InvalidArgument,
         "too many positional arguments"),
    Case("too-many-inputs-module", lambda L, e: L.trace(e["m"], (e["x"], e["x"])),
         InvalidArgument, "M.forward()"),
    Case("too-few-inputs", lambda L, e: L.trace(f2, (e["x"],)), InvalidArgument,
         "missing a required argument: 'y'"),
    Case("missing-keyword-function", lambda L, e: L.trace(f2, example_kwarg_inputs={"x": e["x"]}),
         InvalidArgument, "'y'"),
    Case("missing-keyword-module", lambda L, e: L.trace(e["m"], example_kwarg_inputs={}),
         InvalidArgument, "'x'"),
    Case("positional-only-as-keyword",
         lambda L, e: L.trace(posonly, example_kwarg_inputs={"x": e["x"]}),
         InvalidArgument, "positional only"),
    Case("object-input", lambda L, e: L.trace(f, (object(),)), InvalidInput,
         "example_inputs[0] has type object"),
    Case("set-input", lambda L, e: L.trace(f, ({e["x"]},)), InvalidInput, "type set"),
    Case("list-mixing-tensor-and-tuple",
         lambda L, e: L.trace(e["m"], ([e["x"], (e["x"],)],)), InvalidInput,
         "example_inputs[0] is a list mixing", make=env_of(m=ListIn)),
    Case("dict-mixing-value-types", lambda L, e: L.trace(f, ({"a": e["x"], "b": 1},)),
         InvalidInput, "mixing value types"),
    Case("dict-mixing-key-types", lambda L, e: L.trace(f, ({"a": e["x"], 0: e["x"]},)),
         InvalidInput, "keys are not all str"),
    Case("nested-object-input", lambda L, e: L.trace(f, ((e["x"], object()),)), InvalidInput,
         "example_inputs[0][1]"),
    Case("capture-method-missing", lambda L, e: L.capture(e["m"], e["x"], method="nope"),
         InvalidAttribute, "'nope'", jit=None),
    Case("capture-method-not-str", lambda L, e: L.capture(e["m"], e["x"], method=3),
         InvalidArgument, "method has a method name of type int (3)", jit=None),
    Case("capture-method-is-submodule", lambda L, e: L.capture(e["m"], e["x"], method="lin"),
         InvalidAttribute, "'lin'", jit=None),
    # -- trace_module ----------------------------------------------------------------------
    Case("trace-other-method", lambda L, e: L.trace(e["m"].helper, e["x"]), InvalidAttribute,
         "'helper'"),
    Case("trace-module-function", lambda L, e: L.trace_module(f, {"forward": e["x"]}),
         InvalidAttribute, "got function"),
    Case("trace-module-tuple", lambda L, e: L.trace_module(e["m"], (e["x"],)), InvalidAttribute,
         "got tuple"),
    Case("trace-module-tensor", lambda L, e: L.trace_module(e["m"], e["x"]), InvalidAttribute,
         "got Tensor"),
    Case("trace-module-unknown-method", lambda L, e: L.trace_module(e["m"], {"nope": e["x"]}),
         InvalidAttribute, "'nope'"),
    Case("trace-module-submodule", lambda L, e: L.trace_module(e["m"], {"lin": e["x"]}),
         InvalidAttribute, "'lin', a submodule"),
    Case("trace-module-int-method", lambda L, e: L.trace_module(e["m"], {3: e["x"]}),
         InvalidArgument, "inputs has a method name of type int"),
    Case("trace-module-empty", lambda L, e: L.trace_module(e["m"], {}), InvalidArgument,
         "no method", jit="accepts"),
    Case("trace-module-check-inputs-not-dicts",
         lambda L, e: L.trace_module(e["m"], {"forward": e["x"]}, check_inputs=[(e["x"],)]),
         InvalidAttribute, "check_inputs[0]"),
    Case("trace-module-check-inputs-dict",
         lambda L, e: L.trace_module(e["m"], {"forward": e["x"]},
                                     check_inputs={"forward": e["x"]}),
         InvalidAttribute, "got dict"),
    # torch.jit cannot trace **kwargs at all (its check fails: TracingCheckError)
    *[Case(f"kwargs-key-{key}", (lambda k: lambda L, e: L.trace(
        fkw_any, example_kwarg_inputs={"x": e["x"], k: torch.tensor(2.0)}))(key),
        UnknownArgumentName, f"'{key}' in example_kwarg_inputs goes to the **kwargs")
      for key in ["def", "self", "x-y", "ñ"]],
    Case("trace-module-check-inputs-missing-method",
         lambda L, e: L.trace_module(e["m"], {"forward": e["x"]},
                                     check_inputs=[{"nope": e["x"]}]),
         InvalidAttribute, "'forward'"),
    # -- modules ---------------------------------------------------------------------------
    Case("no-super-init", lambda L, e: L.trace(e["m"], e["x"]), InvalidAttribute,
         "NoSuperInit.__init__ did not call super().__init__()", make=env_of(m=NoSuperInit)),
    Case("no-super-init-submodule", lambda L, e: L.trace(e["m"], e["x"]), InvalidAttribute,
         "submodule 'child'", make=env_of(m=lambda: Holder(NoSuperInit()))),
    Case("module-contains-itself", lambda L, e: L.trace(e["m"], e["x"]), RecursionTraceError,
         "M.loop is M", make=env_of(m=self_loop)),
    Case("module-cycle-deeper", lambda L, e: L.trace(e["m"], e["x"]), RecursionTraceError,
         "Holder.child.back is Holder", make=env_of(m=with_cycle)),
    Case("capture-module-cycle", lambda L, e: L.capture(e["m"], e["x"]), RecursionTraceError,
         "M.loop is M", make=env_of(m=self_loop), jit=None),
    Case("module-without-forward", lambda L, e: L.trace(e["m"], e["x"]), MissingForward,
         "NoForward has no forward method", make=env_of(m=NoForward)),
    Case("capture-module-without-forward", lambda L, e: L.capture(e["m"], e["x"]),
         MissingForward, "define NoForward.forward", make=env_of(m=NoForward), jit=None),
    # -- recursion -------------------------------------------------------------------------
    Case("unbounded-recursion-forward", lambda L, e: L.trace(e["m"], e["x"]),
         RecursionTraceError, "forward()", make=env_of(m=Recursive)),
    Case("unbounded-recursion-function", lambda L, e: L.trace(recurse, e["x"]),
         RecursionTraceError, "recurse()"),
    Case("mutual-recursion-outside-tree", lambda L, e: L.trace(e["m"], e["x"]),
         RecursionTraceError, "forward()", make=env_of(m=ping_pong)),
    Case("capture-unbounded-recursion", lambda L, e: L.capture(recurse, e["x"]),
         RecursionTraceError, "recurse()", jit=None),
    # -- containers at the output ----------------------------------------------------------
    Case("dict-output-strict", lambda L, e: L.trace(e["m"], e["x"]), TraceError,
         "Encountering a dict", make=env_of(m=lambda: DictOut(lambda x: {"a": x}))),
    Case("dict-output-mixed-not-strict", lambda L, e: L.trace(e["m"], e["x"], strict=False),
         TraceError, "'a': int, 'b': Tensor",
         make=env_of(m=lambda: DictOut(lambda x: {"a": 1, "b": x}))),
    Case("dict-output-list-and-tuple", lambda L, e: L.trace(e["m"], e["x"], strict=False),
         TraceError, "mixing value types",
         make=env_of(m=lambda: DictOut(lambda x: {"a": [x], "b": (x,)}))),
    Case("dict-output-nested-mixed", lambda L, e: L.trace(e["m"], e["x"], strict=False),
         TraceError, "output is a dict",
         make=env_of(m=lambda: DictOut(lambda x: {"a": {"c": x}, "b": x}))),
    # -- user exceptions (torch's own included: the program's mistake, not the arguments') --
    Case("shape-mismatch", lambda L, e: L.trace(e["m"], torch.zeros(2, 4)), RuntimeError,
         "mat1 and mat2 shapes cannot be multiplied"),
    Case("dtype-mismatch", lambda L, e: L.trace(e["m"], torch.ones(4, 3, dtype=torch.long)),
         RuntimeError, "same dtype"),
    Case("user-exception-module", lambda L, e: L.trace(e["m"], e["x"]), UserError, "user failure",
         make=raising(lambda: UserError(3, "bad")), jit=None),
    Case("user-value-error", lambda L, e: L.trace(e["m"], e["x"]), ValueError, "bad value",
         make=raising(lambda: ValueError("bad value")), jit=None),
    Case("user-key-error", lambda L, e: L.trace(e["m"], e["x"]), KeyError, "missing",
         make=raising(lambda: KeyError("missing")), jit=None),
    Case("user-recursion-error", lambda L, e: L.trace(e["m"], e["x"]), RecursionError,
         "my own", make=raising(lambda: RecursionError("my own")), jit=None),
    Case("user-exception-trace-module", lambda L, e: L.trace_module(e["m"], {"forward": e["x"]}),
         UserError, "user failure", make=raising(lambda: UserError(4, "tm")), jit=None),
    Case("user-exception-capture", lambda L, e: L.capture(e["m"], e["x"]), UserError,
         "user failure", make=raising(lambda: UserError(5, "cap")), jit=None),
    # -- keyword options of trace / trace_module / capture ----------------------------------
    Case("check-trace-str", lambda L, e: L.trace(f, e["x"], check_trace="no"), InvalidOption,
         "check_trace", jit="accepts"),
    Case("strict-str", lambda L, e: L.trace(f, e["x"], strict="yes"), InvalidOption, "strict"),
    Case("strict-str-module", lambda L, e: L.trace(e["m"], e["x"], strict="yes"),
         InvalidOption, "strict"),
    Case("check-tolerance-str", lambda L, e: L.trace(f, e["x"], check_tolerance="1e-3"),
         InvalidOption, "check_tolerance"),
    Case("check-tolerance-negative", lambda L, e: L.trace(f, e["x"], check_tolerance=-1.0),
         InvalidOption, "check_tolerance"),
    Case("check-tolerance-nan", lambda L, e: L.trace(f, e["x"], check_tolerance=math.nan),
         InvalidOption, "nan"),
    Case("check-inputs-tensor", lambda L, e: L.trace(f, e["x"], check_inputs=e["x"]),
         InvalidOption, "check_inputs must be a list", jit="accepts"),
    Case("check-inputs-tensor-module", lambda L, e: L.trace(e["m"], e["x"], check_inputs=e["x"]),
         InvalidOption, "check_inputs must be a list", jit="accepts",
         make=env_of(m=lambda: nn.Linear(3, 3))),
    Case("check-inputs-int", lambda L, e: L.trace(f, e["x"], check_inputs=3), InvalidOption,
         "got int"),
    Case("check-inputs-dict", lambda L, e: L.trace(f, e["x"], check_inputs={"x": e["x"]}),
         InvalidOption, "got dict"),
    Case("check-inputs-object", lambda L, e: L.trace(f, e["x"], check_inputs=[object()]),
         InvalidArgument, "check_inputs[0]"),
    Case("check-inputs-arity", lambda L, e: L.trace(e["m"], e["x"], check_inputs=[(e["x"],) * 2]),
         InvalidArgument, "check_inputs[0]"),
    Case("module-class-int", lambda L, e: L.trace(e["m"], e["x"], _module_class=3),
         InvalidOption, "_module_class"),
    Case("force-outplace-str", lambda L, e: L.trace(e["m"], e["x"], _force_outplace="x"),
         InvalidOption, "_force_outplace"),
    Case("store-inputs-str", lambda L, e: L.trace(e["m"], e["x"], _store_inputs="x"),
         InvalidOption, "_store_inputs"),
    Case("trace-module-strict-str",
         lambda L, e: L.trace_module(e["m"], {"forward": e["x"]}, strict="yes"),
         InvalidOption, "strict"),
    Case("trace-module-is-kwarg-str",
         lambda L, e: L.trace_module(e["m"], {"forward": {"x": e["x"]}},
                                     example_inputs_is_kwarg="yes"),
         InvalidOption, "example_inputs_is_kwarg", jit="accepts"),
    Case("compilation-unit-int", lambda L, e: L.trace(e["m"], e["x"], _compilation_unit=3),
         InvalidOption, "_compilation_unit", jit="accepts"),
    Case("trace-module-check-trace-str",
         lambda L, e: L.trace_module(e["m"], {"forward": e["x"]}, check_trace="no"),
         InvalidOption, "check_trace", jit="accepts"),
    Case("trace-module-check-tolerance-str",
         lambda L, e: L.trace_module(e["m"], {"forward": e["x"]}, check_tolerance="1e-3"),
         InvalidOption, "check_tolerance"),
    Case("trace-module-module-class-int",
         lambda L, e: L.trace_module(e["m"], {"forward": e["x"]}, _module_class=3),
         InvalidOption, "_module_class"),
    Case("trace-module-force-outplace-str",
         lambda L, e: L.trace_module(e["m"], {"forward": e["x"]}, _force_outplace="x"),
         InvalidOption, "_force_outplace"),
    Case("trace-module-mode-unknown",
         lambda L, e: T.trace_module(e["m"], {"forward": e["x"]}, mode="fast"),
         InvalidOption, "'fast'", jit=None),
    Case("trace-module-guards-str",
         lambda L, e: T.trace_module(e["m"], {"forward": e["x"]}, guards="on"),
         InvalidOption, "guards", jit=None),
    Case("capture-guards-str", lambda L, e: T.capture(f, e["x"], guards="on"), InvalidOption,
         "guards", jit=None),
    Case("capture-fold-batchnorm-str", lambda L, e: T.capture(e["m"], e["x"], fold_batchnorm="y"),
         InvalidOption, "fold_batchnorm", jit=None),
    Case("capture-kwarg-inputs-list", lambda L, e: T.capture(f, example_kwarg_inputs=[e["x"]]),
         InvalidInput, "example_kwarg_inputs", jit=None),
    Case("mode-unknown", lambda L, e: T.trace(f, e["x"], mode="fast"), InvalidOption, "'fast'",
         jit=None),
    Case("guards-str", lambda L, e: T.trace(f, e["x"], guards="off"), InvalidOption, "guards",
         jit=None),
    Case("fold-batchnorm-none", lambda L, e: T.trace(e["m"], e["x"], fold_batchnorm=None),
         InvalidOption, "fold_batchnorm", jit=None),
    Case("capture-mode-int", lambda L, e: T.capture(f, e["x"], mode=3), InvalidOption, "mode",
         jit=None),
    # -- legitimate inputs: a working trace equal to eager ----------------------------------
    Case("kwargs-forward", lambda L, e: L.trace(
        e["m"], example_kwarg_inputs={"x": e["x"], "scale": torch.tensor(2.0)}), None,
        make=env_of(m=KwForward), eager=same_as_eager(
            lambda t, e: t(x=e["y"], scale=torch.tensor(3.0)),
            lambda e: e["m"](e["y"], scale=torch.tensor(3.0)))),
    Case("kwargs-function", lambda L, e: L.trace(
        fkw, example_kwarg_inputs={"x": e["x"], "scale": torch.tensor(2.0)}), None,
        eager=same_as_eager(lambda t, e: t(x=e["y"], scale=torch.tensor(3.0)),
                            lambda e: fkw(e["y"], scale=torch.tensor(3.0)))),
    Case("keyword-only-function", lambda L, e: L.trace(
        kwonly, example_kwarg_inputs={"x": e["x"], "scale": torch.tensor(2.0)}), None,
        eager=same_as_eager(lambda t, e: t(x=e["y"], scale=torch.tensor(3.0)),
                            lambda e: kwonly(e["y"], scale=torch.tensor(3.0)))),
    Case("varargs-function", lambda L, e: L.trace(varargs, (e["x"], e["y"])), None,
         eager=same_as_eager(lambda t, e: t(e["y"], e["x"]), lambda e: varargs(e["y"], e["x"]))),
    Case("default-parameter", lambda L, e: L.trace(e["m"], (e["x"],)), None,
         make=env_of(m=Defaults),
         eager=same_as_eager(lambda t, e: t(e["y"]), lambda e: e["y"])),
    Case("pre-hook-supplies-an-argument", lambda L, e: L.trace(e["m"], (e["x"],)), None,
         make=env_of(m=hooked_two_inputs),
         eager=same_as_eager(lambda t, e: t(e["y"]), lambda e: e["m"](e["y"]))),
    Case("shared-submodule-no-cycle", lambda L, e: L.trace(e["m"], e["x"]), None,
         make=env_of(m=lambda: nn.Sequential(*[nn.Linear(3, 3)] * 2)),
         eager=same_as_eager(lambda t, e: t(e["y"]), lambda e: e["m"](e["y"]))),
    *[Case(f"hostile-name-{name}", lambda L, e: L.trace(e["m"], e["x"]), None,
           make=env_of(m=(lambda n: lambda: Named(n))(name)),
           eager=same_as_eager(lambda t, e: t(e["y"]), lambda e: e["m"](e["y"])))
      for name in ["def", "if", "self", "0", "a-b", "x", "CONSTANTS", "ops", "torch", "forward1"]],
    Case("hostile-name-non-ascii", lambda L, e: L.trace(e["m"], e["x"]), None,
         make=env_of(m=lambda: Named("ñ")),
         eager=same_as_eager(lambda t, e: t(e["y"]), lambda e: e["m"](e["y"])),
         xfail="fxtrace/lower/script.py lower_module: _define fails with UnicodeDecodeError on "
               "a non-ASCII submodule name (torch.jit traces it)"),
    Case("factory-requires-grad", lambda L, e: L.trace(
        lambda a: a * torch.ones(3, requires_grad=True), (e["x"],)), None,
        eager=same_as_eager(lambda t, e: t(e["y"]), lambda e: e["y"] * torch.ones(3))),
    Case("hostile-class-name", lambda L, e: L.trace(e["m"], e["x"]), None,
         make=env_of(m=lambda: type("def", (nn.Module,), {"forward": lambda s, x: x * 2})()),
         eager=same_as_eager(lambda t, e: t(e["y"]), lambda e: e["y"] * 2)),
]

def _param(c: Case) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else []
    return pytest.param(c, id=c.id, marks=marks)


ERRORS = [_param(c) for c in CASES if c.error is not None]
LEGIT = [_param(c) for c in CASES if c.error is None]
WITH_JIT = [pytest.param(c, id=c.id) for c in CASES if c.error is not None and c.jit]


def test_catalogue_size() -> None:
    assert len(ERRORS) >= 60, len(ERRORS)
    assert len({c.id for c in CASES}) == len(CASES), "case ids are unique"


# ------------------------------------------------------------------------------ state checks

def _modules(env: Env) -> List[nn.Module]:
    return [v for v in env.values() if isinstance(v, nn.Module)]


def _tree(module: nn.Module) -> List[nn.Module]:
    """Every module reachable from ``module`` (cycles and un-initialised modules included)."""
    seen: Dict[int, nn.Module] = {}
    stack = [module]
    while stack:
        m = stack.pop()
        if id(m) in seen:
            continue
        seen[id(m)] = m
        stack.extend(c for c in m.__dict__.get("_modules", {}).values() if c is not None)
    return list(seen.values())


def snapshot(env: Env) -> Dict[str, Any]:
    """Everything an error must leave as it found: bitwise tensors, flags, global state."""
    tensors, flags = [], []
    for root in _modules(env):
        for m in _tree(root):
            flags.append((m, m.__dict__.get("training")))
            for store in ("_parameters", "_buffers"):
                for name, t in m.__dict__.get(store, {}).items():
                    if t is not None:
                        tensors.append((m, store, name, t, t.detach().clone()))
    return {"tensors": tensors, "flags": flags, "rng": torch.get_rng_state(),
            "grad": torch.is_grad_enabled(), "call": nn.Module.__call__,
            "call_impl": nn.Module._call_impl, "modes": torch._C._len_torch_function_stack(),
            "setattr": {type(m): type(m).__dict__.get("__setattr__")
                        for root in _modules(env) for m in _tree(root)}}


def assert_unchanged(before: Dict[str, Any]) -> None:
    for m, store, name, t, saved in before["tensors"]:
        assert m.__dict__[store][name] is t, f"{type(m).__name__}.{name} was replaced"
        assert t.dtype == saved.dtype and t.shape == saved.shape
        assert torch.equal(t.detach().view(-1).view(torch.uint8),
                           saved.view(-1).view(torch.uint8)), f"{name} changed"
    for m, training in before["flags"]:
        assert m.__dict__.get("training") == training, f"{type(m).__name__}.training changed"
    assert torch.equal(torch.get_rng_state(), before["rng"]), "RNG state changed"
    assert torch.is_grad_enabled() == before["grad"]
    assert nn.Module.__call__ is before["call"] and nn.Module._call_impl is before["call_impl"]
    assert torch._C._len_torch_function_stack() == before["modes"] == 0
    assert {cls: cls.__dict__.get("__setattr__") for cls in before["setattr"]} == \
        before["setattr"], "a module class's __setattr__ is still patched"
    assert not torch.jit.is_tracing()


def _text(exc: BaseException) -> str:
    return "\n".join([str(exc), *getattr(exc, "__notes__", [])])


def _builtin_base(cls: type) -> type:
    """The first builtin exception type in ``cls``'s MRO (torch.jit raises some of its own)."""
    return next(c for c in cls.__mro__ if c.__module__ == "builtins")


def _jit(case: Case) -> Optional[BaseException]:
    env = case.make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            case.call(torch.jit, env)
        except Exception as e:  # noqa: BLE001 - torch.jit's exception, whatever it is
            return e
    return None


# ------------------------------------------------------------------------------------- tests

@pytest.mark.parametrize("case", ERRORS)
def test_mistake_gets_a_clear_error(case: Case) -> None:
    env = case.make()
    before = snapshot(env)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fxtrace.TracerWarning)
        with pytest.raises(BaseException) as info:
            case.call(fxtrace, env)
    err = info.value
    assert_unchanged(before)
    text = _text(err)
    assert case.culprit in text, text
    if issubclass(case.error, FxTraceError):
        assert type(err) is case.error, f"{type(err).__name__}: {text}"
        assert HERE in text, f"the message names the user's line: {text}"
        assert "tensor([" not in text, "a message shows tensors briefly, never whole"
    else:  # the program's own exception: the very object, with fxtrace's note
        assert isinstance(err, case.error) and not isinstance(err, FxTraceError), type(err)
        if "exc" in env:
            assert err is env["exc"]
        assert any(n.startswith("fxtrace: ") and HERE in n for n in err.__notes__), err.__notes__


@pytest.mark.parametrize("case", WITH_JIT)
def test_mistake_compared_with_jit(case: Case) -> None:
    """Differential: torch.jit raises a builtin type that fxtrace's class also is, or (rows
    marked ``accepts``) torch.jit silently lets the mistake through."""
    theirs = _jit(case)
    if case.jit == "accepts":
        assert theirs is None, f"torch.jit now rejects it ({theirs!r}): make the row 'same'"
        return
    assert theirs is not None, "torch.jit accepted the call"
    base = _builtin_base(type(theirs))
    assert issubclass(case.error, base), \
        f"torch.jit raises {type(theirs).__name__} ({base.__name__}); {case.error.__name__} is not one"


@pytest.mark.parametrize("case", LEGIT)
def test_legitimate_input_traces_like_eager(case: Case) -> None:
    env = case.make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fxtrace.TracerWarning)
        traced = case.call(fxtrace, env)
    assert case.eager is not None
    case.eager(traced, env)


def test_fxtrace_error_classes_are_torch_jits_builtin_types() -> None:
    """Each class is one hierarchy's and the builtin torch.jit raises for its mistakes."""
    expected = {InvalidInput: (RuntimeError, TypeError, ValueError),
                InvalidOption: (RuntimeError, TypeError, ValueError),
                UnknownArgumentName: (NameError, TypeError), InvalidAttribute: (AttributeError,),
                MissingForward: (NotImplementedError, AttributeError),
                RecursionTraceError: (RecursionError, RuntimeError), TraceError: (RuntimeError,)}
    for cls, bases in expected.items():
        assert issubclass(cls, FxTraceError)
        for base in bases:
            assert issubclass(cls, base), (cls, base)
            assert getattr(builtins, base.__name__) is base


# ------------------------------------------------------------- inputs torch.jit reads by key

class ReadsA(nn.Module):
    """Reads one key of its dict input: other keys cannot change the result."""

    def forward(self, d):
        return d["a"] * 2


def _jit_trace(func: Any, example: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.trace(func, example, **kwargs)


def test_dict_input_extra_keys_ignored_with_guards_off_like_jit() -> None:
    x, y = x_(), x_() + 1
    model = ReadsA()
    ours = fxtrace.trace(model, ({"a": x, "b": y},), guards=False)
    theirs = _jit_trace(model, ({"a": x, "b": y},))
    bigger = {"a": y, "b": x, "c": x}
    torch.testing.assert_close(theirs(bigger), model(bigger))  # torch.jit is right here
    torch.testing.assert_close(ours(bigger), model(bigger))


def test_dict_input_missing_key_raises_naming_it() -> None:
    """A key the trace reads is missing: both raise a RuntimeError naming the key."""
    x, y = x_(), x_() + 1
    model = ReadsA()
    for guards in (True, False):
        ours = fxtrace.trace(model, ({"a": x, "b": y},), guards=guards)
        with pytest.raises(RuntimeError, match="KeyError: a"):
            ours({"b": y, "c": x})  # as many items as traced, without 'a'
    with pytest.raises(RuntimeError, match="KeyError: a"):
        _jit_trace(model, ({"a": x, "b": y},))({"b": y, "c": x})


def test_dict_input_other_size_raises_naming_the_argument_with_guards() -> None:
    """With guards fxtrace cannot tell a forward that only reads d['a'] from one that
    iterates d (where torch.jit silently drops the extra key): it checks the size."""
    x, y = x_(), x_() + 1
    ours = fxtrace.trace(ReadsA(), ({"a": x, "b": y},))
    # a failed guard raises torch.jit.Error, TorchScript's exception for a failed assert
    with pytest.raises(torch.jit.Error, match="argument 'd' a dict of 2 items"):
        ours({"a": x, "b": y, "c": x})
    with pytest.raises(torch.jit.Error, match="argument 'd' a dict of 2 items"):
        ours({"a": x})


def two(a, b):
    return a - 2 * b


@pytest.mark.parametrize("check_trace", [False, True])
def test_one_tensor_given_as_two_inputs(check_trace: bool) -> None:
    """``(x, x)``: the trace keeps the two parameters apart, as torch.jit does."""
    x, y = x_(), x_() + 1
    ours = fxtrace.trace(two, (x, x), check_trace=check_trace)
    theirs = _jit_trace(two, (x, x), check_trace=False)
    torch.testing.assert_close(theirs(x, y), two(x, y))
    torch.testing.assert_close(ours(x, y), two(x, y))


def test_one_tensor_under_two_keys() -> None:
    class Both(nn.Module):
        def forward(self, d):
            return d["a"] - 2 * d["b"]

    x, y = x_(), x_() + 1
    example = {"a": x, "b": x}
    ours = fxtrace.trace(Both(), (example,))
    assert example["a"] is x and example["b"] is x, "the user's dict is not modified"
    torch.testing.assert_close(ours({"a": x, "b": y}), Both()({"a": x, "b": y}))
