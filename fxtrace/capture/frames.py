"""The data a concrete capture builds: frames (one graph under construction each), the
graphs recorded per module, and the small helpers that create nodes and bind arguments."""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
import weakref
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.fx as fx

from .meta import MODULE, SOURCE, TENSOR_META, VALUE_TYPE, SourceLoc, tensor_meta_of
from .values import untraced

__all__ = ["Frame", "ModuleTrace", "MetadataRead", "Unrecordable", "LEAF_TYPES", "new_node",
           "graph_key", "signature_of", "bind_names", "short", "holder", "held"]

LEAF_TYPES = (int, float, bool, complex, str, type(None), torch.dtype, torch.device, torch.layout,
               torch.memory_format, type(Ellipsis), torch.Generator)





# NOTE [Metadata]
# ``x.device`` returns a new ``torch.device`` object on every read, so a device flows through
# user code by identity exactly like a tensor: the tracer binds the object to a node
# ``getattr(x, "device")`` and a torch call receiving it gets that node. ``x.dtype`` returns a
# singleton, so identity cannot tell it from a literal ``torch.float32``; a dtype read is used
# as an expression only by a call on the same user line as the read (``torch.zeros(n,
# dtype=x.dtype)``). A read that no recorded call consumed leaked into Python (a comparison,
# ``torch.finfo``, a dict key...): at the end of the frame it becomes a guard placed right
# after the read, so inputs with another dtype or device are refused rather than answered
# with the traced one.
@dataclasses.dataclass
class MetadataRead:
    kind: str                 # "dtype" or "device"
    value: Any
    tensor: fx.Node
    after: fx.Node            # the graph's last node when the read happened
    source: Optional[SourceLoc]
    consumed: bool = False


class Unrecordable(Exception):
    """An argument fxtrace cannot put into a graph (a numpy array, an arbitrary object)."""


@dataclasses.dataclass
class ModuleTrace:
    """The graphs recorded for one module object: one per distinct way it was called."""

    module: torch.nn.Module
    path: str
    graphs: List[fx.Graph] = dataclasses.field(default_factory=list)
    keys: List[str] = dataclasses.field(default_factory=list)
    constants: Dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    calls: int = 0
    named: Dict[str, fx.Graph] = dataclasses.field(default_factory=dict)  # root methods by name
    sites: Dict[int, List[Any]] = dataclasses.field(default_factory=dict)  # id(graph) -> frames


class Frame:
    """One graph under construction: the root call or one submodule call."""

    def __init__(self, module: Optional[torch.nn.Module], path: str,
                 parent: Optional["Frame"], trace: ModuleTrace) -> None:
        self.module = module
        self.path = path
        self.parent = parent
        self.trace = trace
        self.graph = fx.Graph()
        # id(obj) -> (obj or weak reference to a tensor, node); see NOTE [Value lifetime].
        self.values: Dict[int, Tuple[Any, fx.Node]] = {}
        self.lifted: List[Any] = []          # caller values read without being passed in
        self.last_placeholder: Optional[fx.Node] = None
        self.reads: List[MetadataRead] = []  # x.dtype / x.device reads, see NOTE [Metadata]
        self.training_guarded: set = set()   # ids of modules whose flag this graph checks
        # Set when a submodule call finishes (see NOTE [Submodule outputs]):
        self.call_node: Optional[fx.Node] = None    # the call in the parent's graph
        self.output_node: Optional[fx.Node] = None
        self.direct = False                         # output is one value, not a tuple
        self.canonical: Optional[fx.Graph] = None   # the variant graph this call uses

    # -- placeholders -------------------------------------------------------------------
    def placeholder(self, name: str, value: Any, type_: Any) -> fx.Node:
        if self.last_placeholder is None:
            first = next(iter(self.graph.nodes), None)
            ctx = self.graph.inserting_before(first) if first is not None else contextlib.nullcontext()
        else:
            ctx = self.graph.inserting_after(self.last_placeholder)
        with ctx:
            node = self.graph.placeholder(name, type_expr=type_)
        self.last_placeholder = node
        with torch._C.DisableTorchFunction():  # reading metadata must not be recorded
            node.meta[TENSOR_META] = tensor_meta_of(value)
        node.meta[VALUE_TYPE] = None if isinstance(value, torch.Tensor) else type(untraced(value))
        node.meta[MODULE] = self.path
        node.meta[SOURCE] = None
        return node

    def bind(self, value: Any, node: fx.Node) -> None:
        self.values[id(value)] = (holder(value), node)

    def lookup(self, value: Any) -> Optional[fx.Node]:
        hit = self.values.get(id(value))
        return hit[1] if hit is not None and held(hit[0]) is value else None


# NOTE [Value lifetime]
# The value map holds a tensor through a weak reference, never the tensor itself: an
# intermediate is freed when the user's code drops it, as in eager, and the capture's peak
# memory is one eager forward's. A node keeps only the metadata (``TENSOR_META``) the passes
# and lowering read. A dead entry cannot be confused with a new tensor that reuses its id:
# its reference answers None, which is not the tensor looked up. Other values (traced
# numbers, devices) are small and held as before.
class _Weak(weakref.ref):
    """A value-map entry's weak reference (its own type: a user's weakref is a value)."""

    __slots__ = ()


def holder(value: Any) -> Any:
    """What the value map stores for ``value``: a weak reference for a tensor."""
    return _Weak(value) if isinstance(value, torch.Tensor) else value


def held(entry: Any) -> Any:
    """The value a value-map entry stands for (None once a weakly held tensor died)."""
    return entry() if type(entry) is _Weak else entry


def short(value: Any) -> Any:
    text = repr(value)
    return value if len(text) <= 60 else text[:57] + "..."


_SIGNATURES: Dict[Any, Optional[inspect.Signature]] = {}


def signature_of(fn: Callable[..., Any]) -> Optional[inspect.Signature]:
    """``inspect.signature(fn)``, cached per underlying function (every instance of a module
    class shares its forward's signature; inspect takes ~0.1 ms per call)."""
    key = (getattr(fn, "__func__", fn), hasattr(fn, "__self__"))
    try:
        return _SIGNATURES[key]
    except (KeyError, TypeError):
        pass
    try:
        sig: Optional[inspect.Signature] = inspect.signature(fn)
    except (TypeError, ValueError):
        sig = None
    try:
        if len(_SIGNATURES) < 10000:
            _SIGNATURES[key] = sig
    except TypeError:  # an unhashable callable
        pass
    return sig


_NODE_NAMES: Dict[Any, str] = {}


def _identifier(text: str) -> str:
    name = "".join(c if c.isalnum() else "_" for c in str(text)).strip("_").lower() or "call"
    return name if not name[0].isdigit() else f"f_{name}"


def new_node(graph: fx.Graph, op: str, target: Any, args: Tuple[Any, ...],
              kwargs: Dict[str, Any]) -> fx.Node:
    """``graph.create_node(op, target, args, kwargs)`` with the same node name, faster.

    ``create_node`` scans every argument for raw SymInts (fxtrace never records one) and
    derives the name from the target each time; both cost more than the node itself. The
    node is created without arguments under the cached name and the arguments are set
    through ``Node.args``/``Node.kwargs``, which keep the use lists as create_node does."""
    try:
        name = _NODE_NAMES[(op, target)]
    except (KeyError, TypeError):
        name = None
    if name is None and op == "call_function" and not hasattr(target, "__name__"):
        # fx names a node after its target's __name__; a ScriptFunction has none
        name = _identifier(getattr(target, "name", None) or type(target).__name__)
    node = graph.create_node(op, target, name=name)
    if name is None:
        try:
            if len(_NODE_NAMES) < 10000:
                # the base name fx chose (a numeric suffix, if any, is the namespace's)
                _NODE_NAMES[(op, target)] = graph._target_to_str(target) \
                    if hasattr(graph, "_target_to_str") else node.name
        except TypeError:  # an unhashable target
            pass
    if args:
        node.args = tuple(args)
    if kwargs:
        node.kwargs = dict(kwargs)
    return node


def bind_names(signature: Optional[inspect.Signature], args: Tuple[Any, ...],
                kwargs: Dict[str, Any]) -> List[Tuple[str, Any]]:
    """(parameter name, value) for every argument, *args expanded as name_0, name_1, ..."""
    if signature is not None:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            bound = None
        if bound is not None:
            out: List[Tuple[str, Any]] = []
            for name, value in bound.arguments.items():
                kind = signature.parameters[name].kind
                if kind is inspect.Parameter.VAR_POSITIONAL:
                    out.extend((f"{name}_{i}", v) for i, v in enumerate(value))
                elif kind is inspect.Parameter.VAR_KEYWORD:
                    out.extend((k, v) for k, v in value.items())
                else:
                    out.append((name, value))
            return out
    return [(f"arg{i}", v) for i, v in enumerate(args)] + list(kwargs.items())


def graph_key(graph: fx.Graph) -> str:
    """A canonical text of a graph: equal for graphs that compute the same thing."""
    index: Dict[fx.Node, int] = {}
    lines = []
    for i, node in enumerate(graph.nodes):
        index[node] = i
        args: Any = fx.node.map_arg((node.args, node.kwargs), lambda n: f"%{index[n]}")
        target = node.target if isinstance(node.target, str) else getattr(
            node.target, "__qualname__", repr(node.target))
        if node.target is torch._assert:
            args = (args[0][0],)
        lines.append(f"{node.op} {target} {args!r} {node.type!r}")
    return "\n".join(lines)
