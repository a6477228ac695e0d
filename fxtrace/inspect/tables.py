"""Inspection tables: pure functions from a capture (or TorchScript) to a string.

Every table accepts ``fmt`` — any ``tabulate`` ``tablefmt`` (``"simple"``, ``"plain"``,
``"github"``, ``"grid"``, ``"html"``, ...) — and renders the columns listed in
:data:`COLUMNS`, in that order. The column sets are part of the documented API.
"""
from __future__ import annotations

import difflib
import sys
from collections import Counter
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, TextIO, Tuple, Union

import torch
import torch.fx

from fxtrace.capture.meta import CaptureInfo

from ._fit import DEFAULT_MAX_WIDTH, DEFAULT_WIDTH, cut
from ._format import fmt_bytes, fmt_number
from ._render import COLUMNS, render_table, short_types, with_legend
from ._rows import (
    NodeRow,
    _as_graph_module,
    _is_script,
    _module_type_name,
    _type_error,
    resolve,
    rows_of,
)
from .report import CheckReport
from .specialisations import specialisation_rows

__all__ = [
    "nodes_table",
    "modules_table",
    "specialisations_table",
    "ops_table",
    "diff_table",
    "check_table",
    "passes_table",
    "show",
    "TABLES",
    "COLUMNS",
    "DEFAULT_TABLES",
]

#: What :func:`show` prints when not told otherwise.
DEFAULT_TABLES = ("nodes", "modules", "specialisations")

#: Text of the single row of an empty specialisations table.
NONE_ROW = "(none)"


# --------------------------------------------------------------------------- nodes

def nodes_table(x: Any, *, fmt: str = "simple", recurse: bool = False,
                max_width: Optional[int] = DEFAULT_MAX_WIDTH,
                width: Optional[int] = DEFAULT_WIDTH) -> str:
    """One row per graph node.

    Columns (``COLUMNS["nodes"]``): ``#`` index, ``opcode`` (fx opcodes; TorchScript nodes are
    mapped onto them, with the node kind such as ``aten::add`` as target), ``name``,
    ``target`` (``torch.relu``, ``operator.add``, ``.view`` for methods, the module path for
    ``call_module``), ``args``, ``kwargs`` (nodes as ``%name``, tensors as
    ``Tensor(2x3, float32)``), output ``shape`` (``2x3``; ``()`` for 0-dim; a tuple for
    containers), ``dtype`` (or the Python type of a non-tensor value), ``device``,
    ``location`` (``file.py:line`` of the user line), ``module`` (qualified path, ``""`` = root).

    ``recurse=True`` also lists the nodes of every ``GraphModule`` submodule (their module
    column carries the path); for TorchScript it tables ``inlined_graph`` instead of ``graph``.
    Cells longer than ``max_width`` end in ``…`` (``None`` keeps them whole), and the text
    columns are cut so that the table is at most ``width`` characters wide (``None``: any).
    """
    rows = rows_of(x, recurse)
    body = [(r.index, r.opcode, r.name, r.target, r.args, r.kwargs, r.shape, r.dtype, r.device,
             r.location, r.module) for r in rows]
    return render_table("nodes", body, fmt, max_width, width, ["#"])


# --------------------------------------------------------------------------- modules

def _param_stats(mod: torch.nn.Module, recurse: bool) -> Tuple[int, int]:
    count = nbytes = 0
    for p in mod.parameters(recurse=recurse):
        count += p.numel()
        nbytes += p.numel() * p.element_size()
    return count, nbytes


def _fx_calls(root: torch.fx.GraphModule) -> Dict[str, int]:
    info = root.meta.get("fxtrace") if hasattr(root, "meta") else None
    if isinstance(info, CaptureInfo) and info.module_calls:
        return dict(info.module_calls)
    calls: Counter = Counter()
    for path, m in root.named_modules():
        if isinstance(m, torch.fx.GraphModule):
            for node in m.graph.nodes:
                if node.op == "call_module":
                    calls[f"{path}.{node.target}" if path else str(node.target)] += 1
    return dict(calls)


def _script_calls(root: Any) -> Dict[str, int]:
    calls: Counter = Counter()
    for path, m in root.named_modules():
        try:
            graph = m.forward.graph
        except Exception:  # noqa: BLE001 - containers without forward
            continue
        attr: Dict[Any, str] = {}
        inputs = list(graph.inputs())
        if inputs:
            attr[inputs[0]] = path
        for node in _all_script_nodes(graph.nodes()):
            kind = node.kind()
            ins = list(node.inputs())
            if kind == "prim::GetAttr" and ins and ins[0] in attr:
                base = attr[ins[0]]
                attr[node.output()] = f"{base}.{node.s('name')}" if base else node.s("name")
            elif kind == "prim::CallMethod" and ins and ins[0] in attr and node.s("name") == "forward":
                calls[attr[ins[0]]] += 1
    return dict(calls)


def _all_script_nodes(nodes: Any) -> Iterable[Any]:
    for n in nodes:
        yield n
        for b in n.blocks():
            yield from _all_script_nodes(b.nodes())


def _script_node_count(m: Any) -> Optional[int]:
    try:
        return sum(1 for _ in _all_script_nodes(m.forward.graph.nodes()))
    except Exception:  # noqa: BLE001
        return None


def modules_table(x: Any, *, fmt: str = "simple", max_width: Optional[int] = DEFAULT_MAX_WIDTH,
                  width: Optional[int] = DEFAULT_WIDTH) -> str:
    """The module tree, one row per module (``named_modules()`` order).

    Columns (``COLUMNS["modules"]``): ``module`` (qualified path; ``""`` is the root, shown as
    ``(root)``), ``type`` (the user's class name: ``gm.meta["fxtrace_original_type"]`` when
    the capture set it, a ScriptModule's ``original_name``, else the class name),
    ``own params``/``own bytes`` (the module's own parameters, ``recurse=False``),
    ``total params``/``total bytes`` (itself and all submodules, shared parameters counted
    once), ``nodes`` (nodes of the module's own graph; ``-`` for modules without one),
    ``calls`` (times the module was called: ``CaptureInfo.module_calls`` when present, else
    the ``call_module``/``CallMethod forward`` sites found in the graphs; ``-`` for the root).
    Buffers are not counted as parameters. Types print as their class name, and a
    ``classes:`` line below the table says once which module each class comes from.
    """
    kind, obj = resolve(x)
    if kind == "script":
        if not isinstance(obj, torch.jit.ScriptModule):
            raise TypeError("modules_table needs a module; a torch.jit.ScriptFunction has no "
                            "module tree (accepted: " + ", ".join(
                                ("fxtrace result", "torch.fx.GraphModule",
                                 "torch.jit.ScriptModule")) + ")")
        calls = _script_calls(obj)
    else:
        calls = _fx_calls(obj)
    types = {path: _module_type_name(m) for path, m in obj.named_modules()}
    shorts = short_types(types.values(), fmt)
    body = []
    for path, m in obj.named_modules():
        own, own_b = _param_stats(m, False)
        tot, tot_b = _param_stats(m, True)
        if kind == "fx":
            n = len(m.graph.nodes) if isinstance(m, torch.fx.GraphModule) else None
        else:
            n = _script_node_count(m)
        c: Union[int, str, None] = calls.get(path)
        if c is None:
            c = "-" if path == "" else 0
        body.append((path or "(root)", shorts[types[path]], own, fmt_bytes(own_b), tot,
                     fmt_bytes(tot_b), "-" if n is None else n, c))
    table = render_table("modules", body, fmt, max_width, width,
                   ["own params", "own bytes", "total params", "total bytes", "nodes", "calls"])
    return with_legend(table, types.values(), fmt, width)


# --------------------------------------------------------------------------- specialisations

def specialisations_table(x: Any, *, fmt: str = "simple", group: bool = True,
                          max_width: Optional[int] = DEFAULT_MAX_WIDTH,
                          width: Optional[int] = DEFAULT_WIDTH) -> str:
    """Every value that was baked into the graph or guarded, in capture order.

    Columns (``COLUMNS["specialisations"]``): ``#``, ``kind`` (``bool``, ``int``, ``rank``,
    ``training``, ``item``, ...), ``value`` (the value seen at capture time), ``count`` (how
    many specialisations the row stands for), ``location`` (``file.py:line``), ``code`` (the
    user's line), ``guarded`` (``yes``/``no``: whether a runtime check was emitted),
    ``module`` (qualified path), ``detail``.

    ``group=True`` (the default) prints one row for specialisations that differ only in
    module and location (every BatchNorm of a ResNet frozen in eval mode): the first one's
    location and module, ``(+N)`` for the others, and their number in ``count``.
    Reads ``gm.meta["fxtrace"].specialisations``; also accepts a ``CaptureInfo`` or a list of
    ``Specialisation``. A graph without any (or without fxtrace metadata) gives a table with
    one row whose ``kind`` is ``(none)`` and whose other cells are empty.
    A ScriptModule without an fxtrace capture raises ``TypeError``; one saved by fxtrace and
    loaded with ``torch.jit.load`` gives the specialisations saved with it.
    """
    body = specialisation_rows(x, group)
    if not body:
        return render_table("specialisations", [("", NONE_ROW, "", "", "", "", "", "", "")], fmt,
                      max_width, width, ["#", "count"], drop_empty=False)
    return render_table("specialisations", body, fmt, max_width, width, ["#", "count"])


# --------------------------------------------------------------------------- ops

def ops_table(x: Any, *, fmt: str = "simple", recurse: bool = True,
              max_width: Optional[int] = DEFAULT_MAX_WIDTH,
              width: Optional[int] = DEFAULT_WIDTH) -> str:
    """A histogram of node targets, most frequent first (ties by name).

    Columns (``COLUMNS["ops"]``): ``op`` (``opcode:target``: ``call_function:torch.relu``,
    ``call_method:.view``, ``call_module:<class name>``; TorchScript nodes as
    ``call_function:aten::add``), ``count``, ``share`` (percent of all counted nodes).
    ``placeholder`` and ``output`` nodes are not counted. ``recurse`` (default True) counts
    the nodes of GraphModule submodules too (for TorchScript: the inlined graph); a call of a
    module whose own graph is counted is then not counted itself (the ``torch.conv2d``
    inside a ``Conv2d`` counts once). A ``classes:`` line names the module of each class.
    """
    rows = [r for r in rows_of(x, recurse) if r.opcode not in ("placeholder", "output")
            and not (recurse and r.callee_traced)]
    types = {r.callee_type for r in rows if r.callee_type}
    shorts = short_types(types, fmt)
    counts = Counter(f"call_module:{shorts[r.callee_type]}" if r.callee_type else r.op_key
                     for r in rows)
    total = sum(counts.values()) or 1
    body = [(k, n, f"{100.0 * n / total:.1f}%")
            for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    table = render_table("ops", body, fmt, max_width, width, ["count", "share"])
    return with_legend(table, types, fmt, width)


# --------------------------------------------------------------------------- diff

def _same_type(x: NodeRow, y: NodeRow) -> bool:
    """Shape/dtype agree, or one side does not know them (a graph without shape metadata)."""
    for p, q in ((x.shape, y.shape), (x.dtype, y.dtype)):
        if p and q and p != q:
            return False
    return True


def _diff_rows(a: List[NodeRow], b: List[NodeRow]) -> List[Tuple[str, Optional[NodeRow], Optional[NodeRow]]]:
    sm = difflib.SequenceMatcher(None, [r.canon for r in a], [r.canon for r in b],
                                 autojunk=False)
    out: List[Tuple[str, Optional[NodeRow], Optional[NodeRow]]] = []
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag == "equal":
            out += [("=" if _same_type(a[i1 + k], b[j1 + k]) else "~", a[i1 + k], b[j1 + k])
                    for k in range(i2 - i1)]
        elif tag == "delete":
            out += [("-", a[i], None) for i in range(i1, i2)]
        elif tag == "insert":
            out += [("+", None, b[j]) for j in range(j1, j2)]
        else:  # replace: pair up what can be paired, the rest is removed/added
            # Rows pair up as "changed" when the opcode agrees and so does the target or
            # the argument structure (a swapped op, or an op with new arguments).
            n = min(i2 - i1, j2 - j1)
            for k in range(n):
                x, y = a[i1 + k], b[j1 + k]
                if x.opcode == y.opcode and (x.target == y.target or
                                             x.canon.split("|")[2:] == y.canon.split("|")[2:]):
                    out.append(("~", x, y))
                else:
                    out += [("-", x, None), ("+", None, y)]
            out += [("-", a[i], None) for i in range(i1 + n, i2)]
            out += [("+", None, b[j]) for j in range(j1 + n, j2)]
    return out


def diff_table(a: Any, b: Any, *, fmt: str = "simple", recurse: bool = False,
               max_width: Optional[int] = DEFAULT_MAX_WIDTH, context: Optional[int] = None,
               width: Optional[int] = DEFAULT_WIDTH) -> str:
    """Two captures side by side, node sequences aligned, the first divergence marked.

    Alignment uses ``difflib.SequenceMatcher`` over a canonical text per node — opcode,
    target, arguments with node references written as relative positions (so renamed nodes
    still match); aligned rows whose known output shape or dtype differ are marked changed
    (a side without shape metadata matches any shape). Columns (``COLUMNS["diff"]``): an
    unnamed column holding ``>>`` on the first differing row, ``mark`` (``=`` same, ``~``
    changed: same opcode and either the same target or the same arguments, ``-`` only in a,
    ``+`` only in b), ``#a``, ``a`` (``name = target(args)``), ``location a``, then the same
    for b. A last line says ``first divergence: ...`` or
    ``no divergence: N nodes match``. ``context=k`` keeps only rows within ``k`` of a
    difference (elided runs print as ``...``).
    """
    ra, rb = rows_of(a, recurse), rows_of(b, recurse)
    aligned = _diff_rows(ra, rb)
    first = next((i for i, (m, _, _) in enumerate(aligned) if m != "="), None)
    w = max_width

    def side(r: Optional[NodeRow]) -> Tuple[Any, str, str]:
        if r is None:
            return "", "", ""
        return r.index, r.call_text(), r.location

    keep = set(range(len(aligned)))
    if context is not None:
        diffs = [i for i, (m, _, _) in enumerate(aligned) if m != "="]
        keep = {j for i in diffs for j in range(i - context, i + context + 1)}
    body: List[Tuple[Any, ...]] = []
    elided = False
    for i, (mark, ra_i, rb_i) in enumerate(aligned):
        if i not in keep:
            if not elided:
                body.append(("", "...", "", "", "", "", "", ""))
            elided = True
            continue
        elided = False
        body.append((">>" if i == first else "", mark, *side(ra_i), *side(rb_i)))
    table = render_table("diff", body, fmt, max_width, width, ["#a", "#b"])
    if first is None:
        summary = f"no divergence: {len(aligned)} nodes match"
    else:
        mark, x, y = aligned[first]
        what = {"~": "changed", "-": "only in a", "+": "only in b"}[mark]
        parts = []
        for label, r in (("a", x), ("b", y)):
            if r is not None:
                loc = f" ({r.location})" if r.location else ""
                parts.append(f"{label}: #{r.index} {cut(r.call_text(), w)}{loc}")
        summary = f"first divergence at row {first} ({what}): " + "; ".join(parts)
    return table + "\n" + summary


# --------------------------------------------------------------------------- check

def check_table(report: Any, *, fmt: str = "simple", max_width: Optional[int] = DEFAULT_MAX_WIDTH,
                width: Optional[int] = DEFAULT_WIDTH) -> str:
    """The report of a trace check or a property check (:class:`CheckReport`).

    Columns (``COLUMNS["check"]``): ``output`` (path of the output leaf), ``status``,
    ``max abs``, ``max rel`` (3 significant digits; ``-`` when not computed), ``expected``,
    ``actual`` (dtype/shape descriptions), ``first divergence`` (the first diverging node,
    ``-`` when none). ``report.title`` prints above the table, each of ``report.notes`` below
    it (``note: ...``). Also accepts a plain list of :class:`OutputCheck`.
    """
    if isinstance(report, (list, tuple)):
        report = CheckReport(outputs=list(report))
    if not hasattr(report, "outputs"):
        raise TypeError(f"check_table needs a fxtrace.inspect.CheckReport, got "
                        f"{type(report).__qualname__}")
    body = [(o.path, o.status, fmt_number(o.max_abs), fmt_number(o.max_rel), o.expected,
             o.actual, o.first_divergence or "-") for o in report.outputs]
    # every column stays: checkers and their readers rely on the report's shape
    table = render_table("check", body, fmt, max_width, width, ["max abs", "max rel"],
                         drop_empty=False)
    lines = [report.title] if getattr(report, "title", "") else []
    lines.append(table)
    lines += [f"note: {n}" for n in getattr(report, "notes", ()) or ()]
    return "\n".join(lines)


# --------------------------------------------------------------------------- passes

def _capture_info(x: Any) -> Optional[CaptureInfo]:
    gm = _as_graph_module(x)
    info = gm.meta.get("fxtrace") if gm is not None and hasattr(gm, "meta") else None
    return info if isinstance(info, CaptureInfo) else None


def _mode_lines(info: Optional[CaptureInfo]) -> str:
    """``capture mode: ...``, then ``mode choice: ...`` when ``mode="auto"`` recorded why."""
    line = f"capture mode: {info.mode if info is not None else 'unknown'}"
    reason = getattr(info, "mode_reason", "")
    return f"{line}\nmode choice: {reason}" if reason else line


def passes_table(x: Any, *, fmt: str = "simple", max_width: Optional[int] = DEFAULT_MAX_WIDTH,
                 width: Optional[int] = DEFAULT_WIDTH) -> str:
    """The graph passes the capture went through, in order, under a ``capture mode: ...`` line.

    Columns (``COLUMNS["passes"]``): ``#``, ``pass`` (the pass's name), ``nodes before`` /
    ``nodes after`` (nodes of every GraphModule of the tree), ``delta`` (after - before,
    signed), ``ms`` (wall time, 2 decimals), ``modified`` (``yes``/``no``). Reads
    ``gm.meta["fxtrace"].passes`` (:class:`fxtrace.passes.PassRecord`); the first line names
    the capture mode that produced the graph (``concrete`` or ``symbolic``; ``mode="auto"``
    shows the one it chose). Accepts a fxtrace result or a GraphModule; a graph without
    fxtrace metadata gives an empty table under ``capture mode: unknown``; a ScriptModule
    fxtrace never saw raises ``TypeError``.
    """
    gm = _as_graph_module(x)
    if gm is None:
        if _is_script(x):
            raise TypeError(f"passes_table needs an fxtrace capture; this {type(x).__qualname__} "
                            "carries none. Accepted: fxtrace result, torch.fx.GraphModule")
        raise _type_error(x)
    info = _capture_info(gm)
    body: List[Tuple[Any, ...]] = []
    for i, r in enumerate(info.passes if info is not None else []):
        body.append((i, str(r.name), r.nodes_before, r.nodes_after,
                     f"{r.nodes_after - r.nodes_before:+d}", f"{r.ms:.2f}",
                     "yes" if r.modified else "no"))
    table = render_table("passes", body, fmt, max_width, width,
                   ["#", "nodes before", "nodes after", "delta", "ms"])
    return f"{_mode_lines(info)}\n{table}"


# --------------------------------------------------------------------------- registry, show

#: Table name -> function. ``diff`` takes two captures, ``check`` a CheckReport; the others
#: take one capture.
TABLES: Dict[str, Callable[..., str]] = {
    "nodes": nodes_table,
    "modules": modules_table,
    "specialisations": specialisations_table,
    "ops": ops_table,
    "diff": diff_table,
    "check": check_table,
    "passes": passes_table,
}


def show(x: Any, *, tables: Sequence[str] = DEFAULT_TABLES, fmt: str = "simple",
         file: Optional[TextIO] = None, max_width: Optional[int] = DEFAULT_MAX_WIDTH,
         width: Optional[int] = DEFAULT_WIDTH, recurse: bool = False) -> None:
    """Print the named tables of ``x``, each under a ``== name ==`` heading.

    A table that does not apply to ``x`` (specialisations of a ScriptModule fxtrace never
    saw, modules of a ScriptFunction) prints a one-line ``(not available: ...)`` instead.
    ``x`` may also be a :class:`CheckReport`, which prints the check table. For an fxtrace
    capture the first line is ``capture mode: concrete`` (or ``symbolic``): the mode that
    produced the graph (``mode="auto"`` resolves to one of them). ``width`` is the line
    width every table fits (``None``: any); ``recurse=True`` lists the nodes of every
    submodule graph in the nodes table.
    """
    out = file if file is not None else sys.stdout
    info = None
    if isinstance(x, CheckReport):
        tables = ("check",)
    else:
        info = _capture_info(x)
        if info is not None:
            print(_mode_lines(info), file=out)
    for name in tables:
        if name not in TABLES:
            raise ValueError(f"unknown table {name!r}; known: {', '.join(TABLES)}")
        if name == "diff":
            raise ValueError("show() prints tables of one capture; call diff_table(a, b)")
        print(f"== {name} ==", file=out)
        try:
            extra: Dict[str, Any] = {"recurse": True} if recurse and name == "nodes" else {}
            text = TABLES[name](x, fmt=fmt, max_width=max_width, width=width, **extra)
        except TypeError as e:
            if name == "nodes":
                raise
            text = f"(not available: {e})"
        if name == "passes" and info is not None:  # its capture mode lines are printed above
            text = text[len(_mode_lines(info)) + 1:]
        print(text, file=out)
        print(file=out)
