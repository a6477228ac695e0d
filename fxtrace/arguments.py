"""The arguments of ``trace`` / ``trace_module`` / ``capture``: normalised and checked up front.

Invariant: a mistake in what the user passed is found here, before any user code runs, and
raised as an fxtrace error (``fxtrace/errors.py``) that is also the builtin type torch.jit
raises for the same mistake. Its message names the argument at fault, shows the offending
value briefly (never a whole tensor), gives the user's line and says what to pass instead.
Nothing here changes the model or any global state.

Errors from running the user's code (capture, check) go through :func:`pipeline_error`: the
user's own exceptions pass unchanged (same object) with a note saying where fxtrace was;
unbounded recursion becomes a :class:`RecursionTraceError` naming the recursive function.
"""
from __future__ import annotations

import inspect
import keyword
import math
import reprlib
import sys
import types
import warnings
import weakref
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import torch
import torch.fx as fx

from . import tree
from .capture.meta import TENSOR_META, VALUE_TYPE, TensorMeta
from .capture.source import user_source
from .capture.types import python_type_of
from .errors import (
    InvalidArgument,
    InvalidAttribute,
    InvalidInput,
    InvalidOption,
    MissingForward,
    RecursionTraceError,
    TraceError,
    TracerWarning,
    UnknownArgumentName,
)

__all__ = [
    "where", "short", "describe", "make_tuple", "argument_names", "validate_callable",
    "example_of", "method_args", "validate_options", "validate_module", "check_sets",
    "method_of", "module_check_sets", "check_outputs", "NOTE",
]

Args = Tuple[Tuple[Any, ...], Dict[str, Any]]


class _ShortRepr(reprlib.Repr):
    """reprlib with tensors shown by shape and dtype, at any depth of a container."""

    def repr_Tensor(self, x: torch.Tensor, level: int) -> str:  # noqa: N802 - reprlib's name
        return f"Tensor(shape={list(x.shape)}, dtype={x.dtype})"

    repr_Parameter = repr_Tensor


_short = _ShortRepr()
_short.maxstring = 40
_short.maxother = 40


def where() -> str:
    """`` (called at file:line)`` of the innermost user frame on the stack, or ``""``."""
    src = user_source(sys._getframe(1))
    return f" (called at {src})" if src is not None else ""


def short(value: Any) -> str:
    """A one-line description of ``value`` for a message: a tensor by shape and dtype."""
    try:
        return _short.repr(value)
    except Exception:  # noqa: BLE001 - a hostile __repr__ must not hide the real error
        return f"<{type(value).__name__}>"


def describe(func: Any) -> str:
    """How a message names the traced callable: ``Net.forward()``, ``f()``."""
    if isinstance(func, torch.nn.Module):
        return f"{type(func).__name__}.forward()"
    owner = getattr(func, "__self__", None)
    name = getattr(func, "__name__", None) or type(func).__name__
    if isinstance(owner, torch.nn.Module):
        return f"{type(owner).__name__}.{name}()"
    return f"{name}()"


# A plain function's signature, kept while everything ``inspect.signature`` reads of it (code,
# defaults, an explicit ``__signature__``) is the same objects: tracing a model calls this on
# every trace, and ``inspect.signature`` costs more than a small model's capture of an op.
_SIGNATURES: "weakref.WeakKeyDictionary[types.FunctionType, Tuple[Any, inspect.Signature]]" = \
    weakref.WeakKeyDictionary()


def _function_signature(fn: types.FunctionType) -> inspect.Signature:
    """``inspect.signature(fn)``, from the cache while ``fn``'s code and defaults are unchanged."""
    key = (fn.__code__, fn.__defaults__, fn.__kwdefaults__, fn.__dict__.get("__signature__"),
           fn.__dict__.get("__wrapped__"))
    hit = _SIGNATURES.get(fn)
    if hit is not None and all(a is b for a, b in zip(hit[0], key)):
        return hit[1]
    sig = inspect.signature(fn)
    _SIGNATURES[fn] = (key, sig)
    return sig


def _signature(func: Any) -> Optional[inspect.Signature]:
    target = func.forward if isinstance(func, torch.nn.Module) else func
    try:
        if type(target) is types.FunctionType:
            return _function_signature(target)
        if type(target) is types.MethodType and type(target.__func__) is types.FunctionType:
            sig = _function_signature(target.__func__)
            params = list(sig.parameters.values())
            if params and params[0].kind in (params[0].POSITIONAL_ONLY,
                                             params[0].POSITIONAL_OR_KEYWORD):
                return sig.replace(parameters=params[1:])  # the bound first argument dropped
        return inspect.signature(target)
    except (TypeError, ValueError):
        return None


def argument_names(func: Callable[..., Any]) -> Optional[List[str]]:
    """The named parameters of ``func`` (a module: of its forward), without ``*args``/``**kw``."""
    sig = _signature(func)
    if sig is None:
        return None
    return [p for p, v in sig.parameters.items() if v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)]


def validate_callable(func: Any) -> None:
    """``func`` must be a function or a module (torch.jit fails with a RuntimeError)."""
    if not callable(func):
        raise InvalidInput(f"func must be a callable (a function or an nn.Module); got "
                           f"{type(func).__name__} {short(func)}{where()}")


def make_tuple(example_inputs: Any, argument: str = "example_inputs") -> Tuple[Any, ...]:
    """torch.jit's ``make_tuple``: a tensor or dict is one argument; other iterables unpack."""
    if isinstance(example_inputs, (torch.Tensor, dict)):
        return (example_inputs,)
    if isinstance(example_inputs, tuple):
        return example_inputs
    if isinstance(example_inputs, (str, bytes)):
        # tuple("abc") would give three inputs; torch.jit rejects the str (RuntimeError)
        raise InvalidInput(f"{argument} is a {type(example_inputs).__name__} "
                           f"({short(example_inputs)}); pass a tensor or a tuple of inputs, "
                           f"e.g. ({short(example_inputs)},){where()}")
    try:
        return tuple(example_inputs)
    except TypeError:
        raise InvalidArgument(
            f"{argument} must be a tensor, a tuple of inputs or a dict; got "
            f"{type(example_inputs).__name__} {short(example_inputs)}{where()}") from None


def example_of(api: str, example_inputs: Any, example_kwarg_inputs: Any) -> Tuple[Any, bool]:
    """The one example the user gave, and whether it is keyword inputs."""
    if example_kwarg_inputs is not None and not isinstance(example_kwarg_inputs, dict):
        raise InvalidInput("example_kwarg_inputs must be a dict of argument name to value, e.g. "
                           "{'x': torch.randn(2, 3)}; got "
                           f"{type(example_kwarg_inputs).__name__}{where()}")
    if example_inputs is not None and example_kwarg_inputs is not None:
        # torch.jit silently drops one of the two (which one depends on func): ask instead
        raise InvalidArgument(f"{api} got both example_inputs and example_kwarg_inputs; pass "
                              "one of them (positional inputs as example_inputs, keyword "
                              f"inputs as example_kwarg_inputs){where()}")
    if example_kwarg_inputs is not None:
        return example_kwarg_inputs, True
    if example_inputs is None:
        raise InvalidInput(f"{api} needs example inputs: pass example_inputs (a tensor or a "
                           "tuple) or example_kwarg_inputs (a dict)" + where())
    return example_inputs, False


def method_args(func: Callable[..., Any], example: Any, is_kwarg: bool,
                argument: str = "example_inputs") -> Args:
    """``(args, kwargs)`` for calling ``func`` (a module: its forward) with ``example``.

    Checks that the inputs bind to the signature (names, count) and that every value is one a
    trace can take, so that a mistake is reported here, naming ``argument``, and not from
    inside the capture.
    """
    sig = _signature(func)
    if is_kwarg:
        if not isinstance(example, dict):
            raise InvalidInput(f"{argument} must be a dict of argument name to value; got "
                               f"{type(example).__name__}{where()}")
        args, kwargs = (), dict(example)
        _check_names(func, sig, kwargs, argument)
    else:
        args, kwargs = make_tuple(example, argument), {}
    if sig is not None and not _pre_hooked(func):
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError as e:
            raise InvalidArgument(f"{argument} does not fit {describe(func)}{sig}: {e}; "
                                  f"give one value per parameter{where()}") from None
        _check_types(sig, bound, len(args), argument)
    # One tensor at two positions is handed to the program as two objects by the capture
    # (capture/concrete.py: _distinct_inputs), as torch.jit does.
    return args, kwargs


def _pre_hooked(func: Any) -> bool:
    """A forward pre-hook may rewrite the inputs before forward sees them: then the inputs
    need not fit forward's signature, and only the capture can tell."""
    owner = func if isinstance(func, torch.nn.Module) else getattr(func, "__self__", None)
    if not isinstance(owner, torch.nn.Module):
        return False
    from torch.nn.modules import module as module_globals
    return bool(owner.__dict__.get("_forward_pre_hooks")) or bool(
        getattr(module_globals, "_global_forward_pre_hooks", None))


def _check_names(func: Any, sig: Optional[inspect.Signature], kwargs: Dict[Any, Any],
                 argument: str) -> None:
    names = argument_names(func) or []
    var_keyword = sig is not None and any(
        p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    for key in kwargs:
        if not isinstance(key, str):
            raise UnknownArgumentName(
                f"{argument} has a key of type {type(key).__name__} ({short(key)}); keys are "
                f"the parameter names of {describe(func)}, valid names are "
                f"[{','.join(names)}]{where()}")
        if sig is not None and key not in names and not var_keyword:
            raise UnknownArgumentName(
                f"'{key}' is not in {describe(func)}'s arguments, valid arguments name are "
                f"[{','.join(names)}]: rename the key in {argument}{where()}")
        if key not in names and not _parameter_name(key):
            # it reaches **kwargs and becomes a parameter of the trace's TorchScript signature
            raise UnknownArgumentName(
                f"'{key}' in {argument} goes to the **kwargs of {describe(func)}, and becomes a "
                "parameter of the trace, but it is not a name a TorchScript parameter can have "
                f"(an ASCII identifier, not a keyword, not 'self'): rename the key{where()}")


def _parameter_name(key: str) -> bool:
    return key.isascii() and key.isidentifier() and not keyword.iskeyword(key) and key != "self"


def _check_types(sig: inspect.Signature, bound: inspect.BoundArguments, n_args: int,
                 argument: str) -> None:
    """Every input value has a TorchScript type (the capture's own rule, asked early)."""
    index = 0
    for name, value in bound.arguments.items():
        kind = sig.parameters[name].kind
        items = (list(enumerate(value)) if kind is inspect.Parameter.VAR_POSITIONAL else
                 list(value.items()) if kind is inspect.Parameter.VAR_KEYWORD else [(None, value)])
        for key, item in items:
            label = name if key is None else f"{name}_{key}" if isinstance(key, int) else key
            place = f"{argument}[{index}]" if index < n_args else f"{argument}['{label}']"
            index += 1
            try:
                python_type_of(item, place)
            except InvalidArgument as e:
                raise InvalidInput(f"{e} (argument '{label}'){where()}") from None


def _is_flag(value: Any) -> bool:
    return isinstance(value, bool) or (isinstance(value, int) and value in (0, 1))


def validate_options(modes: Sequence[str], **options: Any) -> None:
    """Keyword options of the API: flags are booleans, the tolerance a number >= 0, the mode
    one of ``modes``, ``_module_class`` a module class, ``_compilation_unit`` a
    CompilationUnit. Options not passed here are not checked."""
    for name in ("check_trace", "strict", "guards", "fold_batchnorm", "_force_outplace",
                 "_store_inputs", "example_inputs_is_kwarg"):
        if name in options and not _is_flag(options[name]):
            raise InvalidOption(f"{name} must be True or False; got "
                                f"{type(options[name]).__name__} {short(options[name])}{where()}")
    if "check_tolerance" in options:
        tol = options["check_tolerance"]
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (
                math.isfinite(tol) and tol >= 0):
            raise InvalidOption(f"check_tolerance must be a finite number >= 0 (e.g. 1e-5); got "
                                f"{type(tol).__name__} {short(tol)}{where()}")
    if "mode" in options and options["mode"] not in modes:
        raise InvalidOption(f"mode must be one of {tuple(modes)}; got {short(options['mode'])}"
                            f"{where()}")
    unit = options.get("_compilation_unit")
    if unit is not None and not isinstance(unit, torch.jit.CompilationUnit):
        raise InvalidOption("_compilation_unit must be a torch.jit.CompilationUnit or None; got "
                            f"{type(unit).__name__} {short(unit)}{where()}")
    cls = options.get("_module_class")
    if cls is not None and not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise InvalidOption("_module_class must be a ScriptModule class such as "
                            f"torch.jit.TopLevelTracedModule; got {short(cls)}{where()}")


def validate_module(root: torch.nn.Module) -> None:
    """Every module in ``root``'s tree was initialised, has no backward hook (as torch.jit
    requires), and the tree contains no cycle.

    A module whose ``__init__`` skipped ``super().__init__()`` has no ``_modules`` (torch.jit
    fails with an AttributeError); a module that is its own descendant (``net.loop = net``)
    makes every walk of the tree recurse forever (torch.jit: RecursionError).
    """
    name = type(root).__name__
    stack: List[Tuple[torch.nn.Module, str, Iterator[Tuple[str, Any]]]] = []
    on_path: Dict[int, str] = {}
    done: Set[int] = set()  # explored without a cycle: a shared submodule is walked once

    def enter(module: torch.nn.Module, path: str) -> None:
        children = module.__dict__.get("_modules")
        if children is None or "_parameters" not in module.__dict__:
            at = f"the submodule '{path}'" if path else "the module"
            raise InvalidAttribute(
                f"{at} ({type(module).__name__}) was never initialised: "
                f"{type(module).__name__}.__init__ did not call super().__init__(), so it has no "
                "'_modules'; call super().__init__() first in __init__" + where())
        if module.__dict__.get("_backward_hooks"):
            # torch.jit refuses them too (a trace has no place for a Python backward hook):
            # traced silently, the hook would simply be absent from every later backward.
            at = f"the submodule '{path}'" if path else "the module"
            raise InvalidArgument(
                f"Modules that have backward hooks assigned can't be compiled: {at} "
                f"({type(module).__name__}) has a backward hook, which a trace cannot keep; "
                "remove it (the handle register_full_backward_hook returned: .remove()) "
                "before tracing and add it to the traced module's callers instead" + where())
        on_path[id(module)] = path
        stack.append((module, path, iter(list(children.items()))))

    enter(root, "")
    while stack:
        module, path, children = stack[-1]
        for child_name, child in children:
            if child is None:
                continue
            child_path = f"{path}.{child_name}" if path else child_name
            if id(child) in done:
                continue
            if id(child) in on_path:
                ancestor = on_path[id(child)]
                raise RecursionTraceError(
                    f"the module tree of {name} contains itself: {name}.{child_path} is "
                    f"{name + ('.' + ancestor if ancestor else '')}, so walking the tree never "
                    "ends; keep the back reference out of the module tree (e.g. "
                    "object.__setattr__(self, name, module), or a weakref)" + where())
            enter(child, child_path)
            break
        else:
            stack.pop()
            del on_path[id(module)]
            done.add(id(module))


def method_of(mod: torch.nn.Module, name: Any, argument: str) -> Callable[..., Any]:
    """The bound method ``name`` of ``mod`` that ``argument`` asks to trace."""
    if not isinstance(name, str):
        raise InvalidArgument(f"{argument} has a method name of type {type(name).__name__} "
                              f"({short(name)}); method names are strings such as "
                              f"'forward'{where()}")
    target = getattr(mod, name, None)
    owner = type(mod).__name__
    if isinstance(target, torch.nn.Module):
        raise InvalidAttribute(f"{argument} names {name!r}, a submodule of {owner}, not a "
                               f"method: trace the submodule itself (fxtrace.trace(module."
                               f"{name}, ...)){where()}")
    if target is None or not callable(target):
        raise InvalidAttribute(f"{argument} names method {name!r}, which {owner} does not "
                               f"have{where()}")
    if name == "forward" and getattr(target, "__func__", None) is torch.nn.Module.forward:
        raise MissingForward(f"{owner} has no forward method (its class defines none, so "
                             f"nn.Module's placeholder would raise): define "
                             f"{owner}.forward{where()}")
    return target


def check_sets(check_inputs: Any, argument: str = "check_inputs",
               error: type = InvalidOption) -> Optional[List[Any]]:
    """``check_inputs`` as a list of example inputs (each a tensor, a tuple or a dict).

    torch.jit iterates whatever it is given, so a bare tensor silently checks its rows, and a
    dict its keys: both are refused here (``error``: the class to raise).
    """
    if check_inputs is None:
        return None
    if isinstance(check_inputs, (torch.Tensor, dict, str, bytes)) or not isinstance(
            check_inputs, (list, tuple)):
        raise error(f"{argument} must be a list of example inputs, each a tensor or a "
                    f"tuple, e.g. {argument}=[(x1,), (x2,)]; got "
                    f"{type(check_inputs).__name__} {short(check_inputs)}{where()}")
    return list(check_inputs)


def module_check_sets(check_inputs: Any, methods: Sequence[str]) -> Optional[List[Dict[str, Any]]]:
    """``trace_module``'s ``check_inputs``: a list of ``{method_name: inputs}`` dicts, each
    naming every traced method (torch.jit fails with an AttributeError for an entry that is
    no dict or lacks a method)."""
    # torch.jit iterates a non-list and fails on its items with an AttributeError
    sets = check_sets(check_inputs, error=InvalidAttribute)
    if sets is None:
        return None
    for i, entry in enumerate(sets):
        if not isinstance(entry, dict):
            raise InvalidAttribute(f"check_inputs[{i}] must be a dict of method name to inputs, "
                                   f"e.g. {{'forward': (x,)}}; got {type(entry).__name__} "
                                   f"{short(entry)}{where()}")
        missing = [m for m in methods if m not in entry]
        if missing:
            raise InvalidAttribute(f"check_inputs[{i}] has no inputs for method "
                                   f"{missing[0]!r}; it has {sorted(map(str, entry))}{where()}")
    return sets


# ------------------------------------------------------------------------------- outputs

NOTE = "fxtrace: "

_CONTAINER_MESSAGE = (
    "Encountering a {kind} at the output of the tracer might cause the trace to be incorrect, "
    "this is only valid if the container structure does not change based on the module's "
    "inputs. Consider using a constant container instead (e.g. for `list`, use a `tuple` "
    "instead. for `dict`, use a `NamedTuple` instead). If you absolutely need this and know "
    "the side effects, pass strict=False to trace() to allow this behavior.")


def _kind(value: Any) -> str:
    """The type of an output value of the graph, for comparing the values of a dict."""
    if isinstance(value, fx.Node):
        if isinstance(value.meta.get(TENSOR_META), TensorMeta):
            return "Tensor"
        seen = value.meta.get(VALUE_TYPE)
        return getattr(seen, "__name__", "value")
    if isinstance(value, (tuple, list)):
        return f"{type(value).__name__}[{', '.join(_kind(v) for v in value)}]"
    return type(value).__name__


def _container_kinds(value: Any, path: str) -> Set[type]:
    """The container kinds (list, dict, tuple) in an output structure; a dict mixing value
    types raises (see :func:`check_outputs`)."""
    if not tree.is_container(value):
        return set()
    kind = list if isinstance(value, list) else dict if isinstance(value, dict) else tuple
    items = tree.children(value)
    if kind is dict:
        kinds = {k: _kind(item) for k, item in items}
        if len(set(kinds.values())) > 1:
            listed = ", ".join(f"{k!r}: {t}" for k, t in kinds.items())
            raise TraceError(
                f"{path} is a dict mixing value types ({listed}); a TorchScript dict holds one "
                "value type (torch.jit.trace refuses this even with strict=False): return a "
                "tuple or a NamedTuple instead, or make every value a tensor" + where())
    found: Set[type] = {kind}
    for k, item in items:
        found |= _container_kinds(item, f"{path}[{k!r}]" if kind is dict else f"{path}[{k}]")
    return found


def check_outputs(gm: fx.GraphModule, strict: bool) -> None:
    """The root graph's output as torch.jit allows it: with ``strict`` a dict raises and a
    list warns; whatever ``strict``, a dict's values have one type (TorchScript dicts hold one
    value type; torch.jit fails with a RuntimeError)."""
    for node in gm.graph.nodes:
        if node.op != "output":
            continue
        kinds = _container_kinds(node.args[0], "output")
        has_list, has_dict = list in kinds, dict in kinds
        if strict and has_dict:
            # torch.jit's exact text (code may match on it); the user's line goes in a note
            err = TraceError(_CONTAINER_MESSAGE.format(kind="dict"))
            err.add_note(f"{NOTE}the dict is returned by the traced program{where()}")
            raise err
        if strict and has_list:
            warnings.warn(_CONTAINER_MESSAGE.format(kind="list"), TracerWarning, stacklevel=4)
