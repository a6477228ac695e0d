"""A captured ``fx.GraphModule`` as a ``torch.export.ExportedProgram``.

The graph handed to ``torch.export.export`` is fxtrace's own: a plain replay of the ops the
concrete capture recorded, with its guards rewritten by
:func:`fxtrace.exporting.guards.exportable_guards`. Export never runs the user's Python code,
so what it cannot follow there (Python branches on data, ``.item()``, calls into other
libraries) was already decided by the capture and is guarded.

Where export refuses the graph anyway (an op without a fake-tensor rule, a size relation it
cannot prove), :func:`export_graph` raises :class:`ExportRefused` naming the user line of the
node export was running, read from the node's ``SOURCE`` metadata.
"""
from __future__ import annotations

import itertools
import re
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.fx as fx
from torch.utils import _pytree as pytree

from .. import tree
from ..capture.meta import SOURCE, SourceLoc
from ..errors import FxTraceError
from .guards import graph_modules

__all__ = ["ExportRefused", "export_graph", "dynamic_dims", "dim_symbols", "shapes_spec", "user_line_of"]

#: ``(tensor input number, dim)``, numbered as ``fxtrace.probe_dynamic`` numbers them.
InputDim = Tuple[int, int]


class ExportRefused(FxTraceError, RuntimeError):
    """``torch.export`` refused the graph fxtrace captured.

    ``source`` is the user line (a ``SourceLoc``) of the node export was running, or None
    when export failed before or after running the graph. The original error is the
    ``__cause__``. A ``RuntimeError``, as torch.jit's tracer raises for what it cannot trace.
    """

    def __init__(self, message: str, source: Optional[SourceLoc] = None) -> None:
        super().__init__(message)
        self.source = source


_EXECUTING = re.compile(r"While executing %(\w+)")
_ORIGINAL = re.compile(r'Original traceback:\s*\n\s*File "([^"]+)", line (\d+)')


def user_line_of(gm: fx.GraphModule, message: str) -> Optional[SourceLoc]:
    """The user line of the node named in export's ``While executing %node`` (a call rather
    than the module call around it, when the message names several), else of the message's
    ``Original traceback``."""
    names = _EXECUTING.findall(message)
    found: List[fx.Node] = [node for module in graph_modules(gm) for node in module.graph.nodes
                            if node.name in names and node.meta.get(SOURCE) is not None]
    found.sort(key=lambda n: (n.op == "call_module", names.index(n.name)))
    if found:
        return found[0].meta[SOURCE]
    original = _ORIGINAL.search(message)
    if original is not None:
        return SourceLoc(original.group(1), int(original.group(2)))
    return None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines() or [type(e).__name__])[0][:300]


def export_graph(gm: fx.GraphModule, args: Tuple[Any, ...], kwargs: Dict[str, Any],
                 dynamic_shapes: Any, strict: bool, name: str) -> torch.export.ExportedProgram:
    """``torch.export.export(gm, args, kwargs, dynamic_shapes=..., strict=strict)``; a refusal
    becomes :class:`ExportRefused` naming the user line behind the failing node."""
    try:
        return torch.export.export(gm, tuple(args), dict(kwargs), dynamic_shapes=dynamic_shapes,
                                   strict=strict)
    except Exception as e:  # noqa: BLE001 - every refusal of export is reported the same way
        source = user_line_of(gm, str(e))
        where = "" if source is None else (
            f" at {source}" + (f" ({source.code})" if source.code else ""))
        raise ExportRefused(
            f"torch.export refused the graph fxtrace captured from {name}{where}: "
            f"{type(e).__name__}: {_first_line(e)}\nFix: change that line so that it uses "
            "ops torch.export supports, or export at the example's sizes with dynamic=False; "
            "fxtrace.trace still gives a TorchScript module of the same capture.",
            source) from e


def shapes_spec(gm: fx.GraphModule, args: Tuple[Any, ...], kwargs: Dict[str, Any],
                dims: Dict[InputDim, Any]) -> Dict[str, Any]:
    """``torch.export``'s ``dynamic_shapes`` for ``gm(*args, **kwargs)``: keyed by the
    graph's parameter names, with the input's own container structure, ``{dim: Dim}`` for
    each tensor (``dims`` by tensor input number, depth first, positional before keyword)."""
    number = itertools.count()

    def leaf(value: Any) -> Any:
        if not isinstance(value, torch.Tensor):
            return None
        i = next(number)
        return {d: spec for (j, d), spec in dims.items() if j == i} or None

    names = [n.target for n in gm.graph.find_nodes(op="placeholder")]
    spec = {str(n): tree.map_leaves(leaf, a) for n, a in zip(names, args)}
    spec.update({k: tree.map_leaves(leaf, v) for k, v in kwargs.items()})
    return spec


def dynamic_dims(ep: torch.export.ExportedProgram) -> List[str]:
    """The dims the exported program keeps symbolic, as ``path.shape[d]`` (``path`` as
    ``probe_dynamic`` writes it: ``args[0]``, ``kwargs['mask']``)."""
    return [path for path, _ in dim_symbols(ep)]


def dim_symbols(ep: torch.export.ExportedProgram) -> List[Tuple[str, str]]:
    """``(path.shape[d], symbol)`` for every symbolic dim of the program's inputs: dims that
    share a symbol must be equal at run time."""
    user = set(ep.graph_signature.user_inputs)
    placeholders = [n for n in ep.graph.find_nodes(op="placeholder") if n.name in user]
    flat, _ = pytree.tree_flatten_with_path(ep.example_inputs or ((), {}))
    out = []
    for (path, _), node in zip(flat, placeholders):
        val = node.meta.get("val")
        where = ("args" if getattr(path[0], "idx", 0) == 0 else "kwargs") + pytree.keystr(path[1:])
        for d, size in enumerate(getattr(val, "shape", ())):
            if isinstance(size, torch.SymInt) and size.node.maybe_as_int() is None:
                out.append((f"{where}.shape[{d}]", str(size)))
    return out
