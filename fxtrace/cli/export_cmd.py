"""``fxtrace trace ... --export OUT.pt2`` and ``fxtrace inspect OUT.pt2``.

The exported program is written with ``torch.export.save`` and read back with
``torch.export.load``: the tables below read only the program (no fxtrace capture), and the
user's lines come from each node's ``stack_trace``, which export keeps from fxtrace's
``SOURCE`` metadata and ``torch.export.save`` writes into the file.
"""
from __future__ import annotations

import argparse
import os
import re
import warnings
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence, TextIO

from .common import EXIT_FAIL, EXIT_OK, TraceFailed, check_format, tables_arg
from .common import fail as _fail
from .common import first_line as _first_line
from .target import Target, describe_user_exception, trace_kwargs

__all__ = ["EXPORT_TABLES", "DEFAULT_EXPORT_TABLES", "check_export_path", "export_target",
           "inspect_exported", "is_exported_file"]

#: Tables ``fxtrace inspect FILE.pt2`` prints.
EXPORT_TABLES = ("inputs", "ops", "guards", "nodes")
DEFAULT_EXPORT_TABLES = "inputs,ops,guards"
#: The assertions of an exported program: fxtrace's guards on values read from tensors
#: (``_assert_async.msg``) and export's own deferred checks (``_assert_scalar``).
_ASSERTS = ("aten._assert_async.msg", "aten._assert_scalar.default")
_FILE_LINE = re.compile(r'File "([^"]+)", line (\d+)')


def is_exported_file(path: str) -> bool:
    """A ``torch.export.save`` archive, by its suffix."""
    return path.endswith(".pt2")


def check_export_path(path: Optional[str]) -> None:
    """Refuse ``--export`` into a directory that does not exist, before tracing."""
    if path:
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            _fail(f"cannot export to {path}: directory {parent} does not exist")


def export_target(target: Target, path: str, guards: bool, out: TextIO) -> None:
    """``fxtrace.export`` of the target on its example inputs, saved to ``path``."""
    import torch

    import fxtrace
    from fxtrace.exporting.program import dynamic_dims

    try:
        with warnings.catch_warnings():  # the trace just warned at the same lines
            warnings.simplefilter("ignore", fxtrace.TracerWarning)
            ep = fxtrace.export(target.func, guards=guards,
                                **trace_kwargs(target, target.args, target.kwargs))
    except fxtrace.FxTraceError as e:
        raise TraceFailed(f"exporting {target.ref} failed: {describe_user_exception(e)}",
                          EXIT_FAIL) from e
    torch.export.save(ep, path)
    dims = ", ".join(dynamic_dims(ep)) or "none (every dim static)"
    print(f"exported {path} ({os.path.getsize(path)} bytes; dynamic dims: {dims}); load it "
          "with torch.export.load, no fxtrace needed", file=out)


def _where(node: Any) -> str:
    """``file:line`` of the last frame of the node's ``stack_trace`` (``-`` without one)."""
    found = _FILE_LINE.findall(node.meta.get("stack_trace") or "")
    return f"{os.path.basename(found[-1][0])}:{found[-1][1]}" if found else "-"


def _value(node: Any) -> str:
    val = node.meta.get("val")
    shape = getattr(val, "shape", None)
    if shape is None:
        return "-" if val is None else type(val).__name__
    return f"{str(val.dtype).replace('torch.', '')}[{', '.join(str(s) for s in shape)}]"


def _tables(ep: Any, max_width: Optional[int]) -> Dict[str, tuple]:
    """``{name: (headers, rows)}`` of every table of ``ep``."""
    def cut(text: str) -> str:
        return text if not max_width or len(text) <= max_width else text[:max_width - 1] + "…"

    kinds = {s.arg.name: (s.kind.name.lower(), s.target or "")
             for s in ep.graph_signature.input_specs if hasattr(s.arg, "name")}
    calls = [n for n in ep.graph.nodes if n.op == "call_function"]
    inputs = [(n.name, *kinds.get(n.name, ("?", "")), _value(n))
              for n in ep.graph.nodes if n.op == "placeholder"]
    counts = Counter(str(n.target) for n in calls)
    places: Dict[str, List[str]] = {}
    for n in calls:
        where = _where(n)
        if where != "-" and where not in places.setdefault(str(n.target), []):
            places[str(n.target)].append(where)
    ops = [(t, c, cut(" ".join(places.get(t, [])) or "-")) for t, c in counts.most_common()]
    guards = [(str(n.target).split(".")[1], _where(n), cut(str(n.args[1]) if len(n.args) > 1
                                                           else "-"))
              for n in calls if str(n.target) in _ASSERTS]
    nodes = [(i, n.name, str(n.target), _value(n), _where(n)) for i, n in
             enumerate(ep.graph.nodes) if n.op == "call_function"]
    return {
        "inputs": (["name", "kind", "target", "value"], inputs),
        "ops": (["op", "count", "user lines"], ops),
        "guards": (["assertion", "location", "message"], guards),
        "nodes": (["#", "name", "op", "value", "location"], nodes),
    }


def inspect_exported(args: argparse.Namespace) -> int:
    """``fxtrace inspect FILE.pt2``: the program's inputs, ops, assertions (and nodes)."""
    import torch
    from tabulate import tabulate

    wanted = args.table if args.table != "nodes,modules,ops" else DEFAULT_EXPORT_TABLES
    names: Sequence[str] = tables_arg(wanted, EXPORT_TABLES)
    fmt = check_format(args.format)
    if not os.path.isfile(args.file):
        _fail(f"no such file: {args.file}")
    try:
        ep = torch.export.load(args.file)
    except Exception as e:  # noqa: BLE001 - not an exported program
        _fail(f"cannot load {args.file} with torch.export.load (is it a file written by "
              f"torch.export.save?): {_first_line(e)}")
    symbols = ", ".join(f"{k}: {v}" for k, v in ep.range_constraints.items()) or "none"
    print(f"{args.file}: torch.export.ExportedProgram ({len(ep.graph.nodes)} nodes; "
          f"symbolic sizes: {symbols})")
    tables = _tables(ep, args.max_width or None)
    for name in names:
        headers, rows = tables[name]
        print()
        print(f"{name}:")
        print(tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)
              if rows else "(none)")
    return EXIT_OK
