"""Opaque functions in a symbolic capture: fail early, naming them, when they cannot lower.

``torch.fx.wrap``-ed and autowrapped user functions stay ``call_function`` nodes of a symbolic
capture; lowering can only spell them by TorchScript compiling the function. That is a
lowering question, asked here right after the capture so that ``mode="auto"`` can fall back
to concrete capture and ``mode="symbolic"`` fails with the function's name.
"""
from __future__ import annotations

import torch
import torch.fx as fx

from ..capture.meta import METHODS, MODULE, SOURCE
from ..capture.symbolic import CONCRETE_HINT
from ..errors import SymbolicTraceError
from ..passes.purity import function_namespace
from .quiet import quiet_jit

__all__ = ["check_opaque_functions"]


def check_opaque_functions(gm: fx.GraphModule) -> None:
    """Raise :class:`SymbolicTraceError` for the first opaque function of any graph of ``gm``
    that TorchScript cannot compile."""
    for module in gm.modules():
        if isinstance(module, fx.GraphModule):
            _check_graph(module.graph)
            for extra in (module.meta.get(METHODS) or {}).values():
                _check_graph(extra.graph)


def _check_graph(graph: fx.Graph) -> None:
    for node in graph.nodes:
        if node.op != "call_function" or function_namespace(node.target) is not None:
            continue
        target = node.target
        if isinstance(target, type) or target in (getattr, len, abs, min, max, int, float, bool):
            continue
        try:
            with quiet_jit():
                torch.jit.script(target)
        except Exception as e:  # noqa: BLE001
            src = node.meta.get(SOURCE)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise SymbolicTraceError(
                f"symbolic capture: {getattr(target, '__qualname__', target)!s} is called as an "
                f"opaque function (torch.fx.wrap / autowrap){f' at {src}' if src else ''}, and "
                f"lowering needs TorchScript to compile it, which failed: {first}. "
                f"{CONCRETE_HINT}", src, node.meta.get(MODULE, "")) from e
