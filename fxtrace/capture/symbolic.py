"""Symbolic capture: ``torch.fx`` symbolic tracing, with the concrete mode's output contract.

``mode="symbolic"`` builds each graph with an ``fx.Tracer`` (no data flows through the user's
code while the graph is built), then runs the graphs once on the example inputs with an
``fx.Interpreter`` to fill the metadata of :mod:`fxtrace.capture.meta`. The result is the same
kind of ``fx.GraphModule`` tree the concrete mode builds (see :mod:`.assemble`): one
GraphModule per called module at the same qualified name, holding the original Parameter and
buffer objects in their original order.

How the tree is built: the fx tracer stops at *every* submodule, so a call stays a
``call_module`` node; while the interpreter runs a graph, each ``call_module`` it reaches is
traced in turn (with the arguments it really receives) into a GraphModule of its own (a leaf:
captured concretely, see below), and run
through the interpreter as well — recursively, so each module's graph is traced once and the
program runs once.

Arguments: an argument holding a tensor becomes a placeholder (a proxy). An argument without
a tensor (``int``, ``float``, ``bool``, ``str``, ``None``, ...) also gets a placeholder, so the
signature matches the concrete mode's, but the code is traced with the example value
(``concrete_args`` in fx terms): for numbers, bools and strings a ``torch._assert`` guard is
emitted, and every such argument is recorded as a :class:`Specialisation` of kind ``input``.
Parameters the caller did not pass keep their defaults and get no placeholder.

Failures (control flow on a traced value, ``len()`` of a proxy, a module that is not a
submodule, a submodule called with different non-tensor arguments) raise
:class:`SymbolicTraceError`, naming the user line and suggesting ``mode="concrete"``;
``mode="auto"`` falls back to concrete capture on any error.

Leaves: as ``torch.fx.Tracer.is_leaf_module`` by default, ``torch.nn``'s own modules (not
``Sequential``) are leaves: not traced symbolically but captured with the concrete tracer on
the inputs they receive, into a GraphModule at their qualified name; their guards stay inside
them, their specialisations join the capture's (attributed to the user line calling the leaf).

Options (:func:`symbolic_options` or keyword arguments of :func:`capture_symbolic`):
``leaf_modules`` — more leaves (types, instances or qualified names; use it for a submodule
with data-dependent control flow); ``torch_leaves=False`` — trace into ``torch.nn`` modules
too; ``autowrap_functions`` / ``autowrap_modules`` —
passed to ``fx.Tracer``. Functions registered with ``torch.fx.wrap`` stay ``call_function``
nodes; lowering compiles them with TorchScript, so they must be scriptable (checked at capture).
"""
from __future__ import annotations

import collections
import contextlib
import contextvars
import dataclasses
import inspect
import math
import sys
import traceback
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.fx as fx

from ..errors import SymbolicTraceError
from ..state import preserved_state
from .assemble import _rename_class, graph_module, untraced_container
from .meta import (
    GUARD,
    HAS_FORWARD,
    INFO,
    METHODS,
    MODULE,
    ORIGINAL,
    ORIGINAL_TYPE,
    SOURCE,
    TENSOR_META,
    VALUE_TYPE,
    CaptureInfo,
    SourceLoc,
    Specialisation,
    tensor_meta_of,
)
from .source import user_source
from .symbolic_tracer import (
    SymbolicOptions,
    SymbolicTracer,
    call_key,
    fetch,
    flat_binding,
    has_hooks,
    normalise,
    source_from_stack_trace,
    user_source_of_exception,
)
from .types import python_type_of

__all__ = ["capture_symbolic", "flat_binding", "symbolic_options", "SymbolicOptions",
           "SymbolicTraceError", "CONCRETE_HINT", "AUTO_SYMBOLIC", "AUTO_DISAGREES",
           "fallback_reason"]

#: The advice every symbolic failure ends with (tests look for ``mode="concrete"``).
CONCRETE_HINT = ('Use mode="concrete" (runs the code on the example inputs and guards what it '
                 'specialises) or mode="auto" (falls back to it); or make the offending submodule '
                 'a leaf: fxtrace.capture.symbolic.symbolic_options(leaf_modules=[...]).')

#: ``CaptureInfo.mode_reason`` of a ``mode="auto"`` capture that kept the symbolic graph.
AUTO_SYMBOLIC = "auto: symbolic (symbolic capture succeeded and matches eager on the example inputs)"
#: ``CaptureInfo.mode_reason`` of an auto capture whose symbolic graph disagreed with eager.
AUTO_DISAGREES = ("auto: concrete (the symbolic capture does not give eager's outputs on the "
                  "example inputs, as a GraphModule or lowered to TorchScript)")


def fallback_reason(exc: BaseException) -> str:
    """``CaptureInfo.mode_reason`` of an auto capture that fell back because symbolic capture
    raised ``exc``: one line naming the user's file:line (a :class:`SymbolicTraceError`'s first
    line does) and the cause."""
    first = (str(exc).strip().splitlines() or [""])[0]
    src = getattr(exc, "source", None)
    if src is not None and str(src) not in first:
        first = f"at {src}: {first}"
    return f"auto: concrete (symbolic capture failed: {type(exc).__name__}: {first})"


_OPTIONS: contextvars.ContextVar[SymbolicOptions] = contextvars.ContextVar(
    "fxtrace_symbolic_options", default=SymbolicOptions())  # noqa: B039 - frozen, immutable


@contextlib.contextmanager
def symbolic_options(*, leaf_modules: Sequence[Any] = (),
                     autowrap_functions: Sequence[Callable[..., Any]] = (),
                     autowrap_modules: Sequence[Any] = (math,),
                     torch_leaves: bool = True) -> Iterator[SymbolicOptions]:
    """Set the options of every symbolic capture in the block (``trace``/``capture`` with
    ``mode="symbolic"`` or ``"auto"``)::

        with symbolic_options(leaf_modules=[MyBlock], torch_leaves=True):
            traced = fxtrace.trace(model, x, mode="symbolic")

    ``torch_leaves=False`` traces into ``torch.nn``'s modules too (fxtrace's policy before
    torch.fx's default was adopted; BatchNorm, LSTM, Transformer layers then fail).
    """
    options = SymbolicOptions(tuple(leaf_modules), tuple(autowrap_functions),
                              tuple(autowrap_modules), torch_leaves)
    token = _OPTIONS.set(options)
    try:
        yield options
    finally:
        _OPTIONS.reset(token)


# ------------------------------------------------------------------------------- helpers

@dataclasses.dataclass
class _Entry:
    gm: fx.GraphModule
    key: Tuple[Any, ...]
    path: str


class _Run(fx.Interpreter):
    """Runs one graph on real values; records metadata on the first run; traces callees."""

    def __init__(self, cap: "_SymbolicCapture", gm: fx.GraphModule,
                 original: Optional[torch.nn.Module], path: str, record: bool) -> None:
        super().__init__(gm, garbage_collect_values=True)
        self.extra_traceback = False  # errors carry fxtrace's own message, not fx's node dump
        self.cap, self.original, self.path, self.record = cap, original, path, record
        self.node: Optional[fx.Node] = None

    def run_node(self, n: fx.Node) -> Any:
        self.node = n
        out = super().run_node(n)
        if self.record:
            n.meta[TENSOR_META] = tensor_meta_of(out)
            n.meta[VALUE_TYPE] = None if isinstance(out, torch.Tensor) else type(out)
        return out

    def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:
        assert self.original is not None
        sub = fetch(self.original, target)
        path = f"{self.path}.{target}" if self.path else str(target)
        src = self.node.meta.get(SOURCE) if self.node is not None else None
        return self.cap.call(sub, path, tuple(args), dict(kwargs), src)


class _SymbolicCapture:
    def __init__(self, root: Optional[torch.nn.Module], name: str, options: SymbolicOptions,
                 callsite: Optional[SourceLoc]) -> None:
        self.root, self.name, self.options, self.callsite = root, name, options, callsite
        self.entries: Dict[int, _Entry] = {}
        self.leaves: Dict[int, fx.GraphModule] = {}
        self.module_calls: Dict[str, int] = {}
        self.specialisations: List[Specialisation] = []

    # -- tracing one graph ----------------------------------------------------------------
    def trace_graph(self, target: Any, method: str, fn: Callable[..., Any],
                    args: Tuple[Any, ...], kwargs: Dict[str, Any], path: str,
                    callsite: Optional[SourceLoc], constants: Dict[str, torch.Tensor]
                    ) -> Tuple[fx.Graph, List[Tuple[str, Any]]]:
        what = f"'{path}' ({type(target).__name__})" if path else (
            type(target).__name__ if isinstance(target, torch.nn.Module) else self.name)
        try:
            bound = inspect.signature(fn).bind(*args, **kwargs)
        except (TypeError, ValueError) as e:
            raise SymbolicTraceError(f"symbolic capture of {what}: cannot bind its arguments "
                                     f"({e}). {CONCRETE_HINT}", callsite, path) from e
        flat = flat_binding(bound)
        for name, value in flat:  # an unsupported input type is an argument error, as in concrete
            python_type_of(value, f"argument '{name}'")
        tracer = SymbolicTracer(flat, bound, constants, self.options)
        if isinstance(target, torch.nn.Module):
            tracer.traced_func_name = method
        try:
            graph = tracer.trace(target)
        except Exception as e:  # noqa: BLE001 - every fx failure becomes one error type
            raise self._failure(e, what, path, callsite) from e
        self._annotate(graph, path, callsite)
        for name, value, guarded in tracer.specialised:
            self.specialisations.append(Specialisation(
                "input", value, callsite, path, guarded,
                f"argument '{name}' holds no tensor; symbolic capture specialised it"))
        return graph, flat

    def _failure(self, e: BaseException, what: str, path: str,
                 callsite: Optional[SourceLoc]) -> SymbolicTraceError:
        src = user_source_of_exception(e) or callsite
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        where = f" at {src}" if src is not None else ""
        code = f"\n    {src.code}" if src is not None and src.code else ""
        called = f"\n(called at {callsite})" if callsite is not None and src != callsite else ""
        frames = [f for f in traceback.extract_tb(e.__traceback__)
                  if "/torch/" in f.filename and "/torch/fx/" not in f.filename]
        if frames and (src is None or src == callsite):
            inner = frames[-1]
            called += f"\n(raised in {inner.filename.rsplit('/torch/', 1)[-1]}:{inner.lineno})"
        return SymbolicTraceError(
            f"symbolic capture of {what} failed{where}: {type(e).__name__}: {first}{code}{called}\n"
            f"torch.fx.symbolic_trace cannot follow this program (control flow on a traced "
            f"value, or a builtin it cannot trace). {CONCRETE_HINT}", src, path)

    def _annotate(self, graph: fx.Graph, path: str, callsite: Optional[SourceLoc]) -> None:
        for node in graph.nodes:
            node.meta[MODULE] = path
            if node.op in ("placeholder", "output"):
                node.meta[SOURCE] = None
                continue
            src = source_from_stack_trace(node.meta.get("stack_trace")) or callsite
            node.meta[SOURCE] = src
            if src is not None:
                node.meta["stack_trace"] = src.stack_trace()

    # -- building GraphModules ---------------------------------------------------------------
    def make_gm(self, module: torch.nn.Module, graph: fx.Graph,
                constants: Dict[str, torch.Tensor]) -> fx.GraphModule:
        self._localise_attributes(module, graph, constants)
        holder = torch.nn.Module()
        holder._parameters = collections.OrderedDict(module._parameters)
        holder._buffers = collections.OrderedDict(module._buffers)
        holder._modules = collections.OrderedDict(module._modules)
        for name, value in constants.items():
            setattr(holder, name, value)
        gm = graph_module(holder, graph, type(module).__name__)
        gm._parameters = collections.OrderedDict(module._parameters)
        gm._buffers = collections.OrderedDict(module._buffers)
        gm._non_persistent_buffers_set = set(module._non_persistent_buffers_set)
        gm._modules = collections.OrderedDict(module._modules)
        gm.training = module.training
        _rename_class(gm, type(module))
        gm.meta[METHODS] = {}
        gm.meta[HAS_FORWARD] = True
        gm.meta[ORIGINAL] = module
        gm.meta[ORIGINAL_TYPE] = f"{type(module).__module__}.{type(module).__qualname__}"
        return gm

    @staticmethod
    def _localise_attributes(module: torch.nn.Module, graph: fx.Graph,
                             constants: Dict[str, torch.Tensor]) -> None:
        """get_attr of a tensor that is not a parameter or buffer (a plain attribute, maybe of a
        submodule) becomes a constant of this module: the submodule's GraphModule won't hold it."""
        state = {id(t) for t in list(module.parameters()) + list(module.buffers())}
        for node in graph.nodes:
            if node.op != "get_attr" or node.target in constants:
                continue
            try:
                value = fetch(module, node.target)
            except AttributeError:
                continue
            if isinstance(value, torch.Tensor) and id(value) not in state:
                name = f"_tensor_constant{len(constants)}"
                while hasattr(module, name) or name in constants:
                    name += "_"
                constants[name] = value
                node.target = name

    # -- the run -------------------------------------------------------------------------------
    def call(self, module: torch.nn.Module, path: str, args: Tuple[Any, ...],
             kwargs: Dict[str, Any], callsite: Optional[SourceLoc]) -> Any:
        self.module_calls[path] = self.module_calls.get(path, 0) + 1
        if isinstance(module, torch.jit.ScriptModule):
            return module(*args, **kwargs)
        if self.options.is_leaf(module, path):
            if id(module) not in self.leaves:
                self.leaves[id(module)] = self._capture_leaf(module, path, args, kwargs,
                                                             callsite)
            return module(*args, **kwargs)
        entry = self.entries.get(id(module))
        if entry is None:
            constants: Dict[str, torch.Tensor] = {}
            graph, flat = self.trace_graph(module, "forward", module.forward, args, kwargs, path,
                                           callsite, constants)
            gm = self.make_gm(module, graph, constants)
            entry = self.entries[id(module)] = _Entry(gm, call_key(flat), path)
            return _Run(self, gm, module, path, True).run(*[v for _, v in flat])
        flat = flat_binding(inspect.signature(module.forward).bind(*args, **kwargs))
        if call_key(flat) != entry.key:
            raise SymbolicTraceError(
                f"symbolic capture: module '{path}' ({type(module).__name__}) is called with "
                f"arguments that differ from its first call (at '{entry.path}') in their "
                f"non-tensor values or structure{f' at {callsite}' if callsite else ''}; one "
                f"symbolic graph cannot serve both. {CONCRETE_HINT}", callsite, path)
        return _Run(self, entry.gm, module, path, False).run(*[v for _, v in flat])

    def _capture_leaf(self, module: torch.nn.Module, path: str, args: Tuple[Any, ...],
                      kwargs: Dict[str, Any], where: Optional[SourceLoc]) -> fx.GraphModule:
        """A leaf module is captured by the concrete tracer on the inputs it receives. What
        that capture attributes to the outer trace call (a ``torch.nn`` module has no user line
        of its own) is attributed to ``where``, the user line that calls the leaf, as concrete
        capture of the whole program would: node sources, guard messages, specialisations."""
        from .assemble import assemble
        from .concrete import capture_concrete
        info = CaptureInfo(mode="concrete", is_function=False, name=type(module).__name__,
                           training=module.training)
        tracer, root_trace = capture_concrete([("forward", module, args, kwargs)], root=module,
                                              name=type(module).__name__)
        gm = assemble(tracer, root_trace, info)
        del gm.meta["fxtrace"]
        for _, sub in gm.named_modules(remove_duplicate=False):
            if isinstance(sub, fx.GraphModule):
                for node in sub.graph.nodes:
                    inner = node.meta.get(MODULE) or ""
                    node.meta[MODULE] = f"{path}.{inner}" if inner else path
                    self._relocate(node, where)
        for s in info.specialisations:
            s.module = f"{path}.{s.module}" if s.module else path
            if where is not None and s.source == self.callsite:
                s.source = where
            self.specialisations.append(s)
        for inner, n in info.module_calls.items():
            if inner:
                full = f"{path}.{inner}"
                self.module_calls[full] = self.module_calls.get(full, 0) + n
        return gm

    def _relocate(self, node: fx.Node, where: Optional[SourceLoc]) -> None:
        """``node``'s source (and a guard's message) from the outer call to ``where``."""
        old = self.callsite
        if where is None or old is None or node.meta.get(SOURCE) != old:
            return
        node.meta[SOURCE] = where
        node.meta["stack_trace"] = where.stack_trace()
        if node.meta.get(GUARD):
            before, after = f"{old.short} ({old.code})", f"{where.short} ({where.code})"
            node.args = tuple(a.replace(before, after) if isinstance(a, str) else a
                              for a in node.args)

    def capture(self, methods: List[Tuple[str, Callable[..., Any], Tuple[Any, ...], Dict[str, Any]]]
                ) -> fx.GraphModule:
        root = self.root
        if has_hooks(root):
            raise SymbolicTraceError("symbolic capture does not run module hooks (forward hooks "
                                     f"or pre-hooks are registered). {CONCRETE_HINT}",
                                     self.callsite)
        constants: Dict[str, torch.Tensor] = {}
        traced = []
        for method_name, fn, args, kwargs in methods:
            self.module_calls[""] = self.module_calls.get("", 0) + 1
            if root is None:
                graph, flat = self.trace_graph(fn, "forward", fn, args, kwargs, "",
                                               self.callsite, constants)
            else:
                bound_fn = getattr(root, method_name)
                graph, flat = self.trace_graph(root, method_name, bound_fn, args, kwargs, "",
                                               self.callsite, constants)
            traced.append((method_name, graph, flat))
        if root is None:
            holder = torch.nn.Module()
            for name, value in constants.items():
                setattr(holder, name, value)
            gm = graph_module(holder, traced[0][1], self.name)
            gm.meta[METHODS] = {}
            gm.meta[ORIGINAL] = methods[0][1]
            gm.meta[ORIGINAL_TYPE] = "function"
            runs = [(gm, traced[0][2])]
        else:
            by_name = {m: g for m, g, _ in traced}
            main = by_name.get("forward")
            if main is None:
                main = fx.Graph()
                main.output(None)
            gm = self.make_gm(root, main, constants)
            gm.meta[HAS_FORWARD] = "forward" in by_name
            runs = []
            for method_name, graph, flat in traced:
                if method_name == "forward":
                    runs.append((gm, flat))
                    continue
                variant = graph_module(gm, graph, f"{type(root).__name__}_{method_name}")
                gm.meta[METHODS][method_name] = variant
                object.__setattr__(gm, method_name, variant.forward)
                runs.append((variant, flat))
            self.entries[id(root)] = _Entry(gm, (), "")
        for target, flat in runs:
            _Run(self, target, root, "", True).run(*[v for _, v in flat])
        for g in [gm, *gm.meta[METHODS].values()]:
            normalise(g.graph)
            g.recompile()
        for entry in self.entries.values():
            if entry.gm is not gm:
                normalise(entry.gm.graph)
                entry.gm.recompile()
        if root is not None:
            self._assemble(root)
        gm.meta[INFO] = CaptureInfo(
            mode="symbolic", is_function=root is None, name=self.name,
            specialisations=self.specialisations, module_calls=dict(self.module_calls),
            training=bool(root.training) if root is not None else False)
        return gm

    def _assemble(self, root: torch.nn.Module) -> None:
        """Put every traced module's GraphModule at its qualified names (see assemble.py)."""
        built: Dict[int, torch.nn.Module] = {}

        def build(module: torch.nn.Module) -> torch.nn.Module:
            key = id(module)
            if key in built:
                return built[key]
            if key in self.leaves:
                built[key] = self.leaves[key]
                return built[key]
            children = {n: (build(c) if c is not None else None) for n, c in module._modules.items()}
            entry = self.entries.get(key)
            if entry is not None:
                entry.gm._modules = collections.OrderedDict(children)
                built[key] = entry.gm
                return entry.gm
            if any(c is not children[n] for n, c in module._modules.items()):
                built[key] = untraced_container(module, children)
                return built[key]
            built[key] = module
            return module

        build(root)


# ------------------------------------------------------------------------------- entry points

def capture_symbolic(root: Optional[torch.nn.Module],
                     methods: List[Tuple[str, Callable[..., Any], Tuple[Any, ...], Dict[str, Any]]],
                     name: str, *, leaf_modules: Optional[Sequence[Any]] = None,
                     autowrap_functions: Optional[Sequence[Callable[..., Any]]] = None,
                     autowrap_modules: Optional[Sequence[Any]] = None,
                     torch_leaves: Optional[bool] = None) -> fx.GraphModule:
    """Capture ``methods`` (``[(method_name, fn, args, kwargs)]``) with fx symbolic tracing.

    Returns a GraphModule tree with the concrete mode's contract (module docstring of
    :mod:`.assemble` and :mod:`.meta`), ``gm.meta["fxtrace"].mode == "symbolic"``. Options not
    given here come from :func:`symbolic_options`. Raises :class:`SymbolicTraceError` when fx
    cannot trace the program. User state (BatchNorm statistics, RNG, training flags) is
    restored after the shape-propagation run.
    """
    options = _OPTIONS.get()
    options = SymbolicOptions(
        tuple(leaf_modules) if leaf_modules is not None else options.leaf_modules,
        tuple(autowrap_functions) if autowrap_functions is not None else options.autowrap_functions,
        tuple(autowrap_modules) if autowrap_modules is not None else options.autowrap_modules,
        torch_leaves if torch_leaves is not None else options.torch_leaves)
    callsite = user_source(sys._getframe(1))
    cap = _SymbolicCapture(root, name, options, callsite)
    with preserved_state([root] if root is not None else [], always=True), \
            _preserved_attributes(root):
        return cap.capture(methods)


@contextlib.contextmanager
def _preserved_attributes(root: Optional[torch.nn.Module]) -> Iterator[None]:
    """Undo attribute rebinding on the user's modules. fx tracing runs ``forward`` with
    ``Module.__getattr__`` returning proxies, and some modules store what they read (RNNBase
    keeps ``self._flat_weights``): without this, proxies would stay in the user's module."""
    saved = [(m, dict(m.__dict__)) for m in root.modules()] if root is not None else []
    try:
        yield
    finally:
        for module, attrs in saved:
            for key in [k for k in module.__dict__ if k not in attrs]:
                del module.__dict__[key]
            for key, value in attrs.items():
                if module.__dict__.get(key, attrs) is not value:
                    module.__dict__[key] = value
