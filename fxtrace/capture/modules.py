"""Module frames: each submodule call records into a graph of its own.

A submodule call opens a :class:`~.frames.Frame`; the caller records ``call_module`` (or a
method call) whose results are bound to ``getitem`` nodes. See NOTE [Submodule outputs].
"""
from __future__ import annotations

import operator
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.fx as fx

from .. import tree
from ..errors import TraceError
from .frames import LEAF_TYPES, Frame, ModuleTrace, bind_names, graph_key, held, signature_of
from .guards import Guards
from .lazy import materialise_lazy
from .meta import MODULE, SOURCE, TENSOR_META, VALUE_TYPE, SourceLoc, tensor_meta_of
from .methods import reads_training
from .recorder import has_traced, is_traced_leaf
from .source import user_source
from .types import python_type_of

__all__ = ["ModuleCalls"]


class ModuleCalls(Guards):
    """The module-call layer of the concrete tracer: frames, submodule outputs, exports."""

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
        materialise_lazy(module, args, kwargs, src)  # NOTE [Lazy modules]
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
        names = [(n, v) for n, v in bind_names(signature_of(module.forward), args, kwargs)
                 if has_traced(v)]
        self.export_missing([v for _, v in names])
        call_args: List[Any] = [self._map_arg(v) for _, v in names]
        frame = Frame(module, path, parent, trace)
        self.frames.append(frame)
        try:
            for name, value in names:
                self._input(frame, name, value)
            if reads_training(type(module)):
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

    def _emit_call(self, parent: Frame, path: str, method: str, args: List[Any], out: Any,
                   src: Optional[SourceLoc], kwargs: Optional[Dict[str, Any]] = None) -> Any:
        node = self._emit_node(parent, path, method, args, out, src, kwargs)
        self._bind_structure(parent, node, out)
        return out

    def _emit_node(self, parent: Frame, path: str, method: str, args: List[Any], out: Any,
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
    def _output_flat(self, frame: Frame, out: Any) -> List[Any]:
        leaves: List[Any] = []
        seen: set = set()
        for leaf in tree.leaves(out):
            if is_traced_leaf(leaf) and id(leaf) not in seen:
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
        if hit is None or held(hit[0]) is not value:
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

    def _add_output(self, frame: Frame, node: fx.Node) -> fx.Node:
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

    def _index_call(self, site: Frame, index: int, replace: bool) -> fx.Node:
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

    def _bind_structure(self, frame: Frame, node: fx.Node, value: Any) -> None:
        """Bind every tensor / traced number inside a call's result to getitem nodes of it."""
        self.bind_tree(frame, node, value, is_traced_leaf, _binder(frame))

    def _input(self, frame: Frame, name: str, value: Any, where: str = "input") -> fx.Node:
        """Make a placeholder for ``value`` in ``frame`` and bind what it contains."""
        node = frame.placeholder(name, value, python_type_of(value, where))
        self._bind_structure_input(frame, node, value)
        return node

    def _bind_structure_input(self, frame: Frame, node: fx.Node, value: Any) -> None:
        """Bind what an input holds to getitem nodes of its placeholder (no user source)."""
        def item(parent: fx.Node, key: Any, child: Any) -> fx.Node:
            sub = frame.graph.create_node("call_function", operator.getitem, (parent, key), {})
            with torch._C.DisableTorchFunction():
                sub.meta.update({SOURCE: None, MODULE: frame.path,
                                 TENSOR_META: tensor_meta_of(child), VALUE_TYPE: None})
            return sub
        self.bind_tree(frame, node, value, is_traced_leaf, _binder(frame), item)

    def _output(self, frame: Frame, out: Any) -> None:
        self.export_missing(out)
        fx_out = self._output_arg(out)
        self._guard_unconsumed_reads(frame)
        node = frame.graph.output(fx_out)
        with torch._C.DisableTorchFunction():
            node.meta[TENSOR_META] = tensor_meta_of(out)
        node.meta[MODULE] = frame.path
        node.meta[SOURCE] = None

    def _output_arg(self, value: Any) -> Any:
        """The fx output structure of the traced program's result (containers keep their
        types); a leaf a trace cannot return raises, naming its path
        (``output['past_key_values']``)."""
        for path, leaf in tree.leaves_with_paths(value):
            if not (is_traced_leaf(leaf) or isinstance(leaf, LEAF_TYPES)):
                cls = type(leaf)
                hint = ("; it is a cache object: trace with caching off (e.g. use_cache=False "
                        "in the call or the model's config)"
                        if any("Cache" in c.__name__ for c in cls.__mro__)
                        else "; return its tensors instead, or leave it out of the output")
                raise TraceError(f"{path} is a {cls.__qualname__}, which a TorchScript trace "
                                 "cannot return (only tensors, numbers, strings, None and "
                                 f"tuples, lists and dicts of them){hint}")
        return tree.map_leaves(lambda v: self.resolve(v) if is_traced_leaf(v) else v, value)

    def _add_variant(self, trace: ModuleTrace, frame: Frame) -> str:
        key = graph_key(frame.graph)
        if key in trace.keys:
            index = trace.keys.index(key)
        else:
            trace.keys.append(key)
            trace.graphs.append(frame.graph)
            index = len(trace.graphs) - 1
        frame.canonical = trace.graphs[index]
        trace.sites.setdefault(id(frame.canonical), []).append(frame)
        return "forward" if index == 0 else f"forward{index}"


def _binder(frame: Frame) -> Callable[[fx.Node, Any], None]:
    """``bind_tree``'s leaf callback that binds the value to its node in ``frame``."""
    return lambda node, value: frame.bind(value, node)
