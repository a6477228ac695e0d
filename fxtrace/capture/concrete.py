"""The concrete tracer: run the user's code once on real inputs and record it into fx graphs.

NOTE [How concrete capture works]
User code runs on the real example tensors. A ``TorchFunctionMode`` sees every torch-level
call (torch functions, Tensor methods and operators, ``torch.nn.functional``, factories); the
tracer runs the call for real, then records a node whose arguments are the graph nodes that
produced the argument tensors (a value map keyed by object identity, as torch.jit's tracer
does). Module calls are hooked (``nn.Module._call_impl``) for the duration of the capture,
so each submodule call opens a *frame*: the submodule gets a graph of its own, and the caller
records a ``call_module`` node. Tensors a submodule reads from its caller without receiving
them as arguments are lifted into extra inputs of the submodule's graph.

Everything the tracer installs (the mode; the patches of ``nn.Module._call_impl`` and of
the module classes' ``__setattr__``, ``builtins.range``, ``ScriptFunction.__call__``,
``autograd.Function.apply``, ``Parameter.__deepcopy__`` and ``torch._C._is_tracing``) is
removed in a ``finally``, whatever the user's code raises.
"""
from __future__ import annotations

import builtins
import contextlib
import dataclasses
import inspect
import math
import operator
import sys
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.fx as fx
from torch.overrides import TorchFunctionMode

from ..errors import TraceError, TracerWarning
from .meta import MODULE, SOURCE, TENSOR_META, VALUE_TYPE, SourceLoc, Specialisation, tensor_meta_of
from .pystate import mutated_containers, python_containers, state_name
from .source import in_torch_library, user_source
from .types import python_type_of
from .values import TracedFloat, TracedInt, TracedSize, is_traced, untraced

__all__ = ["capture_concrete", "ModuleTrace"]

_LEAF_TYPES = (int, float, bool, complex, str, type(None), torch.dtype, torch.device, torch.layout,
               torch.memory_format, type(Ellipsis), torch.Generator)

# Tensor methods whose results are metadata (fixed by dtype, layout, device), not values.
_METADATA_METHODS = frozenset({
    "data_ptr", "__repr__", "__format__", "__hash__", "storage_offset", "untyped_storage",
    "is_pinned", "is_shared", "type", "_is_view", "has_names", "__reduce_ex__", "__deepcopy__",
    "__dlpack_device__", "__array__", "requires_grad_", "retain_grad", "register_hook",
    "__setstate__", "__getstate__", "is_inference", "is_set_to", "dim_order", "nbytes",
})


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
class _MetadataRead:
    kind: str                 # "dtype" or "device"
    value: Any
    tensor: fx.Node
    after: fx.Node            # the graph's last node when the read happened
    source: Optional[SourceLoc]
    consumed: bool = False


# Calls returning a list whose length depends on the input's values or sizes.
_LIST_RESULTS = frozenset({
    "split", "split_with_sizes", "chunk", "unbind", "tensor_split", "unsafe_split",
    "unsafe_chunk", "hsplit", "vsplit", "dsplit", "unsafe_split_with_sizes",
})

# Calls whose result depends on the module's training flag (see _guard_training).
_MODE_DEPENDENT = frozenset({
    "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
    "feature_dropout", "batch_norm", "instance_norm", "rrelu", "rrelu_",
    "dropout_", "alpha_dropout_", "feature_alpha_dropout_", "feature_dropout_",
})


class _Unrecordable(Exception):
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


class _Frame:
    """One graph under construction: the root call or one submodule call."""

    def __init__(self, module: Optional[torch.nn.Module], path: str,
                 parent: Optional["_Frame"], trace: ModuleTrace) -> None:
        self.module = module
        self.path = path
        self.parent = parent
        self.trace = trace
        self.graph = fx.Graph()
        # id(obj) -> (obj, node); holding obj keeps the id from being reused while tracing.
        self.values: Dict[int, Tuple[Any, fx.Node]] = {}
        self.lifted: List[Any] = []          # caller values read without being passed in
        self.last_placeholder: Optional[fx.Node] = None
        self.reads: List[_MetadataRead] = []  # x.dtype / x.device reads, see NOTE [Metadata]
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
        self.values[id(value)] = (value, node)

    def lookup(self, value: Any) -> Optional[fx.Node]:
        hit = self.values.get(id(value))
        return hit[1] if hit is not None and hit[0] is value else None


class ConcreteTracer:
    """Runs user code once and records its torch-level operations (see the module NOTE)."""

    def __init__(self, root: Optional[torch.nn.Module], name: str, guards: bool = True,
                 force_outplace: bool = False) -> None:
        self.root = root
        self.guards = guards
        self.force_outplace = force_outplace
        self.name = name
        self.frames: List[_Frame] = []
        self.module_traces: Dict[int, ModuleTrace] = {}
        self.specialisations: List[Specialisation] = []
        # Every tensor a recorded op returned: id -> (tensor, frame, node).
        self.produced: Dict[int, Tuple[torch.Tensor, _Frame, fx.Node]] = {}
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
        if root is not None:
            for qual, p in root.named_parameters(remove_duplicate=False):
                self.param_names.setdefault(id(p), []).append(qual)
            for qual, b in root.named_buffers(remove_duplicate=False):
                self.param_names.setdefault(id(b), []).append(qual)
            for qual, m in root.named_modules(remove_duplicate=False):
                self.module_names.setdefault(id(m), []).append(qual)

    @property
    def frame(self) -> _Frame:
        return self.frames[-1]

    # -- value resolution ---------------------------------------------------------------
    def resolve(self, value: Any, frame: Optional[_Frame] = None) -> fx.Node:
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

    def _find(self, value: Any, frame: _Frame) -> Optional[fx.Node]:
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

    def _attr_path(self, t: torch.Tensor, frame: _Frame) -> Optional[str]:
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

    def _constant(self, t: torch.Tensor, frame: _Frame) -> fx.Node:
        if t.requires_grad:
            src = user_source(sys._getframe(1))
            raise TraceError(
                "Cannot insert a Tensor that requires grad as a constant "
                f"(shape {tuple(t.shape)}, at {src or 'unknown location'}). "
                "Consider making it a parameter or input, or detaching the gradient.")
        name = f"_tensor_constant{len(frame.trace.constants)}"
        frame.trace.constants[name] = t
        node = self._create(frame, "get_attr", name, (), {}, t)
        frame.bind(t, node)
        return node

    def to_arg(self, value: Any) -> Any:
        """Map a Python argument to an fx argument: tensors and traced numbers become nodes.

        Exports (NOTE [Submodule outputs]) happen first, for every leaf: an export can move
        the binding of a value mapped earlier in the same argument list."""
        self.export_missing(value)
        return self._map_arg(value)

    def export_missing(self, value: Any) -> None:
        """Export every tensor leaf of ``value`` that no open frame knows yet."""
        for leaf in _leaves(value):
            if isinstance(leaf, torch.Tensor) and leaf is not None:
                hit = self.produced.get(id(leaf))
                if hit is not None and hit[0] is leaf and self._find(leaf, self.frame) is None:
                    self._export(leaf)

    def _map_arg(self, value: Any) -> Any:
        if isinstance(value, (torch.Tensor, TracedSize)) or is_traced(value):
            return self.resolve(value)
        if isinstance(value, torch.device):
            return self._metadata_arg("device", value)
        if isinstance(value, torch.dtype):
            return self._metadata_arg("dtype", value)
        if isinstance(value, _LEAF_TYPES):
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
        raise _Unrecordable(type(value).__name__)

    def _metadata_arg(self, kind: str, value: Any) -> Any:
        """A device or dtype argument: the node of the read it came from, else the literal."""
        frame = self.frame
        if kind == "device":
            node = frame.lookup(value)
            for read in frame.reads:
                if read.kind == "device" and read.value is value:
                    read.consumed = True
            return node if node is not None else value
        here = user_source(sys._getframe(2))
        for read in reversed(frame.reads):
            if read.kind == "dtype" and read.value == value and here is not None and \
                    read.source is not None and (read.source.filename, read.source.lineno) == (
                        here.filename, here.lineno):
                read.consumed = True
                return self._create(frame, "call_function", getattr, (read.tensor, "dtype"), {},
                                    value, source=here)
        return value

    def _read_metadata(self, kind: str, t: torch.Tensor, value: Any) -> Any:
        """``x.dtype`` / ``x.device`` of a graph tensor (see NOTE [Metadata])."""
        if not self._is_graph_tensor(t):
            return value
        frame = self.frame
        tensor = self.resolve(t)
        last = next(iter(reversed(frame.graph.nodes)))
        src = user_source(sys._getframe(2))
        frame.reads.append(_MetadataRead(kind, value, tensor, last, src))
        if kind == "device":
            node = self._create(frame, "call_function", getattr, (tensor, "device"), {}, value,
                                source=src)
            frame.bind(value, node)
        return value

    def _guard_unconsumed_reads(self, frame: _Frame) -> None:
        """Guard every metadata read that leaked into Python (see NOTE [Metadata])."""
        for read in frame.reads:
            if read.consumed:
                continue
            with frame.graph.inserting_before(read.after.next):
                seen = self._create(frame, "call_function", getattr, (read.tensor, read.kind), {},
                                    read.value, source=read.source)
                cond = self._create(frame, "call_function", operator.eq, (seen, read.value), {},
                                    True, source=read.source)
                self._guard(frame, cond, read.kind, read.value, read.source,
                            f"{read.kind} {read.value}")

    def _guard_training(self, frame: _Frame, module: Optional[torch.nn.Module], why: str) -> None:
        """``module``'s training flag decided something at capture time (a branch on
        ``self.training``, a dropout or batch_norm call): guard it, so ``.eval()``/``.train()``
        on the trace raises instead of silently keeping the traced mode."""
        if module is None or id(module) in frame.training_guarded:
            return
        prefix = frame.path + "." if frame.path else ""
        if module is frame.module:
            attr = "training"
        else:
            names = [q for q in self.module_names.get(id(module), ()) if q.startswith(prefix)
                     and frame.module is not None]
            if not names:
                self.specialise_plain("training", module.training,
                                      f"the training flag of {type(module).__name__} ({why})")
                return
            attr = names[0][len(prefix):] + ".training"
        frame.training_guarded.add(id(module))
        src = user_source(sys._getframe(2))
        value = bool(module.__dict__["training"])
        flag = self._create(frame, "get_attr", attr, (), {}, value, source=src)
        cond = self._create(frame, "call_function", operator.eq, (flag, value), {}, True, source=src)
        mode = "training" if value else "eval"
        self._guard(frame, cond, "training", value, src,
                    f"the module in {mode} mode ({why}); trace it again in the mode you call it in")

    def _rebind_state(self, module: torch.nn.Module, name: str, value: torch.Tensor) -> bool:
        """``self.<name> = <computed tensor>`` where ``<name>`` holds a buffer or a tensor the
        trace reads as a constant: record a write into it (``copy_``), so the trace carries
        the state from call to call as eager does. False when that is impossible."""
        old = module.__dict__.get(name, module._buffers.get(name))
        if not isinstance(old, torch.Tensor) or isinstance(old, torch.nn.Parameter):
            return False
        with torch._C.DisableTorchFunction():  # comparing metadata must not be recorded
            if (old.shape, old.dtype, old.device) != (value.shape, value.dtype, value.device):
                return False
        frame = self.frame
        is_buffer = module._buffers.get(name) is old
        if not is_buffer and frame.lookup(old) is None:
            return False  # never read by the trace: nothing to carry
        target = self.resolve(old)
        if target.op != "get_attr":
            return False
        node = self._create(frame, "call_method", "copy_", (target, self.resolve(value)), {}, None,
                            source=user_source(sys._getframe(2)))
        node.meta["fxtrace_state_write"] = True
        return True

    # -- node creation --------------------------------------------------------------------
    def _create(self, frame: _Frame, op: str, target: Any, args: Tuple[Any, ...],
                kwargs: Dict[str, Any], value: Any, source: Optional[SourceLoc] = None) -> fx.Node:
        node = _new_node(frame.graph, op, target, args, kwargs)
        node.meta[SOURCE] = source if source is not None else (
            None if op == "get_attr" else user_source(sys._getframe(1)))
        if node.meta[SOURCE] is not None:
            node.meta["stack_trace"] = node.meta[SOURCE].stack_trace()
        node.meta[MODULE] = frame.path
        with torch._C.DisableTorchFunction():  # reading metadata must not be recorded
            node.meta[TENSOR_META] = tensor_meta_of(value)
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
        except _Unrecordable as e:
            self.specialise_plain("constant", out, f"an argument of type {e} cannot be recorded; "
                                  "the result is a constant")
            return out
        node = self._create(frame, op, target, fx_args, fx_kwargs, out)
        self._bind_output(frame, node, out)
        return out

    def _bind_output(self, frame: _Frame, node: fx.Node, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            frame.bind(out, node)
            self.produced[id(out)] = (out, frame, node)
        elif isinstance(out, (tuple, list)):
            if node.op != "call_function" or node.target is not operator.getitem:
                self._guard_length(frame, node, out)
            for i, item in enumerate(out):
                if isinstance(item, (torch.Tensor, tuple, list)):
                    sub = self._create(frame, "call_function", operator.getitem, (node, i), {}, item,
                                       source=node.meta[SOURCE])
                    self._bind_output(frame, sub, item)

    def _guard_length(self, frame: _Frame, node: fx.Node, out: Any) -> None:
        """Results whose number of items depends on the input (``split``, ``chunk``,
        ``unbind``, ...) are lists in TorchScript: check the count the trace unpacked."""
        name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
        if name not in _LIST_RESULTS:
            return
        src = node.meta.get(SOURCE)
        seen = self._create(frame, "call_function", len, (node,), {}, len(out), source=src)
        cond = self._create(frame, "call_function", operator.eq, (seen, len(out)), {}, True,
                            source=src)
        self._guard(frame, cond, "length", len(out), src, f"{name}() giving {len(out)} parts",
                    structural=True)

    def record_scalar(self, op: Callable[..., Any], args: Tuple[Any, ...], value: Any) -> Any:
        """Record arithmetic on traced numbers; returns a traced number holding ``value``."""
        if self.finished:
            return value
        frame = self.frame
        fx_args = tuple(self.resolve(a) if is_traced(a) else a for a in args)
        node = self._create(frame, "call_function", op, fx_args, {}, value)
        cls = TracedInt if isinstance(value, int) and not isinstance(value, bool) else TracedFloat
        result = cls(value, self)
        frame.bind(result, node)
        return result

    def traced_int(self, node: fx.Node, value: int) -> TracedInt:
        result = TracedInt(value, self)
        self.frame.bind(result, node)
        return result

    # -- specialisations ------------------------------------------------------------------
    def specialise_scalar(self, kind: str, op: Callable[[Any, Any], Any], args: Tuple[Any, Any],
                          result: Any) -> None:
        """A traced number left the graph through ``op(*args) == result``: record and guard."""
        if self.finished:
            return
        src = user_source(sys._getframe(2))
        frame = self.frame
        fx_args = tuple(self.resolve(a) if is_traced(a) else untraced(a) for a in args)
        cond = self._create(frame, "call_function", op, fx_args, {}, result, source=src)
        if result is not True:
            cond = self._create(frame, "call_function", operator.not_, (cond,), {}, True, source=src)
        if kind == "compare":
            text = _OP_TEXT.get(op, op.__name__)
            detail = f"{untraced(args[0])} {text} {untraced(args[1])} is {result}"
        else:
            detail = f"a size or size expression equal to {untraced(args[0])} ({kind})"
        self._guard(frame, cond, kind, untraced(args[0]), src, detail)
        if not in_torch_library(sys._getframe(2)):
            self._warn(src, f"A size was used as a Python value ({detail}): the trace is "
                            "specialised to it; fxtrace guards it at run time.")

    def specialise_tensor(self, kind: str, tensor: torch.Tensor, value: Any,
                          observe: Callable[[fx.Node], Tuple[str, Any, Tuple[Any, ...]]]) -> None:
        """A tensor's *value* left the graph (``bool(t)``, ``t.item()``): record and guard.

        ``observe(node) -> (op, target, args)`` re-reads the value from the tensor's node in
        the graph; the guard asserts that it equals ``value`` at run time.
        """
        src = user_source(sys._getframe(2))
        frame = self.frame
        node = self.resolve(tensor)
        if node.op == "get_attr":
            return  # a parameter or constant: its value is part of the model, not the input
        op, target, args = observe(node)
        seen = self._create(frame, op, target, args, {}, value, source=src)
        cond = self._create(frame, "call_function", operator.eq, (seen, value), {}, True, source=src)
        self._guard(frame, cond, kind, value, src, f"{kind} gave {value!r}")
        self._warn(src, f"Converting a tensor to a Python {kind} might cause the trace to be "
                        "incorrect. fxtrace records it as a constant and guards it at run time.")

    def specialise_plain(self, kind: str, value: Any, detail: str) -> None:
        """A value frozen without a guard (nothing in the graph can check it): recorded, and
        warned at the user's line, since only the warning stands between it and a silently
        wrong result."""
        src = user_source(sys._getframe(2))
        self.specialisations.append(Specialisation(kind, _short(value), src, self.frame.path,
                                                   guarded=False, detail=detail))
        self._warn(src, f"{detail}; fxtrace cannot check this at run time: the trace reuses "
                        "the value seen while tracing.")

    def _guard(self, frame: _Frame, cond: fx.Node, kind: str, value: Any,
               src: Optional[SourceLoc], detail: str, structural: bool = False) -> None:
        """Assert ``cond`` at run time. ``structural`` guards check the shape of containers
        (how many items a list has), which torch.jit checks too: kept with ``guards=False``."""
        where = "the trace's inputs" if src is None else (
            f"{src.short} ({src.code})" if src.code else src.short)
        msg = (f"fxtrace guard failed at {where}: traced with {detail}; "
               "this trace only covers inputs that take the same path"
               + (" [container check, kept with guards=False]" if structural else ""))
        if self.guards or structural:  # otherwise the condition nodes are dead; DCE drops them
            guard = self._create(frame, "call_function", torch._assert, (cond, msg), {}, None,
                                 source=src)
            guard.meta["fxtrace_guard"] = True
        self.specialisations.append(Specialisation(kind, _short(value), src, frame.path,
                                                   guarded=self.guards or structural,
                                                   detail=detail))

    def _warn(self, src: Optional[SourceLoc], message: str) -> None:
        key = (src.filename, src.lineno, message) if src is not None else (None, None, message)
        if key in self._warned:
            return
        self._warned.add(key)
        if src is None:
            warnings.warn(message, TracerWarning, stacklevel=3)
        else:
            warnings.warn_explicit(message, TracerWarning, src.filename, src.lineno)

    # -- module calls -----------------------------------------------------------------------
    def module_path(self, module: torch.nn.Module) -> Optional[str]:
        """The qualified name of ``module`` inside the current frame's module, else None."""
        frame = self.frame
        if frame.module is None:
            return None
        prefix = frame.path + "." if frame.path else ""
        for qual in self.module_names.get(id(module), ()):
            if qual.startswith(prefix) and qual != frame.path:
                return qual
        return None

    def trace_of(self, module: Optional[torch.nn.Module], path: str) -> ModuleTrace:
        key = id(module)
        if key not in self.module_traces:
            self.module_traces[key] = ModuleTrace(module, path)  # type: ignore[arg-type]
        return self.module_traces[key]

    def call_module(self, module: torch.nn.Module, orig_call: Callable[..., Any],
                    args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
        if self.hook_module_class is not None:
            self.hook_module_class(type(module))
        path = self.module_path(module)
        if path is None:
            # Not a submodule of the module whose graph is being built (a module held in a plain
            # list, or a sibling reached through a reference): its ops are recorded inline.
            return orig_call(module, *args, **kwargs)
        src = user_source(sys._getframe(2))
        parent = self.frame
        relative = path[len(parent.path) + 1:] if parent.path else path
        trace = self.trace_of(module, path)
        trace.calls += 1
        if isinstance(module, torch.jit.ScriptModule):
            self.export_missing((args, kwargs))
            fx_args = [self._map_arg(a) for a in args]
            fx_kwargs = {k: self._map_arg(v) for k, v in kwargs.items()}
            out = orig_call(module, *args, **kwargs)
            return self._emit_call(parent, relative, "forward", fx_args, out, src, fx_kwargs)
        names = [(n, v) for n, v in _bind_names(_signature(module.forward), args, kwargs)
                 if _has_traced(v)]
        self.export_missing([v for _, v in names])
        call_args: List[Any] = [self._map_arg(v) for _, v in names]
        frame = _Frame(module, path, parent, trace)
        self.frames.append(frame)
        try:
            for name, value in names:
                self._input(frame, name, value)
            if _reads_training(type(module)):
                self._guard_training(frame, module, "its code reads self.training")
            out = orig_call(module, *args, **kwargs)
            leaves = self._output_flat(frame, out)
        finally:
            self.frames.pop()
        call_args.extend(self.resolve(value, parent) for value in frame.lifted)
        method = self._add_variant(trace, frame)
        node = self._emit_node(parent, relative, method, call_args, out, src)
        frame.call_node = node
        if frame.direct:
            parent.bind(leaves[0], node)
        else:
            for i, leaf in enumerate(leaves):
                item = self._create(parent, "call_function", operator.getitem, (node, i), {}, leaf,
                                    source=src)
                parent.bind(leaf, item)
        return out

    def _emit_call(self, parent: _Frame, path: str, method: str, args: List[Any], out: Any,
                   src: Optional[SourceLoc], kwargs: Optional[Dict[str, Any]] = None) -> Any:
        node = self._emit_node(parent, path, method, args, out, src, kwargs)
        self._bind_structure(parent, node, out)
        return out

    def _emit_node(self, parent: _Frame, path: str, method: str, args: List[Any], out: Any,
                   src: Optional[SourceLoc], kwargs: Optional[Dict[str, Any]] = None) -> fx.Node:
        if method == "forward":
            return self._create(parent, "call_module", path, tuple(args), kwargs or {}, out,
                                source=src)
        mod = self._create(parent, "get_attr", path, (), {}, None, source=src)
        return self._create(parent, "call_method", method, (mod, *args), kwargs or {}, out,
                            source=src)

    # NOTE [Submodule outputs]
    # A submodule's graph returns the *traced leaves* of its result (tensors, traced sizes) as
    # one value or a flat tuple; the caller keeps the Python structure and binds each leaf to
    # ``getitem(call, i)``. Non-tensor leaves (None, objects, plain ints) stay Python values in
    # the caller, as in eager, so a submodule may return anything TorchScript cannot express.
    # A tensor computed inside a finished call and reached by the caller another way (a list
    # or attribute used as a side channel, as transformers' output-capturing hooks do) is
    # *exported*: appended to the outputs of the graphs between its producer and the frame
    # that reads it, so it stays live instead of becoming a constant.
    def _output_flat(self, frame: _Frame, out: Any) -> List[Any]:
        leaves: List[Any] = []
        seen: set = set()
        for leaf in _leaves(out):
            if (isinstance(leaf, (torch.Tensor, TracedSize)) or is_traced(leaf)) and \
                    id(leaf) not in seen:
                seen.add(id(leaf))
                leaves.append(leaf)
        self.export_missing(leaves)
        nodes = [self.resolve(leaf) for leaf in leaves]
        self._guard_unconsumed_reads(frame)
        frame.direct = len(leaves) == 1 and leaves[0] is out
        node = frame.graph.output(nodes[0] if frame.direct else tuple(nodes))
        node.meta.update({SOURCE: None, MODULE: frame.path, TENSOR_META: None, VALUE_TYPE: None})
        frame.output_node = node
        return leaves

    def _export(self, value: Any) -> bool:
        """Make a tensor produced in a finished submodule call available in the open frames
        (see NOTE [Submodule outputs]). False when it was not produced by a recorded op."""
        hit = self.produced.get(id(value))
        if hit is None or hit[0] is not value:
            return False
        _, frame, node = hit
        open_frames = {id(f) for f in self.frames}
        while id(frame) not in open_frames:
            if frame.call_node is None or frame.parent is None:
                return False
            node = self._add_output(frame, node)
            frame = frame.parent
        frame.bind(value, node)
        return True

    def _add_output(self, frame: _Frame, node: fx.Node) -> fx.Node:
        """Append ``node`` (of ``frame``'s graph) to the outputs of the graph the call uses;
        return the node reading it in the caller's graph."""
        graph = frame.canonical if frame.canonical is not None else frame.graph
        if graph is not frame.graph:  # deduplicated: the same node, by position, in the variant
            node = list(graph.nodes)[list(frame.graph.nodes).index(node)]
        output = next(n for n in reversed(graph.nodes) if n.op == "output")
        sites = [f for f in frame.trace.sites.get(id(graph), [frame]) if f.call_node is not None]
        if frame.direct:
            for site in sites:  # every caller of this graph now reads item 0
                self._index_call(site, 0, replace=True)
                site.direct = False
            values = (output.args[0],)
        else:
            values = tuple(output.args[0])
        output.args = (values + (node,),)
        return self._index_call(frame, len(values), replace=False)

    def _index_call(self, site: _Frame, index: int, replace: bool) -> fx.Node:
        """``getitem(call, index)`` right after ``site``'s call; with ``replace``, the old uses
        of the call (and the caller's bindings) move to it."""
        call = site.call_node
        assert call is not None and site.parent is not None
        with call.graph.inserting_after(call):
            item = call.graph.create_node("call_function", operator.getitem, (call, index), {})
        item.meta.update({SOURCE: call.meta.get(SOURCE), MODULE: call.meta.get(MODULE),
                          TENSOR_META: None, VALUE_TYPE: None})
        if replace:
            call.replace_all_uses_with(item, delete_user_cb=lambda user: user is not item)
            for key, (obj, bound) in list(site.parent.values.items()):
                if bound is call:
                    site.parent.values[key] = (obj, item)
        return item

    def _bind_structure(self, frame: _Frame, node: fx.Node, value: Any) -> None:
        """Bind every tensor / traced number inside a call's result to getitem nodes of it."""
        if isinstance(value, torch.Tensor):
            frame.bind(value, node)
        elif is_traced(value) or isinstance(value, TracedSize):
            frame.bind(value, node)
        elif isinstance(value, (tuple, list)):
            for i, item in enumerate(value):
                if _has_traced(item):
                    sub = self._create(frame, "call_function", operator.getitem, (node, i), {}, item,
                                       source=node.meta[SOURCE])
                    self._bind_structure(frame, sub, item)
        elif isinstance(value, dict):
            for k, item in value.items():
                if _has_traced(item):
                    sub = self._create(frame, "call_function", operator.getitem, (node, k), {}, item,
                                       source=node.meta[SOURCE])
                    self._bind_structure(frame, sub, item)

    def _input(self, frame: _Frame, name: str, value: Any, where: str = "input") -> fx.Node:
        """Make a placeholder for ``value`` in ``frame`` and bind what it contains."""
        node = frame.placeholder(name, value, python_type_of(value, where))
        self._bind_structure_input(frame, node, value)
        return node

    def _guard_constant_input(self, frame: _Frame, node: fx.Node, name: str, value: Any) -> None:
        """A Python scalar or None given as a top-level input is baked into the trace (as in
        torch.jit): guard that later calls pass the same value. A list or dict input is
        unpacked item by item: guard its length (structurally, as torch.jit does)."""
        if isinstance(value, (list, dict)):
            n = len(value)
            seen = self._create(frame, "call_function", len, (node,), {}, n, source=None)
            cond = self._create(frame, "call_function", operator.eq, (seen, n), {}, True,
                                source=None)
            kind = "list" if isinstance(value, list) else "dict"
            self._guard(frame, cond, "length", n, None, f"argument '{name}' a {kind} of {n} "
                        "items", structural=True)
            return
        if value is None:
            cond = self._create(frame, "call_function", operator.is_, (node, None), {}, True,
                                source=None)
        elif isinstance(value, (bool, int, float, str)) and not is_traced(value):
            cond = self._create(frame, "call_function", operator.eq, (node, value), {}, True,
                                source=None)
        else:
            return
        self._guard(frame, cond, "input", value, None, f"argument '{name}' = {value!r}")

    def _bind_structure_input(self, frame: _Frame, node: fx.Node, value: Any) -> None:
        if isinstance(value, (torch.Tensor, TracedSize)) or is_traced(value):
            frame.bind(value, node)
            return
        items = value.items() if isinstance(value, dict) else enumerate(value) \
            if isinstance(value, (tuple, list)) else ()
        for k, item in items:
            if _has_traced(item):
                sub = frame.graph.create_node("call_function", operator.getitem, (node, k), {})
                with torch._C.DisableTorchFunction():
                    sub.meta.update({SOURCE: None, MODULE: frame.path,
                                     TENSOR_META: tensor_meta_of(item), VALUE_TYPE: None})
                self._bind_structure_input(frame, sub, item)

    def _output(self, frame: _Frame, out: Any) -> None:
        self.export_missing(out)
        fx_out = self._output_arg(out)
        self._guard_unconsumed_reads(frame)
        node = frame.graph.output(fx_out)
        with torch._C.DisableTorchFunction():
            node.meta[TENSOR_META] = tensor_meta_of(out)
        node.meta[MODULE] = frame.path
        node.meta[SOURCE] = None

    def _output_arg(self, value: Any, path: str = "output") -> Any:
        """The fx output structure of the traced program's result; ``path`` names the part
        being converted (``output['past_key_values']``) for the error message."""
        if isinstance(value, (torch.Tensor, TracedSize)) or is_traced(value):
            return self.resolve(value)
        if isinstance(value, (tuple, list)):
            mapped = [self._output_arg(v, f"{path}[{i}]") for i, v in enumerate(value)]
            if isinstance(value, tuple) and type(value) is not tuple and hasattr(value, "_fields"):
                return type(value)(*mapped)
            return type(value)(mapped) if type(value) in (tuple, list) else tuple(mapped)
        if isinstance(value, dict):
            return {k: self._output_arg(v, f"{path}[{k!r}]") for k, v in value.items()}
        if isinstance(value, _LEAF_TYPES):
            return value
        cls = type(value)
        hint = ("; it is a cache object: trace with caching off (e.g. use_cache=False in the "
                "call or the model's config)" if any("Cache" in c.__name__ for c in cls.__mro__)
                else "; return its tensors instead, or leave it out of the output")
        raise TraceError(f"{path} is a {cls.__qualname__}, which a TorchScript trace cannot "
                         "return (only tensors, numbers, strings, None and tuples, lists and "
                         f"dicts of them){hint}")

    def _add_variant(self, trace: ModuleTrace, frame: _Frame) -> str:
        key = _graph_key(frame.graph)
        if key in trace.keys:
            index = trace.keys.index(key)
        else:
            trace.keys.append(key)
            trace.graphs.append(frame.graph)
            index = len(trace.graphs) - 1
        frame.canonical = trace.graphs[index]
        trace.sites.setdefault(id(frame.canonical), []).append(frame)
        return "forward" if index == 0 else f"forward{index}"

    # -- the torch function hook --------------------------------------------------------------
    def on_torch_function(self, func: Callable[..., Any], args: Tuple[Any, ...],
                          kwargs: Dict[str, Any]) -> Any:
        prop = _property_name(func)
        if prop is not None:
            return self._on_property(prop, func, args)
        method = _tensor_method_name(func)
        handler = _SPECIAL_METHODS.get(method) if method is not None else None
        if handler is not None:
            return handler(self, func, args, kwargs)
        real_args, real_kwargs = _untraced_tree(args), _untraced_tree(kwargs)
        out = func(*real_args, **real_kwargs)
        if method in _METADATA_METHODS and not (isinstance(out, torch.Tensor) and
                                                 self._find(out, self.frame) is None):
            return out  # (``x.type(torch.float64)`` returns a new tensor: recorded below)
        if not _has_tensor(out):
            return self._on_value(func, method, args, kwargs, out)
        name = method or getattr(func, "__name__", "")
        if func in (torch.tensor, torch.as_tensor) and args and isinstance(args[0], (list, tuple)) \
                and any(isinstance(v, torch.Tensor) for v in _leaves(args[0])):
            return self._tensor_from_tensors(args[0], out)
        if name in _MODE_DEPENDENT:
            self._guard_training(self.frame, self.frame.module, f"{name} depends on it")
        if method == "__getitem__":
            return self.record("call_function", operator.getitem, args, kwargs, out)
        if self.force_outplace:
            method, kwargs = _outplace(method, func, kwargs)
        if method is not None:
            return self.record("call_method", method, args, kwargs, out)
        out = self.record("call_function", func, args, kwargs, out)
        if func in _SIZED_FACTORIES:
            self.note_factory_sizes(func, args, kwargs, out)
        return out

    def _tensor_from_tensors(self, data: Any, out: torch.Tensor) -> torch.Tensor:
        """``torch.tensor([t0, t1, ...])`` of tensors: TorchScript's ``torch.tensor`` takes
        numbers only, so a flat list of equally shaped tensors is recorded as a detached
        ``torch.stack``; anything else becomes a constant, with a warning."""
        items = list(data)
        if not all(isinstance(v, torch.Tensor) for v in items) or len(
                {tuple(v.shape) for v in items}) != 1:
            self.specialise_plain("constant", f"Tensor{tuple(out.shape)}",
                                  "torch.tensor() of a nested or mixed list of tensors is a constant")
            return out
        stacked = self._create(self.frame, "call_function", torch.stack,
                               (self.to_arg(items),), {}, out)
        if any(v.dtype != out.dtype for v in items):  # else the dtype follows the inputs
            stacked = self._create(self.frame, "call_method", "to", (stacked, out.dtype), {}, out)
        node = self._create(self.frame, "call_method", "detach", (stacked,), {}, out)
        self._bind_output(self.frame, node, out)
        return out

    def _on_value(self, func: Callable[..., Any], method: Optional[str], args: Tuple[Any, ...],
                  kwargs: Dict[str, Any], out: Any) -> Any:
        """A torch call returned a plain Python value computed from graph tensors: guard it."""
        if not any(self._is_graph_tensor(a) for a in _leaves((args, kwargs))):
            return out
        name = method or getattr(func, "__name__", str(func))
        src = user_source(sys._getframe(2))
        try:
            if not isinstance(out, (bool, int, float)):
                raise _Unrecordable(type(out).__name__)
            self.export_missing((args, kwargs))
            fx_args, fx_kwargs = self._map_arg(args), self._map_arg(kwargs)
        except _Unrecordable:
            self.specialise_plain("value", out, f"{name}() result frozen")
            return out
        frame = self.frame
        op, target = ("call_method", method) if method is not None else ("call_function", func)
        node = self._create(frame, op, target, fx_args, fx_kwargs, out, source=src)
        cond = self._create(frame, "call_function", operator.eq, (node, out), {}, True, source=src)
        self._guard(frame, cond, name, out, src, f"{name}() == {out!r}")
        self._warn(src, f"Converting a tensor to a Python value ({name}) might cause the trace "
                        "to be incorrect. fxtrace guards it at run time.")
        return out

    def _on_property(self, prop: str, func: Callable[..., Any], args: Tuple[Any, ...]) -> Any:
        t = args[0]
        value = func(*args)
        if prop == "shape":
            return self._sizes(t, value)
        if prop == "ndim":
            return self._scalar_method(t, "dim", (), value)
        if prop in ("dtype", "device"):
            return self._read_metadata(prop, t, value)
        if prop in _DEVICE_PROPERTIES and self._is_graph_tensor(t):
            self._read_metadata("device", t, t.device)  # never consumed: becomes a guard
            return value
        if prop in ("T", "mT", "H", "mH", "data", "real", "imag"):
            target, extra = {
                "T": ("permute", (tuple(range(t.dim() - 1, -1, -1)),)),
                "mT": ("transpose", (-2, -1)),
                "H": ("adjoint", ()) if t.is_complex() else ("permute", (tuple(range(t.dim() - 1, -1, -1)),)),
                "mH": ("adjoint", ()),
                "data": ("detach", ()),
                "real": ("real", ()),
                "imag": ("imag", ()),
            }[prop]
            if target in ("real", "imag"):
                return self.record("call_function", getattr(torch, target), (t,), {}, value)
            return self.record("call_method", target, (t, *extra), {}, value)
        return value

    def _computed(self, value: Any) -> bool:
        """Whether some open frame computed ``value`` (no node is created or lifted)."""
        frame: Optional[_Frame] = self.frame
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

    def _sizes(self, t: torch.Tensor, value: Sequence[int]) -> Any:
        if not self._is_graph_tensor(t):
            return value
        source = self.resolve(t)
        node = self._create(self.frame, "call_method", "size", (source,), {}, tuple(value))
        sizes = TracedSize(tuple(value), self, self.known_sizes.get(source))
        self.frame.bind(sizes, node)
        return sizes

    def note_factory_sizes(self, func: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any],
                           out: Any) -> None:
        """Remember the sizes a factory call gave its result (``torch.zeros(1, b, 16)``:
        ``(1, b, 16)``, ``b`` a traced int), so that reading them back records no
        ``size()`` items and no guard: at run time they are those arguments by construction.
        Only for a result still bound to the factory's node in this frame (an in-place op
        rebinds it, and a lifted copy in a child frame is another node)."""
        if not isinstance(out, torch.Tensor):
            return
        dims: Any = kwargs.get("size")
        if dims is None and args:
            first = args[0]
            dims = first if isinstance(first, (tuple, list)) else (
                None if func is torch.full else args)
        if isinstance(dims, TracedSize) and dims.known is not None:
            dims = dims.known
        if not isinstance(dims, (tuple, list)) or isinstance(dims, TracedSize) or not all(
                isinstance(d, int) and not isinstance(d, bool) for d in dims):
            return
        if tuple(int(untraced(d)) for d in dims) != tuple(out.shape):
            return
        node = self.frame.lookup(out)
        if node is not None and node.op == "call_function":
            self.known_sizes[node] = tuple(dims)

    def size_item(self, sizes: TracedSize, index: Any) -> Any:
        """``sizes[index]`` as a traced int reading ``size[index]`` (sign kept as written);
        an item the graph fixed itself (:meth:`note_factory_sizes`) is that value."""
        if self.finished:
            return untraced(tuple.__getitem__(sizes, untraced(index)))
        if sizes.known is not None and type(index) is int and \
                -len(sizes.known) <= index < len(sizes.known):
            return sizes.known[index]
        plain = tuple.__getitem__(sizes, untraced(index))
        node = self._create(self.frame, "call_function", operator.getitem,
                            (self.resolve(sizes), self.to_arg(index)), {}, plain)
        return self.traced_int(node, plain)

    def guard_rank(self, sizes: TracedSize) -> None:
        """A use of a whole size tuple that depends on the rank: guard ``len(size) == rank``
        (none for sizes the graph fixed itself: their rank is the number of arguments)."""
        if sizes.known is not None or self.finished:
            return
        src = user_source(sys._getframe(2))
        frame = self.frame
        rank = tuple.__len__(sizes)
        seen = self._create(frame, "call_function", len, (self.resolve(sizes),), {}, rank, source=src)
        cond = self._create(frame, "call_function", operator.eq, (seen, rank), {}, True, source=src)
        self._guard(frame, cond, "rank", rank, src, f"a tensor of rank {rank}")

    def _scalar_method(self, t: torch.Tensor, method: str, extra: Tuple[Any, ...], value: int) -> Any:
        if not self._is_graph_tensor(t):
            return value
        node = self._create(self.frame, "call_method", method, (self.resolve(t), *extra), {}, value)
        return self.traced_int(node, value)

    def record_deepcopy(self, source: torch.Tensor, copy: torch.Tensor) -> None:
        """Record ``copy = copy.deepcopy(source)`` as ``source.detach().clone()`` (then
        ``requires_grad_()`` when the copy requires grad): TorchScript spells no deepcopy."""
        frame = self.frame
        self.export_missing(source)
        node = self._create(frame, "call_method", "detach", (self.resolve(source),), {}, copy)
        node = self._create(frame, "call_method", "clone", (node,), {}, copy)
        if copy.requires_grad:
            node = self._create(frame, "call_method", "requires_grad_", (node, True), {}, copy)
        self._bind_output(frame, node, copy)

    def _untraced_call(self, func: Callable[..., Any], args: Tuple[Any, ...],
                       kwargs: Dict[str, Any]) -> Any:
        return func(*_untraced_tree(args), **_untraced_tree(kwargs))


# -- special Tensor methods -------------------------------------------------------------------
def _size_method(tr: ConcreteTracer, func: Callable[..., Any], args: Tuple[Any, ...],
                 kwargs: Dict[str, Any]) -> Any:
    value = tr._untraced_call(func, args, kwargs)
    t = args[0]
    dim = args[1] if len(args) > 1 else kwargs.get("dim")
    if dim is None:
        return tr._sizes(t, value)
    if not tr._is_graph_tensor(t):
        return value
    known = tr.known_sizes.get(tr.resolve(t))
    if known is not None and type(dim) is int and -len(known) <= dim < len(known):
        return known[dim]  # fixed by the factory call that made ``t``
    return tr._scalar_method(t, "size", (tr.to_arg(dim),), value)


def _int_method(name: str) -> Callable[..., Any]:
    def handler(tr: ConcreteTracer, func: Callable[..., Any], args: Tuple[Any, ...],
                kwargs: Dict[str, Any]) -> Any:
        value = tr._untraced_call(func, args, kwargs)
        return tr._scalar_method(args[0], name, (), value)
    return handler


def _escape_method(kind: str, observe: Callable[[fx.Node], Tuple[str, Any, Tuple[Any, ...]]]
                   ) -> Callable[..., Any]:
    """A Tensor method that turns a tensor's value into a Python value (bool, int, item, len)."""
    def handler(tr: ConcreteTracer, func: Callable[..., Any], args: Tuple[Any, ...],
                kwargs: Dict[str, Any]) -> Any:
        value = tr._untraced_call(func, args, kwargs)
        if tr._is_graph_tensor(args[0]):
            tr.specialise_tensor(kind, args[0], value, observe)
        return value
    return handler


def _iter_method(tr: ConcreteTracer, func: Callable[..., Any], args: Tuple[Any, ...],
                 kwargs: Dict[str, Any]) -> Any:
    t = args[0]
    if not tr._is_graph_tensor(t) or t.dim() == 0:
        return tr._untraced_call(func, args, kwargs)
    tr.specialise_tensor("iter", t, t.shape[0], lambda node: ("call_function", len, (node,)))
    return iter(t.unbind(0))  # recorded: the mode is active again here


def _setitem_method(tr: ConcreteTracer, func: Callable[..., Any], args: Tuple[Any, ...],
                    kwargs: Dict[str, Any]) -> Any:
    tr._untraced_call(func, args, kwargs)
    return tr.record("call_function", operator.setitem, args, kwargs, None)


def _deepcopy_method(tr: ConcreteTracer, func: Callable[..., Any], args: Tuple[Any, ...],
                     kwargs: Dict[str, Any]) -> Any:
    """``copy.deepcopy(t)``: a new leaf with ``t``'s values, dtype, device and requires_grad,
    and no autograd history. TorchScript has no ``__deepcopy__``: it is recorded as
    ``t.detach().clone()`` (then ``requires_grad_()`` when the copy requires grad)."""
    out = tr._untraced_call(func, args, kwargs)
    if isinstance(out, torch.Tensor) and args and isinstance(args[0], torch.Tensor):
        tr.record_deepcopy(args[0], out)
    return out


def _builtin(fn: Callable[..., Any]) -> Callable[[fx.Node], Tuple[str, Any, Tuple[Any, ...]]]:
    return lambda node: ("call_function", fn, (node,))


def _method(name: str) -> Callable[[fx.Node], Tuple[str, Any, Tuple[Any, ...]]]:
    return lambda node: ("call_method", name, (node,))


_SPECIAL_METHODS: Dict[str, Callable[..., Any]] = {
    "size": _size_method,
    "dim": _int_method("dim"),
    "ndimension": _int_method("dim"),
    "numel": _int_method("numel"),
    "nelement": _int_method("numel"),
    "__bool__": _escape_method("bool", _builtin(bool)),
    "__int__": _escape_method("int", _builtin(int)),
    "__index__": _escape_method("index", _builtin(int)),
    "__float__": _escape_method("float", _builtin(float)),
    "item": _escape_method("item", _method("item")),
    "tolist": _escape_method("tolist", _method("tolist")),
    "__len__": _escape_method("len", _builtin(len)),
    "__iter__": _iter_method,
    "__setitem__": _setitem_method,
    "__deepcopy__": _deepcopy_method,
}

_OP_TEXT = {operator.eq: "==", operator.ne: "!=", operator.lt: "<", operator.le: "<=",
            operator.gt: ">", operator.ge: ">="}


# -- helpers ------------------------------------------------------------------------------------
def _property_name(func: Any) -> Optional[str]:
    if type(func).__name__ == "method-wrapper" and getattr(func, "__name__", "") == "__get__":
        owner = getattr(func, "__self__", None)
        return getattr(owner, "__name__", None)
    return None


_TENSOR_CLASSES = (torch.Tensor, torch._C.TensorBase)
_DEVICE_PROPERTIES = frozenset({"is_cuda", "is_cpu", "is_xpu", "is_mps", "is_meta", "is_xla",
                                "is_ipu", "is_maia", "is_mtia", "is_vulkan"})


def _tensor_method_name(func: Any) -> Optional[str]:
    name = getattr(func, "__name__", None)
    if name is None:
        return None
    for cls in _TENSOR_CLASSES:
        if cls.__dict__.get(name) is func:
            return name
    return None


# math functions that take an int subclass's value without calling one of its methods.
_MATH_INT_ARGS = ("isqrt", "factorial", "comb", "perm", "gcd", "lcm")
# ... of which TorchScript has its own spelling (checked against torch 2.13).
_MATH_RECORDED = ("log", "log10", "log1p", "exp", "expm1", "copysign", "atan2", "factorial", "gcd")
_MATH_ESCAPES = ("log", "log2", "log10", "log1p", "exp", "expm1", "copysign", "atan2",
                 "hypot") + _MATH_INT_ARGS

_READS_TRAINING: Dict[type, bool] = {}


def _code_names(code: Any) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            yield from _code_names(const)


def _reads_training(cls: type) -> bool:
    """Whether any method of ``cls`` (below ``nn.Module``) reads an attribute ``training``.

    Such a module may branch on its mode in Python, which no op records; its flag is guarded
    whenever it is called during capture (NOTE: conservative: a read used only for logging
    guards too)."""
    hit = _READS_TRAINING.get(cls)
    if hit is None:
        hit = False
        for klass in cls.__mro__:
            if klass in (torch.nn.Module, object):
                continue
            for member in vars(klass).values():
                fn = getattr(member, "__func__", member)
                code = getattr(fn, "__code__", None)
                if code is not None and "training" in set(_code_names(code)):
                    hit = True
                    break
            if hit:
                break
        _READS_TRAINING[cls] = hit
    return hit


def _outplace(method: Optional[str], func: Any, kwargs: Dict[str, Any]
              ) -> Tuple[Optional[str], Dict[str, Any]]:
    """``_force_outplace``: ``x.add_(y)`` is recorded as ``x.add(y)`` (the tensor object is then
    bound to the out-of-place result, so later uses read it), ``F.relu(x, inplace=True)`` as
    ``inplace=False``. Writes through views are not reproduced, as in torch.jit."""
    if method is not None and method.endswith("_") and not method.endswith("__") and hasattr(
            torch.Tensor, method[:-1]):
        return method[:-1], kwargs
    if kwargs.get("inplace") is True:
        return method, {**kwargs, "inplace": False}
    return method, kwargs


def _untraced_tree(value: Any) -> Any:
    if is_traced(value):
        return untraced(value)
    if type(value) in (tuple, list):
        return type(value)(_untraced_tree(v) for v in value)
    if isinstance(value, TracedSize):
        return untraced(value)
    if type(value) is dict:
        return {k: _untraced_tree(v) for k, v in value.items()}
    return value


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, TracedSize):
        yield value  # a leaf: iterating it would record a rank guard
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _leaves(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    else:
        yield value


def _has_tensor(value: Any) -> bool:
    return any(isinstance(v, torch.Tensor) for v in _leaves(value))


def _has_traced(value: Any) -> bool:
    return any(isinstance(v, (torch.Tensor, TracedSize)) or is_traced(v) for v in _leaves(value))


def _short(value: Any) -> Any:
    text = repr(value)
    return value if len(text) <= 60 else text[:57] + "..."


_SIGNATURES: Dict[Any, Optional[inspect.Signature]] = {}


def _signature(fn: Callable[..., Any]) -> Optional[inspect.Signature]:
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


def _new_node(graph: fx.Graph, op: str, target: Any, args: Tuple[Any, ...],
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


def _bind_names(signature: Optional[inspect.Signature], args: Tuple[Any, ...],
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


def _graph_key(graph: fx.Graph) -> str:
    """A canonical text of a graph: equal for graphs that compute the same thing."""
    index: Dict[fx.Node, int] = {}
    lines = []
    for i, node in enumerate(graph.nodes):
        index[node] = i
        args = fx.node.map_arg((node.args, node.kwargs), lambda n: f"%{index[n]}")
        target = node.target if isinstance(node.target, str) else getattr(
            node.target, "__qualname__", repr(node.target))
        if node.target is torch._assert:
            args = (args[0][0],)
        lines.append(f"{node.op} {target} {args!r} {node.type!r}")
    return "\n".join(lines)


_NO_ATTR = object()  # "the class had no __setattr__ of its own"

#: Factories whose size arguments are the result's sizes (see note_factory_sizes).
_SIZED_FACTORIES = frozenset({torch.zeros, torch.ones, torch.empty, torch.rand, torch.randn,
                              torch.full})


class _RecordingMode(TorchFunctionMode):
    """The torch function mode of a capture: every torch-level call goes to the tracer."""

    def __init__(self, tracer: ConcreteTracer) -> None:
        super().__init__()
        self.tracer = tracer

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        return self.tracer.on_torch_function(func, args, kwargs or {})


@contextlib.contextmanager
def _tracing_environment(tracer: ConcreteTracer) -> Iterator[None]:
    """Install the torch function mode, the module-call and attribute hooks and is_tracing;
    undo all.

    NOTE [Cheap patches]: assigning a dunder such as ``__call__`` or ``__setattr__`` on
    ``nn.Module`` makes CPython update that slot in every subclass (hundreds, thousands with
    model libraries imported): ~0.5 ms per capture. Calls are hooked through
    ``Module._call_impl`` (a plain attribute, which ``Module.__call__`` calls), and
    ``__setattr__`` only on the classes of the modules the capture meets (the root's tree up
    front, any other module when it is called), each restored afterwards.
    """
    orig_call = torch.nn.Module._call_impl
    orig_is_tracing = torch._C._is_tracing
    orig_range = builtins.range
    orig_script_call = torch._C.ScriptFunction.__call__
    orig_apply = torch.autograd.Function.__dict__["apply"]
    orig_param_deepcopy = torch.nn.Parameter.__dict__["__deepcopy__"]

    def patched_call(module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        return tracer.call_module(module, orig_call, args, kwargs)

    def traced_range(*args: Any) -> range:
        # range() reads an int subclass's value without calling __index__, so a loop over a
        # live size would escape unnoticed; this is where it is recorded and guarded.
        for a in args:
            if is_traced(a):
                a.__index__()
        return orig_range(*(untraced(a) for a in args))

    orig_math = {name: getattr(math, name) for name in _MATH_ESCAPES}

    def math_escape(name: str) -> Callable[..., Any]:
        fn = orig_math[name]

        def call(*args: Any) -> Any:
            # These read an int subclass's value without __float__/__index__. TorchScript
            # has the function: record it, the value stays live. Otherwise make the escape
            # explicit, so it is recorded and guarded.
            if not any(is_traced(a) for a in args):
                return fn(*args)
            if name in _MATH_RECORDED:
                return tracer.record_scalar(fn, args, fn(*(untraced(a) for a in args)))
            convert = int if name in _MATH_INT_ARGS else float
            return fn(*(convert(a) if is_traced(a) else a for a in args))
        return call

    def script_call(fn: Any, *args: Any, **kwargs: Any) -> Any:
        # TorchScript functions run in C++, unseen by the mode: record the call itself, so the
        # scripted control flow survives in the trace.
        with torch._C.DisableTorchFunction():
            out = orig_script_call(fn, *_untraced_tree(args), **_untraced_tree(kwargs))
        return tracer.record("call_function", fn, args, kwargs, out)

    def param_deepcopy(param: torch.nn.Parameter, memo: Dict[int, Any]) -> Any:
        # Parameter.__deepcopy__ builds its copy with _make_subclass, which the mode does
        # not see: the copy would be an unknown tensor. Record it as the deepcopy it is.
        with torch._C.DisableTorchFunction():
            out = orig_param_deepcopy(param, memo)
        tracer.record_deepcopy(param, out)
        return out

    def autograd_apply(cls: Any, *args: Any, **kwargs: Any) -> Any:
        tracer._warn(user_source(sys._getframe(1)),
                     f"{cls.__qualname__} is a custom torch.autograd.Function: its forward is "
                     "traced op by op and its custom backward is not kept; gradients of the "
                     "trace are those of the recorded ops.")
        return orig_apply.__func__(cls, *args, **kwargs)

    def make_setattr(inner: Callable[..., None]) -> Callable[..., None]:
        def module_setattr(module: torch.nn.Module, name: str, value: Any) -> None:
            if busy:  # a class's own __setattr__ calling a hooked base: checked once already
                return inner(module, name, value)
            busy.append(True)
            try:
                if not isinstance(value, torch.Tensor) and _holds_traced_numbers(value):
                    tracer.traced_attributes.append((module, name))
                check_setattr(module, name, value)
                inner(module, name, value)
            finally:
                busy.pop()
        hook_functions.add(module_setattr)
        return module_setattr

    def check_setattr(module: torch.nn.Module, name: str, value: Any) -> None:
        current = module.__dict__.get(name, module._buffers.get(name))
        if isinstance(value, torch.Tensor) and not isinstance(value, torch.nn.Parameter) and \
                current is not value and tracer._computed(value):
            if not tracer._rebind_state(module, name, value):
                tracer._warn(user_source(sys._getframe(2)),
                             f"assigning a traced tensor to module attribute '{name}' "
                             f"({type(module).__name__}): the trace does not keep this state "
                             "between calls; it computes the value but never stores it.")
        elif name != "training" and not isinstance(value, (torch.Tensor, torch.nn.Module)) and \
                name in module.__dict__ and current is not value and not callable(value):
            src = user_source(sys._getframe(2))
            paths = tracer.module_names.get(id(module)) or [None]
            tracer.python_writes.append((state_name(module, paths[0], name), src))
            tracer.python_writers.append(module)
            tracer._warn(src, f"forward changes the Python attribute '{name}' of "
                              f"{type(module).__name__}: Python state is frozen into the trace, "
                              "which will not see later changes.")

    busy: List[bool] = []
    hook_functions: set = set()
    seen_classes: set = set()
    hooked: List[Tuple[type, Any]] = []  # (class, its own __setattr__ before, or _NO_ATTR)

    def hook_class(cls: type) -> None:
        if cls in seen_classes:
            return
        seen_classes.add(cls)
        current = cls.__setattr__  # type: ignore[misc]
        if current in hook_functions:  # inherited from a hooked base
            return
        own = cls.__dict__.get("__setattr__", _NO_ATTR)
        try:
            cls.__setattr__ = make_setattr(current)  # type: ignore[method-assign,assignment]
        except TypeError:  # a class that takes no attributes: nothing to hook
            return
        hooked.append((cls, own))

    tracer.hook_module_class = hook_class
    if tracer.root is not None:
        for module in tracer.root.modules():
            hook_class(type(module))
    torch.nn.Module._call_impl = patched_call  # type: ignore[method-assign]
    torch._C._is_tracing = lambda: True  # type: ignore[assignment]
    builtins.range = traced_range  # type: ignore[assignment,misc]
    torch._C.ScriptFunction.__call__ = script_call  # type: ignore[method-assign]
    torch.autograd.Function.apply = classmethod(autograd_apply)  # type: ignore[method-assign]
    torch.nn.Parameter.__deepcopy__ = param_deepcopy  # type: ignore[method-assign]
    for name in _MATH_ESCAPES:
        setattr(math, name, math_escape(name))
    try:
        with _RecordingMode(tracer):
            yield
    finally:
        torch.nn.Module._call_impl = orig_call  # type: ignore[method-assign]
        torch._C._is_tracing = orig_is_tracing  # type: ignore[assignment]
        builtins.range = orig_range  # type: ignore[misc]
        torch._C.ScriptFunction.__call__ = orig_script_call  # type: ignore[method-assign]
        torch.autograd.Function.apply = orig_apply  # type: ignore[method-assign]
        torch.nn.Parameter.__deepcopy__ = orig_param_deepcopy  # type: ignore[method-assign]
        tracer.hook_module_class = None
        for cls, own in reversed(hooked):
            if own is _NO_ATTR:
                delattr(cls, "__setattr__")
            else:
                cls.__setattr__ = own  # type: ignore[method-assign]
        for name, fn in orig_math.items():
            setattr(math, name, fn)


def capture_concrete(methods: Sequence[Tuple[str, Callable[..., Any], Tuple[Any, ...], Dict[str, Any]]],
                     *, root: Optional[torch.nn.Module], name: str, guards: bool = True,
                     force_outplace: bool = False) -> Tuple[ConcreteTracer, ModuleTrace]:
    """Run each ``(method_name, fn, args, kwargs)`` once, recording it into a root graph.

    ``root`` is the module the methods belong to (None for a plain function). All methods
    share one tracer, so a submodule called from several of them gets one graph per distinct
    behaviour. Returns the tracer and the root's :class:`ModuleTrace` (``named`` holds the
    root graph of each method).
    """
    tracer = ConcreteTracer(root, name, guards, force_outplace)
    containers = python_containers(root)
    root_trace = tracer.trace_of(root, "")
    for method_name, fn, args, kwargs in methods:
        root_trace.calls += 1
        frame = _Frame(root, "", None, root_trace)
        tracer.frames = [frame]
        signature = _signature(fn.forward if isinstance(fn, torch.nn.Module) else fn)
        if root is not None and _reads_training(type(root)):
            tracer._guard_training(frame, root, "its code reads self.training")
        for i, (pname, value) in enumerate(_bind_names(signature, args, kwargs)):
            where = f"example_inputs[{i}] (argument '{pname}')" if i < len(args) else \
                f"example_kwarg_inputs['{pname}']"
            node = tracer._input(frame, pname, value, where)
            tracer._guard_constant_input(frame, node, pname, value)
        with _tracing_environment(tracer):
            out = fn(*args, **kwargs)
        tracer._output(frame, out)
        root_trace.named[method_name] = frame.graph
    tracer.python_writes.extend((what, None) for what in mutated_containers(containers))
    _leave_plain_state(tracer, containers)
    tracer.finished = True
    return tracer, root_trace


def _holds_traced_numbers(value: Any) -> bool:
    return any(is_traced(v) or isinstance(v, TracedSize) for v in _leaves(value))


def _plain(value: Any) -> Any:
    """``value`` with traced numbers and sizes replaced by plain ones (sizes: torch.Size)."""
    if isinstance(value, TracedSize):
        return torch.Size(untraced(value))
    if is_traced(value):
        return untraced(value)
    if type(value) in (tuple, list):
        return type(value)(_plain(v) for v in value)
    if type(value) is dict:
        return {k: _plain(v) for k, v in value.items()}
    return value


def _leave_plain_state(tracer: ConcreteTracer, containers: Any) -> None:
    """Module state forward left holding traced numbers or sizes (``self.shape = x.shape``,
    ``self.sizes.append(x.size(0))``) gets their plain values, as after an eager run: a
    traced value outliving its capture would record into a finished graph when used."""
    for module, name in tracer.traced_attributes:
        value = module.__dict__.get(name)
        if value is not None and _holds_traced_numbers(value):
            module.__dict__[name] = _plain(value)
    for _, container, _ in containers:
        if not _holds_traced_numbers(container):
            continue
        if isinstance(container, list):
            container[:] = [_plain(v) for v in container]
        elif isinstance(container, dict):
            for key in list(container):
                container[key] = _plain(container[key])
        else:
            plain = {_plain(v) for v in container}
            container.clear()
            container.update(plain)
