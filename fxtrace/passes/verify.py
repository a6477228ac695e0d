"""The graph verifier: fx's ``Graph.lint`` plus fxtrace's own invariants."""
from __future__ import annotations

import keyword
from typing import Any, Iterator, List, Tuple

import torch
import torch.fx as fx

from ..capture.meta import SOURCE, UNTRACED, SourceLoc
from ..errors import VerifyError
from .purity import function_namespace
from .result import PassResult

__all__ = ["verify", "verify_pass"]

_LEGAL_OPS = ("placeholder", "get_attr", "call_function", "call_method", "call_module",
              "output")


#: ``GraphModule.meta`` key capture sets on a plain container it built for a module that was
#: never called itself (a ``ModuleList`` holding traced layers): it has no graph to check, and
#: lowering compiles nothing for it.
UNTRACED_META = UNTRACED


def _graph_modules(gm: fx.GraphModule) -> Iterator[Tuple[str, fx.GraphModule]]:
    yield "", gm
    for path, module in gm.named_modules():
        if path and isinstance(module, fx.GraphModule) and not (
                isinstance(getattr(module, "meta", None), dict)
                and module.meta.get(UNTRACED_META)):
            yield path, module


def _describe(target: Any) -> str:
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None)
    module = getattr(target, "__module__", None)
    if name is None:
        return repr(target)
    return f"{module}.{name}" if module else name


def _resolve(gm: torch.nn.Module, target: str) -> Tuple[bool, Any, str]:
    value: Any = gm
    seen: List[str] = []
    for atom in target.split("."):
        if not hasattr(value, atom):
            where = ".".join(seen) or "the GraphModule"
            return False, None, f"{where} has no attribute {atom!r}"
        value = getattr(value, atom)
        seen.append(atom)
    return True, value, ""


def _has_tensor_literal(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, (tuple, list)):
        return any(_has_tensor_literal(v) for v in value)
    if isinstance(value, dict):
        return any(_has_tensor_literal(v) for v in value.values())
    if isinstance(value, slice):
        return any(_has_tensor_literal(v) for v in (value.start, value.stop, value.step))
    return False


def _verify_graph(gm: fx.GraphModule, path: str, require_source: bool) -> None:
    graph = gm.graph
    where = f" in '{path}'" if path else ""

    def fail(node: fx.Node, message: str) -> None:
        raise VerifyError(f"Node {node.name}{where}: {message}")

    seen = set()
    names = set()
    outputs = 0
    past_placeholders = False
    for node in graph.nodes:
        if node.op not in _LEGAL_OPS:
            fail(node, f"unknown opcode {node.op!r}")
        if node.graph is not graph:
            fail(node, "belongs to another graph")
        name = node.name
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            fail(node, f"name {name!r} is not a legal Python identifier")
        if name in names:
            fail(node, f"name {name!r} is defined twice")
        names.add(name)
        if outputs:
            fail(node, "comes after the output node")
        for arg in node.all_input_nodes:
            if getattr(arg, "_erased", False):
                fail(node, f"uses {arg.name}, which was erased from the graph")
            if arg.graph is not graph:
                fail(node, f"uses {arg.name}, which belongs to another graph")
            if arg not in seen:
                fail(node, f"uses {arg.name} before it is defined (graph not topologically "
                           f"ordered)")
        seen.add(node)
        if _has_tensor_literal((node.args, node.kwargs)):
            fail(node, "has a tensor literal among its arguments; tensor constants must be "
                       "get_attr nodes")

        op, target = node.op, node.target
        if op == "placeholder":
            if past_placeholders:
                fail(node, "placeholder after a non-placeholder node")
        else:
            past_placeholders = True
        if op == "output":
            outputs += 1
        elif op == "call_function":
            if not callable(target):
                fail(node, f"call_function target {target!r} is not callable")
            if function_namespace(target) is None:
                fail(node, f"call_function target {_describe(target)} is not a torch callable "
                           f"(torch.*, operator, math or a lowerable builtin); it cannot be "
                           f"lowered to TorchScript")
        elif op == "call_method":
            if not isinstance(target, str) or not hasattr(torch.Tensor, target):
                fail(node, f"call_method target {target!r} is not a torch.Tensor method")
        elif op in ("get_attr", "call_module"):
            if not isinstance(target, str):
                fail(node, f"{op} target {target!r} is not a string")
            found, value, why = _resolve(gm, target)
            if not found:
                fail(node, f"{op} target {target!r} does not resolve: {why}")
            if op == "call_module" and not isinstance(value, torch.nn.Module):
                fail(node, f"call_module target {target!r} is a {type(value).__name__}, "
                           f"not an nn.Module")
        if require_source and op not in ("placeholder", "output", "get_attr"):
            if not isinstance(node.meta.get(SOURCE), SourceLoc):
                fail(node, f"has no source location (meta[{SOURCE!r}])")
    if outputs != 1:
        raise VerifyError(f"Graph{where}: has {outputs} output nodes, expected exactly one")
    try:
        graph.lint()
    except Exception as exc:
        raise VerifyError(f"Graph{where}: fx lint failed: {exc}") from exc


def verify(gm: fx.GraphModule, *, require_source: bool = False) -> None:
    """Check the invariants every pass must keep; raise :class:`VerifyError` naming the node.

    Checked, for ``gm`` and every ``GraphModule`` submodule (the message says ``in 'path'``)
    except the graph-less containers capture marks ``meta["fxtrace_untraced"]``:

    * fx's ``Graph.lint()``: nodes belong to the graph, are topologically ordered, have unique
      names, targets of ``get_attr``/``call_module`` exist;
    * node names are legal Python identifiers and not keywords; placeholders come first and
      the output last, exactly once; no node uses an erased node; no argument is a tensor
      literal (tensor constants are ``get_attr`` nodes, fx cannot print tensors);
    * every target is lowerable: ``call_function`` targets are torch callables (``torch.*``,
      ``operator``, ``math`` or :data:`~fxtrace.passes.purity.LOWERABLE_BUILTINS`; a user
      function or lambda is an error naming it), ``call_method`` targets are ``torch.Tensor``
      attributes, ``call_module`` targets are modules;
    * with ``require_source=True``, every node except placeholders, ``get_attr`` nodes (reads
      of module state, which have no user line of their own) and the output carries a
      :class:`~fxtrace.capture.meta.SourceLoc` in ``meta["fxtrace_source"]``.

    Example message: ``Node add_1: call_function target test.<lambda> is not a torch
    callable ...``. Returns None; never modifies ``gm``.
    """
    for path, module in _graph_modules(gm):
        _verify_graph(module, path, require_source)


def verify_pass(gm: fx.GraphModule) -> PassResult:
    """:func:`verify` as a pass (never modifies), for use inside a pass list."""
    verify(gm)
    return PassResult(gm, False)
