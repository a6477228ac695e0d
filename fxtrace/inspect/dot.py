"""A picture of the graph: Graphviz DOT text from the same rows the tables use.

:func:`to_dot` works on everything the tables accept (an fxtrace result, a
``torch.fx.GraphModule``, a ``torch.jit.ScriptModule``/``ScriptFunction``, also one loaded
from a file). :func:`render_dot` runs Graphviz's ``dot`` program, when it is installed.
"""
from __future__ import annotations

import shutil
import subprocess
from typing import Any, Dict, List, Optional

import torch

from ._rows import NodeRow, _join, _module_type_name, resolve, rows_of, value_text

__all__ = ["to_dot", "render_dot", "GraphvizNotFound", "dot_program", "RENDER_FORMATS"]

#: Output formats :func:`render_dot` (and the command line) offer.
RENDER_FORMATS = ("svg", "png")

#: Node shape per opcode (anything else is a box).
_SHAPES = {
    "placeholder": 'shape=ellipse, style=filled, fillcolor="#dbe9f6"',
    "output": 'shape=ellipse, peripheries=2',
    "get_attr": 'shape=note',
    "call_module": 'shape=box3d',
    "call_function": 'shape=box',
    "call_method": 'shape=box, style=rounded',
}


class GraphvizNotFound(RuntimeError):
    """Graphviz's ``dot`` program is not on ``PATH``."""


def quote(text: str) -> str:
    """``text`` as a DOT double-quoted string; line breaks become ``\\n`` (centred lines).

    Backslashes are doubled first, so a ``\\N`` or ``\\G`` in a name prints literally
    instead of being read as a Graphviz escape; double quotes are escaped.
    """
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "")
    return '"' + text.replace("\n", "\\n") + '"'


def _node_label(r: NodeRow) -> str:
    target = r.target
    while target.startswith("| "):  # TorchScript block nesting marks (a table thing)
        target = target[2:]
    first = target  # an input's target is its parameter name, an output's is "output"
    value = value_text(r.shape, r.dtype)
    return first + (f"\n{value}" if value and r.opcode != "output" else "")


def _title(x: Any, kind: str, obj: Any) -> str:
    if kind == "script" and isinstance(obj, torch.jit.ScriptFunction):
        # torch's stub declares ScriptFunction.name a method; at runtime it is a property.
        return obj.name  # type: ignore[return-value]
    return _module_type_name(obj)


def to_dot(x: Any, *, recurse: bool = True, name: Optional[str] = None) -> str:
    """Graphviz DOT text of the captured graph of ``x``.

    One DOT node per graph node (the rows of :func:`nodes_table`; TorchScript constants are
    inlined into their users and get none), ids ``n0``, ``n1``, ... in row order, labelled
    with the node's target (as in the nodes table; an input's is its name) over the output
    ``shape dtype``, with ``%name at file.py:line`` as tooltip. One solid edge per data
    dependency (producer -> consumer,
    one per distinct value used), labelled with the value's shape and dtype when known.

    ``recurse=True`` (default) also draws the graph of every submodule: each module path
    with nodes becomes ``subgraph cluster_<n>`` labelled with the path (and the module's
    type), nested as the module tree is; for an fx capture every ``call_module`` node gets a
    dashed ``calls`` edge into the cluster of the module it calls. For TorchScript,
    ``recurse=True`` draws ``inlined_graph`` (clusters from each node's module hierarchy);
    ``recurse=False`` draws the ``forward`` graph only. ``name`` is the graph's title
    (default: the module's type or the function's name).
    """
    kind, obj = resolve(x)
    rows = rows_of(x, recurse)
    title = name if name is not None else _title(x, kind, obj)

    # clusters: every module path with nodes, and its ancestors, in order of appearance
    paths: List[str] = []
    for r in rows:
        if not r.module:
            continue
        parts = r.module.split(".")
        for k in range(1, len(parts) + 1):
            p = ".".join(parts[:k])
            if p not in paths:
                paths.append(p)
    cluster_id = {p: i for i, p in enumerate(paths)}
    children: Dict[str, List[str]] = {"": []}
    for p in paths:
        children.setdefault(p, [])
        children[p.rpartition(".")[0]].append(p)
    members: Dict[str, List[NodeRow]] = {}
    for r in rows:
        members.setdefault(r.module, []).append(r)
    submodules = dict(obj.named_modules()) if isinstance(obj, torch.nn.Module) else {}

    lines = [f"digraph {quote(title)} {{",
             f"  graph [label={quote(title)}, labelloc=t, fontname=\"Helvetica\", "
             "compound=true, rankdir=TB];",
             '  node [fontname="Helvetica", fontsize=10, shape=box];',
             '  edge [fontname="Helvetica", fontsize=9];']

    def node_line(r: NodeRow, indent: str) -> str:
        attrs = [f"label={quote(_node_label(r))}", _SHAPES.get(r.opcode, "shape=box")]
        tip = f"%{r.name}" + (f" at {r.location}" if r.location else "")
        attrs.append(f"tooltip={quote(tip)}")
        return f"{indent}n{r.index} [{', '.join(attrs)}];"

    def emit(path: str, depth: int) -> None:
        indent = "  " * (depth + 1)
        for r in members.get(path, []):
            lines.append(node_line(r, indent))
        for child in children.get(path, []):
            label = child
            sub = submodules.get(child)
            if sub is not None:
                label += f"\n{_module_type_name(sub)}"
            lines.append(f"{indent}subgraph cluster_{cluster_id[child]} {{")
            lines.append(f"{indent}  label={quote(label)}; style=rounded; color=\"#888888\";")
            emit(child, depth + 1)
            lines.append(f"{indent}}}")

    emit("", 0)
    for r in rows:
        for src, text in r.inputs:
            attr = f" [label={quote(text)}]" if text else ""
            lines.append(f"  n{src} -> n{r.index}{attr};")
    if kind == "fx" and recurse:
        for r in rows:
            if r.opcode != "call_module":
                continue
            callee = _join(r.module, r.target)
            first = members.get(callee)
            if first:
                lines.append(f"  n{r.index} -> n{first[0].index} [style=dashed, "
                             f"lhead=cluster_{cluster_id[callee]}, label=\"calls\"];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def dot_program() -> Optional[str]:
    """The path of Graphviz's ``dot``, or None when it is not installed."""
    return shutil.which("dot")


def render_dot(dot_text: str, path: str, fmt: str = "svg", *, timeout: float = 120) -> None:
    """Render DOT text to ``path`` with ``dot -T<fmt>`` (``fmt``: ``svg`` or ``png``).

    Raises :class:`GraphvizNotFound` when ``dot`` is not installed, ``RuntimeError`` with
    dot's message when it fails.
    """
    if fmt not in RENDER_FORMATS:
        raise ValueError(f"unknown render format {fmt!r}; choose from {', '.join(RENDER_FORMATS)}")
    exe = dot_program()
    if exe is None:
        raise GraphvizNotFound("graphviz is not installed: rendering needs its `dot` program "
                               "on PATH (apt-get install graphviz)")
    proc = subprocess.run([exe, f"-T{fmt}", "-o", path], input=dot_text.encode("utf-8"),
                          capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RuntimeError(f"dot -T{fmt} failed (exit {proc.returncode}): "
                           f"{msg[0] if msg else 'no message'}")
