"""Sizes read by C code that is neither Python's nor torch's (NumPy): found by the call site.

NOTE [Foreign readers]
A traced size is a real ``int`` (NOTE [Live sizes]): Python code that uses it runs one of
its methods, which records or guards. C code does not: NumPy takes ``np.zeros(x.shape)``'s
items and ``np.arange(x.size(1))``'s number through the C API (``PyNumber_Index`` returns an
``int`` subclass as it is, never calling ``__index__``), so nothing runs, nothing is guarded,
and the trace is silently specialised to the example's sizes (fuzz F15). There is no hook in
the value, so the call site is read instead: the user's line is parsed once per file, and a
size is *frozen* (guarded, like ``int(n)``) when it is produced as an argument of a call, or
a size tuple is iterated by a call, whose callee is C code outside Python's builtins, ``math``,
``operator``, ``itertools``, ``functools`` and torch. A Python callee runs the value's methods
itself; an unresolvable callee (``f()(n)``) is left alone, as before.
"""
from __future__ import annotations

import ast
import builtins
import dis
import inspect
import linecache
import types
import weakref
from typing import Any, Dict, Iterator, List, Optional, Tuple

__all__ = ["foreign_caller", "foreign_argument_of"]

Span = Tuple[Optional[int], Optional[int], Optional[int], Optional[int]]

#: Top-level packages whose C functions read ints through Python's protocols (live sizes).
_PYTHON_SIDE = frozenset({"builtins", "math", "operator", "itertools", "functools", "torch",
                          "fxtrace", "collections", "typing", "_operator", "_functools",
                          "_collections"})
#: Packages whose Python functions hand the numbers they get to their C code
#: (``np.ones(n)`` calls ``np.empty(n)``): their callees count as C code.
_NUMERIC = frozenset({"numpy", "scipy", "pandas", "cupy", "jax", "numba"})
#: (CPython 3.11 runs a call to a C function it specialised in PRECALL)
_CALLS = frozenset({"CALL", "CALL_FUNCTION_EX", "PRECALL"})
#: per file: the lines parsed (linecache's list, replaced when the file changes) and their
#: index (span of a Call -> its callee expression, span of an argument -> callee expression)
_index_cache: Dict[str, Tuple[List[str], "_FileIndex"]] = {}
#: weak: a traced function's code object is not kept alive by having been traced
_positions_cache: "weakref.WeakKeyDictionary[types.CodeType, List[Span]]" = \
    weakref.WeakKeyDictionary()


def _span(node: ast.AST) -> Span:
    return (getattr(node, "lineno", None), getattr(node, "end_lineno", None),
            getattr(node, "col_offset", None), getattr(node, "end_col_offset", None))


def _arguments(node: ast.expr) -> List[ast.expr]:
    """``node`` and what a call receives item by item from it (tuple/list displays, ``*x``)."""
    out = [node]
    if isinstance(node, ast.Starred):
        out += _arguments(node.value)
    elif isinstance(node, (ast.Tuple, ast.List)):
        for elt in node.elts:
            out += _arguments(elt)
    return out


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def _walk_scope(scope: ast.AST) -> Iterator[ast.AST]:
    """The nodes of one scope: ``ast.walk`` that does not enter nested functions or classes
    (their names are other variables)."""
    todo = list(ast.iter_child_nodes(scope))
    while todo:
        node = todo.pop()
        yield node
        if not isinstance(node, _SCOPES):
            todo.extend(ast.iter_child_nodes(node))


class _FileIndex:
    """One parsed file: span of a call -> its callee; span of an argument -> the callee it
    is passed to; span of a value assigned to names (or of the names unpacked) -> the callees
    those names are passed to anywhere in the same function (``n = x.size(0)`` ...
    ``np.ones(n)``: a lexical over-approximation, which can only guard more)."""

    def __init__(self, tree: ast.AST) -> None:
        self.calls: Dict[Span, ast.expr] = {}
        self.args: Dict[Span, ast.expr] = {}
        self.named: Dict[Span, List[ast.expr]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                self.calls[_span(node)] = node.func
                for arg in node.args + [k.value for k in node.keywords]:
                    for inner in _arguments(arg):
                        self.args.setdefault(_span(inner), node.func)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef)):
                self._scope(node)

    def _scope(self, scope: ast.AST) -> None:
        passed: Dict[str, List[ast.expr]] = {}
        for node in _walk_scope(scope):
            if isinstance(node, ast.Call):
                for arg in node.args + [k.value for k in node.keywords]:
                    for inner in _arguments(arg):
                        if isinstance(inner, ast.Name):
                            passed.setdefault(inner.id, []).append(node.func)
        if not passed:
            return
        assigns = [n for n in _walk_scope(scope) if isinstance(n, ast.Assign)]
        for _ in range(4):  # ``dims = [n]`` ... ``np.ones(dims)``: n is handed over too
            grew = False
            for node in assigns:
                via = [c for t in node.targets for name in _arguments(t)
                       if isinstance(name, ast.Name) for c in passed.get(name.id, ())]
                for inner in _arguments(node.value) if via else ():
                    if isinstance(inner, ast.Name) and not set(via) <= set(
                            passed.get(inner.id, ())):
                        passed.setdefault(inner.id, []).extend(via)
                        grew = True
            if not grew:
                break
        for node in assigns:
            for target in node.targets:
                callees = [c for name in _arguments(target) if isinstance(name, ast.Name)
                           for c in passed.get(name.id, ())]
                if callees:
                    self.named.setdefault(_span(node.value), []).extend(callees)
                    self.named.setdefault(_span(target), []).extend(callees)


def _index(filename: str) -> _FileIndex:
    lines = linecache.getlines(filename)
    hit = _index_cache.get(filename)
    if hit is not None and hit[0] is lines:
        return hit[1]
    try:
        tree = ast.parse("".join(lines))
    except (SyntaxError, ValueError):
        tree = ast.Module(body=[], type_ignores=[])
    index = _FileIndex(tree)
    _index_cache[filename] = (lines, index)
    return index


def _position(frame: types.FrameType) -> Span:
    code = frame.f_code
    spans = _positions_cache.get(code)
    if spans is None:
        spans = _positions_cache[code] = list(code.co_positions())
    index = frame.f_lasti // 2
    return spans[index] if 0 <= index < len(spans) else (None, None, None, None)


def _resolve(expr: ast.expr, frame: types.FrameType) -> Any:
    """The object ``expr`` (a name or attribute chain) denotes in ``frame``, running no user
    code (attributes are read statically); None when it cannot tell."""
    if isinstance(expr, ast.Name):
        for scope in (frame.f_locals, frame.f_globals, vars(builtins)):
            if expr.id in scope:
                return scope[expr.id]
        return None
    if isinstance(expr, ast.Attribute):
        base = _resolve(expr.value, frame)
        if base is None:
            return None
        try:  # static: no module ``__getattr__`` (lazy imports), property or descriptor runs
            return inspect.getattr_static(base, expr.attr, None)
        except Exception:  # noqa: BLE001 - an odd object: the callee is unknown, left alone
            return None
    return None


_C_CALLABLES = (types.BuiltinFunctionType, types.MethodDescriptorType,
                types.WrapperDescriptorType, types.MethodWrapperType,
                types.ClassMethodDescriptorType)
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class defined by a class statement


def _foreign_name(callee: Any) -> Optional[str]:
    """``callee``'s name when it is C code (a builtin function or method, a C type, an
    instance of a C type such as a ufunc) outside the Python side (:data:`_PYTHON_SIDE`)."""
    if callee is None:
        return None
    module = getattr(callee, "__module__", None)
    if isinstance(callee, (types.FunctionType, types.MethodType)) and isinstance(module, str):
        return _name(module, callee) if module.split(".")[0] in _NUMERIC else None
    if isinstance(callee, _C_CALLABLES):
        owner = getattr(callee, "__self__", None)
        module = getattr(callee, "__module__", None)
        if isinstance(owner, types.ModuleType):
            module = owner.__name__
        elif module is None and owner is not None:
            module = type(owner).__module__
    else:
        cls = callee if isinstance(callee, type) else type(callee)
        if cls.__flags__ & _HEAPTYPE or not callable(callee):
            return None  # Python code runs the size's own methods
        module = cls.__module__
    if not isinstance(module, str) or module.split(".")[0] in _PYTHON_SIDE:
        return None
    return _name(module, callee)


def _name(module: str, callee: Any) -> str:
    return f"{module}.{getattr(callee, '__qualname__', getattr(callee, '__name__', '?'))}"


def foreign_caller(frame: Optional[types.FrameType]) -> Optional[str]:
    """The C callee (``numpy.zeros``) that ``frame`` is calling right now, when it is foreign
    (NOTE [Foreign readers]): a size tuple iterated there has its items read as plain ints."""
    if frame is None:
        return None
    code = frame.f_code
    if dis.opname[code.co_code[frame.f_lasti]] not in _CALLS:
        return None  # a for loop, an unpacking: Python reads the items
    func = _index(code.co_filename).calls.get(_position(frame))
    return _foreign_name(_resolve(func, frame)) if func is not None else None


def foreign_argument_of(frame: Optional[types.FrameType]) -> Optional[str]:
    """The foreign C callee that the value ``frame`` is computing right now is an argument of
    (``np.arange(x.size(1))``, ``np.ones((x.size(0), 2))``), if any."""
    if frame is None:
        return None
    index, span = _index(frame.f_code.co_filename), _position(frame)
    func = index.args.get(span)
    if func is not None:
        return _foreign_name(_resolve(func, frame))
    for func in index.named.get(span, ()):
        name = _foreign_name(_resolve(func, frame))
        if name is not None:
            return name
    return None
