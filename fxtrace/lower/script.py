"""Compile generated TorchScript into real ``ScriptModule`` / ``ScriptFunction`` objects.

NOTE [The module shell]
A traced module is built the way torch.jit.trace builds its own result: ``TopLevelTracedModule``
(or the user's ``_module_class``) wraps the module tree with no methods compiled, holding the
original Parameter and buffer objects. fxtrace then compiles its generated source into each
module's type with ``_define``, children before parents. No user Python is ever scripted: the
shell compiles nothing of the original classes, and the methods are fxtrace's own source.
"""
from __future__ import annotations

import functools
import itertools
import re
import threading
import types as pytypes
import weakref
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.fx as fx

from ..capture.gcpause import paused_gc
from ..capture.meta import HAS_FORWARD, METHODS, SOURCE, UNTRACED
from ..errors import LoweringError
from .codegen import TorchScriptSource, describe_call, generate
from .metadata import attach, with_metadata
from .quiet import quiet_jit

__all__ = ["lower_module", "lower_function", "quiet_jit"]


def _compile_error(what: str, source: TorchScriptSource, error: Exception) -> LoweringError:
    users = sorted({str(n.meta.get(SOURCE)) for n in source.line_nodes
                    if n is not None and n.meta.get(SOURCE) is not None})
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return LoweringError(
        f"TorchScript could not compile the code generated for {what}: {first_line}"
        f"{_failing_call(source, error)}\n\n"
        f"Generated source (user lines in comments):\n{source.numbered()}\n\n"
        f"TorchScript said:\n{error}\n"
        + (f"User lines involved: {', '.join(users[:10])}" if users else ""))


def _failing_call(source: TorchScriptSource, error: Exception) -> str:
    """`` (at file.py:12, call torch.zeros(...))`` for the generated line TorchScript blames."""
    found = re.search(r'File "<string>", line (\d+)', str(error))
    node: Optional[fx.Node] = None
    if found is not None:
        index = int(found.group(1)) - 1
        node = source.line_nodes[index] if 0 <= index < len(source.line_nodes) else None
    else:  # the error is inside a Python function the generated code calls: find the call
        where = re.search(r'File "([^"]+)", line \d+', str(error))
        node = next((n for n in source.line_nodes if n is not None and where is not None
                     and getattr(getattr(n.target, "__code__", None), "co_filename", None)
                     == where.group(1)), None)
    if node is None:
        return ""
    src = node.meta.get(SOURCE)
    return f" (at {src if src is not None else node.name}, call {describe_call(node)})"


def _define(define: Any, what: str, source: TorchScriptSource) -> None:
    """Compile ``source``; whatever TorchScript raises (a RuntimeError, or a frontend error
    or TypeError from a Python function it tried to compile) becomes a LoweringError."""
    try:
        define()
    except Exception as e:  # noqa: BLE001
        raise _compile_error(what, source, e) from None


def _submodule(root: torch.nn.Module, path: str) -> Any:
    obj: Any = root
    for part in path.split(".") if path else ():
        obj = getattr(obj, part)
    return obj


#: (module, qualified name, name) of a traced class -> its shell class (bare ``nn.Module``).
_SHELL_CLASSES: Dict[Tuple[str, str, str], type] = {}


def _shell(module: torch.nn.Module, done: Dict[int, torch.nn.Module]) -> torch.nn.Module:
    """A plain ``nn.Module`` tree mirroring ``module``'s GraphModules: the same class names,
    parameters, buffers and children, and nothing else.

    The TorchScript shell scans every attribute of every module it wraps (for exported
    methods and overloads); a GraphModule has many, and reading its ``code`` would run fx's
    Python codegen, which lowering does not need."""
    if not isinstance(module, fx.GraphModule):
        return module
    hit = done.get(id(module))
    if hit is not None:
        return hit
    cls = type(module)
    name = (cls.__module__, cls.__qualname__, cls.__name__)
    shell_cls = _SHELL_CLASSES.get(name)
    if shell_cls is None:  # one per user class name: a class is many objects to build and collect
        shell_cls = _SHELL_CLASSES.setdefault(name, type(cls.__name__, (torch.nn.Module,), {
            "__module__": cls.__module__, "__qualname__": cls.__qualname__}))
    shell = shell_cls()
    shell._parameters = dict(module._parameters)  # type: ignore[assignment]
    shell._buffers = dict(module._buffers)  # type: ignore[assignment]
    shell._non_persistent_buffers_set = set(module._non_persistent_buffers_set)
    shell._modules = {name: (_shell(child, done) if child is not None else None)  # type: ignore
                      for name, child in module._modules.items()}
    shell.training = module.training
    done[id(module)] = shell
    return shell


# NOTE [Shared method types]
# torch.jit.trace gives every submodule its own TorchScript class type, and fxtrace then
# compiled each generated method into each type: a stack of 500 Linear layers paid 500
# compilations of one 3-line method. Submodules whose types would be equal (same class, same
# parameter, buffer and child names, children of equal types, no tensor constants) and whose
# generated methods are the same text resolving the same names to the same objects now share
# one class type, built once by torch's own TracedModule and given to the others, so each
# distinct method is compiled once. Every submodule is still its own TracedModule holding its
# own parameters; `.code`, `.graph` and the saved files are those of separate types.
_Sources = Dict[Tuple[int, str], TorchScriptSource]

#: False: every submodule gets a type of its own, as before; benchmarks/phases.py's ``--ab``
#: switch compares the two in one process.
SHARE_TYPES = True


def _methods(gm: fx.GraphModule) -> Dict[str, fx.Graph]:
    """The graphs lowered into ``gm``'s type, by method name."""
    methods: Dict[str, fx.Graph] = {"forward": gm.graph} if gm.meta.get(HAS_FORWARD, True) else {}
    methods.update({k: v.graph for k, v in gm.meta.get(METHODS, {}).items()})
    return methods


def _source(gm: fx.GraphModule, name: str, graph: fx.Graph, sources: _Sources) -> TorchScriptSource:
    key = (id(gm), name)
    if key not in sources:
        sources[key] = generate(graph, name)
    return sources[key]


def _has_constants(gm: fx.GraphModule) -> bool:
    """Does any graph of ``gm`` read an attribute that is not a parameter, a buffer or the
    ``training`` flag every module type has? (A tensor constant is registered on the type
    per module: such a type is not shared.)"""
    return any(n.op == "get_attr" and "." not in n.target and n.target not in gm._parameters
               and n.target not in gm._buffers
               and not (n.target == "training" and isinstance(getattr(gm, n.target), bool))
               for graph in (gm.graph, *_methods(gm).values()) for n in graph.nodes)


def _type_key(gm: fx.GraphModule, children: Dict[str, Any], sources: _Sources) -> Any:
    """Equal keys: equal TorchScript types with equal generated methods (NOTE [Shared
    method types]); a key of ``object()`` shares with nothing."""
    if _has_constants(gm):
        return object()
    methods = []
    for name, graph in ({} if gm.meta.get(UNTRACED) else _methods(gm)).items():
        source = _source(gm, name, graph, sources)
        methods.append((name, source.src, tuple(sorted((k, id(v)) for k, v in source.env.items()))))
    cls = type(gm)
    return (cls.__module__, cls.__qualname__,
            tuple(k for k, v in gm._parameters.items() if v is not None),
            tuple(k for k, v in gm._buffers.items() if v is not None),
            tuple(sorted(gm._non_persistent_buffers_set)),
            tuple((name, key) for name, (_, key) in children.items()), tuple(methods))


# NOTE [Types shared across traces]
# A type built for one trace is kept, process-wide, for later traces whose (sub)module gets an
# equal key (NOTE [Shared method types]): a fresh instance of the same model class then pays
# neither the type inference nor the ``define`` of its methods again. Keys are plain data
# (names, generated text, ids of the objects the text resolves names to); an entry holds those
# objects by weak reference and is dropped once one has died, so an id reused by a new object
# never matches. Values that could hold user state (tensors, modules, bound methods, closures,
# partials) make a type trace-local. A type is published only after the whole lowering
# defined every method into it, and the key names every method the type has, so a later trace
# never defines into a published type; the root's type (which gets the trace's metadata and
# constants, and which ``_with_exports`` and user ``_module_class``es build) is never shared.
# The generated text names the user's file:line in comments, part of the key: a module whose
# calls are attributed to the line that called ``trace`` (``nn.Sequential(nn.Linear)``) shares
# only with traces made from that line; the first trace of a class in a process pays in full.

#: Off by default: two threads lowering at once can pair a parent type taken from the cache
#: with a child type of their own ("Could not cast attribute '0' to type ...", seen once in
#: ``tests/test_threads.py``); until lookups and publication are made atomic per lowering,
#: a type is shared within one trace only (round one). ``phases.py --ab`` compares.
SHARE_ACROSS_TRACES = False
_UNSHAREABLE = (torch.Tensor, torch.nn.Module, functools.partial)


def _ref(value: Any) -> Any:
    """A reference under which a cache entry may hold ``value``, or None: trace-local."""
    owner = getattr(value, "__self__", None)
    if isinstance(value, _UNSHAREABLE) or getattr(value, "__closure__", None) or (
            owner is not None and not isinstance(owner, (pytypes.ModuleType, type))):
        return None
    try:
        return weakref.ref(value)
    except TypeError:  # a builtin function: module state, alive as long as its module
        return (lambda: value) if isinstance(value, pytypes.BuiltinFunctionType) else None


class _TypeCache:
    """Published types by key, least recently used first; thread-safe; bounded."""

    def __init__(self, size: int) -> None:
        self._lock = threading.Lock()
        self._size = size
        self._entries: "OrderedDict[Any, Tuple[Any, Tuple[Any, ...]]]" = OrderedDict()

    def get(self, key: Any) -> Any:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if any(ref() is None for ref in entry[1]):  # an id in the key may be reused
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: Any, concrete_type: Any, refs: Tuple[Any, ...]) -> None:
        with self._lock:
            self._entries[key] = (concrete_type, refs)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


_TYPE_CACHE = _TypeCache(512)


class _Types:
    """One lowering's types by key; keys with ``refs`` are looked up in, and after a
    successful lowering published to, the process-wide cache (NOTE [Types shared across
    traces])."""

    def __init__(self) -> None:
        self.local: Dict[Any, Any] = {}
        self.refs: Dict[Any, Optional[Tuple[Any, ...]]] = {}
        self.new: List[Any] = []

    def get(self, key: Any) -> Any:
        hit = self.local.get(key)
        if hit is None and self.refs.get(key) is not None and SHARE_ACROSS_TRACES:
            hit = _TYPE_CACHE.get(key)
            if hit is not None:
                self.local[key] = hit
        return hit

    def __setitem__(self, key: Any, concrete_type: Any) -> None:
        self.local[key] = concrete_type
        if self.refs.get(key) is not None:
            self.new.append(key)

    def note(self, key: Any, gm: fx.GraphModule, children: Dict[str, Tuple[Any, Any]],
             sources: _Sources) -> None:
        """Record what an entry for ``gm``'s type must hold alive (None: trace-local)."""
        refs: List[Any] = []
        if not isinstance(key, tuple):
            self.refs[key] = None
            return
        for _, child_key in children.values():
            child_refs = self.refs.get(child_key)
            if child_refs is None:
                self.refs[key] = None
                return
            refs.extend(child_refs)
        for name in ({} if gm.meta.get(UNTRACED) else _methods(gm)):
            for value in sources[(id(gm), name)].env.values():
                ref = _ref(value)
                if ref is None:
                    self.refs[key] = None
                    return
                refs.append(ref)
        self.refs[key] = tuple(refs)

    def publish(self) -> None:
        """Called once every method is defined: the new types are complete."""
        if SHARE_TYPES and SHARE_ACROSS_TRACES:
            for key in self.new:
                _TYPE_CACHE.put(key, self.local[key], self.refs[key] or ())


def _wrapper(shell: torch.nn.Module) -> Optional[torch.nn.Module]:
    """The module ``TracedModule.__init__`` infers a TorchScript type from (a class named
    as the user's, the shell's parameters, buffers, children and flag); None where
    TracedModule would refuse it (a tensor held twice), so that torch raises its own error."""
    class QualnameWrapper(torch.nn.Module):
        pass
    QualnameWrapper._jit_override_qualname = torch._jit_internal._qualified_name(  # type: ignore
        type(shell))
    tmp = QualnameWrapper()
    tmp.training = shell.training
    tmp._parameters = {k: v for k, v in shell._parameters.items() if v is not None}  # type: ignore
    tmp._buffers = {k: v for k, v in shell._buffers.items() if v is not None}  # type: ignore
    tmp._modules = {k: v for k, v in shell._modules.items() if v is not None}  # type: ignore
    held = [*tmp._parameters.values(), *tmp._buffers.values()]
    return tmp if len({id(t) for t in held}) == len(held) else None


def _traced(cls: Any, shell: torch.nn.Module, key: Any, types: Any) -> Any:
    """What ``cls(shell)`` (a TracedModule class; children already built) returns, built
    without the scans a shell needs none of (NOTE [Shared method types]); a later module of
    an equal ``key`` gets the first one's type."""
    concrete_type = types.get(key)
    if not SHARE_TYPES or concrete_type is None:
        tmp = _wrapper(shell) if SHARE_TYPES else None
        if tmp is None:
            traced = cls(shell)
            types[key] = traced._actual_script_module._concrete_type
            return traced
        concrete_type = torch.jit._recursive.get_module_concrete_type(tmp, share_types=False)
        types[key] = concrete_type
    traced = cls.__new__(cls)
    torch.jit.ScriptModule.__init__(traced)
    traced.__dict__["_name"] = type(shell).__name__
    traced.__dict__["_actual_script_module"] = _instance(concrete_type, shell)
    for name in ("_parameters", "_buffers", "_modules", "training"):
        delattr(traced, name)
    return traced


def _instance(concrete_type: Any, shell: torch.nn.Module) -> torch.jit.RecursiveScriptModule:
    """A module of ``concrete_type`` holding ``shell``'s state: what
    ``create_script_module_impl`` does for it with no methods to compile, less what a shell
    cannot have (properties, hooks, ignored methods: its class is a bare ``nn.Module``)."""
    cpp_module = torch._C._create_module_with_type(concrete_type.jit_type)

    def init_fn(script_module: Any) -> None:
        for name in concrete_type.get_attributes():  # parameters, buffers, nn.Module's own
            cpp_module.setattr(name, getattr(shell, name))
        for name, _ in concrete_type.get_modules():
            child = shell._modules[name]
            assert isinstance(child, torch.jit.ScriptModule)  # built bottom up
            cpp_module.setattr(name, child)
            script_module._modules[name] = child
        script_module._concrete_type = concrete_type
    return torch.jit.RecursiveScriptModule._construct(cpp_module, init_fn)


def _built_children(gm: fx.GraphModule, shells: Dict[int, torch.nn.Module], types: _Types,
                    sources: _Sources) -> Dict[str, Tuple[Any, Any]]:
    """``gm``'s children as TracedModules (or what torch.jit's ``make_module`` makes of a
    module fxtrace did not trace), each with its type key, bottom up."""
    built: Dict[str, Tuple[Any, Any]] = {}
    for name, child in gm._modules.items():
        if child is None:
            continue
        if not isinstance(child, fx.GraphModule):
            built[name] = (torch.jit._trace.make_module(child, torch.jit._trace.TracedModule,
                                                        None), object())
            continue
        grandchildren = _built_children(child, shells, types, sources)
        key = _type_key(child, grandchildren, sources)
        types.note(key, child, grandchildren, sources)
        shell = _occurrence(_shell(child, shells), grandchildren)
        built[name] = (_traced(torch.jit._trace.TracedModule, shell, key, types), key)
    return built


def _occurrence(shell: torch.nn.Module, children: Dict[str, Tuple[Any, Any]]) -> torch.nn.Module:
    """This occurrence of ``shell`` with its children built (a module shared at two names is
    wrapped twice, as TracedModule does)."""
    copy = type(shell).__new__(type(shell))
    copy.__dict__.update(shell.__dict__)
    copy._modules = {name: children[name][0] if name in children else None  # type: ignore
                     for name in shell._modules}
    return copy


def _graph_modules(root: fx.GraphModule) -> List[Tuple[str, fx.GraphModule]]:
    """Every traced GraphModule by qualified name (a shared one at each of its names),
    deepest first, so callees are compiled before their callers."""
    found = [(name, m) for name, m in root.named_modules(remove_duplicate=False)
             if isinstance(m, fx.GraphModule) and not m.meta.get(UNTRACED)]
    return sorted(found, key=lambda item: -item[0].count(".") - (1 if item[0] else 0))


def _register_constants(gm: fx.GraphModule, script: Any) -> None:
    """Tensor attributes read by get_attr that are not parameters or buffers (constants)."""
    for node in gm.graph.nodes:
        if node.op != "get_attr" or "." in node.target:
            continue
        value = getattr(gm, node.target)
        if isinstance(value, torch.Tensor) and not script._c.hasattr(node.target):
            script._c._register_attribute(node.target, torch._C.TensorType.get(), value)


def _with_exports(module: torch.nn.Module) -> torch.jit.ScriptModule:
    """The ScriptModule torch.jit.trace starts from for a module with ``@torch.jit.export``
    methods (``torch.jit._trace.make_module``): the user marked those methods for
    TorchScript, so they are compiled (each module's exports only; ``forward`` is the
    trace's), and the generated methods are defined onto it as onto a traced shell."""
    return torch.jit._recursive.create_script_module(
        module, torch.jit._recursive.make_stubs_from_exported_methods, share_types=False,
        is_tracing=True)


@paused_gc()  # NOTE [Paused GC]
def lower_module(root: fx.GraphModule, *, module_class: Optional[type] = None,
                 compilation_unit: Any = None,
                 exports_of: Optional[torch.nn.Module] = None) -> torch.jit.ScriptModule:
    """A ScriptModule with ``root``'s tree, parameters and generated methods (see NOTE).
    ``exports_of``: the user's module, whose ``@torch.jit.export`` methods are compiled onto
    the result as torch.jit.trace does."""
    cls = module_class or torch.jit.TopLevelTracedModule
    with quiet_jit():
        sources: _Sources = {}
        types = _Types()
        if exports_of is not None and module_class is None and \
                torch._jit_internal.module_has_exports(exports_of):
            script = _with_exports(exports_of)
        else:  # NOTE [Shared method types]
            shells: Dict[int, torch.nn.Module] = {}
            children = _built_children(root, shells, types, sources)
            shell = _occurrence(_shell(root, shells), children)
            # a class of the user's own may do more in __init__: it is called as torch does
            script = _traced(cls, shell, object(), {}) if cls is torch.jit.TopLevelTracedModule \
                else cls(shell, _compilation_unit=compilation_unit)
        for path, gm in _graph_modules(root):
            sub = _submodule(script, path)
            _register_constants(gm, sub)
            for name, graph in _methods(gm).items():
                if sub._c._has_method(name):
                    continue  # compiled already: an exported method calls it, or a shared type
                source = _source(gm, name, graph, sources)
                if not path and name == "forward":  # NOTE [Saved metadata]
                    source.src = with_metadata(source.src, gm)
                what = f"{type(gm).__name__}.{name}" + (f" (module '{path}')" if path else "")
                _define(lambda sub=sub, source=source: sub._c._define(
                    sub._concrete_type, source.src, source.rcb), what, source)
        attach(script, root)
        types.publish()
    return script


@paused_gc()
def lower_function(gm: fx.GraphModule, name: str) -> torch.jit.ScriptFunction:
    """A ScriptFunction computing ``gm``; tensor constants become graph constants."""
    constants = [n.target for n in gm.graph.nodes if n.op == "get_attr"]
    with quiet_jit():
        if not constants:
            source = generate(gm.graph, name, method=False)
            source.src = with_metadata(source.src, gm)
            cu = torch.jit.CompilationUnit()
            _define(lambda: cu.define(source.src, rcb=source.rcb), f"function {name}", source)
            return torch._C._create_function_from_graph(
                _qualified_name(name), cu.find_function(name).graph)
        # Constants live on a module shell first; then each read of one is replaced by the
        # constant itself and the module argument is dropped, leaving a plain function graph.
        script = lower_module(gm)
        graph = script.forward.graph.copy()  # type: ignore[attr-defined]  # a ScriptMethod
        self_value = next(graph.inputs())
        for use in list(self_value.uses()):
            node = use.user
            if node.kind() != "prim::GetAttr":
                raise LoweringError(f"function {name}: unexpected use of module state ({node.kind()})")
            constant = graph.insertConstant(getattr(script, node.s("name")))
            constant.node().moveBefore(node)
            node.output().replaceAllUsesWith(constant)
            node.destroy()
        graph.eraseInput(0)
        return torch._C._create_function_from_graph(_qualified_name(name), graph)


_QUALIFIED = itertools.count()


def _qualified_name(name: str) -> str:
    """A function's qualified name as torch.jit gives its traces (``__torch__.``...): a
    module that calls the function can then be saved and loaded (the loader resolves the
    callee by it). The namespace is unique per process, so two traced functions named alike
    stay apart; the function's own name (``.name``, ``.code``) stays ``name``."""
    return f"__torch__.fxtrace_fn{next(_QUALIFIED)}.{name}"
