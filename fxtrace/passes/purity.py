"""Which nodes have side effects: the single source of truth for every pass.

Every pass that removes, merges, moves or evaluates nodes asks this module first:

* :func:`is_impure` -- the node must never be removed, merged or evaluated at compile time
  (dead code elimination, CSE and constant folding all honour it);
* :func:`may_write` -- the node may write memory or global state that a later pure node reads
  (CSE does not merge across it);
* :func:`mutated_inputs` -- the input nodes whose storage the node may write;
* :func:`possibly_mutated` -- every node of a graph whose value may be written after it was
  computed (directly, or through a view of it); CSE and constant folding leave those alone.

A node is impure when it is

* a ``placeholder`` or the ``output`` (they are the signature);
* a ``call_module`` (a module may update buffers, e.g. BatchNorm in training mode);
* in place: a function or method whose name ends in ``_`` but not ``__`` (``add_``,
  ``copy_``, ``index_put_``, ``relu_``, ``uniform_``...), an in-place dunder (``__iadd__``,
  ``__setitem__``...), ``operator.setitem``/``operator.iadd``/..., a call with an ``out=``
  argument, a ``torch.nn.functional`` call with ``inplace=True`` (keyword or positional), an
  ``OpOverload`` whose schema is mutable, a functional ``batch_norm``/``instance_norm`` that
  updates its running statistics (``training=True``);
* a runtime check: ``torch._assert``, ``torch._check*``, ``torch._assert_*``, or any node whose
  meta has ``"fxtrace_guard": True``;
* random or otherwise non-deterministic: ``rand*``, ``randn*``, ``randint*``, ``randperm``,
  ``bernoulli*``, ``multinomial``, ``normal``, ``poisson``, ``*dropout*``, ``rrelu*``,
  ``gumbel_softmax``, ``fractional_max_pool*``, ``empty*``/``new_empty*`` (uninitialised
  memory), ops tagged ``nondeterministic_seeded``;
* global state: ``manual_seed``, ``seed``, ``set_rng_state``, ``_set_grad_enabled``,
  ``backward``, ``register_hook``, ``retain_grad``, anything from ``torch.distributed``,
  ``torch.cuda``, ``torch.autograd``, ``torch.profiler``, ``torch.amp``;
* a ``call_function`` whose target is not a torch callable (``torch.*``, ``operator``,
  ``math`` or one of :data:`LOWERABLE_BUILTINS`): fxtrace cannot know what a user function does;
* marked by capture with ``node.meta["fxtrace_impure"] = True``.

Everything else (``get_attr``, torch functions, Tensor methods) is pure. The rules are
deliberately conservative: a pure op mistaken for impure only costs an optimisation.
"""
from __future__ import annotations

import inspect
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

import torch
import torch.fx as fx

from ..capture.meta import GUARD, IMPURE

__all__ = [
    "Effects",
    "effects_of",
    "is_impure",
    "may_write",
    "mutated_inputs",
    "possibly_mutated",
    "may_alias_input",
    "close_over_aliases",
    "module_may_write",
    "function_namespace",
    "target_name",
    "GUARD_META",
    "IMPURE_META",
    "LOWERABLE_BUILTINS",
]

#: ``node.meta`` key capture sets on runtime guards.
GUARD_META = GUARD
#: ``node.meta`` key capture may set on any node it knows to have a side effect.
IMPURE_META = IMPURE

#: Python builtins that may be a ``call_function`` target (TorchScript knows them).
LOWERABLE_BUILTINS = frozenset({
    "getattr", "hasattr", "isinstance", "len", "int", "float", "bool", "str", "abs", "min",
    "max", "round", "pow", "divmod", "sum", "all", "any", "range", "tuple", "list",
})

_INPLACE_DUNDERS = frozenset({
    "__iadd__", "__isub__", "__imul__", "__imatmul__", "__itruediv__", "__ifloordiv__",
    "__imod__", "__ipow__", "__iand__", "__ior__", "__ixor__", "__ilshift__", "__irshift__",
    "__setitem__", "__delitem__", "__setattr__", "__delattr__", "__set__",
})
_OPERATOR_MUTATING = frozenset({
    "setitem", "delitem", "iadd", "isub", "imul", "imatmul", "itruediv", "ifloordiv", "imod",
    "ipow", "iand", "ior", "ixor", "ilshift", "irshift", "iconcat",
})
_RANDOM_EXACT = frozenset({
    "bernoulli", "multinomial", "normal", "poisson", "binomial", "gumbel_softmax",
    "_standard_gamma", "_sample_dirichlet", "_fused_dropout", "uniform", "exponential",
    "geometric", "log_normal", "cauchy",
})
_RANDOM_PREFIXES = ("rand", "rrelu", "fractional_max_pool", "empty", "new_empty", "bernoulli")
# Calls that change global state (or autograd state) and are therefore writes.
_STATE_WRITERS = frozenset({
    "manual_seed", "seed", "set_rng_state", "get_rng_state", "_set_grad_enabled",
    "set_grad_enabled", "set_default_dtype", "set_default_device", "set_autocast_enabled",
    "_enter_autocast", "_exit_autocast", "backward", "register_hook", "retain_grad",
    "record_stream", "set_", "print", "_print", "_record_function_enter",
    "_record_function_exit", "_record_function_enter_new", "sym_constrain_range",
    "sym_constrain_range_for_size",
})
_IMPURE_NAMESPACES = (
    "torch.distributed", "torch.cuda", "torch.autograd", "torch.profiler", "torch.amp",
    "torch.random", "torch._C._distributed", "torch.mps", "torch.xpu",
)
# Ops whose result may share storage with (or be) one of their inputs.
_ALIAS_NAMES = frozenset({
    "view", "view_as", "reshape", "reshape_as", "expand", "expand_as", "broadcast_to",
    "broadcast_tensors", "as_strided", "t", "T", "H", "mT", "mH", "adjoint", "transpose",
    "permute", "movedim", "moveaxis", "swapaxes", "swapdims", "squeeze", "unsqueeze",
    "flatten", "unflatten", "ravel", "narrow", "select", "getitem", "__getitem__", "split",
    "split_with_sizes", "unsafe_split", "chunk", "unsafe_chunk", "tensor_split", "hsplit",
    "vsplit", "dsplit", "unbind", "diagonal", "unfold", "real", "imag", "view_as_real",
    "view_as_complex", "detach", "alias", "contiguous", "to", "type", "type_as", "cpu",
    "cuda", "float", "double", "half", "bfloat16", "int", "long", "short", "char", "byte",
    "bool", "cfloat", "cdouble", "conj", "resolve_conj", "resolve_neg", "positive", "pos",
    "__pos__", "atleast_1d", "atleast_2d", "atleast_3d", "meshgrid", "einsum", "sum_to_size",
    "align_to", "align_as", "refine_names", "rename", "as_subclass", "data", "numpy",
    "coalesce", "indices", "values", "crow_indices", "col_indices", "getattr", "requires_grad_",
    "dequantize", "_reshape_alias", "to_dense",
})


def target_name(target: Any) -> str:
    """The bare name of a call target: ``"add_"`` for ``torch.add_``/``"add_"``/``aten.add_``."""
    if isinstance(target, str):
        return target
    if isinstance(target, torch._ops.OpOverload):
        return target._schema.name.split("::")[-1]
    if isinstance(target, torch._ops.OpOverloadPacket):
        return target._qualified_op_name.split("::")[-1]
    return getattr(target, "__name__", "") or type(target).__name__


def function_namespace(target: Any) -> Optional[str]:
    """Where a ``call_function`` target comes from, or None when it is not torch's.

    Returns ``"torch"`` for anything defined in ``torch`` (functions, ``torch.nn.functional``,
    Tensor methods, ``torch.ops`` overloads), ``"operator"``, ``"math"``, ``"builtins"`` (only
    for :data:`LOWERABLE_BUILTINS`), and None for user code, lambdas and other libraries.
    """
    if isinstance(target, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
        return "torch"
    objclass = getattr(target, "__objclass__", None)
    if objclass is not None and isinstance(objclass, type) and issubclass(
            objclass, torch._C.TensorBase):
        return "torch"
    module = getattr(target, "__module__", None)
    if not isinstance(module, str):
        return None
    if module == "torch" or module.startswith("torch."):
        return "torch"
    if module in ("operator", "_operator"):
        return "operator"
    if module == "math":
        return "math"
    if module == "builtins" and getattr(target, "__name__", None) in LOWERABLE_BUILTINS:
        return "builtins"
    return None


def _is_inplace_name(name: str) -> bool:
    return (name.endswith("_") and not name.endswith("__")) or name in _INPLACE_DUNDERS


def _is_random_name(name: str) -> bool:
    return (name in _RANDOM_EXACT or "dropout" in name or name.startswith(_RANDOM_PREFIXES))


def _is_check_name(name: str) -> bool:
    return name.startswith(("_assert", "_check"))


def _nodes_in(value: Any) -> List[fx.Node]:
    found: List[fx.Node] = []

    def collect(n: fx.Node) -> fx.Node:
        found.append(n)
        return n

    fx.node.map_arg(value, collect)
    return found


_SIGNATURES: Dict[Any, Optional[inspect.Signature]] = {}


def _inplace_flag(target: Any, args: tuple, kwargs: dict) -> bool:
    """``inplace=True`` passed by keyword or by position (``F.relu(x, True)``)."""
    if kwargs.get("inplace") is True:
        return True
    try:
        sig = _SIGNATURES[target]
    except (KeyError, TypeError):
        try:
            sig = inspect.signature(target)
        except (TypeError, ValueError):
            sig = None
        try:
            _SIGNATURES[target] = sig
        except TypeError:
            pass
    if sig is None or "inplace" not in sig.parameters:
        return False
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError:
        return True  # cannot tell: be conservative
    return bound.arguments.get("inplace") is True


def _out_nodes(node: fx.Node) -> Optional[List[fx.Node]]:
    if "out" in node.kwargs and node.kwargs["out"] is not None:
        return _nodes_in(node.kwargs["out"])
    return None


def _self_arg(node: fx.Node) -> List[fx.Node]:
    """The node an in-place op writes: its first argument (or ``input=``/``self=``)."""
    if node.args and isinstance(node.args[0], fx.Node):
        return [node.args[0]]
    for key in ("input", "self"):
        arg = node.kwargs.get(key)
        if isinstance(arg, fx.Node):
            return [arg]
    return list(node.all_input_nodes)


# Functional normalisations that update their running-stat arguments in place.
_STAT_UPDATERS = frozenset({
    "batch_norm", "instance_norm", "native_batch_norm", "_native_batch_norm_legit",
    "_batch_norm_impl_index", "cudnn_batch_norm", "miopen_batch_norm",
    "_native_batch_norm_legit_functional", "batch_norm_update_stats",
})


def _updated_stats(target: Any, node: fx.Node) -> Optional[List[fx.Node]]:
    """The running-stat nodes a functional batch/instance norm writes, None if it writes none.

    ``F.batch_norm(x, rm, rv, training=True)`` updates ``rm``/``rv``; with ``training=False``
    (or ``use_input_stats=False``, or no running stats) nothing is written. Calls fxtrace
    cannot bind (``torch.batch_norm``) count as writing every input except the first.
    """
    written = [n for n in node.all_input_nodes if not (node.args and n is node.args[0])]
    try:
        bound = inspect.signature(target).bind(*node.args, **node.kwargs)
        bound.apply_defaults()
    except (TypeError, ValueError):
        return written
    arguments = bound.arguments
    flag = arguments.get("training", arguments.get("use_input_stats", True))
    stats = [arguments.get("running_mean"), arguments.get("running_var")]
    if flag is False or all(s is None for s in stats):
        return None
    return [s for s in stats if isinstance(s, fx.Node)] or written


def _submodule(node: fx.Node) -> Optional[torch.nn.Module]:
    owner = node.graph.owning_module
    if owner is None or not isinstance(node.target, str):
        return None
    try:
        return owner.get_submodule(node.target)
    except AttributeError:
        return None


def module_may_write(module: torch.nn.Module, _seen: Optional[Set[int]] = None) -> bool:
    """Whether calling ``module`` may write its inputs, its buffers or global state.

    False only for modules fxtrace can see through: a ``GraphModule`` whose graph has no
    writing node, or a module defined in ``torch.nn`` without hooks, without ``inplace=True``,
    not (training and holding buffers), whose children are all of the same kind.
    """
    seen = _seen if _seen is not None else set()
    if id(module) in seen:
        return False
    seen.add(id(module))
    if module._forward_hooks or module._forward_pre_hooks:
        return True
    if isinstance(module, fx.GraphModule):
        for n in module.graph.nodes:
            category, _ = _analyse(n, seen)
            if category == "write":
                return True
        return False
    if not type(module).__module__.startswith("torch.nn."):
        return True
    if getattr(module, "inplace", False) is True:
        return True
    if module.training and any(b is not None for b in module._buffers.values()):
        return True
    return any(module_may_write(child, seen) for child in module.children())


def _analyse(node: fx.Node, _seen: Optional[Set[int]] = None
             ) -> Tuple[str, Tuple[fx.Node, ...]]:
    """``(category, written input nodes)``; category is one of ``"pure"``, ``"write"``,
    ``"guard"``, ``"random"``, ``"module"``, ``"signature"``."""
    op = node.op
    if op in ("placeholder", "output"):
        return "signature", ()
    if node.meta.get(IMPURE_META):
        return "write", tuple(node.all_input_nodes)
    if op == "get_attr":
        return ("guard" if node.meta.get(GUARD_META) else "pure"), ()
    if op == "call_module":
        module = _submodule(node)
        if module is None or module_may_write(module, _seen):
            return "write", tuple(node.all_input_nodes)
        return "module", ()

    target = node.target
    outs = _out_nodes(node)
    if op == "call_method":
        name = target if isinstance(target, str) else target_name(target)
        return _named_write(node, name, outs) or _named_effect(node, name)

    if op != "call_function":
        return "write", tuple(node.all_input_nodes)

    name = target_name(target)
    if isinstance(target, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
        schemas = ([target._schema] if isinstance(target, torch._ops.OpOverload)
                   else [getattr(target, o)._schema for o in target.overloads()])
        if any(s.is_mutable for s in schemas):
            return "write", tuple(node.all_input_nodes)
        tags = getattr(target, "tags", ()) or ()
        if torch.Tag.nondeterministic_seeded in tags or _is_random_name(name):
            return "random", ()
        if node.meta.get(GUARD_META) or _is_check_name(name):
            return "guard", ()
        return "pure", ()

    namespace = function_namespace(target)
    if namespace is None:
        return "write", tuple(node.all_input_nodes)
    module_name = getattr(target, "__module__", None) or ""
    if module_name.startswith(_IMPURE_NAMESPACES):
        return "write", tuple(node.all_input_nodes)
    if namespace == "operator" and name in _OPERATOR_MUTATING:
        return "write", tuple(_self_arg(node))
    written = _named_write(node, name, outs)
    if written is not None:
        return written
    if namespace == "torch" and _inplace_flag(target, node.args, node.kwargs):
        return "write", tuple(_self_arg(node))
    if name in _STAT_UPDATERS:
        stats = _updated_stats(target, node)
        if stats is not None:
            return "write", tuple(stats)
    return _named_effect(node, name)


def _named_write(node: fx.Node, name: str, outs: Optional[List[fx.Node]]
                 ) -> Optional[Tuple[str, Tuple[fx.Node, ...]]]:
    """The write a call's name or ``out=`` tells (``add_``, ``out=t``, ``manual_seed``), if any."""
    if _is_inplace_name(name):
        return "write", tuple(_self_arg(node) + (outs or []))
    if outs is not None:
        return "write", tuple(outs)
    if name in _STATE_WRITERS:
        return "write", ()
    return None


def _named_effect(node: fx.Node, name: str) -> Tuple[str, Tuple[fx.Node, ...]]:
    """The category of a call that writes nothing: guard, random or pure."""
    if node.meta.get(GUARD_META) or _is_check_name(name):
        return "guard", ()
    if _is_random_name(name):
        return "random", ()
    return "pure", ()


#: ``node -> (category, written input nodes)`` for every node of a graph, as
#: :func:`effects_of` computes it; a pass that asks several questions per node computes it once.
Effects = Dict[fx.Node, Tuple[str, Tuple[fx.Node, ...]]]


def effects_of(graph: fx.Graph) -> Effects:
    """The effect analysis of every node of ``graph`` at once (valid until a node is added or
    its arguments change; erasing nodes keeps the other entries valid)."""
    return {node: _analyse(node) for node in graph.nodes}


def _effect(node: fx.Node, effects: Optional[Effects]) -> Tuple[str, Tuple[fx.Node, ...]]:
    if effects is not None:
        found = effects.get(node)
        if found is not None:
            return found
    return _analyse(node)


def is_impure(node: fx.Node, effects: Optional[Effects] = None) -> bool:
    """True when ``node`` must never be removed, merged with another node or folded.

    Placeholders and the output count as impure (they are the graph's signature).
    ``effects``: :func:`effects_of` of the node's graph, to reuse.
    """
    if node.meta.get(GUARD_META) or node.op in ("placeholder", "output", "call_module"):
        return True
    return _effect(node, effects)[0] != "pure"


def may_write(node: fx.Node, effects: Optional[Effects] = None) -> bool:
    """True when ``node`` may write a tensor, a module's state or global state.

    Guards and random ops are impure but do not write values that pure nodes read, so they
    are not writes.
    """
    return _effect(node, effects)[0] == "write"


def mutated_inputs(node: fx.Node, effects: Optional[Effects] = None) -> List[fx.Node]:
    """The input nodes whose storage ``node`` may write (empty for non-writing nodes)."""
    return list(_effect(node, effects)[1])


def may_alias_input(node: fx.Node, effects: Optional[Effects] = None) -> bool:
    """True when the value of ``node`` may share storage with (or be) one of its inputs.

    Views and maybe-views (``view``, ``reshape``, ``getitem``, ``to``, ``contiguous``,
    ``detach``, ...), in-place ops (they return ``self``), modules and unknown functions.
    """
    if node.op in ("placeholder", "get_attr", "output"):
        return False
    category, _ = _effect(node, effects)
    if category in ("write", "module", "random"):
        return True
    if node.op == "call_module":
        return True
    name = target_name(node.target)
    if isinstance(node.target, torch._ops.OpOverload):
        return any(r.alias_info is not None for r in node.target._schema.returns)
    return name in _ALIAS_NAMES


def close_over_aliases(seeds: Iterable[fx.Node], effects: Optional[Effects] = None
                       ) -> Set[fx.Node]:
    """``seeds`` plus every node whose storage a seed may share (walking views backwards)."""
    result: Set[fx.Node] = set()
    stack = list(seeds)
    while stack:
        n = stack.pop()
        if n in result:
            continue
        result.add(n)
        if may_alias_input(n, effects):
            stack.extend(n.all_input_nodes)
    return result


def possibly_mutated(graph: fx.Graph, effects: Optional[Effects] = None) -> Set[fx.Node]:
    """Every node whose value some writing node of ``graph`` may change after it is computed.

    The written inputs of every writing node, closed backwards over ops that may return a view
    of their input (``y = x.view(-1); y.add_(1)`` marks ``y`` and ``x``), and every ``get_attr``
    of an attribute that is written through another ``get_attr`` node.
    """
    seeds: List[fx.Node] = []
    for node in graph.nodes:
        seeds.extend(_effect(node, effects)[1])
    result = close_over_aliases(seeds, effects)
    written_attrs = {n.target for n in result if n.op == "get_attr"}
    if written_attrs:
        more = [n for n in graph.nodes if n.op == "get_attr" and any(
            n.target == t or str(n.target).startswith(str(t) + ".") or
            str(t).startswith(str(n.target) + ".") for t in written_attrs)]
        result |= close_over_aliases(more, effects)
    return result
