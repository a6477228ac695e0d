"""The concrete tracer: run the user's code once on real inputs and record it into fx graphs.

NOTE [How concrete capture works]
User code runs on the real example tensors. A ``TorchFunctionMode`` sees every torch-level
call (torch functions, Tensor methods and operators, ``torch.nn.functional``, factories); the
tracer runs the call for real, then records a node whose arguments are the graph nodes that
produced the argument tensors (NOTE [Value map] in :mod:`.recorder`). Module calls are hooked
for the duration of the capture, so each submodule call opens a *frame* (:mod:`.modules`).
Every value the capture freezes becomes a specialisation and a guard (:mod:`.guards`). What
the tracer installs into torch and Python for the capture is in :mod:`.environment`: it acts
only for the capturing thread and is removed when the last capture ends.

The tracer is one class built in layers, each in its own module:
:class:`~.recorder.Recorder` (value map, nodes) < :class:`~.guards.Guards` <
:class:`~.modules.ModuleCalls` < :class:`ConcreteTracer` (the torch-function hook, metadata
and size reads).
"""
from __future__ import annotations

import operator
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.fx as fx

from .. import tree
from .environment import RecordingMode, tracing_environment
from .frames import Frame, MetadataRead, ModuleTrace, Unrecordable, bind_names, signature_of
from .inner_calls import call_inner, needs_inner_calls
from .lazy import materialise_lazy
from .leftover_state import leave_plain_state, unbind_state
from .live_bools import TracedBool
from .methods import (
    CONVERSIONS,
    DEVICE_PROPERTIES,
    METADATA_METHODS,
    MODE_DEPENDENT,
    SIZED_FACTORIES,
    SPECIAL_METHODS,
    keep_random_alive,
    outplace,
    property_name,
    reads_training,
    tensor_method_name,
)
from .modules import ModuleCalls
from .pystate import mutated_containers, python_containers, restore_containers
from .rebinding import StateCopy, assign_aliased_copies, forget_rebound_values, rebind_state
from .recorder import has_tensor, untraced_tree
from .source import user_source
from .values import TracedSize, untraced

__all__ = ["capture_concrete", "ConcreteTracer", "ModuleTrace", "Method"]

#: torch.jit.trace's warning when ``_force_outplace`` rewrites a write into a view.
OUTPLACE_VIEW_WARNING = (
    "There are other live references to the data region being modified when tracing in-place "
    "operator {}. This might cause the trace to be incorrect, because all other views that also "
    "reference this data will not reflect this change in the trace! On the other hand, if all "
    "other views use the same memory chunk, but are disjoint (e.g. are outputs of "
    "torch.split), this might still be safe.")

#: One method to capture: ``(method name, callable, args, kwargs)``.
Method = Tuple[str, Callable[..., Any], Tuple[Any, ...], Dict[str, Any]]


class ConcreteTracer(ModuleCalls):
    """Runs user code once and records its torch-level operations (see the module NOTE)."""

    fast_paths = False  # NOTE [Fast paths] in .environment

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: ``(graph, module, name)`` of the attributes a forward rebound by assignment
        #: (NOTE [Rebinding state]): their later rebindings are assignments too.
        self.assigned_state: set = set()
        #: the rebindings recorded as ``copy_``, revisited when the capture ends
        self.state_copies: List[StateCopy] = []
        #: values rebound into an attribute, standing for it in later frames (until the end)
        self.rebound_values: List[torch.Tensor] = []

    def restore_python_state(self) -> None:
        """Put back the Python attributes forward assigned and the containers it mutated in
        place (NOTE [Python state]): after a trace the model's Python state is as before.
        Called by the API once the Python-state test no longer needs what forward left."""
        for module, name, value in self.python_before.values():
            module.__dict__[name] = value
        restore_containers(self.containers)

    # -- the torch function hook --------------------------------------------------------------
    def on_torch_function(self, func: Callable[..., Any], args: Tuple[Any, ...],
                          kwargs: Dict[str, Any]) -> Any:
        self.numpy_exports.check(self)  # a write through .numpy() before this op (fuzz F8)
        self.writes.before(getattr(func, "__name__", ""), args, kwargs)
        prop = property_name(func)
        if prop is not None:
            return self._on_property(prop, func, args)
        method = tensor_method_name(func)
        handler = SPECIAL_METHODS.get(method) if method is not None else None
        if handler is not None:
            return handler(self, func, args, kwargs)
        if method is None and needs_inner_calls(func, args, kwargs):
            with RecordingMode(self):  # NOTE [Inner calls]
                return call_inner(func, args, kwargs)
        real_args, real_kwargs = untraced_tree(args), untraced_tree(kwargs)
        out = func(*real_args, **real_kwargs)
        if method in CONVERSIONS and self.guards and args and out is args[0] and \
                self._is_graph_tensor(out):
            # (guards=False records the call, as torch.jit does)
            if not self._follows_input(args[1:], kwargs):
                return self._noop_conversion(method, out)
            operand = self.resolve(out)
            result = self.record("call_method", method, args, kwargs, out)
            self._same_metadata(out, operand, self.resolve(out), method)
            return result
        if method in METADATA_METHODS and not (isinstance(out, torch.Tensor) and
                                                 self._find(out, self.frame) is None):
            return out  # (``x.type(torch.float64)`` returns a new tensor: recorded below)
        if not has_tensor(out):
            return self._on_value(func, method, args, kwargs, out)
        name = method or getattr(func, "__name__", "")
        if func in (torch.tensor, torch.as_tensor) and args and isinstance(args[0], (list, tuple)) \
                and any(isinstance(v, torch.Tensor) for v in tree.leaves(args[0])):
            return self._tensor_from_tensors(args[0], out)
        if name in MODE_DEPENDENT:
            self._guard_training(self.frame, self.frame.module, f"{name} depends on it")
        if method == "__getitem__":
            return self.record("call_function", operator.getitem, args, kwargs, out)
        if self.force_outplace:
            before = method
            method, kwargs = outplace(method, func, kwargs)
            if method != before and isinstance(args[0], torch.Tensor) and args[0]._is_view():
                self._warn(user_source(sys._getframe(1)), OUTPLACE_VIEW_WARNING.format(before))
        if method == "type" and isinstance(out, torch.Tensor) and len(args) > 1 and \
                isinstance(args[1], str):  # TorchScript reads type(str) as a device (fuzz F6)
            method, args, kwargs = "to", (args[0], out.device, out.dtype), {}
        if method is not None:
            return self.record("call_method", method, args, kwargs, out)
        out = self.record("call_function", func, args, kwargs, out)
        if func in SIZED_FACTORIES:
            self.note_factory_sizes(func, args, kwargs, out)
        return out

    def _follows_input(self, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> bool:
        """Whether a conversion's target comes from the program's values (``x.to(y)``,
        ``x.to(y.dtype)`` on the line that read it): then it is recorded and follows them."""
        src = user_source(sys._getframe(3))
        for value in tree.leaves((args, kwargs)):
            if isinstance(value, torch.Tensor) or self.frame.lookup(value) is not None:
                return True
            if isinstance(value, (torch.dtype, torch.device)) and any(
                    read.value == value and read.source is not None and src is not None and
                    (read.source.filename, read.source.lineno) == (src.filename, src.lineno)
                    for read in self.frame.reads):
                return True
        return False

    def _noop_conversion(self, method: str, t: torch.Tensor) -> torch.Tensor:
        """``x.float()`` / ``x.to(dtype)`` / ``x.type(...)`` returned ``x`` itself: the
        example already had that dtype and device. The object is both the operand and the
        result, so the trace cannot tell later uses apart; it keeps the operand and guards
        its dtype and device (another dtype is refused, never silently left unconverted)."""
        frame, node = self.frame, self.resolve(t)
        src = user_source(sys._getframe(2))
        for kind, value in (("dtype", t.dtype), ("device", t.device)):
            self.guard_equal(frame, ("call_function", getattr, (node, kind)), value, kind, src,
                             f"{kind} {value} ({method}() converted nothing)")
        return t

    def _same_metadata(self, t: torch.Tensor, operand: fx.Node, result: fx.Node,
                       method: str) -> None:
        """``x.to(y.dtype)`` returned ``x`` itself: the trace binds ``x`` to the conversion
        from here on, which is right only while the conversion converts nothing. Guard that
        it does not at run time (result's dtype and device are the operand's)."""
        frame, src = self.frame, user_source(sys._getframe(2))
        for kind in ("dtype", "device"):
            value = getattr(t, kind)
            seen = [self._create(frame, "call_function", getattr, (n, kind), {}, value,
                                 source=src) for n in (operand, result)]
            cond = self._create(frame, "call_function", operator.eq, tuple(seen), {}, True,
                                source=src)
            self._guard(frame, cond, kind, value, src,
                        f"{method}() converted nothing while tracing (same {kind})")

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
        if not any(self._is_graph_tensor(a) for a in tree.leaves((args, kwargs))):
            return out
        name = method or getattr(func, "__name__", None) or str(func)
        src = user_source(sys._getframe(2))
        try:
            if not isinstance(out, (bool, int, float)):
                raise Unrecordable(type(out).__name__)
            self.export_missing((args, kwargs))
            fx_args, fx_kwargs = self._map_arg(args), self._map_arg(kwargs)
        except Unrecordable:
            self.specialise_plain("value", out, f"{name}() result frozen")
            return out
        frame = self.frame
        op, target = ("call_method", method) if method is not None else ("call_function", func)
        if type(out) is bool:  # NOTE [Live bools]: guarded only where Python decides on it
            live = TracedBool(out, self, name)
            frame.bind(live, self._create(frame, op, target, fx_args, fx_kwargs, out, source=src))
            return live
        self.guard_equal(frame, (op, target, fx_args), out, name, src, f"{name}() == {out!r}",
                         kwargs=fx_kwargs)
        self.warn_frozen(src, f"Converting a tensor to a Python value ({name}) might cause "
                              "the trace to be incorrect", "value")
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
        if prop in DEVICE_PROPERTIES and self._is_graph_tensor(t):
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
        frame.reads.append(MetadataRead(kind, value, tensor, last, src))
        if kind == "device":
            node = self._create(frame, "call_function", getattr, (tensor, "device"), {}, value,
                                source=src)
            frame.bind(value, node)
        return value

    def _rebind_state(self, module: torch.nn.Module, name: str, value: torch.Tensor) -> bool:
        """``self.<name> = <computed tensor>``: NOTE [Rebinding state] in :mod:`.rebinding`."""
        return rebind_state(self, module, name, value)

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


def capture_concrete(methods: Sequence[Tuple[str, Callable[..., Any], Tuple[Any, ...], Dict[str, Any]]],
                     *, root: Optional[torch.nn.Module], name: str, guards: bool = True,
                     force_outplace: bool = False, fast_paths: bool = False
                     ) -> Tuple[ConcreteTracer, ModuleTrace]:
    """Run each ``(method_name, fn, args, kwargs)`` once, recording it into a root graph.

    ``root`` is the module the methods belong to (None for a plain function). All methods
    share one tracer, so a submodule called from several of them gets one graph per distinct
    behaviour. ``fast_paths``: record the fused kernels eager takes (NOTE [Fast paths] in
    :mod:`.environment`). Returns the tracer and the root's :class:`ModuleTrace` (``named``
    holds the root graph of each method).
    """
    tracer = ConcreteTracer(root, name, guards, force_outplace)
    tracer.fast_paths = fast_paths
    containers = tracer.containers = python_containers(root)
    root_trace = tracer.trace_of(root, "")
    try:
        _run_methods(tracer, root_trace, methods)
        assign_aliased_copies(tracer.state_copies)
    finally:
        tracer.writes.restore()  # NOTE [State writes]
        forget_rebound_values(tracer)
        unbind_state(tracer.rebound_objects.values())
    tracer.python_writes.extend((what, None) for what in mutated_containers(containers))
    leave_plain_state(tracer.traced_attributes, containers)
    tracer.finished = True
    return tracer, root_trace


def _run_methods(tracer: ConcreteTracer, root_trace: ModuleTrace, methods: Sequence[Method]
                 ) -> None:
    root = tracer.root
    for method_name, fn, args, kwargs in methods:
        args, kwargs = _distinct_inputs(tracer, args, kwargs)
        root_trace.calls += 1
        frame = Frame(root, "", None, root_trace)
        tracer.frames = [frame]
        signature = signature_of(fn.forward if isinstance(fn, torch.nn.Module) else fn)
        if root is not None and reads_training(type(root)):
            tracer._guard_training(frame, root, "its code reads self.training")
        for i, (pname, value) in enumerate(bind_names(signature, args, kwargs)):
            where = f"example_inputs[{i}] (argument '{pname}')" if i < len(args) else \
                f"example_kwarg_inputs['{pname}']"
            node = tracer._input(frame, pname, value, where)
            tracer._guard_constant_input(frame, node, pname, value)
        if root is not None and method_name == "forward":
            materialise_lazy(root, args, kwargs, None)  # NOTE [Lazy modules]
        with tracing_environment(tracer):
            out = fn(*args, **kwargs)
        tracer.numpy_exports.check(tracer)
        tracer._output(frame, out)
        keep_random_alive(tracer, frame.graph)
        root_trace.named[method_name] = frame.graph


def _distinct_inputs(tracer: ConcreteTracer, args: Tuple[Any, ...], kwargs: Dict[str, Any]
                     ) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
    """Each input position gets a tensor object of its own, as torch.jit hands them: a
    tensor repeated in the example (``f(t, t)``), or one that is also the model's own state
    (a parameter passed as input), is replaced by a view of itself. Otherwise the value map
    would read every use from one placeholder, and a program branching on identity (``q is
    k``) would take the path of that one example, silently wrong for distinct inputs."""
    seen: set = set()

    def distinct(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            if id(value) in seen or id(value) in tracer.param_names:
                with torch._C.DisableTorchFunction():
                    return value.view_as(value)
            seen.add(id(value))
        return value
    return tree.map_leaves(distinct, args), tree.map_leaves(distinct, kwargs)
