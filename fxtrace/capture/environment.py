"""What a concrete capture installs into torch and Python, for the capturing thread only.

NOTE [Thread-local patches]
Some calls never reach the torch function mode: module calls (``nn.Module._call_impl``),
iterating over a tensor (``Tensor.__iter__`` skips it),
attribute writes on modules (``__setattr__``), ``range`` and ``math`` functions (they read an
int subclass's value without calling one of its methods), TorchScript functions (they run in
C++), ``autograd.Function.apply`` and ``Parameter.__deepcopy__``. fxtrace patches them for the
duration of captures. The patches are process-wide objects, so each one first asks which
capture runs *in the calling thread* (:func:`current_tracer`); in any other thread it is the
original, untouched. The first capture to start installs them, the last to end removes them,
under a lock, so overlapping captures in several threads share one installation. The torch
function mode itself is thread-local in torch.

NOTE [Cheap patches]: assigning a dunder such as ``__call__`` or ``__setattr__`` on
``nn.Module`` makes CPython update that slot in every subclass (hundreds, thousands with
model libraries imported): ~0.5 ms per capture. Calls are hooked through
``Module._call_impl`` (a plain attribute, which ``Module.__call__`` calls), and
``__setattr__`` only on the classes of the modules the capture meets (the root's tree up
front, any other module when it is called), each restored when the patches are removed.
"""
from __future__ import annotations

import builtins
import contextlib
import math
import sys
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
from torch.overrides import TorchFunctionMode

from .custom_functions import guard_no_gradient
from .methods import iterate
from .pystate import state_name
from .recorder import holds_traced_numbers, untraced_tree
from .source import user_source
from .values import is_traced, untraced

if TYPE_CHECKING:
    from .concrete import ConcreteTracer

__all__ = ["tracing_environment", "current_tracer", "RecordingMode"]

# math functions that take an int subclass's value without calling one of its methods.
_MATH_INT_ARGS = ("isqrt", "factorial", "comb", "perm", "gcd", "lcm")
# ... of which TorchScript has its own spelling (checked against torch 2.13).
_MATH_RECORDED = ("log", "log10", "log1p", "exp", "expm1", "copysign", "atan2", "factorial", "gcd")
_MATH_ESCAPES = ("log", "log2", "log10", "log1p", "exp", "expm1", "copysign", "atan2",
                 "hypot") + _MATH_INT_ARGS

_NO_ATTR = object()  # "the class had no __setattr__ of its own"

_LOCAL = threading.local()   # .tracer: this thread's capture; .busy: inside a hooked setattr
_LOCK = threading.RLock()
_USERS = 0                   # captures running, all threads
_HOOKED: List[Tuple[type, Any]] = []  # (class, its own __setattr__ before, or _NO_ATTR)
_SEEN: set = set()
_HOOK_FUNCTIONS: set = set()

#: What the patches replaced, read when they are installed (so that whatever was there then,
#: another library's patch included, is what comes back).
_ORIG: Dict[str, Any] = {}
_ORIG_RANGE = builtins.range
_ORIG_MATH: Dict[str, Callable[..., Any]] = {}


def current_tracer() -> Optional["ConcreteTracer"]:
    """The capture running in the calling thread, or None."""
    return getattr(_LOCAL, "tracer", None)


class RecordingMode(TorchFunctionMode):
    """The torch function mode of a capture: every torch-level call goes to the tracer."""

    fxtrace_internal = True  # NOTE [Fast paths]

    def __init__(self, tracer: "ConcreteTracer") -> None:
        super().__init__()
        self.tracer = tracer

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        return self.tracer.on_torch_function(func, args, kwargs or {})


@contextlib.contextmanager
def tracing_environment(tracer: "ConcreteTracer") -> Iterator[None]:
    """Run the body as ``tracer``'s capture in this thread: the patches of NOTE
    [Thread-local patches] installed (by the first capture of the process), the recording
    mode pushed; everything undone in ``finally``, whatever the user's code raises."""
    global _USERS
    with _LOCK:
        if _USERS == 0:
            _install()
        _USERS += 1
    previous = current_tracer()
    _LOCAL.tracer = tracer
    try:
        tracer.hook_module_class = _hook_class
        if tracer.root is not None:
            for module in tracer.root.modules():
                _hook_class(type(module))
        with RecordingMode(tracer):
            yield
    finally:
        tracer.hook_module_class = None
        _LOCAL.tracer = previous
        with _LOCK:
            _USERS -= 1
            if _USERS == 0:
                _uninstall()


# -- the patches ------------------------------------------------------------------------------
def _patched_call(module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
    tracer = current_tracer()
    if tracer is None:
        return _ORIG["call"](module, *args, **kwargs)
    return tracer.call_module(module, _ORIG["call"], args, kwargs)


#: The fused-kernel checks of ``nn.MultiheadAttention`` and ``nn.TransformerEncoderLayer``
#: (NOTE [Fast paths]), by the qualified name of the function that asks.
_FAST_PATH_CHECKS = ("MultiheadAttention.forward", "TransformerEncoderLayer.forward")


# NOTE [Fast paths]
# In eval mode without grad, ``nn.MultiheadAttention`` and ``nn.TransformerEncoderLayer``
# call one fused kernel (``torch._native_multi_head_attention``,
# ``torch._transformer_encoder_layer_fwd``) unless ``torch.overrides.has_torch_function``
# says some argument overrides torch functions, which the recording mode itself makes true.
# Those two checks get eager's answer (the mode popped while they ask), so the capture
# records the fused call eager makes, as torch.jit.trace does, instead of a graph four times
# as large. Every other caller gets the mode's answer. Only for a capture that started
# without grad (``fast_paths``): the trace check re-captures under ``no_grad`` and must repeat
# the first capture's path, and with grad on eager's path depends on requires_grad flags.
def _has_torch_function(args: Any) -> bool:
    tracer = current_tracer()
    if tracer is not None and tracer.fast_paths and \
            sys._getframe(1).f_code.co_qualname in _FAST_PATH_CHECKS:
        with contextlib.ExitStack() as popped:
            # every mode of fxtrace's own on top (the recording mode, the check's write
            # watcher) is popped: eager's answer is the one without them
            for mode in reversed(torch.overrides._get_current_function_mode_stack()):
                if not getattr(mode, "fxtrace_internal", False):
                    break
                popped.enter_context(torch.overrides._pop_mode_temporarily())
            return bool(_ORIG["has_torch_function"](args))
    return bool(_ORIG["has_torch_function"](args))


def _is_tracing() -> bool:
    return current_tracer() is not None or _ORIG["is_tracing"]()


class _RangeType(type):
    """``range`` during captures: still the type for ``isinstance`` in every thread."""

    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, _ORIG_RANGE)

    def __subclasscheck__(cls, sub: type) -> bool:
        return issubclass(sub, _ORIG_RANGE)

    def __call__(cls, *args: Any) -> Any:  # type: ignore[override]
        if current_tracer() is not None:
            # range() reads an int subclass's value without calling __index__, so a loop
            # over a live size would escape unnoticed; this is where it is recorded and guarded.
            for a in args:
                if is_traced(a):
                    a.__index__()
            args = tuple(untraced(a) for a in args)
        return _ORIG_RANGE(*args)


class _Range(metaclass=_RangeType):
    pass


_Range.__name__ = _Range.__qualname__ = "range"


def _math_escape(name: str) -> Callable[..., Any]:
    fn = _ORIG_MATH[name]  # _install reads the originals before it builds these

    def call(*args: Any) -> Any:
        # These read an int subclass's value without __float__/__index__. TorchScript has
        # the function: record it, the value stays live. Otherwise make the escape explicit,
        # so it is recorded and guarded.
        tracer = current_tracer()
        if tracer is None or not any(is_traced(a) for a in args):
            return fn(*args)
        if name in _MATH_RECORDED:
            return tracer.record_scalar(fn, args, fn(*(untraced(a) for a in args)))
        convert = int if name in _MATH_INT_ARGS else float
        return fn(*(convert(a) if is_traced(a) else a for a in args))
    call.__name__ = name
    return call


#: (qualified name, code) -> the first ScriptFunction object recorded for that function.
_SCRIPT_FUNCTIONS: Dict[Tuple[str, str], Any] = {}


def _canonical_script_function(fn: Any) -> Any:
    """One Python object per compiled TorchScript function.

    ``torch.jit.script(f)`` of an already compiled ``f`` (what ``@torch.jit._script_if_tracing``
    does on every call while tracing, e.g. torchvision's ``batched_nms``) returns a new
    ``ScriptFunction`` wrapper of the same compiled function each time. Recorded as is, two
    captures of the same program would differ in that target's identity: the trace check and
    the Python-state re-capture would call the graphs different. Same qualified name and same
    code is the same function, so the first wrapper seen stands for all of them.
    """
    try:
        key = (str(fn.qualified_name), str(fn.code))
    except (AttributeError, RuntimeError):  # not a compiled function of its own
        return fn
    with _LOCK:
        if len(_SCRIPT_FUNCTIONS) > 4096:  # a program that compiles functions on the fly
            _SCRIPT_FUNCTIONS.clear()
        return _SCRIPT_FUNCTIONS.setdefault(key, fn)


def _script_call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    # TorchScript functions run in C++, unseen by the mode: record the call itself, so the
    # scripted control flow survives in the trace.
    tracer = current_tracer()
    if tracer is None:
        return _ORIG["script_call"](fn, *args, **kwargs)
    with torch._C.DisableTorchFunction():
        out = _ORIG["script_call"](fn, *untraced_tree(args), **untraced_tree(kwargs))
    return tracer.record("call_function", _canonical_script_function(fn), args, kwargs, out)


def _tensor_iter(t: torch.Tensor) -> Any:
    tracer = current_tracer()
    if tracer is None or not tracer._is_graph_tensor(t):
        return _ORIG["iter"](t)
    with torch._C.DisableTorchFunction():  # reading the rank must not be recorded
        if t.dim() == 0:
            return _ORIG["iter"](t)
    return iterate(tracer, t)


def _param_deepcopy(param: torch.nn.Parameter, memo: Dict[int, Any]) -> Any:
    # Parameter.__deepcopy__ builds its copy with _make_subclass, which the mode does not
    # see: the copy would be an unknown tensor. Record it as the deepcopy it is.
    tracer = current_tracer()
    if tracer is None:
        return _ORIG["param_deepcopy"](param, memo)
    with torch._C.DisableTorchFunction():
        out = _ORIG["param_deepcopy"](param, memo)
    tracer.record_deepcopy(param, out)
    return out


def _recording_now() -> bool:
    """Do torch calls made now reach this thread's recording mode?

    False inside a call the capture runs for real (a recorded op's kernel, with the mode
    popped or torch functions disabled): an ``autograd.Function`` applied there, such as the
    autograd wrapper torch.library generates for a custom op (torchvision's ``roi_align``), is
    part of that op, whose gradient the trace keeps through the op itself."""
    all_disabled = getattr(torch._C, "_is_torch_function_all_disabled", None)
    if all_disabled is not None and all_disabled():
        return False
    stack = torch.overrides._get_current_function_mode_stack()
    return bool(stack) and isinstance(stack[-1], RecordingMode)


def _autograd_apply(cls: Any, *args: Any, **kwargs: Any) -> Any:
    tracer = current_tracer()
    if tracer is not None and _recording_now():
        src = user_source(sys._getframe(1))
        tracer._warn(src, f"{cls.__qualname__} is a custom torch.autograd.Function: its forward "
                          "is traced op by op and its custom backward is not kept; the trace "
                          "raises where a gradient would flow into it.")
        guard_no_gradient(tracer, cls, args, src)  # NOTE [Custom autograd Functions]
    # __get__ binds a Python classmethod and a C classmethod_descriptor alike.
    return _ORIG["apply"].__get__(None, cls)(*args, **kwargs)


def _make_setattr(inner: Callable[..., None]) -> Callable[..., None]:
    def module_setattr(module: torch.nn.Module, name: str, value: Any) -> None:
        tracer = current_tracer()
        # busy: a class's own __setattr__ calling a hooked base was checked once already
        if tracer is None or getattr(_LOCAL, "busy", False):
            return inner(module, name, value)
        _LOCAL.busy = True
        try:
            if not isinstance(value, torch.Tensor) and holds_traced_numbers(value):
                tracer.traced_attributes.append((module, name))
            _check_setattr(tracer, module, name, value)
            inner(module, name, value)
        finally:
            _LOCAL.busy = False
    _HOOK_FUNCTIONS.add(module_setattr)
    return module_setattr


def _check_setattr(tracer: "ConcreteTracer", module: torch.nn.Module, name: str,
                   value: Any) -> None:
    """A tensor or Python value stored on a module during capture: carry a buffer rebinding,
    record a Python-state write, warn about what the trace cannot keep."""
    current = module.__dict__.get(name, module._buffers.get(name))
    if isinstance(value, torch.Tensor) and not isinstance(value, torch.nn.Parameter) and \
            current is not value and tracer._computed(value):
        if not tracer._rebind_state(module, name, value):
            tracer._warn(user_source(sys._getframe(2)),
                         f"assigning a traced tensor to module attribute '{name}' "
                         f"({type(module).__name__}): the trace does not keep this state "
                         "between calls; it computes the value but never stores it.")
    elif name != "training" and not isinstance(value, (torch.Tensor, torch.nn.Module)) and \
            name in module.__dict__ and current is not value and not callable(value):
        src = user_source(sys._getframe(2))
        tracer.python_before.setdefault((id(module), name), (module, name, current))
        paths = tracer.module_names.get(id(module))
        tracer.python_writes.append((state_name(module, paths[0] if paths else None, name), src))
        tracer.python_writers.append(module)
        tracer._warn(src, f"forward changes the Python attribute '{name}' of "
                          f"{type(module).__name__}: Python state is frozen into the trace, "
                          "which will not see later changes.")


def _hook_class(cls: type) -> None:
    """Hook ``cls.__setattr__`` (once per installation of the patches)."""
    if cls in _SEEN:
        return
    with _LOCK:
        if cls in _SEEN:
            return
        _SEEN.add(cls)
        current = cls.__setattr__  # type: ignore[misc]
        if current in _HOOK_FUNCTIONS:  # inherited from a hooked base
            return
        own = cls.__dict__.get("__setattr__", _NO_ATTR)
        try:
            cls.__setattr__ = _make_setattr(current)  # type: ignore[method-assign,assignment]
        except TypeError:  # a class that takes no attributes: nothing to hook
            return
        _HOOKED.append((cls, own))


def _install() -> None:
    global _ORIG_RANGE
    _ORIG.update(call=torch.nn.Module._call_impl, is_tracing=torch._C._is_tracing,
                 script_call=torch._C.ScriptFunction.__call__,
                 apply=torch.autograd.Function.__dict__["apply"],
                 param_deepcopy=torch.nn.Parameter.__dict__["__deepcopy__"],
                 iter=torch.Tensor.__dict__["__iter__"],
                 has_torch_function=torch.overrides.has_torch_function)
    _ORIG_RANGE = builtins.range
    _ORIG_MATH.update({name: getattr(math, name) for name in _MATH_ESCAPES})
    torch.nn.Module._call_impl = _patched_call  # type: ignore[method-assign,assignment]
    torch._C._is_tracing = _is_tracing  # type: ignore[assignment]
    builtins.range = _Range  # type: ignore[assignment,misc]
    torch._C.ScriptFunction.__call__ = _script_call  # type: ignore[method-assign,assignment]
    torch.autograd.Function.apply = classmethod(_autograd_apply)  # type: ignore[method-assign,assignment]
    torch.nn.Parameter.__deepcopy__ = _param_deepcopy  # type: ignore[method-assign,assignment]
    torch.Tensor.__iter__ = _tensor_iter  # type: ignore[method-assign,assignment]
    torch.overrides.has_torch_function = _has_torch_function
    for name in _MATH_ESCAPES:
        setattr(math, name, _math_escape(name))


def _uninstall() -> None:
    torch.nn.Module._call_impl = _ORIG["call"]  # type: ignore[method-assign]
    torch._C._is_tracing = _ORIG["is_tracing"]  # type: ignore[assignment]
    builtins.range = _ORIG_RANGE  # type: ignore[misc]
    torch._C.ScriptFunction.__call__ = _ORIG["script_call"]  # type: ignore[method-assign]
    torch.autograd.Function.apply = _ORIG["apply"]  # type: ignore[method-assign]
    torch.nn.Parameter.__deepcopy__ = _ORIG["param_deepcopy"]  # type: ignore[method-assign]
    torch.Tensor.__iter__ = _ORIG["iter"]  # type: ignore[method-assign]
    torch.overrides.has_torch_function = _ORIG["has_torch_function"]
    for name, fn in _ORIG_MATH.items():
        setattr(math, name, fn)
    for cls, own in reversed(_HOOKED):
        if own is _NO_ATTR:
            delattr(cls, "__setattr__")
        else:
            cls.__setattr__ = own  # type: ignore[method-assign]
    _HOOKED.clear()
    _SEEN.clear()
    _HOOK_FUNCTIONS.clear()
