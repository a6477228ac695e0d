"""The value map of a concrete capture: which node holds each tensor and traced number.

NOTE [Value map]
Real tensors flow through user code; a map from object identity to node (per frame, as
torch.jit's tracer keeps one) says which node produced each. A value is looked up in the
current frame, then as a parameter or buffer of the frame's module (``get_attr``), then in an
enclosing frame (lifted into an extra input of the submodule's graph), and otherwise it
becomes a constant attribute. :class:`Recorder` holds that map and creates nodes; the guards,
module frames and the torch-function hook are the layers above it
(:mod:`.guards`, :mod:`.modules`, :mod:`.concrete`).
"""
from __future__ import annotations

import operator
import sys
from types import FrameType
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, cast

import torch
import torch.fx as fx

from .. import tree
from ..errors import TraceError
from .foreign import foreign_argument_of
from .frames import LEAF_TYPES, Frame, ModuleTrace, Unrecordable, held, holder, new_node
from .fresh import FreshWrites, TensorConstant, storage_key
from .meta import (
    MODULE,
    SOURCE,
    TENSOR_META,
    VALUE_TYPE,
    SourceLoc,
    Specialisation,
    TensorMeta,
    tensor_meta_of,
)
from .methods import NumpyExports, guard_inputs_of_constant
from .source import user_frame, user_source
from .types import python_type_of
from .values import TracedFloat, TracedInt, TracedSize, is_traced, untraced
from .writes import is_inplace_call

if TYPE_CHECKING:
    from .concrete import ConcreteTracer

__all__ = ["Recorder", "untraced_tree", "has_tensor", "has_traced", "holds_traced_numbers",
           "is_traced_leaf"]


def _plain_leaf(value: Any) -> Any:
    return untraced(value) if is_traced(value) or isinstance(value, TracedSize) else value


#: Leaf types that never are traced numbers or sizes (exact types: TracedInt is an int).
_PLAIN_LEAVES = frozenset({torch.Tensor, torch.nn.Parameter, int, float, bool, str, type(None)})


def untraced_tree(value: Any) -> Any:
    """``value`` with traced numbers and sizes replaced by their plain values (``value``
    itself when a flat tuple, list or dict holds none: every recorded call asks this)."""
    cls = type(value)
    if cls is tuple or cls is list:
        if all(type(v) in _PLAIN_LEAVES for v in value):
            return value
    elif cls is dict and all(type(v) in _PLAIN_LEAVES for v in value.values()):
        return value
    return tree.map_leaves(_plain_leaf, value)


def has_tensor(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    return any(isinstance(v, torch.Tensor) for v in tree.leaves(value))


def _is_tensor(value: Any) -> bool:
    return isinstance(value, torch.Tensor)


def is_traced_leaf(value: Any) -> bool:
    """A leaf the value map binds: a tensor, a traced number or a traced size."""
    return isinstance(value, (torch.Tensor, TracedSize)) or is_traced(value)


def holds_traced_numbers(value: Any) -> bool:
    """Whether ``value`` holds a traced number or size (not counting tensors)."""
    return any(is_traced(v) or isinstance(v, TracedSize) for v in tree.leaves(value))


def has_traced(value: Any) -> bool:
    return any(is_traced_leaf(v) for v in tree.leaves(value))


class Recorder:
    """Value map and node creation of a concrete capture (see NOTE [Value map])."""

    def __init__(self, root: Optional[torch.nn.Module], name: str, guards: bool = True,
                 force_outplace: bool = False) -> None:
        self.root = root
        self.guards = guards
        self.force_outplace = force_outplace
        self.name = name
        self.frames: List[Frame] = []
        self.module_traces: Dict[int, ModuleTrace] = {}
        self.specialisations: List[Specialisation] = []
        # Every tensor a recorded op returned: id -> (weak reference, frame, node); NOTE
        # [Value lifetime] in .frames.
        self.produced: Dict[int, Tuple[torch.Tensor, Frame, fx.Node]] = {}
        self._warned: set = set()
        self.param_names: Dict[int, List[str]] = {}
        self.module_names: Dict[int, List[str]] = {}
        # Set by the tracing environment: hooks a module class's __setattr__ (NOTE [Cheap
        # patches]); None outside it.
        self.hook_module_class: Optional[Callable[[type], None]] = None
        #: factory node -> the sizes it was called with (see note_factory_sizes)
        self.known_sizes: Dict[fx.Node, Tuple[Any, ...]] = {}
        #: Python state forward changed: ``(what, where)``, e.g. ``("self.calls (Counter)",
        #: SourceLoc)``; the where is None for a container mutated in place (NOTE [Python
        #: state]).
        self.python_writes: List[Tuple[str, Optional[SourceLoc]]] = []
        self.python_writers: List[torch.nn.Module] = []  # the modules whose attributes changed
        #: ``(module, attribute)`` that forward set to a value holding traced numbers or sizes
        self.traced_attributes: List[Tuple[torch.nn.Module, str]] = []
        #: Set when the capture is over: a traced number or size that outlived it (kept in
        #: a global, a config object) then acts as the plain value, recording nothing.
        self.finished = False
        #: Parameters and tensor attributes written in place, put back after the capture.
        self.writes = FreshWrites(root, self)
        #: Tensors whose memory left as NumPy arrays, watched for writes (fuzz F8).
        self.numpy_exports = NumpyExports()
        #: ``(graph, module, buffer name) -> get_attr node`` of a buffer forward rebound, so a
        #: second rebinding writes the same buffer (fuzz F12).
        self.rebound: Dict[Tuple[int, int, str], fx.Node] = {}
        #: ``(id(module), name) -> (module, name, tensor before)`` of the buffers and tensor
        #: attributes forward rebound: the objects are put back when the capture ends.
        self.rebound_objects: Dict[Tuple[int, str], Tuple[torch.nn.Module, str, torch.Tensor]] = {}
        #: ``(id(module), name) -> (module, name, value before)`` of the Python attributes
        #: forward assigned (NOTE [Python state]); put back by ``restore_python_state``.
        self.python_before: Dict[Tuple[int, str], Tuple[torch.nn.Module, str, Any]] = {}
        #: ``python_containers(root)`` taken before the capture (their copies).
        self.containers: List[Any] = []
        #: NOTE [Fresh constants]: id -> (weak reference, value when made) of the tensors a
        #: call the graph cannot hold made (``torch.from_numpy(array)``), and storage -> the
        #: constants on it (the model's state left out).
        self.fresh: Dict[int, Tuple[Any, torch.Tensor]] = {}
        self.fresh_nodes: Dict[int, List[TensorConstant]] = {}
        if root is not None:
            for qual, p in root.named_parameters(remove_duplicate=False):
                self.param_names.setdefault(id(p), []).append(qual)
            for qual, b in root.named_buffers(remove_duplicate=False):
                self.param_names.setdefault(id(b), []).append(qual)
            for qual, m in root.named_modules(remove_duplicate=False):
                self.module_names.setdefault(id(m), []).append(qual)

    @property
    def frame(self) -> Frame:
        return self.frames[-1]

    # -- value resolution ---------------------------------------------------------------
    def resolve(self, value: Any, frame: Optional[Frame] = None) -> fx.Node:
        """The node of ``frame``'s graph holding ``value`` (tensor or traced number).

        Order: the frame's own values; a parameter or buffer of the frame's module subtree
        (``get_attr``); a value of an enclosing frame (lifted into an extra input); for tensors
        not known anywhere, a constant attribute of the frame's module.
        """
        frame = frame or self.frame
        node = self._find(value, frame)
        if node is not None:
            return node
        if is_traced(value):
            # A size from a graph that is not an ancestor (stored on self earlier): frozen.
            self.specialise_plain("size", untraced(value), "a traced size used outside its graph")
            return untraced(value)
        if self._export(value):
            node = self._find(value, frame)
            if node is not None:
                return node
        return self._constant(value, frame)

    def _find(self, value: Any, frame: Frame) -> Optional[fx.Node]:
        node = frame.lookup(value)
        if node is not None:
            return node
        if isinstance(value, torch.Tensor):
            attr = self._attr_path(value, frame)
            if attr is not None:
                node = self._create(frame, "get_attr", attr, (), {}, value)
                frame.bind(value, node)
                return node
        if frame.parent is not None:
            outer = self._find(value, frame.parent)
            if outer is not None:
                frame.lifted.append(value)
                node = frame.placeholder(f"lifted_{len(frame.lifted)}", value,
                                         python_type_of(value))
                frame.bind(value, node)
                return node
        return None

    def _attr_path(self, t: torch.Tensor, frame: Frame) -> Optional[str]:
        names = self.param_names.get(id(t))
        if not names:
            return None
        if frame.module is None:
            return None
        prefix = frame.path + "." if frame.path else ""
        for qual in names:
            if qual.startswith(prefix):
                return qual[len(prefix):]
        return None

    def _constant(self, t: torch.Tensor, frame: Frame) -> fx.Node:
        if t.requires_grad:
            src = user_source(sys._getframe(1))
            raise TraceError(
                "Cannot insert a Tensor that requires grad as a constant "
                f"(shape {tuple(t.shape)}, at {src or 'unknown location'}). "
                "Consider making it a parameter or input, or detaching the gradient.")
        name = f"_tensor_constant{len(frame.trace.constants)}"
        fresh = self.fresh.get(id(t))
        fresh_value = fresh[1] if fresh is not None and held(fresh[0]) is t else None
        # a fresh tensor keeps the value it was made with (NOTE [Fresh constants])
        frame.trace.constants[name] = t if fresh_value is None else fresh_value
        node = self._create(frame, "get_attr", name, (), {}, t)
        frame.bind(t, node)
        with torch._C.DisableTorchFunction():
            key = storage_key(t)
        if key is not None and not self.writes.is_state(key):
            self.fresh_nodes.setdefault(key, []).append(
                TensorConstant(node, frame.trace.constants, t if fresh_value is None else None))
        return node

    def _known_anywhere(self, t: torch.Tensor) -> bool:
        frame: Optional[Frame] = self.frame
        while frame is not None:
            if frame.lookup(t) is not None:
                return True
            frame = frame.parent
        return False

    def _note_fresh(self, out: Any, frame: Frame) -> None:
        """Keep the value of each tensor in ``out`` that a call the graph cannot hold made,
        before any later op writes it (NOTE [Fresh constants])."""
        for t in tree.leaves(out):
            if isinstance(t, torch.Tensor) and not t.requires_grad and \
                    frame.lookup(t) is None and id(t) not in self.param_names:
                with torch._C.DisableTorchFunction():
                    self.fresh[id(t)] = (holder(t), t.detach().clone())

    def _clone_written_constant(self, target: Any, args: Tuple[Any, ...],
                                kwargs: Dict[str, Any], fx_args: Any, fx_kwargs: Any
                                ) -> Tuple[Any, Any]:
        """NOTE [Fresh constants]: an in-place call writing a fresh constant (or a view of
        it) writes a clone the graph makes right after the ``get_attr``, never the constant.

        Eager makes the tensor anew on every call; writing the constant itself would carry
        each call's write into the next. Every use of the constant reads the clone, and the
        clone is made where the constant is read first, so reads before the write see the
        value the tensor was made with, as in eager."""
        name = target if isinstance(target, str) else getattr(target, "__name__", "")
        if not self.fresh_nodes or not args or not isinstance(args[0], torch.Tensor) or \
                not is_inplace_call(name, kwargs):
            return fx_args, fx_kwargs
        with torch._C.DisableTorchFunction():
            key = storage_key(args[0])
        graph = self.frame.graph
        entry = next((c for c in self.fresh_nodes.get(key, ()) if c.node.graph is graph),
                     None) if key is not None else None
        if entry is None or entry.clone is not None:
            return fx_args, fx_kwargs
        const = entry.node
        with graph.inserting_after(const):
            clone = self._create(self.frame, "call_method", "clone", (const,), {}, args[0],
                                 source=const.meta[SOURCE])
        const.replace_all_uses_with(clone, delete_user_cb=lambda user: user is not clone)
        entry.clone = clone
        for vid, (entry_value, node) in list(self.frame.values.items()):
            if node is const:
                self.frame.values[vid] = (entry_value, clone)

        def swap(n: fx.Node) -> fx.Node:
            return clone if n is const else n
        return fx.node.map_arg(fx_args, swap), fx.node.map_arg(fx_kwargs, swap)

    def to_arg(self, value: Any) -> Any:
        """Map a Python argument to an fx argument: tensors and traced numbers become nodes.

        Exports (NOTE [Submodule outputs]) happen first, for every leaf: an export can move
        the binding of a value mapped earlier in the same argument list."""
        self.export_missing(value)
        return self._map_arg(value)

    def export_missing(self, value: Any) -> None:
        """Export every tensor leaf of ``value`` that no open frame knows yet."""
        frame = self.frame
        for leaf in tree.leaves(value):
            if isinstance(leaf, torch.Tensor):
                hit = self.produced.get(id(leaf))
                # (a tensor produced in this very frame is bound in it: nothing to export)
                if hit is not None and held(hit[0]) is leaf and hit[1] is not frame \
                        and self._find(leaf, frame) is None:
                    self._export(leaf)

    def _map_arg(self, value: Any) -> Any:
        if isinstance(value, (torch.Tensor, TracedSize)) or is_traced(value):
            return self.resolve(value)
        if isinstance(value, torch.device):
            return self._metadata_arg("device", value)
        if isinstance(value, torch.dtype):
            return self._metadata_arg("dtype", value)
        if isinstance(value, LEAF_TYPES):
            return value
        if isinstance(value, torch.Size):
            return tuple(value)
        if isinstance(value, (tuple, list)):
            mapped = [self._map_arg(v) for v in value]
            return tuple(mapped) if isinstance(value, tuple) else mapped
        if isinstance(value, slice):
            return slice(self._map_arg(value.start), self._map_arg(value.stop),
                         self._map_arg(value.step))
        if isinstance(value, dict) and all(isinstance(k, (str, int)) for k in value):
            return {k: self._map_arg(v) for k, v in value.items()}
        raise Unrecordable(type(value).__name__)

    # -- node creation --------------------------------------------------------------------
    def _create(self, frame: Frame, op: str, target: Any, args: Tuple[Any, ...],
                kwargs: Dict[str, Any], value: Any, source: Optional[SourceLoc] = None) -> fx.Node:
        node = new_node(frame.graph, op, target, args, kwargs)
        node.meta[SOURCE] = source if source is not None else (
            None if op == "get_attr" else user_source(sys._getframe(1)))
        if node.meta[SOURCE] is not None:
            node.meta["stack_trace"] = node.meta[SOURCE].stack_trace()
        node.meta[MODULE] = frame.path
        with torch._C.DisableTorchFunction():  # reading metadata must not be recorded
            node.meta[TENSOR_META] = TensorMeta.of(value) if isinstance(
                value, torch.Tensor) else tensor_meta_of(value)
        node.meta[VALUE_TYPE] = None if isinstance(value, torch.Tensor) else type(untraced(value))
        return node

    def record(self, op: str, target: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any],
               out: Any) -> Any:
        """Record one call whose real result is ``out``; bind the tensors of ``out``."""
        frame = self.frame
        try:
            self.export_missing((args, kwargs))
            fx_args = self._map_arg(args)
            fx_kwargs = self._map_arg(kwargs)
        except Unrecordable as e:
            self._note_fresh(out, frame)
            if self.guards and guard_inputs_of_constant(self.tracer, target, args, kwargs):
                return out  # baked, and guarded on what it was computed from (fuzz F8)
            self.specialise_plain("constant", out, f"an argument of type {e} cannot be recorded; "
                                  "the result is a constant")
            return out
        fx_args, fx_kwargs = self._clone_written_constant(target, args, kwargs, fx_args,
                                                          fx_kwargs)
        node = self._create(frame, op, target, fx_args, fx_kwargs, out)
        self._bind_output(frame, node, out)
        return out

    def bind_tree(self, frame: Frame, node: fx.Node, value: Any,
                  wanted: Callable[[Any], bool], leaf: Callable[[fx.Node, Any], None],
                  item: Optional[Callable[[fx.Node, Any, Any], fx.Node]] = None) -> None:
        """Walk ``value`` (NOTE [Value tree]) alongside ``node``, the node holding it:
        ``leaf(node, v)`` for each leaf that ``wanted`` accepts, reached through one
        ``getitem`` node per container level (made by ``item(parent, key, child)``; by default
        a recorded ``getitem``), only for children that hold such a leaf."""
        if not tree.is_container(value):
            if wanted(value):
                leaf(node, value)
            return
        for key, child in tree.children(value):
            if any(wanted(v) for v in tree.leaves(child)):
                sub = item(node, key, child) if item is not None else self._create(
                    frame, "call_function", operator.getitem, (node, key), {}, child,
                    source=node.meta[SOURCE])
                self.bind_tree(frame, sub, child, wanted, leaf, item)

    def _bind_output(self, frame: Frame, node: fx.Node, out: Any) -> None:
        """Bind the tensors of a recorded call's result ``out`` (held by ``node``)."""
        if isinstance(out, (tuple, list)) and (
                node.op != "call_function" or node.target is not operator.getitem):
            self._guard_length(frame, node, out)

        def produced(leaf_node: fx.Node, t: Any) -> None:
            frame.bind(t, leaf_node)
            self.produced[id(t)] = (holder(t), frame, leaf_node)
        self.bind_tree(frame, node, out, _is_tensor, produced)

    def record_scalar(self, op: Callable[..., Any], args: Tuple[Any, ...], value: Any) -> Any:
        """Record arithmetic on traced numbers; returns a traced number holding ``value``."""
        if self.finished:
            return value
        frame = self.frame
        fx_args = tuple(self.resolve(a) if is_traced(a) else a for a in args)
        node = self._create(frame, "call_function", op, fx_args, {}, value)
        cls = TracedInt if isinstance(value, int) and not isinstance(value, bool) else TracedFloat
        result = cls(value, self.tracer)
        frame.bind(result, node)
        self._freeze_if_foreign(result)
        return result

    def traced_int(self, node: fx.Node, value: int) -> TracedInt:
        result = TracedInt(value, self.tracer)
        self.frame.bind(result, node)
        self._freeze_if_foreign(result)
        return result

    # -- NOTE [Foreign readers] -------------------------------------------------------------
    def _freeze_if_foreign(self, value: Any) -> None:
        """Freeze ``value`` when the user's code produces it as an argument of foreign C code
        (``np.arange(x.size(1))``), which reads it without running any of its methods."""
        frame = user_frame(sys._getframe(2))
        reader = foreign_argument_of(frame)
        if reader is not None and frame is not None:
            self.freeze_number(value, reader, frame)

    def freeze_sizes(self, sizes: TracedSize, reader: str, frame: FrameType) -> None:
        """Freeze every item of ``sizes``, which foreign C code (``reader``) iterates."""
        for item in sizes._whole():
            self.freeze_number(item, reader, frame)

    def freeze_number(self, value: Any, reader: str, frame: FrameType) -> None:
        """Guard a traced number that ``reader`` (foreign C code called at ``frame``, or from
        inside its package) reads as a plain number, naming the user's line that called it."""
        if self.finished or not is_traced(value):
            return
        package = reader.split(".")[0]
        caller: Optional[FrameType] = frame
        while caller is not None and str(caller.f_globals.get("__name__", "")).split(".")[0] \
                == package:
            caller = caller.f_back
        src = user_source(caller) if caller is not None else None
        plain = untraced(value)
        cond = self._create(self.frame, "call_function", operator.eq, (self.resolve(value), plain),
                            {}, True, source=src)
        self.tracer._guard(self.frame, cond, "size", plain, src,
                           f"a size equal to {plain}, read by {reader}")
        self.tracer.warn_frozen(src, f"A size was passed to {reader}, C code outside torch that "
                                     "reads it as a plain number: the trace is specialised to it",
                                "size")

    def _computed(self, value: Any) -> bool:
        """Whether some open frame computed ``value`` (no node is created or lifted)."""
        frame: Optional[Frame] = self.frame
        while frame is not None:
            node = frame.lookup(value)
            if node is not None:
                return node.op != "get_attr"
            frame = frame.parent
        return False

    def _is_graph_tensor(self, t: Any) -> bool:
        if not isinstance(t, torch.Tensor):
            return False
        node = self._find(t, self.frame)
        return node is not None and node.op != "get_attr"

    def _untraced_call(self, func: Callable[..., Any], args: Tuple[Any, ...],
                       kwargs: Dict[str, Any]) -> Any:
        return func(*untraced_tree(args), **untraced_tree(kwargs))

    @property
    def tracer(self) -> "ConcreteTracer":
        """This object as the whole tracer its traced numbers call back into."""
        return cast("ConcreteTracer", self)

    # -- provided by the layers above (declared for the type checker) ----------------------
    def _export(self, value: Any) -> bool:
        raise NotImplementedError

    def specialise_plain(self, kind: str, value: Any, detail: str) -> None:
        raise NotImplementedError

    def _guard_length(self, frame: Frame, node: fx.Node, out: Any) -> None:
        raise NotImplementedError

    def _metadata_arg(self, kind: str, value: Any) -> Any:
        raise NotImplementedError
