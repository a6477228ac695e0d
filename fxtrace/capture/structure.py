"""Canonical graph text, capture structures and graph diffs: how two captures compare.

Two captures are *structurally equal* when every graph of the module tree (the root, every
``GraphModule`` submodule and every extra method) has the same node sequence: opcode, target,
arguments with node references written as relative positions (so renamed nodes still match)
and Python constants. Output shapes and dtypes are not part of the comparison (a
shape-generic model traced at batch 2 and at batch 5 gives equal graphs). Tensor constants
(``get_attr`` of a tensor that is neither a parameter nor a buffer) are compared by value with
``torch.testing.assert_close``, as torch.jit compares ``prim::Constant`` tensors.

Capture needs this (the Python-state test compares two of its own captures) and so do the
checks; it lives here, below both.
"""
from __future__ import annotations

import dataclasses
import textwrap
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.fx as fx

from .meta import GUARD, METHODS, SOURCE, SourceLoc

__all__ = ["qualname", "GraphDiff", "Structure", "canonical", "graph_diff", "graphs_of", "structure_of",
           "structure_of_trace", "same_structure", "target_name", "short_args",
           "constant_mismatch"]


# --------------------------------------------------------------------------- canonical form

def qualname(fn: Any) -> str:
    """A stable dotted name for a call target: ``torch.relu``, ``operator.add``."""
    if isinstance(fn, str):
        return fn
    try:
        from torch.fx.node import _get_qualified_name

        name = _get_qualified_name(fn)
    except Exception:  # noqa: BLE001 - any target must have a name
        module = getattr(fn, "__module__", None)
        found = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
        if found is None:
            return repr(fn)
        name = f"{module}.{found}" if module else str(found)
    if name.startswith("_operator."):
        name = "operator." + name[len("_operator."):]
    return name


def graphs_of(gm: fx.GraphModule, method: str = "forward") -> Dict[str, fx.GraphModule]:
    """Every graph of the tree, keyed ``path`` (``path:method`` for extra methods).

    For ``method != "forward"`` the root entry is that method's graph."""
    out: Dict[str, fx.GraphModule] = {}
    for path, m in gm.named_modules():
        if not isinstance(m, fx.GraphModule):
            continue
        if path == "" and method != "forward":
            extra = m.meta.get(METHODS, {}) or {}
            if method in extra:
                out[""] = extra[method]
            continue
        out[path] = m
        for name, g in (m.meta.get(METHODS, {}) or {}).items():
            if path != "" and isinstance(g, fx.GraphModule):
                out[f"{path}:{name}"] = g
    return out


def _is_state(owner: torch.nn.Module, target: str) -> bool:
    mod_path, _, attr = target.rpartition(".")
    try:
        mod = owner.get_submodule(mod_path) if mod_path else owner
    except AttributeError:
        return False
    return attr in mod._parameters or attr in mod._buffers


_NAMES: Dict[Any, str] = {}


def target_name(node: fx.Node) -> str:
    t = node.target
    if isinstance(t, str):
        return t
    try:
        return _NAMES[t]
    except (KeyError, TypeError):
        pass
    name = qualname(t)
    try:
        if len(_NAMES) < 10000:
            _NAMES[t] = name
    except TypeError:  # unhashable target
        pass
    return name


_PLAIN_TYPES = frozenset({int, float, bool, str, type(None)})


def _fmt(value: Any, pos: Dict[fx.Node, int], here: int) -> str:
    kind = type(value)
    if kind in _PLAIN_TYPES:  # most arguments: decided before the isinstance chain
        return repr(value)
    if kind is fx.Node:
        return f"%{pos[value] - here}" if value in pos else f"%{value.name}"
    if isinstance(value, fx.Node):
        return f"%{pos[value] - here}" if value in pos else f"%{value.name}"
    if isinstance(value, (tuple, list)):
        inner = ", ".join(_fmt(v, pos, here) for v in value)
        return f"({inner})" if isinstance(value, tuple) else f"[{inner}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_fmt(v, pos, here)}" for k, v in value.items()) + "}"
    if isinstance(value, torch.Tensor):
        return "Tensor"
    if isinstance(value, float):
        return repr(value)
    return repr(value)


def canonical(owner: fx.GraphModule) -> List[str]:
    """The canonical text of each node of ``owner.graph``, in order (see module docstring).

    One pass over the nodes: node references become relative positions looked up in a dict."""
    return _canonical(owner)


def _canonical(owner: fx.GraphModule) -> List[str]:
    return _canonical_nodes(owner.graph, lambda target: _is_state(owner, target))


def _canonical_nodes(graph: fx.Graph, is_state: Callable[[str], bool]) -> List[str]:
    pos: Dict[fx.Node, int] = {}
    out: List[str] = []
    for i, node in enumerate(graph.nodes):
        pos[node] = i
        target = target_name(node)
        if node.op == "get_attr" and not is_state(str(node.target)):
            target = "<constant>"
        if node.op == "placeholder":
            target = ""
        args = node.args
        if node.target is torch._assert or node.meta.get(GUARD):
            args = args[:1]  # a guard's message quotes example values; its condition counts
        out.append(f"{node.op}|{target}|{_fmt(args, pos, i)}|{_fmt(node.kwargs, pos, i)}")
    return out


def _constants(owner: fx.GraphModule) -> List[Tuple[fx.Node, Any]]:
    out = []
    for node in owner.graph.nodes:
        if node.op == "get_attr" and not _is_state(owner, str(node.target)):
            try:
                out.append((node, _getattr_path(owner, str(node.target))))
            except AttributeError:
                continue
    return out


@dataclasses.dataclass
class Structure:
    """What :func:`graph_diff` compares, for every graph of a capture: the canonical node
    texts and the tensor constants, detached from the graphs (which passes then rewrite)."""

    texts: Dict[str, List[str]]
    constants: Dict[str, List[Any]]


def structure_of(gm: fx.GraphModule, method: str = "forward") -> Structure:
    """The :class:`Structure` of ``gm``'s graphs for ``method`` as they are now."""
    graphs = graphs_of(gm, method)
    return Structure({p: _canonical(g) for p, g in graphs.items()},
                     {p: [v for _, v in _constants(g)] for p, g in graphs.items()})


def structure_of_trace(tracer: Any, root_trace: Any, method: str = "forward") -> Structure:
    """The :class:`Structure` of a finished concrete capture, read from the tracer before its
    graphs are assembled into GraphModules: the root's graph of ``method`` (key ``""``) and
    every graph recorded for another module (``path``, ``path:forwardN`` for its further
    variants). Two captures compared this way are equal exactly when every recorded graph
    is; the keys differ from :func:`structure_of`'s, so compare it only with its own kind."""
    texts: Dict[str, List[str]] = {}
    constants: Dict[str, List[Any]] = {}

    def add(key: str, graph: fx.Graph, module: Optional[torch.nn.Module],
            consts: Dict[str, Any]) -> None:
        def is_state(target: str) -> bool:
            return module is not None and _is_state(module, target)

        def value(target: str) -> Any:
            if target in consts:
                return consts[target]
            try:
                return _getattr_path(module, target) if module is not None else None
            except AttributeError:
                return None

        texts[key] = _canonical_nodes(graph, is_state)
        constants[key] = [value(str(n.target)) for n in graph.nodes
                          if n.op == "get_attr" and not is_state(str(n.target))]

    graph = root_trace.named.get(method)
    if graph is not None:
        add("", graph, root_trace.module, root_trace.constants)
    for trace in tracer.module_traces.values():
        if trace is root_trace:
            continue
        for i, g in enumerate(trace.graphs):
            add(trace.path if i == 0 else f"{trace.path}:forward{i}", g, trace.module,
                trace.constants)
    return Structure(texts, constants)


def same_structure(a: Structure, b: Structure) -> bool:
    """Whether :func:`graph_diff` would find no difference between the two captures."""
    if a.texts != b.texts:
        return False
    for path, values in a.constants.items():
        others = b.constants.get(path, [])
        if len(values) != len(others):
            return False
        if any(constant_mismatch(v1, v2) for v1, v2 in zip(values, others)):
            return False
    return True


def constant_mismatch(v1: Any, v2: Any) -> Optional[str]:
    """Why two tensor constants differ (torch.jit compares them with ``assert_close``), or
    None when they are equal or not both tensors."""
    if not (isinstance(v1, torch.Tensor) and isinstance(v2, torch.Tensor)):
        return None
    if v1 is v2 or (v1.shape == v2.shape and v1.dtype == v2.dtype and
                    v1.device == v2.device and v1.layout == torch.strided and
                    v2.layout == torch.strided and torch.equal(v1, v2)):
        return None
    try:
        torch.testing.assert_close(v1, v2, equal_nan=True)
    except (AssertionError, RuntimeError) as e:
        return f"Comparison exception: {e}"
    return None


def _getattr_path(owner: torch.nn.Module, path: str) -> Any:
    value: Any = owner
    for part in path.split("."):
        value = getattr(value, part)
    return value


# --------------------------------------------------------------------------- diff

@dataclasses.dataclass
class GraphDiff:
    """Where two captures differ: the graph (module path), the first differing node of each."""

    path: str
    a: Optional[fx.GraphModule]
    b: Optional[fx.GraphModule]
    node_a: Optional[fx.Node]
    node_b: Optional[fx.Node]
    kind: str  # "graph", "constant", "module"
    detail: str = ""

    def first_nodes_text(self, label_a: str = "trace", label_b: str = "check trace") -> str:
        lines = []
        for label, node in ((label_a, self.node_a), (label_b, self.node_b)):
            if node is None:
                lines.append(f"  {label}: (no node)")
                continue
            src = node.meta.get(SOURCE)
            where = f" at {src}" if isinstance(src, SourceLoc) else ""
            code = f"\n      {src.code.strip()}" if isinstance(src, SourceLoc) and src.code else ""
            lines.append(f"  {label}: %{node.name} = {node.op} {target_name(node)}"
                         f"{short_args(node)}{where}{code}")
        return "\n".join(lines)

    def message(self, label_a: str = "trace", label_b: str = "check trace") -> str:
        where = f"module {self.path!r}" if self.path else "the root module"
        head = {"graph": f"First diverging node, in {where}:",
                "constant": f"A tensor constant differs between the traces in {where}:",
                "module": f"The module graphs differ: {self.detail}"}[self.kind]
        text = head + "\n" + self.first_nodes_text(label_a, label_b)
        if self.kind == "constant" and self.detail:
            text += "\n" + textwrap.indent(self.detail, "  ")
        return text


def short_args(node: fx.Node) -> str:
    text = "(" + ", ".join(_fmt_plain(a) for a in node.args) + ")"
    return text if len(text) <= 120 else text[:117] + "...)"


def _fmt_plain(value: Any) -> str:
    if isinstance(value, fx.Node):
        return f"%{value.name}"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_fmt_plain(v) for v in value) + "]"
    return repr(value)


def _reachable(graphs: Dict[str, Any]) -> set:
    """Keys of ``graphs`` (see :func:`graphs_of`) that the root graph calls, transitively."""
    seen, todo = {""}, [""]
    while todo:
        key = todo.pop()
        g = graphs.get(key)
        if g is None:
            continue
        path = key.split(":")[0]
        for node in (g.graph if isinstance(g, fx.GraphModule) else g).nodes:
            if node.op not in ("call_module", "get_attr") or not isinstance(node.target, str):
                continue
            child = f"{path}.{node.target}" if path else node.target
            found = [child] + [f"{child}:{u.target}" for u in node.users
                               if u.op == "call_method" and isinstance(u.target, str)]
            for k in found:
                if k in graphs and k not in seen:
                    seen.add(k)
                    todo.append(k)
    return seen


def graph_diff(a: fx.GraphModule, b: fx.GraphModule, method: str = "forward",
               cache: Optional[Dict[Any, List[str]]] = None) -> Optional[GraphDiff]:
    """The first structural difference between captures ``a`` and ``b``, or None.

    Linear in the number of nodes. ``cache``: a dict the caller keeps while comparing the same
    ``a`` with several re-traces; the canonical text of ``a``'s graphs is computed once."""
    ga, gb = graphs_of(a, method), graphs_of(b, method)
    if a.meta.get(METHODS) or b.meta.get(METHODS):
        # several methods share the tree: compare the graphs this method reaches in either
        keep = _reachable(ga) | _reachable(gb)
        ga = {k: g for k, g in ga.items() if k in keep}
        gb = {k: g for k, g in gb.items() if k in keep}
    # Execution order is not known here; graphs are compared root first, then by path.
    for path in sorted(set(ga) | set(gb), key=lambda p: (p != "", p)):
        x, y = ga.get(path), gb.get(path)
        if x is None or y is None:
            return GraphDiff(path, x, y, None, None, "module",
                             f"graph {path!r} is only in the {'check trace' if x is None else 'trace'}")
        if cache is None:
            ca = canonical(x)
        else:
            cached = cache.get(path)
            if cached is None:
                cached = cache[path] = canonical(x)
            ca = cached
        cb = canonical(y)
        if ca != cb:
            na, nb = list(x.graph.nodes), list(y.graph.nodes)
            i = next((k for k, (p, q) in enumerate(zip(ca, cb)) if p != q), min(len(ca), len(cb)))
            return GraphDiff(path, x, y, na[i] if i < len(na) else None,
                             nb[i] if i < len(nb) else None, "graph")
        for (n1, v1), (n2, v2) in zip(_constants(x), _constants(y)):
            problem = constant_mismatch(v1, v2)
            if problem is not None:
                return GraphDiff(path, x, y, n1, n2, "constant", problem)
    return None
