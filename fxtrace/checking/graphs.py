"""Graph-level helpers of the checks: re-tracing, diff reports, random nodes.

The structural comparison itself (canonical node texts, :class:`Structure`,
:func:`graph_diff`) lives in :mod:`fxtrace.capture.structure`, below the capture that also
needs it. Re-tracing goes through the capture's own ``CaptureInfo.recapture`` (set by
``fxtrace.api``), so the checks never import the layer above them.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.fx as fx

from ..capture.meta import INFO, SOURCE, TENSOR_META, CaptureInfo, SourceLoc
from ..capture.structure import (
    GraphDiff,
    Structure,
    canonical,
    graph_diff,
    graphs_of,
    same_structure,
    structure_of,
    target_name,
)
from ..errors import FxTraceError
from ..state import StateSnapshot, preserved_state
from .put_back import writes_put_back

__all__ = ["GraphDiff", "Structure", "capture_of", "retrace", "retrace_diff", "graph_diff",
           "structure_of", "same_structure", "random_nodes", "describe_node", "diff_report",
           "RANDOM_OPS", "canonical"]

#: Names of torch functions/methods whose result depends on the RNG.
RANDOM_OPS = frozenset("""
dropout dropout_ feature_dropout feature_dropout_ alpha_dropout alpha_dropout_
feature_alpha_dropout feature_alpha_dropout_ native_dropout dropout1d dropout2d dropout3d
bernoulli bernoulli_ rand rand_like randn randn_like randint randint_like randperm multinomial
normal normal_ uniform_ exponential_ geometric_ cauchy_ log_normal_ random_ poisson rrelu rrelu_
gumbel_softmax
""".split())


def capture_of(traced: Any) -> Optional[fx.GraphModule]:
    """The ``fx.GraphModule`` fxtrace kept on a trace (``_fxtrace_capture``), or None."""
    gm = getattr(traced, "_fxtrace_capture", None)
    if gm is None:
        gm = getattr(traced, "__dict__", {}).get("_fxtrace_capture")
    return gm if isinstance(gm, fx.GraphModule) else None


def _info(gm: fx.GraphModule) -> CaptureInfo:
    info = gm.meta.get(INFO)
    if not isinstance(info, CaptureInfo) or info.recapture is None:
        raise FxTraceError("this capture cannot be re-traced: it was not made by "
                           "fxtrace.trace/trace_module/capture (no CaptureInfo.recapture)")
    return info


def retrace(gm: fx.GraphModule, root: Optional[torch.nn.Module],
            func: Callable[..., Any], method: str, args: Tuple[Any, ...],
            kwargs: Dict[str, Any], snapshot: Any = None, passes: bool = True,
            same_as: Optional[Dict[str, Structure]] = None) -> Optional[fx.GraphModule]:
    """Capture ``func`` again on ``args``/``kwargs`` with the settings ``gm`` was captured with.

    Only the capture (and its passes; none with ``passes=False``) runs, not the TorchScript
    lowering: the comparison is between fx graphs. The capture's effects on the module
    (BatchNorm statistics, RNG, training flags) are undone (``snapshot``: a
    :class:`fxtrace.state.StateSnapshot` of ``root`` to reuse) and its TracerWarnings are not
    repeated (the first trace already gave them). ``same_as``: the raw structures of the
    first capture; None comes back when a concrete re-capture has them.
    """
    info = _info(gm)
    roots = [root] if root is not None else []
    snap = snapshot if snapshot is not None else StateSnapshot(roots, parameters=True)
    with preserved_state(roots, always=True, parameters=True, snapshot=snap), \
            writes_put_back(roots, snap), warnings.catch_warnings():  # NOTE [Writes on later calls]
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        assert info.recapture is not None
        return info.recapture(root, method, func, args, kwargs, passes=passes,
                              same_as=same_as)


def retrace_diff(gm: fx.GraphModule, root: Optional[torch.nn.Module],
                 func: Callable[..., Any], method: str, args: Tuple[Any, ...],
                 kwargs: Dict[str, Any], snapshot: Any = None,
                 cache: Optional[Dict[Any, List[str]]] = None) -> Optional[GraphDiff]:
    """Re-capture ``func`` on the inputs and return how its graphs differ from ``gm``'s
    (None: structurally equal, see :func:`graph_diff`).

    When ``gm`` kept the structure of its raw capture (:class:`Structure`, recorded when a
    trace check follows), the re-capture is compared raw first and its passes run only when
    the raw graphs differ: equal raw graphs give equal graphs after the (deterministic)
    passes, so the verdict is the same as comparing after the passes, for less work.
    """
    info = _info(gm)
    raw = info.structure.get(method)
    if raw is None:
        again = retrace(gm, root, func, method, args, kwargs, snapshot)
        assert again is not None
        return graph_diff(gm, again, method, cache=cache)
    again = retrace(gm, root, func, method, args, kwargs, snapshot, passes=False,
                    same_as={method: raw})
    if again is None:  # a concrete re-capture, compared with the tracer's graphs
        return None
    if info.mode != "concrete" and same_structure(raw, structure_of(again, method)):
        return None
    assert info.finish is not None
    return graph_diff(gm, info.finish(again), method, cache=cache)


def diff_table(diff: GraphDiff) -> str:
    """``fxtrace.inspect.diff_table`` of the two diverging graphs (shape columns dropped)."""
    from ..inspect import diff_table as table

    if diff.a is None or diff.b is None:
        return "(graph present in only one capture: " + diff.path + ")"
    saved = []
    for g in (diff.a, diff.b):
        for n in g.graph.nodes:
            if TENSOR_META in n.meta:
                saved.append((n, n.meta.pop(TENSOR_META)))
    try:
        return table(diff.a, diff.b, context=3, max_width=48)
    except Exception as e:  # noqa: BLE001 - the table is diagnostics, never the error
        return f"(diff table unavailable: {type(e).__name__}: {e})"
    finally:
        for n, m in saved:
            n.meta[TENSOR_META] = m


def diff_report(diff: GraphDiff, label_a: str = "trace", label_b: str = "check trace") -> str:
    """The diff's message followed by the table of the two graphs around it."""
    return diff.message(label_a, label_b) + "\n" + diff_table(diff)


# --------------------------------------------------------------------------- randomness

def _is_random(node: fx.Node) -> bool:
    if node.op not in ("call_function", "call_method"):
        return False
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
    return name in RANDOM_OPS


def random_nodes(gm: fx.GraphModule) -> List[Tuple[str, fx.Node]]:
    """Every node of the tree whose value depends on the RNG, as ``(module path, node)``."""
    out = []
    for path, g in graphs_of(gm).items():
        for node in g.graph.nodes:
            if _is_random(node):
                out.append((path, node))
    return out


def describe_node(path: str, node: fx.Node) -> str:
    src = node.meta.get(SOURCE)
    where = f" at {src}" if isinstance(src, SourceLoc) else ""
    code = f" ({src.code.strip()})" if isinstance(src, SourceLoc) and src.code else ""
    mod = f" in module {path!r}" if path else ""
    return f"%{node.name} = {target_name(node)}{mod}{where}{code}"
