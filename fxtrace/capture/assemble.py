"""Assemble recorded graphs into an ``fx.GraphModule`` tree that mirrors the user's modules.

Invariant: for every module of the original tree that was called during capture, the result
has a ``GraphModule`` at the same qualified name whose parameters and buffers are *the same
objects* as the original's, in the same order (so ``state_dict()`` keys match and tied weights
stay tied). Modules that were never called stay in the tree as the original objects.
"""
from __future__ import annotations

import collections
from typing import Any, Callable, Dict, Optional

import torch
import torch.fx as fx

from .concrete import ConcreteTracer, ModuleTrace
from .meta import HAS_FORWARD, METHODS, ORIGINAL, ORIGINAL_TYPE, UNTRACED, CaptureInfo

__all__ = ["assemble", "graph_module", "untraced_container"]

try:  # torch >= 2.3; it defers fx's Python codegen until the module is called or printed
    from torch.fx._lazy_graph_module import _LazyGraphModule as _GraphModuleClass
except ImportError:  # pragma: no cover - older torch
    _GraphModuleClass = fx.GraphModule  # type: ignore[misc,assignment]


def graph_module(root: torch.nn.Module, graph: fx.Graph, class_name: str) -> fx.GraphModule:
    """An ``fx.GraphModule`` whose Python code is generated on first use.

    Lowering reads only the graph, and passes recompile after every change: generating the
    Python source eagerly for each of a model's GraphModules (several times) was most of the
    capture time. Calling the module, ``.code`` or ``print`` generate it as usual."""
    return _GraphModuleClass(root, graph, class_name=class_name)



def _rename_class(gm: fx.GraphModule, cls: type) -> None:
    # fx gives every GraphModule its own class; naming it after the user's class makes the
    # TorchScript type name and ``original_name`` match what torch.jit.trace produces.
    impl = type(gm)
    impl.__name__ = cls.__name__
    impl.__qualname__ = cls.__qualname__
    impl.__module__ = cls.__module__


def _graph_module(module: torch.nn.Module, trace: ModuleTrace,
                  children: Dict[str, Optional[torch.nn.Module]]) -> fx.GraphModule:
    holder = torch.nn.Module()
    holder._parameters = collections.OrderedDict(module._parameters)
    holder._buffers = collections.OrderedDict(module._buffers)
    holder._modules = collections.OrderedDict(children)
    for name, value in trace.constants.items():
        setattr(holder, name, value)
    if trace.named:  # the root: its methods are the ones the user asked to trace
        main = trace.named.get("forward", fx.Graph())
        extra = {k: g for k, g in trace.named.items() if k != "forward"}
    else:
        main, extra = trace.graphs[0], {f"forward{i}": g for i, g in enumerate(trace.graphs[1:], 1)}
    if not any(n.op == "output" for n in main.nodes):
        main.output(None)
    gm = graph_module(holder, main, type(module).__name__)
    # Restore the original attribute order and the buffers' persistence.
    gm._parameters = collections.OrderedDict(module._parameters)
    gm._buffers = collections.OrderedDict(module._buffers)
    gm._non_persistent_buffers_set = set(module._non_persistent_buffers_set)
    gm._modules = collections.OrderedDict(children)
    for name, value in trace.constants.items():
        # Plain attributes, not buffers (fx copies them as buffers): a constant is not state,
        # and torch.jit.trace's state_dict has no entry for it either.
        gm.__dict__[name] = value
    gm.training = module.training
    _rename_class(gm, type(module))
    methods = {}
    for method_name, graph in extra.items():
        variant = graph_module(gm, graph, f"{type(module).__name__}_{method_name}")
        methods[method_name] = variant
        object.__setattr__(gm, method_name, variant.forward)
    gm.meta[METHODS] = methods
    gm.meta[HAS_FORWARD] = not trace.named or "forward" in trace.named
    gm.meta[ORIGINAL] = module
    gm.meta[ORIGINAL_TYPE] = f"{type(module).__module__}.{type(module).__qualname__}"
    return gm


def untraced_container(module: torch.nn.Module,
                       children: Dict[str, Optional[torch.nn.Module]]) -> fx.GraphModule:
    """A module that was never called but whose descendants were traced: a GraphModule with
    an empty graph holding the same parameters, buffers and (traced) children, marked
    ``meta["fxtrace_untraced"]`` so lowering and verify leave its (absent) forward alone."""
    holder = graph_module(torch.nn.Module(), fx.Graph(), type(module).__name__)
    holder._parameters = collections.OrderedDict(module._parameters)
    holder._buffers = collections.OrderedDict(module._buffers)
    holder._modules = collections.OrderedDict(children)
    holder.training = module.training
    _rename_class(holder, type(module))
    holder.meta[ORIGINAL] = module
    holder.meta[ORIGINAL_TYPE] = f"{type(module).__module__}.{type(module).__qualname__}"
    holder.meta[METHODS] = {}
    holder.meta[UNTRACED] = True
    return holder


def assemble(tracer: ConcreteTracer, root_trace: ModuleTrace, info: CaptureInfo,
             fn: Optional[Callable[..., Any]] = None) -> fx.GraphModule:
    """Build the GraphModule tree from a finished capture (see the module docstring)."""
    built: Dict[int, fx.GraphModule] = {}

    def build(module: torch.nn.Module) -> torch.nn.Module:
        key = id(module)
        if key in built:
            return built[key]
        children = {name: (build(child) if child is not None else None)
                    for name, child in module._modules.items()}
        trace = tracer.module_traces.get(key)
        if trace is None or not (trace.graphs or trace.named) or isinstance(module, torch.jit.ScriptModule):
            if any(c is not children[n] for n, c in module._modules.items()):
                built[key] = untraced_container(module, children)
                return built[key]
            return module
        gm = _graph_module(module, trace, children)
        built[key] = gm
        return gm

    if tracer.root is not None:
        root = build(tracer.root)
        assert isinstance(root, fx.GraphModule)
    else:
        holder = torch.nn.Module()
        for name, value in root_trace.constants.items():
            setattr(holder, name, value)
        name = info.name
        root = graph_module(holder, next(iter(root_trace.named.values())), name)
        root.meta[METHODS] = {}
        root.meta[ORIGINAL] = fn
        root.meta[ORIGINAL_TYPE] = "function"
    root.meta["fxtrace"] = info
    info.module_calls = {t.path: t.calls for t in tracer.module_traces.values()}
    info.specialisations = tracer.specialisations
    return root
