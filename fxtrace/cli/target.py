"""``MODULE:ATTR``: importing the user's code, resolving what to trace, tracing it.

A failing import or constructor is reported with the user's own line
(:func:`user_location`), never a traceback through importlib or fxtrace.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import inspect as pyinspect
import os
import re
import sys
import traceback
from typing import Any, Dict, List, Optional, Tuple

from .. import tree
from .common import EXIT_FAIL, EXIT_USAGE, TraceFailed, UserError
from .common import fail as _fail
from .common import first_line as _first_line
from .specs import InputSpec, parse_input_spec, parse_kwarg

__all__ = ["user_location", "describe_user_exception", "load_target", "resolve_traceable",
           "Target", "prepare", "trace_kwargs", "do_trace", "describe"]

#: fxtrace's own directory: frames there are not the user's
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _internal(filename: str) -> bool:
    """Frames that are not the user's: importlib, this package, torch, the stdlib runner."""
    if filename.startswith("<frozen") or filename.startswith("<string>"):
        return True
    path = os.path.abspath(filename)
    if path.startswith(_PACKAGE + os.sep):
        return True
    torch_mod = sys.modules.get("torch")
    torch_file = getattr(torch_mod, "__file__", None) if torch_mod is not None else None
    if torch_file:
        if path.startswith(os.path.dirname(torch_file) + os.sep):
            return True
    return False


def _short_path(filename: str) -> str:
    try:
        rel = os.path.relpath(filename)
    except ValueError:
        return filename
    return rel if not rel.startswith(".." + os.sep + "..") else filename


def user_location(exc: BaseException) -> str:
    """``file.py:12: code`` of the last user frame of ``exc`` (``""`` if none)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        code = (exc.text or "").strip()
        return f"{_short_path(exc.filename)}:{exc.lineno}" + (f": {code}" if code else "")
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not _internal(f.filename)]
    if not frames:
        return ""
    f = frames[-1]
    code = (f.line or "").strip()
    return f"{_short_path(f.filename)}:{f.lineno}" + (f": {code}" if code else "")



def describe_user_exception(exc: BaseException) -> str:
    loc = user_location(exc)
    return _first_line(exc) + (f" (at {loc})" if loc else "")


def _import_file(path: str) -> Any:
    if not os.path.isfile(path):
        _fail(f"no such file: {path}" if not os.path.exists(path) else f"not a file: {path}")
    directory = os.path.dirname(os.path.abspath(path))
    if directory not in sys.path:
        sys.path.insert(0, directory)
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0]) or "user_module"
    if stem[0].isdigit():
        stem = "_" + stem
    if stem in sys.modules:  # never shadow an imported module (a user file named torch.py)
        stem = f"_fxtrace_user_{stem}"
    spec = importlib.util.spec_from_file_location(stem, path)
    if spec is None or spec.loader is None:
        _fail(f"cannot import {path}: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[stem] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as e:  # noqa: BLE001 - the user's module raised
        sys.modules.pop(stem, None)
        _fail(f"importing {path} failed: {describe_user_exception(e)}")
    return module


def _import_dotted(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name is not None and (name == e.name or name.startswith(e.name + ".")):
            _fail(f"no module named {e.name!r} (while importing {name!r}; the current "
                  "directory is on sys.path; give a file as path/to/file.py:ATTR)")
        _fail(f"importing {name} failed: {describe_user_exception(e)}")
    except (Exception, SystemExit) as e:  # noqa: BLE001 - the user's module raised
        _fail(f"importing {name} failed: {describe_user_exception(e)}")


def load_target(ref: str) -> Any:
    """The object named by ``MODULE:ATTR`` (dotted module path or ``file.py``; dotted ATTR)."""
    module_part, sep, attr = ref.rpartition(":")
    if not sep or not module_part or not attr:
        _fail(f"expected MODULE:ATTR (e.g. models.py:Net or mypkg.models:make_model), "
              f"got {ref!r}")
    if not all(p.isidentifier() for p in attr.split(".")):
        _fail(f"bad attribute {attr!r} in {ref!r}: expected a (dotted) Python name")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    if module_part.endswith(".py") or os.sep in module_part or "/" in module_part:
        module = _import_file(module_part)
    else:
        if not all(p.isidentifier() for p in module_part.split(".")):
            _fail(f"bad module {module_part!r} in {ref!r}: expected a dotted import path "
                  "or a path to a .py file")
        module = _import_dotted(module_part)
    obj: Any = module
    done: List[str] = []
    for part in attr.split("."):
        if not hasattr(obj, part):
            where = f"{module_part}" + (f":{'.'.join(done)}" if done else "")
            names = sorted(n for n, v in vars(obj).items()
                           if not n.startswith("_") and callable(v)
                           and getattr(v, "__module__", None) == getattr(module, "__name__", 0)
                           ) if done == [] and hasattr(obj, "__dict__") else []
            hint = f" (candidates: {', '.join(names[:12])})" if names else ""
            _fail(f"{where} has no attribute {part!r}{hint}")
        obj = getattr(obj, part)
        done.append(part)
    return obj


def _required_params(obj: Any) -> Optional[int]:
    try:
        sig = pyinspect.signature(obj)
    except (TypeError, ValueError):
        return None
    return sum(1 for p in sig.parameters.values()
               if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))


def resolve_traceable(obj: Any, ref: str) -> Tuple[Any, str]:
    """``(callable, kind)``: a module instance, a class built with no arguments, a factory's
    result, or a plain function; ``kind`` says which."""
    import torch

    if isinstance(obj, torch.nn.Module):
        return obj, "module"
    if isinstance(obj, type):
        if not issubclass(obj, torch.nn.Module):
            _fail(f"{ref} is a class that is not a torch.nn.Module subclass")
        try:
            return obj(), "class"
        except Exception as e:  # noqa: BLE001 - the user's constructor raised
            _fail(f"{ref}: cannot construct {obj.__name__}() with no arguments "
                  f"({describe_user_exception(e)}); point at an instance or a factory function")
    if not callable(obj):
        _fail(f"{ref} is a {type(obj).__name__}, not a module or a function")
    if _required_params(obj) == 0:
        try:
            made = obj()
        except Exception:  # noqa: BLE001 - not a factory: a function with optional args
            made = None
        if isinstance(made, torch.nn.Module):
            return made, "factory"
    return obj, "function"


def describe(value: Any) -> str:
    """``Tensor(2x3, float32)``; containers as their structure (``(..., ...)``)."""
    import torch

    def leaf(v: Any) -> str:
        if isinstance(v, torch.Tensor):
            shape = "x".join(str(d) for d in v.shape) or "()"
            return f"Tensor({shape}, {str(v.dtype).replace('torch.', '')})"
        return type(v).__name__

    leaves, spec = tree.flatten(value)
    if spec.num_leaves == 1 and spec.type is None:
        return leaf(value)
    text = str(spec)
    for item in leaves:  # the spec writes each leaf as ``*``
        text = text.replace("*", leaf(item), 1)
    return text


@dataclasses.dataclass
class Target:
    ref: str
    func: Any
    kind: str
    args: Tuple[Any, ...]
    kwargs: Dict[str, Any]
    specs: List[InputSpec]
    kwarg_specs: Dict[str, InputSpec]

    @property
    def name(self) -> str:
        f = self.func
        return type(f).__name__ if not pyinspect.isroutine(f) else getattr(f, "__name__", "?")


def prepare(args: argparse.Namespace) -> Target:
    """Parse the input specs, import and resolve MODULE:ATTR; the common part of trace/check."""
    import torch

    specs = [parse_input_spec(s) for s in args.input or []]
    kwarg_specs = dict(parse_kwarg(s) for s in args.kwarg or [])
    if not specs and not kwarg_specs:
        _fail("no example inputs: give --input SPEC (e.g. --input 'randn(1,3,224,224)') "
              "or --kwarg NAME=SPEC")
    obj = load_target(args.target)
    func, kind = resolve_traceable(obj, args.target)
    if isinstance(func, torch.nn.Module) and getattr(args, "eval", False):
        func.eval()
    torch.manual_seed(args.seed)
    inputs = tuple(s.make() for s in specs)
    kwargs = {k: s.make() for k, s in kwarg_specs.items()}
    return Target(args.target, func, kind, inputs, kwargs, specs, kwarg_specs)


def trace_kwargs(target: Target, args: Tuple[Any, ...], kwargs: Dict[str, Any]
                  ) -> Dict[str, Any]:
    """``fxtrace.trace`` keyword arguments for positional + keyword example inputs.

    With keyword inputs, positional ones are bound to their parameter names so that all go
    in as ``example_kwarg_inputs``.
    """
    if not kwargs:
        return {"example_inputs": args}
    if not args:
        return {"example_kwarg_inputs": dict(kwargs)}
    fn = target.func.forward if hasattr(target.func, "forward") else target.func
    try:
        bound = pyinspect.signature(fn).bind_partial(*args, **kwargs)
    except (TypeError, ValueError) as e:
        _fail(f"cannot combine --input and --kwarg for {target.ref}: {e}")
    return {"example_kwarg_inputs": dict(bound.arguments)}


def do_trace(target: Target, check: bool, mode: str = "concrete", guards: bool = True,
             strict: bool = True) -> Any:
    import fxtrace

    try:
        return fxtrace.trace(target.func, check_trace=check, mode=mode, guards=guards,
                             strict=strict, **trace_kwargs(target, target.args, target.kwargs))
    except UserError:
        raise
    except fxtrace.TracingCheckError as e:
        raise TraceFailed(f"the trace of {target.ref} does not reproduce it on the example "
                          f"inputs (check_trace):\n{str(e).strip()}", EXIT_FAIL) from e
    except fxtrace.TraceError as e:
        if "strict=False" in str(e) and strict:  # a rule of trace outputs, not the user's code
            rule = _first_line(e).replace("pass strict=False to trace()", "pass --no-strict")
            raise TraceFailed(f"the output of {target.ref} breaks a rule of strict traces: "
                              f"{rule}", EXIT_USAGE) from e
        raise TraceFailed(f"tracing {target.ref} failed: {describe_user_exception(e)}",
                          EXIT_FAIL) from e
    except fxtrace.FxTraceError as e:
        raise TraceFailed(f"tracing {target.ref} failed: {describe_user_exception(e)}",
                          EXIT_FAIL) from e
    except Exception as e:  # noqa: BLE001 - the user's code raised on the example inputs
        raise TraceFailed(f"running {target.ref} on the example inputs failed: "
                          f"{describe_user_exception(e)}", EXIT_USAGE) from e

