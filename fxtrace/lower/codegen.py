"""The TorchScript code generator: one ``fx.Graph`` in, one TorchScript ``def`` out.

NOTE [Names in generated code]
Every local comes from one :class:`_Namespace`, which never hands out a TorchScript keyword,
a builtin, or a name the generated code itself refers to (``self``, ``torch``, ``Tensor``, ...).
Attribute and module names from the user's model are never pasted into code as identifiers
unless they are valid ones; otherwise they are reached with ``getattr(obj, "name")``.
Callables that have no spelling reachable from ``torch`` get an alias that the resolution
callback maps back to the object, so no user-controlled text becomes code.

NOTE [Line map]
Each statement line ends with a ``# file.py:12`` comment naming the user line of its node, and
:class:`TorchScriptSource` keeps ``line -> node``. TorchScript's compile errors and runtime
tracebacks quote the generated line, comment included, so users see their own line.
"""
from __future__ import annotations

import builtins
import dataclasses
import inspect
import keyword
import math
import operator
import typing
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

import torch
import torch.fx as fx

from ..capture.meta import SOURCE, TENSOR_META, SourceLoc
from ..errors import LoweringError
from .guard_conditions import failing, inlined_conditions
from .schema import DTYPE_METHODS, Expr, aten_name, normalise_call
from .setattr import is_set_state, set_state_statement
from .special import guard_statements, negation, rewrite_python_call
from .targets import (
    NO_BUILTIN_DTYPE_METHODS,
    binds,
    ellipsis_fill,
    is_tensor,
    op_packet,
    python_method_of_function,
    tensor_method_name,
    tolist_type,
)
from .types import expressible_namedtuple, scriptable_namedtuple, type_repr

__all__ = ["TorchScriptSource", "describe_call", "generate", "type_repr"]

_RESERVED = {"self", "torch", "math", "Tensor", "Tuple", "List", "Dict", "Optional", "NoneType",
             "annotate", "ops", "Any", "Union", "Future", "device", "dtype", "inf", "nan"}

_BINARY = {operator.add: "+", operator.sub: "-", operator.mul: "*", operator.truediv: "/",
           operator.floordiv: "//", operator.mod: "%", operator.pow: "**", operator.eq: "==",
           operator.ne: "!=", operator.lt: "<", operator.le: "<=", operator.gt: ">",
           operator.ge: ">=", operator.and_: "&", operator.or_: "|", operator.xor: "^",
           operator.matmul: "@", operator.lshift: "<<", operator.rshift: ">>"}
_UNARY = {operator.neg: "-", operator.pos: "+", operator.invert: "~"}

# Tensor dunder methods as the torch function mode reports them -> infix operator.
_DUNDER_BINARY = {"__add__": "+", "__sub__": "-", "__mul__": "*", "__truediv__": "/",
                  "__div__": "/", "__floordiv__": "//", "__mod__": "%", "__pow__": "**",
                  "__matmul__": "@", "__and__": "&", "__or__": "|", "__xor__": "^",
                  "__lshift__": "<<", "__rshift__": ">>", "__eq__": "==", "__ne__": "!=",
                  "__lt__": "<", "__le__": "<=", "__gt__": ">", "__ge__": ">="}
_DUNDER_REFLECTED = {"__radd__": "+", "__rsub__": "-", "__rmul__": "*", "__rtruediv__": "/",
                     "__rdiv__": "/", "__rpow__": "**", "__rmatmul__": "@", "__rand__": "&",
                     "__ror__": "|", "__rxor__": "^", "__rmod__": "%"}
_DUNDER_UNARY = {"__neg__": "-", "__invert__": "~", "__pos__": "+", "__abs__": "abs"}

_NAMESPACES: Tuple[Tuple[str, Any], ...] = (
    ("torch", torch), ("torch.nn.functional", torch.nn.functional), ("torch.special", torch.special),
    ("torch.linalg", torch.linalg), ("torch.fft", torch.fft), ("torch._C._nn", torch._C._nn),
    # (private C modules the stubs do not declare)
    ("torch._C._special", torch._C._special),  # type: ignore[attr-defined]
    ("torch._C._linalg", torch._C._linalg),  # type: ignore[attr-defined]
    ("torch._C._fft", torch._C._fft), ("math", math),  # type: ignore[attr-defined]
)


@dataclasses.dataclass
class TorchScriptSource:
    """Generated TorchScript for one method: text, the names it needs, and its line map."""

    src: str
    env: Dict[str, Any]
    line_nodes: List[Optional[fx.Node]]

    def rcb(self, name: str) -> Any:
        """The resolution callback TorchScript's compiler asks for free names."""
        return self.env.get(name)

    def numbered(self) -> str:
        return "\n".join(f"{i + 1:4d} | {line}" for i, line in enumerate(self.src.splitlines()))


class _Namespace:
    """Unique, legal local names that shadow nothing the generated code uses."""

    def __init__(self) -> None:
        self.used: set = set(_RESERVED)

    def create(self, candidate: str) -> str:
        base = "".join(c if c.isalnum() or c == "_" else "_" for c in candidate) or "v"
        if base[0].isdigit():
            base = "_" + base
        if keyword.iskeyword(base) or hasattr(builtins, base):
            base += "_"
        name, i = base, 1
        while name in self.used:
            name, i = f"{base}_{i}", i + 1
        self.used.add(name)
        return name


def _is_identifier(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


def _attr_chain(base: str, dotted: str) -> str:
    expr = base
    for part in dotted.split("."):
        expr = f"{expr}.{part}" if _is_identifier(part) else f"getattr({expr}, {_string(part)})"
    return expr


def _string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


class _Writer:
    """Writes the body of one method; one instance per generated function."""

    def __init__(self, graph: fx.Graph, env: Dict[str, Any]) -> None:
        self.graph = graph
        self.env = env
        self.ns = _Namespace()
        self.names: Dict[fx.Node, str] = {}
        self.lines: List[str] = []
        self.line_nodes: List[Optional[fx.Node]] = []
        self.inlined: Set[fx.Node] = set()  # NOTE [Guard conditions]

    # -- values -----------------------------------------------------------------------------
    def value(self, arg: Any) -> str:
        if isinstance(arg, fx.Node):
            return self.names[arg]
        if isinstance(arg, Expr):
            return arg.text.format(*(self.value(v) for v in arg.values))
        if arg is None or isinstance(arg, bool):
            return repr(arg)
        if isinstance(arg, int):
            return repr(arg)
        if isinstance(arg, float):
            if math.isnan(arg):
                return 'float("nan")'
            if math.isinf(arg):
                return 'float("inf")' if arg > 0 else '-float("inf")'
            return repr(arg)
        if isinstance(arg, str):
            return _string(arg)
        if isinstance(arg, (torch.dtype, torch.layout, torch.memory_format)):
            return str(arg)
        if isinstance(arg, torch.device):
            return f"torch.device({_string(str(arg))})"
        if isinstance(arg, tuple) and hasattr(arg, "_fields") and expressible_namedtuple(arg):
            alias = self.ns.create(f"_nt_{type(arg).__name__}")
            self.env[alias] = scriptable_namedtuple(type(arg))
            return f"{alias}({', '.join(self.value(a) for a in arg)})"
        if isinstance(arg, tuple):
            inner = ", ".join(self.value(a) for a in arg)
            return f"({inner},)" if len(arg) == 1 else f"({inner})"
        if isinstance(arg, list):
            return "[" + ", ".join(self.value(a) for a in arg) + "]"
        if isinstance(arg, dict):
            return "{" + ", ".join(f"{self.value(k)}: {self.value(v)}" for k, v in arg.items()) + "}"
        if isinstance(arg, complex):
            return f"complex({arg.real!r}, {arg.imag!r})"
        raise LoweringError(f"cannot write a value of type {type(arg).__name__} into TorchScript: {arg!r}")

    def index(self, idx: Any) -> str:
        """A subscript: slices as ``a:b:c``, Ellipsis as ``...``."""
        if isinstance(idx, tuple):
            return ", ".join(self.index(i) for i in idx) if idx else "()"
        if isinstance(idx, slice):
            parts = ["" if p is None else self.value(p) for p in (idx.start, idx.stop, idx.step)]
            return f"{parts[0]}:{parts[1]}" + (f":{parts[2]}" if idx.step is not None else "")
        if idx is Ellipsis:
            return "..."
        return self.value(idx)

    def call_args(self, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> str:
        parts = [self.value(a) for a in args]
        parts += [f"{k}={self.value(v)}" for k, v in kwargs.items()]
        return ", ".join(parts)

    def callable_name(self, fn: Callable[..., Any]) -> str:
        name = getattr(fn, "__name__", None)
        if fn in (bool, int, float, len, abs, min, max):
            return fn.__name__
        op = op_packet(fn)
        if op is not None:  # torch.ops.aten.slice.Tensor: TorchScript resolves the overload
            ns, _, base = op._qualified_op_name.partition("::")
            if _is_identifier(ns) and _is_identifier(base):
                return f"torch.ops.{ns}.{base}"
        if name is not None:
            for prefix, ns in _NAMESPACES:
                if getattr(ns, name, None) is fn:
                    return f"{prefix}.{name}"
        alias = self.ns.create(f"_fn_{name or 'callable'}")
        self.env[alias] = fn
        return alias

    # -- statements ------------------------------------------------------------------------------
    def emit(self, text: str, node: Optional[fx.Node]) -> None:
        src: Optional[SourceLoc] = node.meta.get(SOURCE) if node is not None else None
        self.lines.append(f"    {text}" + (f"  # {src.short}" if src is not None else ""))
        self.line_nodes.append(node)

    def emit_guard(self, cond: str, message: str, node: fx.Node, negated: bool = False) -> None:
        """``if not cond: raise``; ``negated``: ``cond`` is the failing condition."""
        self.env["RuntimeError"] = RuntimeError  # the resolution callback names the raise
        lines = guard_statements(cond, message)
        if negated:  # the raise as guard_statements writes it, under ``if cond:``
            lines = [f"if {cond}:", *lines[1:]]
        for line in lines:
            self.emit(line, node)

    def expression(self, node: fx.Node) -> Optional[str]:
        """The right-hand side for ``node``, or None when the node is a statement."""
        op, target, args, kwargs = node.op, node.target, node.args, node.kwargs
        if op == "get_attr":
            return _attr_chain("self", target)  # type: ignore[arg-type]
        if op == "call_module":
            return f"{_attr_chain('self', target)}({self.call_args(args, kwargs)})"  # type: ignore[arg-type]
        if op == "call_method":
            if target == "nonzero" and kwargs.get("as_tuple") is True and len(args) == 1:
                return self.nonzero_tuple(node, args[0])
            hint = tolist_type(args[0]) if target == "tolist" and len(args) == 1 else None
            if hint is not None:  # TorchScript types tolist() only through an annotation
                return f"annotate({hint}, {self.value(args[0])}.tolist())"
            return self.method(target, args, kwargs)  # type: ignore[arg-type]
        if op == "call_function":
            return self.function(node, target, args, kwargs)
        raise LoweringError(f"Node {node.name}: opcode {op!r} cannot be lowered")

    def method(self, name: str, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> str:
        recv, rest = args[0], args[1:]
        if name in _DUNDER_BINARY and len(rest) == 1 and not kwargs:
            return f"{self.value(recv)} {_DUNDER_BINARY[name]} {self.value(rest[0])}"
        if name in _DUNDER_REFLECTED and len(rest) == 1 and not kwargs:
            other = rest[0]
            if name == "__rsub__":
                return f"torch.rsub({self.value(recv)}, {self.value(other)})"
            return f"{self.value(other)} {_DUNDER_REFLECTED[name]} {self.value(recv)}"
        if name == "__rfloordiv__":
            return f"torch.floor_divide(torch.tensor({self.value(rest[0])}), {self.value(recv)})"
        if name in _DUNDER_UNARY and not rest:
            sym = _DUNDER_UNARY[name]
            return f"abs({self.value(recv)})" if sym == "abs" else f"{sym}{self.value(recv)}"
        if name.startswith("__i") and name.endswith("__") and name[3:-2] in {
                "add", "sub", "mul", "truediv", "div", "floordiv", "mod", "pow", "and", "or", "xor"}:
            base = {"truediv": "div_", "and": "bitwise_and_", "or": "bitwise_or_",
                    "xor": "bitwise_xor_", "floordiv": "floor_divide_", "mod": "remainder_"}
            inplace = base.get(name[3:-2], name[3:-2] + "_")
            return f"{self.value(recv)}.{inplace}({self.call_args(rest, kwargs)})"
        if name.startswith("__"):
            raise LoweringError(f"Tensor method {name} has no TorchScript spelling")
        if name == "new_tensor":  # not a TorchScript method: torch.tensor on the receiver's kind
            recv_text = self.value(recv)
            extra = {"dtype": f"{recv_text}.dtype", "device": f"{recv_text}.device"}
            given = {k: self.value(v) for k, v in kwargs.items()}
            merged = {**extra, **given}
            data = self.value(rest[0]) if rest else self.value(kwargs.get("data"))
            merged.pop("data", None)
            return f"torch.tensor({data}, " + ", ".join(f"{k}={v}" for k, v in merged.items()) + ")"
        if name in DTYPE_METHODS and is_tensor(recv) and (
                rest or kwargs or name in NO_BUILTIN_DTYPE_METHODS):
            # TorchScript's dtype methods take no arguments (or do not exist): .to(dtype)
            more = self.call_args(rest, kwargs)
            return f"{self.value(recv)}.to({DTYPE_METHODS[name]}{', ' + more if more else ''})"
        norm = normalise_call(f"aten::{name}", (recv, *rest), kwargs)
        if norm is not None:
            call = f"{self.value(norm.args[0])}.{name}({self.call_args(norm.args[1:], norm.kwargs)})"
            return call + (".requires_grad_()" if norm.requires_grad else "")
        if python_method_of_function(name) and not binds(name, (recv, *rest), kwargs):
            # Tensor.norm & co. are Python wrappers of torch.norm & co., whose Python source
            # TorchScript compiles with every argument the wrapper passes (p="fro", dim=None)
            return f"torch.{name}({self.call_args((recv, *rest), kwargs)})"
        return f"{self.value(recv)}.{name}({self.call_args(rest, kwargs)})"

    def nonzero_tuple(self, node: fx.Node, x: Any) -> str:
        """``nonzero(as_tuple=True)``: aten's ``nonzero_numpy`` gives the same tensors as a
        list; the tuple the program saw has the traced rank's length, checked at run time."""
        meta = node.meta.get(TENSOR_META)
        if not isinstance(meta, tuple):
            raise LoweringError("nonzero(as_tuple=True) without the traced tuple's length")
        listed = self.ns.create(f"{node.name}_list")
        self.emit(f"{listed} = torch.ops.aten.nonzero_numpy({self.value(x)})", node)
        src = node.meta.get(SOURCE)
        msg = (f"fxtrace guard failed at {src.short if src is not None else node.name}: "
               f"nonzero(as_tuple=True) was traced with {len(meta)} dimension(s)")
        self.emit_guard(f"len({listed}) == {len(meta)}", _string(msg), node)
        return "(" + "".join(f"{listed}[{i}], " for i in range(len(meta))) + ")"

    def subscript(self, node: fx.Node, base: Any, idx: Any) -> str:
        """``base[idx]``; an Ellipsis followed by tensor indices (which TorchScript rejects)
        is spelled out as the slices it stands for at the traced rank, checked at run time."""
        fill = ellipsis_fill(base, idx)
        if fill is None:
            return self.index(idx)
        rank = len(base.meta[TENSOR_META].shape)
        src = node.meta.get(SOURCE)
        msg = (f"fxtrace guard failed at {src.short if src is not None else node.name}: "
               f"indexing with '...' and a tensor was traced at rank {rank}")
        self.emit_guard(f"{self.value(base)}.dim() == {rank}", _string(msg), node)
        expanded: List[Any] = []
        for item in idx:
            expanded.extend([slice(None)] * fill if item is Ellipsis else [item])
        return self.index(tuple(expanded))

    def function(self, node: fx.Node, fn: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Optional[str]:
        if fn is operator.getitem:
            return f"{self.value(args[0])}[{self.subscript(node, args[0], args[1])}]"
        if fn is getattr and len(args) == 2 and isinstance(args[1], str) and _is_identifier(args[1]):
            return f"{self.value(args[0])}.{args[1]}"
        if fn in (operator.is_, operator.is_not):
            word = "is" if fn is operator.is_ else "is not"
            return f"{self.value(args[0])} {word} {self.value(args[1])}"
        if is_set_state(fn):  # a rebound attribute: an assignment (lower/setattr.py)
            self.emit(set_state_statement(node, self.value), node)
            return None
        if fn is operator.setitem:
            target = f"{self.value(args[0])}[{self.subscript(node, args[0], args[1])}]"
            self.emit(f"{target} = {self.value(args[2])}", node)
            return None
        if fn in _BINARY and not kwargs:
            return f"{self.value(args[0])} {_BINARY[fn]} {self.value(args[1])}"
        if fn is operator.not_ and not kwargs:
            return negation(self.value(args[0]))
        if fn in _UNARY and not kwargs:
            return f"{_UNARY[fn]}{self.value(args[0])}"
        if fn is torch._assert:
            cond = args[0] if args else kwargs["condition"]
            message = args[1] if len(args) > 1 else kwargs.get("message", "")
            self.emit_guard(failing(cond, self.inlined, self.value), self.value(message), node,
                            negated=True)
            return None
        method = tensor_method_name(fn)
        if method is not None and args:  # Tensor.__pow__ and friends, called as functions
            return self.method(method, args, kwargs)
        if fn is torch.nonzero and kwargs.get("as_tuple") is True:
            return self.nonzero_tuple(node, args[0] if args else kwargs["input"])
        rewritten = rewrite_python_call(fn, args, kwargs)
        if rewritten is not None:
            args, kwargs, before = rewritten
            for statement in before:
                self.emit(self.value(statement), node)
        qualified = aten_name(fn)
        norm = normalise_call(qualified, args, kwargs) if qualified is not None else None
        if norm is not None:
            call = f"{self.callable_name(fn)}({self.call_args(norm.args, norm.kwargs)})"
            return call + (".requires_grad_()" if norm.requires_grad else "")
        args, kwargs = _float_constants(fn, args, kwargs)
        return f"{self.callable_name(fn)}({self.call_args(args, kwargs)})"


_FLOAT_PARAMS: Dict[Any, Optional[Tuple[inspect.Signature, frozenset]]] = {}


def _float_params(fn: Any) -> Optional[Tuple[inspect.Signature, frozenset]]:
    """The signature of a Python-defined callable and the names of its parameters annotated
    with float but not int (``scale_factor: Optional[List[float]]``); None for builtins."""
    try:
        return _FLOAT_PARAMS[fn]
    except (KeyError, TypeError):
        pass
    found = None
    if inspect.isfunction(fn):
        try:
            hints = typing.get_type_hints(fn)
            sig = inspect.signature(fn)
        except Exception:  # noqa: BLE001 - unresolvable annotations: leave the call alone
            hints, sig = {}, None
        names = frozenset(name for name, hint in hints.items()
                          if "float" in repr(hint) and "int" not in repr(hint))
        found = (sig, names) if sig is not None and names else None
    try:
        _FLOAT_PARAMS[fn] = found
    except TypeError:
        pass
    return found


def _as_float(value: Any) -> Any:
    if type(value) is int:
        return float(value)
    if isinstance(value, (list, tuple)) and value and all(type(v) in (int, float) for v in value):
        floats = [float(v) for v in value]  # fx keeps lists as immutable_list: a plain one
        return tuple(floats) if isinstance(value, tuple) else floats
    return value


def _float_constants(fn: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any]
                     ) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
    """Int constants passed where a Python-defined torch function declares a float (Python
    takes ``F.interpolate(x, scale_factor=2)``; TorchScript's overloads of it do not): the
    same values written as floats."""
    info = _float_params(fn)
    if info is None:
        return args, kwargs
    sig, names = info
    try:
        bound = sig.bind_partial(*args, **kwargs)
    except TypeError:
        return args, kwargs
    if not any(n in names for n in bound.arguments):
        return args, kwargs
    params = list(sig.parameters)
    new_args = tuple(_as_float(a) if i < len(params) and params[i] in names else a
                     for i, a in enumerate(args))
    new_kwargs = {k: _as_float(v) if k in names else v for k, v in kwargs.items()}
    return new_args, new_kwargs


def describe_call(node: fx.Node) -> str:
    """A short spelling of the call ``node`` records (``x.view(...)``, ``torch.zeros(...)``)."""
    target = node.target
    if node.op == "call_method":
        return f".{target}(...)"
    if node.op == "call_module":
        return f"self.{target}(...)"
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None)
    module = getattr(target, "__module__", None) or ""
    return f"{module + '.' if module else ''}{name or target}(...)"


def _lower_node(w: _Writer, node: fx.Node) -> Optional[str]:
    """``w.expression(node)``; any failure becomes a LoweringError naming the user's line."""
    try:
        return w.expression(node)
    except Exception as e:  # noqa: BLE001 - a recorded call must fail as LoweringError
        src = node.meta.get(SOURCE)
        where = f" at {src}" if src is not None else ""
        code = f" ({src.code.strip()})" if src is not None and src.code else ""
        raise LoweringError(f"cannot write the call {describe_call(node)}{where}{code} as "
                            f"TorchScript: {e}") from None


def generate(graph: fx.Graph, name: str = "forward", *, method: bool = True) -> TorchScriptSource:
    """Write ``graph`` as a TorchScript function (``method=True``: a method taking ``self``).

    Invariant: the generated function computes what the graph computes, node by node in graph
    order, and every node with users is bound to a local named by the namespace.
    """
    env: Dict[str, Any] = {"torch": torch, "math": math, "Tensor": torch.Tensor,
                           "Tuple": typing.Tuple, "List": typing.List, "Dict": typing.Dict,
                           "Optional": typing.Optional, "annotate": torch.jit.annotate}
    w = _Writer(graph, env)
    params: List[str] = ["self"] if method else []
    ret = "None"
    w.inlined = inlined_conditions(graph)
    for node in graph.nodes:
        if node in w.inlined:
            continue  # written inside the guard it feeds (NOTE [Guard conditions])
        if node.op == "placeholder":
            local = w.ns.create(node.name)
            w.names[node] = local
            annotation = node.type if node.type is not None else torch.Tensor
            params.append(f"{local}: {type_repr(annotation)}")
            continue
        if node.op == "output":
            ret = w.value(node.args[0])
            continue
        expr = _lower_node(w, node)
        if expr is None:
            continue
        local = w.ns.create(node.name)
        w.names[node] = local
        if node.users or node.op in ("call_module", "call_method", "call_function"):
            w.emit(f"{local} = {expr}", node)
    header = f"def {name}({', '.join(params)}):"
    body = w.lines + [f"    return {ret}"]
    text = "\n".join([header, *body]) + "\n"
    return TorchScriptSource(text, env, [None, *w.line_nodes, None])
