"""The ``fxtrace`` command line: ``trace``, ``inspect``, ``check`` and ``demo``.

``fxtrace trace MODULE:ATTR --input 'randn(1,3,224,224)'`` traces a module or a function
found by import path (``pkg.models:Net``) or file path (``path/to/models.py:Net``) and
prints inspection tables; ``fxtrace inspect out.pt`` tables a saved TorchScript file;
``fxtrace check`` runs the traced program against eager on many generated inputs;
``fxtrace demo`` runs :mod:`fxtrace.demo`. See ``docs/cli.md``.

User mistakes (a bad ``MODULE:ATTR``, an import that fails, a malformed input spec, a missing
file) print one line ``fxtrace: error: ...`` on stderr and exit with status 2; ``--traceback``
shows the Python traceback instead.

Input specs are parsed with :func:`ast.parse` and never evaluated: only a call to ``randn``,
``rand``, ``zeros``, ``ones`` or ``randint`` with int/float/tuple literal arguments and a
``dtype=`` keyword naming a torch dtype is accepted.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import importlib
import importlib.util
import inspect as pyinspect
import os
import re
import shutil
import subprocess
import sys
import traceback
import warnings
from typing import Any, Callable, Dict, Iterator, List, NoReturn, Optional, Sequence, Tuple

__all__ = ["main", "UserError", "InputSpec", "parse_input_spec", "load_target",
           "resolve_traceable"]

PROG = "fxtrace"
EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
#: The text every fxtrace guard failure carries (see ``fxtrace.capture``).
GUARD_TEXT = "fxtrace guard failed"
FACTORIES = ("randn", "rand", "zeros", "ones", "randint")
#: Tables ``trace`` and ``inspect`` can print (``diff`` and ``check`` need other inputs).
PRINTABLE_TABLES = ("nodes", "modules", "specialisations", "ops", "passes")
# torch >= 2.13 deprecates torch.jit.save/load with a DeprecationWarning; the CLI's own calls
# are silenced with exactly this filter, nothing else.
_JIT_DEPRECATION = r".*torch\.jit.*deprecated"


class UserError(Exception):
    """A mistake on the command line: printed as one ``fxtrace: error:`` line, exit 2."""


def _fail(message: str) -> NoReturn:
    raise UserError(message)


@contextlib.contextmanager
def quiet_jit_deprecation() -> Iterator[None]:
    """Silence torch's ``torch.jit.save/load is deprecated`` DeprecationWarning, only it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_JIT_DEPRECATION, category=DeprecationWarning)
        yield


# --------------------------------------------------------------------------- input specs

@dataclasses.dataclass(frozen=True)
class InputSpec:
    """A parsed ``--input`` spec: ``factory(shape, dtype=...)`` or ``randint(low, high, shape)``."""

    text: str
    factory: str
    shape: Tuple[int, ...]
    dtype: Optional[str] = None
    low: int = 0
    high: int = 0

    def make(self, shape: Optional[Sequence[int]] = None) -> Any:
        """A new tensor from the spec (with ``shape`` instead of the spec's, when given)."""
        import torch

        size = tuple(self.shape if shape is None else shape)
        kw: Dict[str, Any] = {}
        if self.dtype is not None:
            kw["dtype"] = getattr(torch, self.dtype)
        if self.factory == "randint":
            return torch.randint(self.low, self.high, size, **kw)
        return getattr(torch, self.factory)(size, **kw)


def _literal(node: ast.AST, spec: str, where: str) -> Any:
    """An int/float literal (with unary minus) or a tuple/list of them; anything else fails."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd))
            and isinstance(node.operand, ast.Constant)
            and type(node.operand.value) in (int, float)):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_literal(e, spec, where) for e in node.elts)
    _fail(f"bad input spec {spec!r}: {where} is `{ast.unparse(node)}`; only int/float "
          "literals and tuples of ints are allowed")


def _dtype_name(node: ast.AST, spec: str) -> str:
    import torch

    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
            and node.value.id == "torch":
        name = node.attr
    elif isinstance(node, ast.Name):
        name = node.id
    elif isinstance(node, ast.Constant) and isinstance(node.value, str):
        name = node.value.replace("torch.", "", 1)
    else:
        _fail(f"bad input spec {spec!r}: dtype= must name a torch dtype (e.g. dtype=float64), "
              f"got `{ast.unparse(node)}`")
    if not isinstance(getattr(torch, name, None), torch.dtype):
        _fail(f"bad input spec {spec!r}: {name!r} is not a torch dtype (e.g. float32, float64, "
              "int64, bool)")
    return name


def _shape(values: Sequence[Any], spec: str) -> Tuple[int, ...]:
    if len(values) == 1 and isinstance(values[0], tuple):
        values = values[0]
    for v in values:
        if type(v) is not int or v < 0:
            _fail(f"bad input spec {spec!r}: sizes must be non-negative ints, got {v!r}")
    return tuple(values)


def parse_input_spec(spec: str) -> InputSpec:
    """Parse ``randn(2,3)``, ``randint(0,10,(2,3))``, ``ones(4, dtype=float64)``, ... safely.

    The spec is parsed with ``ast.parse(mode="eval")`` and checked node by node; nothing is
    evaluated. One tensor is made to check that torch accepts the combination.
    """
    text = spec.strip()
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as e:
        _fail(f"bad input spec {spec!r}: not a call expression ({e.msg}); "
              f"expected e.g. 'randn(2,3)'")
    names = ", ".join(FACTORIES)
    if not isinstance(tree, ast.Call) or not isinstance(tree.func, (ast.Name, ast.Attribute)):
        _fail(f"bad input spec {spec!r}: expected a call to one of {names} "
              f"(e.g. 'randn(2,3)')")
    func = tree.func
    if isinstance(func, ast.Attribute):  # torch.randn(...)
        if not (isinstance(func.value, ast.Name) and func.value.id == "torch"):
            _fail(f"bad input spec {spec!r}: expected a call to one of {names}, got "
                  f"`{ast.unparse(func)}`")
        name = func.attr
    else:
        name = func.id
    if name not in FACTORIES:
        _fail(f"bad input spec {spec!r}: expected a call to one of {names}, got `{name}`")
    if any(isinstance(a, ast.Starred) for a in tree.args):
        _fail(f"bad input spec {spec!r}: *arguments are not allowed")
    args = [_literal(a, spec, f"argument {i + 1}") for i, a in enumerate(tree.args)]
    dtype = None
    for kw in tree.keywords:
        if kw.arg != "dtype":
            _fail(f"bad input spec {spec!r}: only the keyword dtype= is allowed, got "
                  f"`{'**' if kw.arg is None else kw.arg + '='}`")
        dtype = _dtype_name(kw.value, spec)
    if name == "randint":
        if len(args) == 2:
            args = [0] + args
        if len(args) != 3 or not isinstance(args[2], tuple):
            _fail(f"bad input spec {spec!r}: randint takes (high, size) or (low, high, size) "
                  "with size a tuple, e.g. 'randint(0,10,(2,3))'")
        low, high = args[0], args[1]
        if type(low) is not int or type(high) is not int or low >= high:
            _fail(f"bad input spec {spec!r}: randint needs int bounds low < high")
        parsed = InputSpec(text, name, _shape([args[2]], spec), dtype, low, high)
    else:
        parsed = InputSpec(text, name, _shape(args, spec), dtype)
    try:
        parsed.make()
    except Exception as e:  # noqa: BLE001 - torch's own complaint, e.g. randn with an int dtype
        _fail(f"bad input spec {spec!r}: torch refused it: {_first_line(e)}")
    return parsed


def parse_kwarg(text: str) -> Tuple[str, InputSpec]:
    name, sep, spec = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        _fail(f"bad --kwarg {text!r}: expected NAME=SPEC, e.g. --kwarg mask='ones(2,8)'")
    return name, parse_input_spec(spec)


# --------------------------------------------------------------------------- user code

def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def _internal(filename: str) -> bool:
    """Frames that are not the user's: importlib, this package, torch, the stdlib runner."""
    if filename.startswith("<frozen") or filename.startswith("<string>"):
        return True
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.abspath(filename)
    if path.startswith(here + os.sep):
        return True
    torch_mod = sys.modules.get("torch")
    if torch_mod is not None and getattr(torch_mod, "__file__", None):
        if path.startswith(os.path.dirname(torch_mod.__file__) + os.sep):
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


def _describe_user_exception(exc: BaseException) -> str:
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
        _fail(f"importing {path} failed: {_describe_user_exception(e)}")
    return module


def _import_dotted(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name is not None and (name == e.name or name.startswith(e.name + ".")):
            _fail(f"no module named {e.name!r} (while importing {name!r}; the current "
                  "directory is on sys.path; give a file as path/to/file.py:ATTR)")
        _fail(f"importing {name} failed: {_describe_user_exception(e)}")
    except (Exception, SystemExit) as e:  # noqa: BLE001 - the user's module raised
        _fail(f"importing {name} failed: {_describe_user_exception(e)}")


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
                  f"({_describe_user_exception(e)}); point at an instance or a factory function")
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


# --------------------------------------------------------------------------- shared helpers

def _tables_arg(text: str, allowed: Sequence[str]) -> List[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if names == ["none"]:
        return []
    for n in names:
        if n not in allowed:
            _fail(f"unknown table {n!r} for --table; choose from {', '.join(allowed)} "
                  "(comma-separated) or none")
    return names


def _check_format(fmt: str) -> str:
    from tabulate import tabulate_formats

    if fmt not in tabulate_formats:
        _fail(f"unknown --format {fmt!r}; choose from {', '.join(tabulate_formats)}")
    return fmt


def _describe(value: Any) -> str:
    import torch

    if isinstance(value, torch.Tensor):
        shape = "x".join(str(d) for d in value.shape) or "()"
        return f"Tensor({shape}, {str(value.dtype).replace('torch.', '')})"
    if isinstance(value, (tuple, list)):
        inner = ", ".join(_describe(v) for v in value)
        return f"({inner})" if isinstance(value, tuple) else f"[{inner}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_describe(v)}" for k, v in value.items()) + "}"
    return type(value).__name__


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


def _prepare(args: argparse.Namespace) -> Target:
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


def _trace_kwargs(target: Target, args: Tuple[Any, ...], kwargs: Dict[str, Any]
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


def _call(func: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
    return func(*args, **kwargs)


class TraceFailed(Exception):
    """fxtrace could not trace the target; ``status`` is the exit status to use."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _do_trace(target: Target, check: bool, mode: str = "concrete", guards: bool = True) -> Any:
    import fxtrace

    try:
        return fxtrace.trace(target.func, check_trace=check, mode=mode, guards=guards,
                             **_trace_kwargs(target, target.args, target.kwargs))
    except UserError:
        raise
    except fxtrace.TracingCheckError as e:
        raise TraceFailed(f"the trace of {target.ref} does not reproduce it on the example "
                          f"inputs (check_trace):\n{str(e).strip()}", EXIT_FAIL) from e
    except fxtrace.FxTraceError as e:
        raise TraceFailed(f"tracing {target.ref} failed: {_describe_user_exception(e)}",
                          EXIT_FAIL) from e
    except Exception as e:  # noqa: BLE001 - the user's code raised on the example inputs
        raise TraceFailed(f"running {target.ref} on the example inputs failed: "
                          f"{_describe_user_exception(e)}", EXIT_USAGE) from e


# --------------------------------------------------------------------------- pictures

#: Render formats of ``--svg``/``--png`` (Graphviz ``dot -T<fmt>``).
PICTURE_FORMATS = ("svg", "png")
GRAPHVIZ_MISSING = ("graphviz is not installed: {opt} renders with its `dot` program, which is "
                    "not on PATH (install it: apt-get install graphviz; or write DOT text with "
                    "--dot FILE and render it elsewhere)")


def _picture_requests(args: argparse.Namespace) -> List[Tuple[str, str]]:
    """``[(fmt, path), ...]`` for --svg/--png, checked before any work is done."""
    wanted = [(fmt, getattr(args, fmt)) for fmt in PICTURE_FORMATS if getattr(args, fmt, None)]
    if wanted and shutil.which("dot") is None:
        _fail(GRAPHVIZ_MISSING.format(opt=" and ".join(f"--{f}" for f, _ in wanted)))
    paths = [p for _, p in wanted] + ([args.dot] if getattr(args, "dot", None) not in
                                      (None, "-") else [])
    for path in paths:
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            _fail(f"cannot write {path}: directory {parent} does not exist")
    return wanted


def _dot_to_stdout(args: argparse.Namespace) -> bool:
    return getattr(args, "dot", None) == "-"


def _write_pictures(obj: Any, args: argparse.Namespace, wanted: List[Tuple[str, str]],
                    out: Any) -> None:
    """--dot / --svg / --png of ``obj``; a line on ``out`` per file written."""
    if not args.dot and not wanted:
        return
    import fxtrace.inspect as fi

    text = fi.to_dot(obj)
    if _dot_to_stdout(args):
        sys.stdout.write(text)
    elif args.dot:
        with open(args.dot, "w", encoding="utf-8") as f:
            f.write(text)
        nodes = len(re.findall(r"^\s*n\d+ \[", text, re.M))
        clusters = text.count("subgraph cluster_")
        print(f"wrote {args.dot} (Graphviz DOT: {nodes} nodes, {clusters} module clusters)",
              file=out)
    for fmt, path in wanted:
        try:
            fi.render_dot(text, path, fmt)
        except fi.GraphvizNotFound:
            _fail(GRAPHVIZ_MISSING.format(opt=f"--{fmt}"))
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            _fail(f"rendering {path} failed: {_first_line(e)}")
        print(f"rendered {path} (dot -T{fmt})", file=out)


# --------------------------------------------------------------------------- trace

def _result_type(traced: Any) -> str:
    import torch

    if isinstance(traced, torch.jit.ScriptFunction):
        return "torch.jit.ScriptFunction"
    if isinstance(traced, torch.jit.ScriptModule):
        return f"torch.jit.ScriptModule ({type(traced).__name__})"
    return type(traced).__qualname__


def cmd_trace(args: argparse.Namespace) -> int:
    import torch

    tables = _tables_arg(args.table, PRINTABLE_TABLES)
    fmt = _check_format(args.format)
    if args.save:
        parent = os.path.dirname(os.path.abspath(args.save))
        if not os.path.isdir(parent):
            _fail(f"cannot save to {args.save}: directory {parent} does not exist")
    pictures = _picture_requests(args)
    # with --dot - the DOT text is stdout; everything else goes to stderr, tables are skipped
    out = sys.stderr if _dot_to_stdout(args) else sys.stdout
    if _dot_to_stdout(args):
        tables = []
    target = _prepare(args)
    traced = _do_trace(target, check=not args.no_check, mode=args.mode, guards=not args.no_guards)
    import fxtrace.inspect as fi

    given = [_describe(a) for a in target.args] + [f"{k}={_describe(v)}"
                                                  for k, v in target.kwargs.items()]
    print(f"traced {target.ref} ({target.kind} {target.name}) on {', '.join(given)}", file=out)
    print(f"result: {_result_type(traced)}", file=out)
    print("check_trace: " + ("skipped (--no-check)" if args.no_check else
                             "passed (trace matches eager on the example inputs)"), file=out)
    print(file=out)
    if tables:
        fi.show(traced, tables=tables, fmt=fmt, max_width=args.max_width or None)
    _write_pictures(traced, args, pictures, out)
    if args.save:
        with quiet_jit_deprecation():
            torch.jit.save(traced, args.save)
        print(f"saved {args.save} ({os.path.getsize(args.save)} bytes); load it with "
              "torch.jit.load, no fxtrace needed", file=out)
    return EXIT_OK


# --------------------------------------------------------------------------- inspect

def cmd_inspect(args: argparse.Namespace) -> int:
    import torch

    tables = _tables_arg(args.table, PRINTABLE_TABLES)
    fmt = _check_format(args.format)
    pictures = _picture_requests(args)
    if not os.path.exists(args.file):
        _fail(f"no such file: {args.file}")
    if not os.path.isfile(args.file):
        _fail(f"not a file: {args.file}")
    try:
        with quiet_jit_deprecation():
            loaded = torch.jit.load(args.file, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - not a TorchScript archive
        _fail(f"cannot load {args.file} with torch.jit.load (is it a TorchScript file "
              f"written by torch.jit.save?): {_first_line(e)}")
    import fxtrace.inspect as fi

    if _dot_to_stdout(args):  # the DOT text alone, nothing else on stdout
        _write_pictures(loaded, args, pictures, sys.stderr)
        return EXIT_OK
    print(f"{args.file}: {type(loaded).__qualname__} "
          f"(original name {getattr(loaded, 'original_name', '?')})")
    print()
    if tables:
        fi.show(loaded, tables=tables, fmt=fmt, max_width=args.max_width or None)
    _write_pictures(loaded, args, pictures, sys.stdout)
    return EXIT_OK


# --------------------------------------------------------------------------- check

#: One group of dynamic dims: (input index or kwarg name, dim) pairs that share one size.
DynGroup = List[Tuple[Any, int]]


def _parse_dynamic(items: Sequence[str], target: Target) -> List[DynGroup]:
    """``0:0`` / ``mask:1`` (comma-separated or repeated) -> groups of (input, dim).

    As in ``fxtrace.strategies.inputs_like``, dynamic dims with the same size in the example
    are linked: each generated input set draws one size (1..2x the example's) per group.
    """
    by_size: Dict[int, DynGroup] = {}
    for item in items:
        for part in (p.strip() for p in item.split(",")):
            if part:
                key, dim = _parse_dim(part, target)
                group = by_size.setdefault(_shape_of(target, key)[dim], [])
                if (key, dim) not in group:
                    group.append((key, dim))
    return list(by_size.values())


def _parse_dim(part: str, target: Target) -> Tuple[Any, int]:
    key_text, sep, dim_text = part.partition(":")
    try:
        dim = int(dim_text)
    except ValueError:
        dim = None
    if not sep or dim is None:
        _fail(f"bad --dynamic {part!r}: expected INPUT:DIM, e.g. 0:0 (first input, first "
              "dimension) or NAME:DIM for a --kwarg")
    key: Any
    if key_text.lstrip("-").isdigit():
        key = int(key_text)
        if not 0 <= key < len(target.specs):
            _fail(f"bad --dynamic {part!r}: there are {len(target.specs)} --input(s), "
                  "numbered from 0")
        shape = target.specs[key].shape
    else:
        key = key_text
        if key not in target.kwarg_specs:
            _fail(f"bad --dynamic {part!r}: no --kwarg named {key!r}")
        shape = target.kwarg_specs[key].shape
    if not -len(shape) <= dim < len(shape):
        _fail(f"bad --dynamic {part!r}: input {key!r} has {len(shape)} dimension(s)")
    return key, dim % len(shape)


def _shape_of(target: Target, key: Any) -> Tuple[int, ...]:
    return (target.specs[key] if isinstance(key, int) else target.kwarg_specs[key]).shape


def _draw_shapes(target: Target, groups: Sequence[DynGroup], gen: Any
                 ) -> Dict[Any, List[int]]:
    """New shapes for the inputs a group touches: one size in 1..2x per group."""
    import torch

    shapes: Dict[Any, List[int]] = {}
    for group in groups:
        key0, dim0 = group[0]
        hi = max(2 * _shape_of(target, key0)[dim0], 1)
        size = int(torch.randint(1, hi + 1, (), generator=gen))
        for key, dim in group:
            shapes.setdefault(key, list(_shape_of(target, key)))[dim] = size
    return shapes


@dataclasses.dataclass
class _Leaf:
    path: str
    status: str = "ok"
    max_abs: Optional[float] = None
    max_rel: Optional[float] = None
    expected: str = ""
    actual: str = ""
    detail: str = ""


_TENSOR_DESC = re.compile(r"Tensor\(([^,]*), (\w+)\)$")


def _merge_desc(a: str, b: str) -> str:
    """``Tensor(2x3, float32)`` and ``Tensor(5x3, float32)`` -> ``Tensor(?x3, float32)``."""
    ma, mb = _TENSOR_DESC.match(a), _TENSOR_DESC.match(b)
    if a == b or not ma or not mb or ma.group(2) != mb.group(2):
        return a
    da, db = ma.group(1).split("x"), mb.group(1).split("x")
    if len(da) != len(db):
        return a
    dims = "x".join(x if x == y else "?" for x, y in zip(da, db))
    return f"Tensor({dims}, {ma.group(2)})"


def _errors(actual: Any, expected: Any) -> Tuple[Optional[float], Optional[float]]:
    import torch

    if not (isinstance(actual, torch.Tensor) and isinstance(expected, torch.Tensor)) \
            or actual.shape != expected.shape or actual.numel() == 0:
        return None, None
    a, e = actual.detach().double(), expected.detach().double()
    diff = (a - e).abs()
    finite = torch.isfinite(diff)
    if not finite.any():
        return None, None
    rel = diff / e.abs().clamp_min(1e-12)
    return float(diff[finite].max()), float(rel[finite].max())


def _compare(actual: Any, expected: Any, leaves: Dict[str, _Leaf], rtol: Optional[float],
             atol: Optional[float]) -> bool:
    import torch

    ok = True
    exp = _leaves(expected, "out")
    act = _leaves(actual, "out")
    if len(exp) != len(act):
        leaf = leaves.setdefault("out", _Leaf("out"))
        leaf.status, leaf.expected, leaf.actual = "mismatch", _describe(expected), _describe(actual)
        return False
    for (path, e), (_, a) in zip(exp, act):
        leaf = leaves.setdefault(path, _Leaf(path, expected=_describe(e), actual=_describe(a)))
        if leaf.status == "ok":
            leaf.expected = _merge_desc(leaf.expected, _describe(e))
            leaf.actual = _merge_desc(leaf.actual, _describe(a))
        max_abs, max_rel = _errors(a, e)
        if max_abs is not None:
            leaf.max_abs = max_abs if leaf.max_abs is None else max(leaf.max_abs, max_abs)
            leaf.max_rel = max_rel if leaf.max_rel is None else max(leaf.max_rel, max_rel)
        try:
            if isinstance(e, torch.Tensor) or isinstance(a, torch.Tensor):
                torch.testing.assert_close(a, e, rtol=rtol, atol=atol, equal_nan=True)
            elif a != e:
                raise AssertionError(f"{a!r} != {e!r}")
        except (AssertionError, TypeError, ValueError, RuntimeError) as err:
            ok = False
            if leaf.status == "ok":
                leaf.status, leaf.expected, leaf.actual = "mismatch", _describe(e), _describe(a)
                lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
                leaf.detail = f"{type(err).__name__}: " + " ".join(lines[:2])
    return ok


def _clone(value: Any) -> Any:
    """Copies of the tensors in a nested input, so that eager cannot mutate the trace's."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, tuple):
        return tuple(_clone(v) for v in value)
    if isinstance(value, list):
        return [_clone(v) for v in value]
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    return value


def _leaves(value: Any, path: str) -> List[Tuple[str, Any]]:
    """Every leaf of a nested output with its path (``out[0]['logits']``)."""
    if isinstance(value, (tuple, list)):
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, f"{path}[{i}]")]
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, f"{path}[{k!r}]")]
    return [(path, value)]


_last_progress = [0.0]


def _progress(i: int, n: int, counts: Dict[str, int]) -> None:
    import time

    now = time.monotonic()
    if i < n and now - _last_progress[0] < 0.1:
        return
    _last_progress[0] = now
    sys.stderr.write(f"\r[{i}/{n}] agreed {counts['agreed']}  refused {counts['refused']}  "
                     f"failed {counts['failed']}  skipped {counts['skipped']}")
    sys.stderr.flush()


def _fallback_check(target: Target, traced: Any, n: int, dynamic: List[DynGroup],
                    seed: int, rtol: Optional[float], atol: Optional[float], fmt: str,
                    max_width: Optional[int], title: str) -> int:
    """Compare trace and eager on ``n`` generated input sets; print a check table."""
    import torch

    import fxtrace.inspect as fi
    from fxtrace.inspect.report import CheckReport, OutputCheck

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    leaves: Dict[str, _Leaf] = {}
    counts = {"agreed": 0, "refused": 0, "failed": 0, "skipped": 0}
    first_failure = first_skip = first_refusal = None
    tty = sys.stderr.isatty()
    for i in range(n):
        shapes_i = _draw_shapes(target, dynamic, gen)
        args_i = tuple(s.make(shapes_i.get(k)) for k, s in enumerate(target.specs))
        kwargs_i = {k: s.make(shapes_i.get(k)) for k, s in target.kwarg_specs.items()}
        shapes = ", ".join(_describe(v) for v in list(args_i) + list(kwargs_i.values()))
        rng = torch.random.get_rng_state()
        with torch.no_grad():
            try:
                expected = _call(target.func, _clone(args_i), _clone(kwargs_i))
            except Exception as e:  # noqa: BLE001 - the input is outside what the model takes
                counts["skipped"] += 1
                first_skip = first_skip or f"example {i} ({shapes}): eager raised " \
                                           f"{_describe_user_exception(e)}"
                if tty:
                    _progress(i + 1, n, counts)
                continue
            torch.random.set_rng_state(rng)
            try:
                call_kw = _trace_kwargs(target, args_i, kwargs_i)
                if "example_inputs" in call_kw:
                    actual = traced(*call_kw["example_inputs"])
                else:
                    actual = traced(**call_kw["example_kwarg_inputs"])
            except Exception as e:  # noqa: BLE001 - a guard refusal or a real failure
                # torch.jit.Error (what a TorchScript assert raises) is not a RuntimeError
                # subclass: the message decides.
                if GUARD_TEXT in str(e):
                    counts["refused"] += 1
                    if first_refusal is None:
                        msg = str(e)[str(e).index(GUARD_TEXT):].splitlines()[0]
                        first_refusal = f"example {i} ({shapes}): {msg}"
                else:
                    counts["failed"] += 1
                    leaf = leaves.setdefault("out", _Leaf("out"))
                    if leaf.status == "ok":
                        leaf.status, leaf.expected = "error", _describe(expected)
                        leaf.actual = _first_line(e)
                    first_failure = first_failure or f"example {i} ({shapes}): trace raised " \
                                                     f"{_first_line(e)}"
                if tty:
                    _progress(i + 1, n, counts)
                continue
        if _compare(actual, expected, leaves, rtol, atol):
            counts["agreed"] += 1
        else:
            counts["failed"] += 1
            first_failure = first_failure or f"example {i} ({shapes}): outputs differ"
        if tty:
            _progress(i + 1, n, counts)
    if tty:
        sys.stderr.write("\r" + " " * 78 + "\r")
        sys.stderr.flush()
    outputs = [OutputCheck(path=l.path, status=l.status, max_abs=l.max_abs, max_rel=l.max_rel,
                           expected=l.expected, actual=l.actual) for l in leaves.values()]
    if not outputs:  # every example refused or skipped: one row saying so
        outputs = [OutputCheck(path="out", status="skipped")]
    notes = [f"{n} examples (seed {seed}): {counts['agreed']} agreed, {counts['refused']} "
             f"refused by a guard (a correct refusal, not a failure), {counts['failed']} "
             f"failed, {counts['skipped']} skipped (eager raised)"]
    if dynamic:
        notes.append("dynamic dims (sizes 1..2x the example's): " + ", ".join(
            "=".join(f"{k}:{d}" for k, d in g) for g in dynamic)
            + (" ('=': linked, same size in the example)" if any(len(g) > 1 for g in dynamic)
               else ""))
    for label, text in (("first failure", first_failure), ("first refusal", first_refusal),
                        ("first skip", first_skip)):
        if text:
            notes.append(f"{label}: {text}")
    for l in leaves.values():
        if l.detail:
            notes.append(f"{l.path}: {l.detail}")
    report = CheckReport(outputs=outputs, title=title, notes=notes)
    print(fi.check_table(report, fmt=fmt, max_width=max_width))
    passed = counts["failed"] == 0 and counts["agreed"] + counts["refused"] > 0
    if counts["agreed"] + counts["refused"] == 0:
        print(f"FAILED: no example could be checked (eager raised on all {n}); "
              "check --input/--dynamic")
    else:
        print(("PASSED" if passed else "FAILED") + f": {counts['agreed']} agreed, "
              f"{counts['refused']} refused, {counts['failed']} failed, "
              f"{counts['skipped']} skipped")
    return EXIT_OK if passed else EXIT_FAIL


def _library_checker() -> Optional[Callable[..., Any]]:
    try:
        import fxtrace
    except ImportError:  # pragma: no cover
        return None
    check = getattr(fxtrace, "check", None)
    return check if callable(check) and not pyinspect.ismodule(check) else None


def _library_check(check: Callable[..., Any], target: Target, traced: Any, n: int,
                   dynamic: List[DynGroup], fmt: str, max_width: Optional[int]) -> int:
    import fxtrace.inspect as fi

    kw: Dict[str, Any] = {"inputs": target.args if not target.kwargs else
                          _trace_kwargs(target, target.args, target.kwargs)
                          ["example_kwarg_inputs"], "max_examples": n}
    try:
        params = pyinspect.signature(check).parameters
    except (TypeError, ValueError):
        params = {}
    if dynamic and "dynamic" in params:  # fxtrace.strategies' format: (input, dim) pairs
        kw["dynamic"] = [(k, d) for g in dynamic for k, d in g]
    try:
        result = check(traced, target.func, **kw)
    except Exception as e:  # noqa: BLE001 - the checker reports a counterexample by raising
        print(f"FAILED: {type(e).__name__}: {str(e).strip()}")
        return EXIT_FAIL
    if result is not None and hasattr(result, "outputs"):
        print(fi.check_table(result, fmt=fmt, max_width=max_width))
        ok = bool(getattr(result, "ok", True))
    else:
        ok = result is None or bool(result)
    print("PASSED" if ok else "FAILED")
    return EXIT_OK if ok else EXIT_FAIL


def _accepts(func: Callable[..., Any], name: str) -> bool:
    try:
        return name in pyinspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


def cmd_check(args: argparse.Namespace) -> int:
    fmt = _check_format(args.format)
    if args.examples < 1:
        _fail(f"--examples must be at least 1, got {args.examples}")
    if (args.rtol is None) != (args.atol is None):
        _fail("give --rtol and --atol together (torch.testing.assert_close takes both or "
              "neither)")
    # Looked up before tracing: tracing imports the fxtrace.check *package*, which rebinds
    # the attribute ``fxtrace.check`` to that module.
    checker = _library_checker() if args.checker in ("auto", "fxtrace") else None
    if args.checker == "fxtrace" and checker is None:
        _fail("--checker fxtrace: fxtrace.check is not available in this version")
    target = _prepare(args)
    dynamic = _parse_dynamic(args.dynamic or [], target)
    why = "--checker random"
    if checker is not None:
        if dynamic and not _accepts(checker, "dynamic"):
            why, checker = "fxtrace.check takes no dynamic=", None
        elif target.kwargs and args.checker == "auto":
            why, checker = "--kwarg inputs", None
    elif args.checker == "auto":
        why = "fxtrace.check is not available"
    traced = _do_trace(target, check=True)
    mw = args.max_width or None
    if checker is not None:
        return _library_check(checker, target, traced, args.examples, dynamic, fmt, mw)
    title = (f"property check of {args.target}: {args.examples} random input sets, trace vs "
             f"eager (built-in random checker; {why})")
    return _fallback_check(target, traced, args.examples, dynamic, args.seed, args.rtol,
                           args.atol, fmt, mw, title)


# --------------------------------------------------------------------------- demo

def cmd_demo(argv: Sequence[str]) -> int:
    from . import demo

    return demo.main(list(argv))


# --------------------------------------------------------------------------- parser

class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``fxtrace: error: ... (see 'fxtrace trace --help')``."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        sys.stderr.write(f"{PROG}: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(EXIT_USAGE)


_SPEC_HELP = ("a tensor spec: randn/rand/zeros/ones(SIZES..., dtype=D) or "
              "randint([LOW,] HIGH, (SIZES,), dtype=D), e.g. 'randn(1,3,224,224)', "
              "'randint(0,10,(2,3))', 'randn(2,3,dtype=float64)'; parsed, never evaluated")
_TARGET_HELP = ("what to trace: IMPORT.PATH:ATTR or path/to/file.py:ATTR, where ATTR is an "
                "nn.Module instance, a class with a no-argument constructor, a factory "
                "function (no required arguments) returning a module, or a plain function "
                "(called with the inputs). The current directory is on sys.path")
_EPILOG = """\
examples:
  fxtrace trace models.py:Net --input 'randn(1,3,224,224)' --eval --save net.pt
  fxtrace trace mypkg.fns:foo --input 'rand(3)' --input 'rand(3)' --format github
  fxtrace inspect net.pt --table nodes,ops
  fxtrace inspect net.pt --dot net.dot --svg net.svg
  fxtrace check models.py:Net --input 'randn(2,3,32,32)' --eval --dynamic 0:0
  fxtrace demo

User mistakes print one line 'fxtrace: error: ...' and exit with status 2; a failed check
exits with status 1. See docs/cli.md.
"""


def _add_common(p: argparse.ArgumentParser, tables_default: Optional[str]) -> None:
    if tables_default is not None:
        p.add_argument("--table", default=tables_default, metavar="T1,T2",
                       help=f"comma-separated tables from {', '.join(PRINTABLE_TABLES)} "
                            f"(or none; default: {tables_default})")
    p.add_argument("--format", default="simple", metavar="FMT",
                   help="table format: any tabulate tablefmt (simple, github, grid, plain, "
                        "tsv, html, ...; default: simple)")
    p.add_argument("--max-width", type=int, default=40, metavar="N",
                   help="cut table cells longer than N characters (0: never; default: 40)")
    p.add_argument("--traceback", action="store_true", default=argparse.SUPPRESS,
                   help="show the Python traceback of an error instead of one line")


def _add_pictures(p: argparse.ArgumentParser, dot_optional: bool) -> None:
    extra = {"nargs": "?", "const": "-"} if dot_optional else {}
    p.add_argument("--dot", metavar="FILE" if not dot_optional else "FILE|-", **extra,
                   help="write the graph as Graphviz DOT text to FILE ('-': stdout, "
                        + ("the default; " if dot_optional else "") + "then only the DOT "
                        "text goes to stdout): nodes labelled with target and shape, edges "
                        "with tensors, submodules as clusters")
    for fmt in PICTURE_FORMATS:
        p.add_argument(f"--{fmt}", metavar="FILE",
                       help=f"render the graph to a {fmt.upper()} file with Graphviz "
                            f"(dot -T{fmt}; needs graphviz installed)")


def _add_target(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="MODULE:ATTR", help=_TARGET_HELP)
    p.add_argument("--input", action="append", metavar="SPEC",
                   help="a positional example input, repeat for more: " + _SPEC_HELP)
    p.add_argument("--kwarg", action="append", metavar="NAME=SPEC",
                   help="a keyword example input, e.g. --kwarg mask='ones(2,8)'")
    p.add_argument("--eval", action="store_true",
                   help="put the module in eval mode before tracing (dropout off, batchnorm "
                        "running stats)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of torch's RNG for the inputs (default: 0)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="torch.jit.trace reimplemented on torch.fx: "
                     "trace, inspect and check from the command line.",
                     epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traceback", action="store_true",
                        help="show the Python traceback of an error instead of one line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("trace", help="trace a module or function and print tables",
                       description="Trace MODULE:ATTR on example inputs with fxtrace.trace "
                                   "(check_trace on), print inspection tables, optionally save "
                                   "the TorchScript result.")
    _add_target(p)
    p.add_argument("--no-check", action="store_true",
                   help="skip check_trace (comparing the trace with eager on the inputs)")
    p.add_argument("--mode", choices=("concrete", "symbolic", "auto"), default="concrete",
                   help="capture mode (default: concrete; see docs/modes.md)")
    p.add_argument("--no-guards", action="store_true",
                   help="emit no runtime guards: freeze values as torch.jit.trace does")
    p.add_argument("--save", metavar="OUT.pt",
                   help="write the result with torch.jit.save (loadable without fxtrace)")
    _add_common(p, "nodes")
    _add_pictures(p, dot_optional=False)
    p.set_defaults(handler=cmd_trace)

    p = sub.add_parser("inspect", help="tables of a saved TorchScript file",
                       description="Load FILE with torch.jit.load and print inspection tables "
                                   "(specialisations need an fxtrace capture and are not "
                                   "available for a saved file).")
    p.add_argument("file", metavar="FILE", help="a file written by torch.jit.save")
    _add_common(p, "nodes,modules,ops")
    _add_pictures(p, dot_optional=True)
    p.set_defaults(handler=cmd_inspect)

    p = sub.add_parser("check", help="property check: trace vs eager on many inputs",
                       description="Trace MODULE:ATTR, then compare the trace with eager on "
                                   "many generated input sets. Uses fxtrace.check (Hypothesis) "
                                   "when available, else a built-in random checker. A guard "
                                   "refusing an input ('fxtrace guard failed') is a correct "
                                   "refusal, counted apart, not a failure. Exit 0 when nothing "
                                   "failed, 1 otherwise.")
    _add_target(p)
    p.add_argument("--examples", type=int, default=100, metavar="N",
                   help="number of input sets to try (default: 100)")
    p.add_argument("--dynamic", action="append", metavar="INPUT:DIM",
                   help="vary dimension DIM of input INPUT (an --input index from 0 or a "
                        "--kwarg name) between 1 and 2x its example size; repeat or "
                        "comma-separate. Dynamic dims of equal example size vary together")
    p.add_argument("--checker", choices=("auto", "fxtrace", "random"), default="auto",
                   help="auto: fxtrace.check when available, else random (default: auto)")
    p.add_argument("--rtol", type=float, default=None,
                   help="relative tolerance (default: torch.testing.assert_close's)")
    p.add_argument("--atol", type=float, default=None,
                   help="absolute tolerance (default: torch.testing.assert_close's)")
    _add_common(p, None)
    p.set_defaults(handler=cmd_check)

    sub.add_parser("demo", add_help=False, help="run the demo (fxtrace demo --help for options)")
    return parser


def _split_demo(argv: Sequence[str]) -> Optional[Tuple[List[str], List[str]]]:
    """(global options, demo arguments) when the command is ``demo``; else None."""
    for i, a in enumerate(argv):
        if a == "demo":
            return list(argv[:i]), list(argv[i + 1:])
        if not a.startswith("-"):
            return None
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 check failed, 2 usage error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    demo_split = _split_demo(argv)
    if demo_split is not None:
        extra = [a for a in demo_split[0] if a != "--traceback"]
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        show_tb = "--traceback" in demo_split[0]
        handler: Callable[[], int] = lambda: cmd_demo(demo_split[1])  # noqa: E731
    else:
        args = parser.parse_args(argv)
        show_tb = args.traceback
        handler = lambda: args.handler(args)  # noqa: E731
    try:
        return handler()
    except UserError as e:
        if show_tb:
            raise
        sys.stderr.write(f"{PROG}: error: {e}\n")
        return EXIT_USAGE
    except TraceFailed as e:
        if show_tb:
            raise
        lines = str(e).splitlines() or [""]
        sys.stderr.write(f"{PROG}: error: {lines[0]}\n")
        for line in lines[1:]:
            sys.stderr.write(f"  {line}\n")
        return e.status
    except KeyboardInterrupt:
        sys.stderr.write(f"\n{PROG}: interrupted\n")
        return 130
    except BrokenPipeError:  # `fxtrace ... | head`
        with contextlib.suppress(Exception):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
