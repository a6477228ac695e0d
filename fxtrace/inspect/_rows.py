"""Turn the accepted inputs (fxtrace result, ``fx.GraphModule``, TorchScript) into rows.

Every table is computed from :class:`NodeRow` lists, so the same table code serves fx graphs
and TorchScript graphs (including ones loaded from a file fxtrace never saw).
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.fx

from fxtrace.capture.meta import MODULE, ORIGINAL_TYPE, SOURCE, TENSOR_META, VALUE_TYPE, SourceLoc

from .. import tree
from ._format import fmt_args, fmt_device, fmt_dtype, fmt_shape, fmt_value, qualname

ACCEPTED = ("an fxtrace result (a ScriptModule with ._fxtrace_capture)", "torch.fx.GraphModule",
            "torch.jit.ScriptModule", "torch.jit.ScriptFunction")


@dataclasses.dataclass
class NodeRow:
    """One graph node, already rendered to (unabbreviated) text."""

    index: int
    opcode: str
    name: str
    target: str
    args: str
    kwargs: str
    shape: str
    dtype: str
    device: str
    location: str
    module: str
    op_key: str      # the ops-histogram key, "opcode:target"
    canon: str       # position-independent identity for diff alignment (no shape/dtype)
    source: Optional[SourceLoc] = None
    #: Data dependencies: ``(row index of the producer, text of the value)`` per distinct
    #: input value that has a row (constants and ``self`` have none). Used by ``to_dot``.
    inputs: List[Tuple[int, str]] = dataclasses.field(default_factory=list)
    #: The qualified class name of a called module (``call_module`` rows), else "".
    callee_type: str = ""
    #: A ``call_module`` row whose callee has a graph of its own in the same table source
    #: (its nodes are listed when recursing, so a histogram must not count the call too).
    callee_traced: bool = False

    def call_text(self) -> str:
        """``name = target(args, kwargs)``: one cell for the diff table."""
        inner = ", ".join(p for p in (self.args, self.kwargs) if p)
        if self.opcode == "placeholder":
            return f"{self.name}: input"
        if self.opcode == "output":
            return f"return {inner}"
        if self.opcode == "get_attr":
            return f"{self.name} = self.{self.target}"
        return f"{self.name} = {self.target}({inner})"


# --------------------------------------------------------------------------- resolution

def _type_error(x: Any) -> TypeError:
    return TypeError(
        f"fxtrace.inspect: cannot table a {type(x).__module__}.{type(x).__qualname__}; "
        f"expected one of: {', '.join(ACCEPTED)}")


def _as_graph_module(x: Any) -> Optional[torch.fx.GraphModule]:
    """The ``fx.GraphModule`` behind ``x``: itself, or an fxtrace result's capture; else None."""
    if isinstance(x, torch.fx.GraphModule):
        return x
    capture = getattr(x, "_fxtrace_capture", None)
    if isinstance(capture, torch.fx.GraphModule):
        return capture
    return None


def _is_script(x: Any) -> bool:
    return isinstance(x, (torch.jit.ScriptModule, torch.jit.ScriptFunction))


def resolve(x: Any) -> Tuple[str, Any]:
    """``("fx", GraphModule)`` or ``("script", ScriptModule|ScriptFunction)``; TypeError else."""
    gm = _as_graph_module(x)
    if gm is not None:
        return "fx", gm
    if _is_script(x):
        return "script", x
    raise _type_error(x)


# --------------------------------------------------------------------------- fx

def _has_tensor(meta: Any) -> bool:
    """Whether a ``tensor_meta`` entry describes some value (a leaf that is not None)."""
    return meta is not None and tree.any_leaf(lambda m: m is not None, meta)


def _meta_columns(meta: Any, value_type: Any) -> Tuple[str, str, str]:
    """shape, dtype, device text for a ``tensor_meta`` entry (possibly a container)."""
    if not _has_tensor(meta):
        # no tensor in the value: show its Python type (``int``, ``Size``, ...) if known
        if value_type is not None and value_type is not type(None):
            return "", getattr(value_type, "__name__", str(value_type)), ""
        return "", "", ""
    if hasattr(meta, "shape") and hasattr(meta, "dtype"):
        return (fmt_shape(meta.shape), fmt_dtype(meta.dtype),
                fmt_device(getattr(meta, "device", None)))
    if not tree.is_container(meta):
        return "", type(meta).__name__, ""
    items = [m for _, m in tree.children(meta)]
    cols = [_meta_columns(m, None) for m in items]
    shapes = "(" + ", ".join(c[0] or "-" for c in cols) + ("," if len(cols) == 1 else "") + ")"

    def _same(vals: List[str]) -> str:
        vals = [v for v in vals if v]
        if not vals:
            return ""
        return vals[0] if all(v == vals[0] for v in vals) else "(" + ", ".join(vals) + ")"

    return shapes, _same([c[1] for c in cols]), _same([c[2] for c in cols])


def _node_meta(node: torch.fx.Node) -> Any:
    meta = node.meta.get(TENSOR_META)
    if meta is None:
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor):
            meta = val
        elif isinstance(val, (tuple, list)) and val and all(isinstance(v, torch.Tensor) for v in val):
            meta = tuple(val)
    return meta


def _fx_target(node: torch.fx.Node) -> str:
    if node.op == "call_function":
        return qualname(node.target)
    if node.op == "call_method":
        return f".{node.target}"
    if node.op == "output":
        return "output"
    return str(node.target)


def _module_type_name(mod: Any) -> str:
    if isinstance(mod, torch.fx.GraphModule):
        original = mod.meta.get(ORIGINAL_TYPE) if hasattr(mod, "meta") else None
        if original:
            return str(original)
    original = getattr(mod, "original_name", None)
    if isinstance(original, str) and _is_script(mod):
        return original
    cls = type(mod)  # qualified, as a capture records it: tables print the short name once
    if isinstance(mod, torch.fx.GraphModule) or "<locals>" in cls.__qualname__ or \
            cls.__module__ in ("builtins", "__main__"):
        return cls.__name__  # (a GraphModule's class is made per instance, named after it)
    return f"{cls.__module__}.{cls.__qualname__}"


def _get_submodule(root: torch.nn.Module, path: str) -> Optional[torch.nn.Module]:
    try:
        return root.get_submodule(path) if path else root
    except (AttributeError, RuntimeError):
        return None


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else (prefix or name)


def value_text(shape: str, dtype: str) -> str:
    """``2x3 float32``: the text of a value on a DOT edge (either part may be empty)."""
    return " ".join(p for p in (shape, dtype) if p)


def fx_rows(gm: torch.fx.GraphModule, recurse: bool = False) -> List[NodeRow]:
    rows: List[NodeRow] = []
    graphs: List[Tuple[str, torch.fx.GraphModule]] = [("", gm)]
    if recurse:
        graphs += [(path, m) for path, m in gm.named_modules()
                   if path and isinstance(m, torch.fx.GraphModule)]
    for prefix, holder in graphs:
        position: Dict[torch.fx.Node, int] = {}
        row_of: Dict[torch.fx.Node, int] = {}
        for i, node in enumerate(holder.graph.nodes):
            position[node] = i
            row_of[node] = len(rows)

            def rel(n: torch.fx.Node, _i: int = i, _pos: Dict[Any, int] = position) -> str:
                return f"%{_pos.get(n, _i) - _i}" if n in _pos else f"%{n.name}"

            args, kwargs = fmt_args(node.args, node.kwargs)
            cargs, ckwargs = fmt_args(node.args, node.kwargs, node_ref=rel)
            shape, dtype, device = _meta_columns(_node_meta(node), node.meta.get(VALUE_TYPE))
            target = _fx_target(node)
            src = node.meta.get(SOURCE)
            module = node.meta.get(MODULE)
            module = _join(prefix, "") if module is None else module
            callee, traced = "", False
            if node.op == "call_module":
                sub = _get_submodule(holder, str(node.target))
                callee = _module_type_name(sub) if sub is not None else str(node.target)
                traced = isinstance(sub, torch.fx.GraphModule)
                op_key = f"call_module:{callee}"
            else:
                op_key = f"{node.op}:{target}"
            canon = f"{node.op}|{target}|{cargs}|{ckwargs}"
            rows.append(NodeRow(
                index=len(rows), opcode=node.op, name=node.name, target=target, args=args,
                kwargs=kwargs, shape=shape, dtype=dtype, device=device,
                location=src.short if isinstance(src, SourceLoc) else (str(src) if src else ""),
                module=module, op_key=op_key, canon=canon,
                source=src if isinstance(src, SourceLoc) else None,
                inputs=[(row_of[n], value_text(rows[row_of[n]].shape, rows[row_of[n]].dtype))
                        for n in node.all_input_nodes if n in row_of],
                callee_type=callee, callee_traced=traced))
    return rows


# --------------------------------------------------------------------------- TorchScript

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_TRACE_FRAME = re.compile(r"^(?P<file>.+?)\((?P<line>\d+)\): (?P<fn>.*)$", re.M)
_MARKS = re.compile(r"^\s*~+(?: <--- HERE)?$")
_USER_COMMENT = re.compile(r"  # (\S+?):(\d+)$")
_SCRIPT_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+)(?:, in (?P<fn>\S+))?')


def script_source(text: str) -> Optional[SourceLoc]:
    """The user location in a TorchScript ``node.sourceRange()`` text, when there is one.

    Traced graphs carry a Python call stack (``file.py(12): forward`` lines, innermost first);
    scripted ones a ``File "file.py", line 12`` header; loaded archives add a
    ``Serialized File "code/__torch__.py"`` part, used only when nothing else is there.
    """
    if not text:
        return None
    original, _, serialized = text.partition("Serialized")
    frames = list(_TRACE_FRAME.finditer(original))
    if frames:
        user = [f for f in frames if not f.group("file").startswith(_TORCH_DIR)]
        f = (user or frames)[0]
        return SourceLoc(f.group("file"), int(f.group("line")), f.group("fn"))
    for part in (original, serialized):
        m = _SCRIPT_FRAME.search(part)
        if m:
            return _generated_user_line(part) if m.group("file") == "<string>" else \
                SourceLoc(m.group("file"), int(m.group("line")), m.group("fn") or "")
    return None


def _generated_user_line(text: str) -> Optional[SourceLoc]:
    """The user's ``file.py:12`` that fxtrace's generated code names in a comment on the
    highlighted line (NOTE [Line map]); a loaded trace keeps that source text. None for code
    fxtrace did not generate."""
    lines = text.splitlines()
    for i, line in enumerate(lines[1:], 1):  # the first highlighted line: a statement's start
        if _MARKS.match(line):
            m = _USER_COMMENT.search(lines[i - 1])
            return SourceLoc(m.group(1), int(m.group(2))) if m else None
    return None


def _hierarchy_path(node: Any) -> str:
    try:
        h = node.getModuleHierarchy()
    except Exception:  # noqa: BLE001 - older builds
        h = ""
    if h:
        return ".".join(part.split("(", 1)[0] for part in h.split("."))
    scope = node.scopeName()
    if scope:
        last = scope.split("/")[-1]
        return last[len("__module."):] if last.startswith("__module.") else last
    return ""


def _script_type_columns(value: Any, attr_obj: Any = None) -> Tuple[str, str, str]:
    if isinstance(attr_obj, torch.Tensor):
        return fmt_shape(attr_obj.shape), fmt_dtype(attr_obj.dtype), fmt_device(attr_obj.device)
    ty = value.type()
    if isinstance(ty, torch._C.TensorType):
        sizes = ty.sizes()
        return ("" if sizes is None else fmt_shape(sizes), fmt_dtype(ty.dtype()),
                fmt_device(ty.device()))
    if isinstance(ty, torch._C.ClassType):
        # torch's stub omits ClassType.name, which the runtime binding has.
        return "", ty.name().replace("__torch__.", ""), ""  # type: ignore[attr-defined]
    return "", str(ty), ""


def _script_constant(node: Any) -> Any:
    if not node.hasAttribute("value"):
        return None
    try:
        return node.output().toIValue()
    except Exception:  # noqa: BLE001
        return f"<{node.kindOf('value')}>"


def script_graph(x: Any, recurse: bool) -> Any:
    owner: Any = x.forward if isinstance(x, torch.jit.ScriptModule) else x
    return owner.inlined_graph if recurse else owner.graph


def script_rows(x: Any, recurse: bool = False) -> List[NodeRow]:
    """Rows for the ``forward`` graph of a ScriptModule (or a ScriptFunction's graph).

    ``recurse=False`` tables ``graph`` (submodule calls stay ``call_module`` rows);
    ``recurse=True`` tables ``inlined_graph``. ``prim::Constant`` nodes get no row: their
    values are printed inline where they are used.
    """
    graph = script_graph(x, recurse)
    table = _ScriptRows(x if isinstance(x, torch.jit.ScriptModule) else None)
    inputs = list(graph.inputs())
    if inputs and isinstance(inputs[0].type(), torch._C.ClassType):
        table.paths[inputs[0]] = ""
        inputs = inputs[1:]
    for v in inputs:
        name = v.debugName()
        table.add("placeholder", name, name.split(".")[0], [], [v], "", None)
    table.walk(graph.nodes(), 0)
    table.add("output", "output", "output", list(graph.return_node().inputs()), [], "", None)
    return table.rows


class _ScriptRows:
    """The rows of one TorchScript graph, built node by node (:func:`script_rows`)."""

    def __init__(self, root: Optional[torch.nn.Module]) -> None:
        self.root = root
        self.rows: List[NodeRow] = []
        self.consts: Dict[Any, Any] = {}     # Value -> constant value
        self.position: Dict[Any, int] = {}   # Value -> producing row index
        self.texts: Dict[Any, str] = {}      # Value -> "2x3 float32" (for DOT edges)
        self.paths: Dict[Any, str] = {}      # Value -> module attribute path ("" = self)

    def ref(self, v: Any) -> str:
        return fmt_value(self.consts[v]) if v in self.consts else f"%{v.debugName()}"

    def cref(self, v: Any, here: int) -> str:
        if v in self.consts:
            return fmt_value(self.consts[v])
        return f"%{self.position[v] - here}" if v in self.position else f"%{v.debugName()}"

    def add(self, opcode: str, name: str, target: str, ins: List[Any], outs: List[Any],
            module: str, src: Optional[SourceLoc], op_key: Optional[str] = None,
            attr_obj: Any = None, depth: int = 0) -> None:
        here = len(self.rows)
        cols = [_script_type_columns(o, attr_obj) for o in outs]
        if len(cols) == 1:
            shape, dtype, device = cols[0]
        elif not cols:
            shape = dtype = device = ""
        else:
            shape = "(" + ", ".join(c[0] or "-" for c in cols) + ")"
            dtype = "(" + ", ".join(c[1] for c in cols) + ")"
            device = next((c[2] for c in cols if c[2]), "")
        deps: List[Tuple[int, str]] = []
        seen: set = set()
        for v in ins:
            if v in self.position and v not in self.consts and v not in seen:
                seen.add(v)
                deps.append((self.position[v], self.texts[v]))
        self.rows.append(NodeRow(
            index=here, opcode=opcode, name=name, target=("| " * depth) + target,
            args=", ".join(self.ref(v) for v in ins), kwargs="",
            shape=shape, dtype=dtype, device=device, location=src.short if src else "",
            module=module, op_key=op_key or f"{opcode}:{target}",
            canon=f"{opcode}|{target}|{', '.join(self.cref(v, here) for v in ins)}|",
            source=src, inputs=deps))
        for o, c in zip(outs, cols):
            self.position[o] = here
            self.texts[o] = value_text(c[0], c[1])

    def _attribute(self, path: str) -> Any:
        if self.root is None:
            return None
        try:
            obj = self.root
            for part in path.split("."):
                obj = getattr(obj, part)
            return obj
        except Exception:  # noqa: BLE001 - a table must print whatever the module holds
            return None

    def node(self, node: Any, depth: int) -> None:
        kind = node.kind()
        outs = list(node.outputs())
        ins = list(node.inputs())
        src = script_source(node.sourceRange())
        module = _hierarchy_path(node)
        name = ", ".join(o.debugName() for o in outs)
        if kind == "prim::GetAttr" and ins and ins[0] in self.paths:
            path = _join(self.paths[ins[0]], node.s("name"))
            if isinstance(outs[0].type(), torch._C.ClassType):
                self.paths[outs[0]] = path
            self.add("get_attr", name, path, [], outs, module, src,
                     attr_obj=self._attribute(path), depth=depth)
        elif kind == "prim::CallMethod" and ins and ins[0] in self.paths:
            path, method = self.paths[ins[0]], node.s("name")
            sub = _get_submodule(self.root, path) if self.root is not None else None
            type_name = _module_type_name(sub) if sub is not None else path
            if method == "forward":
                self.add("call_module", name, path, ins[1:], outs, module, src,
                         op_key=f"call_module:{type_name}", depth=depth)
                self.rows[-1].callee_type = type_name
            else:
                self.add("call_method", name, f"{path}.{method}", ins[1:], outs, module, src,
                         op_key=f"call_method:{type_name}.{method}", depth=depth)
        elif kind == "prim::CallFunction" and ins:
            fn = str(ins[0].type()).replace("__torch__.", "")
            self.add("call_function", name, fn, ins[1:], outs, module, src, depth=depth)
        else:
            self.add("call_function", name, kind, ins, outs, module, src, depth=depth)

    def walk(self, block_nodes: Any, depth: int) -> None:
        for node in block_nodes:
            if node.kind() == "prim::Constant":
                for o in node.outputs():
                    self.consts[o] = _script_constant(node)
                continue
            self.node(node, depth)
            for block in node.blocks():
                self.walk(block.nodes(), depth + 1)
                ret = block.returnNode()
                if list(ret.inputs()):
                    self.add("output", "", "block_return", list(ret.inputs()), [],
                             _hierarchy_path(node), None, depth=depth + 1)


def rows_of(x: Any, recurse: bool = False) -> List[NodeRow]:
    kind, obj = resolve(x)
    return fx_rows(obj, recurse) if kind == "fx" else script_rows(obj, recurse)
