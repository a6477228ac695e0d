"""Constant folding: evaluate, at compile time, what depends only on tensor constants."""
from __future__ import annotations

import math
import re
import warnings
from typing import Any, Dict, List, Set, Tuple

import torch
import torch.fx as fx

from .purity import close_over_aliases, effects_of, is_impure, possibly_mutated, target_name
from .result import PassResult

__all__ = ["fold_constants", "is_constant_attr", "FOLD_NUMEL_LIMIT", "CONSTANT_PREFIX"]

#: A folded tensor with more elements than this is only stored when it is no larger than the
#: constant tensors it was computed from, so that ``torch.zeros(1000, 1000)`` stays a call
#: and saved files stay small.
FOLD_NUMEL_LIMIT = 100_000

#: Name prefix of tensor constants (fx's ``symbolic_trace`` and fxtrace's capture use it for
#: tensors captured from closures); folded results are stored under the same prefix.
CONSTANT_PREFIX = "_tensor_constant"
_CONSTANT_RE = re.compile(re.escape(CONSTANT_PREFIX) + r"\d+")

# Zero-input calls that are deterministic functions of their literal arguments.
_FACTORIES = frozenset({
    "ones", "zeros", "full", "arange", "range", "linspace", "logspace", "eye", "tensor",
    "as_tensor", "scalar_tensor", "tril_indices", "triu_indices",
})


def _resolve(gm: torch.nn.Module, target: str):
    owner: Any = gm
    *path, name = target.split(".")
    for atom in path:
        owner = getattr(owner, atom, None)
        if owner is None:
            return None, name, None
    return owner, name, getattr(owner, name, None)


def is_constant_attr(gm: torch.nn.Module, target: str) -> bool:
    """Whether the attribute ``target`` of ``gm`` is a tensor constant.

    A tensor constant is a tensor that is not an ``nn.Parameter``, does not require grad and
    is either named ``_tensor_constant<N>`` (captured from a closure; fx registers those as
    buffers) or a plain attribute, not a registered buffer. Parameters and buffers are never
    constants: the user may update them (optimiser steps, ``load_state_dict``, BatchNorm).
    """
    owner, name, value = _resolve(gm, target)
    if not isinstance(value, torch.Tensor) or isinstance(value, torch.nn.Parameter):
        return False
    if value.requires_grad:
        return False
    if _CONSTANT_RE.fullmatch(name):
        return True
    return not (isinstance(owner, torch.nn.Module) and name in owner._buffers)


def _storable(value: Any) -> bool:
    return (isinstance(value, torch.Tensor) and type(value) in (torch.Tensor,)
            and value.layout == torch.strided and not value.is_quantized
            and not value.requires_grad and value.device.type != "meta")


def _inlinable(value: Any) -> bool:
    if type(value) in (bool, int):
        return True
    return type(value) is float and math.isfinite(value)


def _new_constant_name(gm: torch.nn.Module) -> str:
    i = 0
    while hasattr(gm, f"{CONSTANT_PREFIX}{i}"):
        i += 1
    return f"{CONSTANT_PREFIX}{i}"


def _inline_into_users(node: fx.Node, value: Any) -> None:
    """Every use of ``node`` in its users' arguments becomes the plain Python ``value``."""
    def swap(n: fx.Node) -> Any:
        return value if n is node else n

    for user in list(node.users):
        user.args = fx.node.map_arg(user.args, swap)
        user.kwargs = fx.node.map_arg(user.kwargs, swap)


def fold_constants(gm: fx.GraphModule) -> PassResult:
    """Evaluate pure nodes whose inputs are all constants; store the results as constants.

    Invariant: afterwards no pure ``call_function``/``call_method`` node whose inputs are all
    tensor constants (see :func:`is_constant_attr`) is left, except the ones the rules below
    keep; program values are unchanged. Rules:

    * a node is evaluated when it is pure (:func:`~fxtrace.passes.purity.is_impure` is False),
      has at least one input node and all its input nodes are constants or evaluated nodes,
      or is a factory (``torch.ones``, ``zeros``, ``full``, ``arange``, ``tensor``, ...) with
      literal arguments; constants that are written anywhere in the graph
      (:func:`~fxtrace.passes.purity.possibly_mutated`) are not constants;
    * an evaluated value used by a non-evaluated node is stored: a tensor becomes a new
      ``get_attr`` of a buffer ``_tensor_constant<N>`` of ``gm`` (a detached clone), an
      ``int``/``bool``/finite ``float`` is written inline into its users' arguments, anything
      else stays computed;
    * a tensor with more than :data:`FOLD_NUMEL_LIMIT` elements that is larger than the
      constants it comes from (``torch.zeros(1000, 1000)``, ``c.expand(1000, 1000)``) is not
      stored (it stays a call; ``torch.zeros(1000, 1000).sum()`` still folds to one number);
    * a tensor that may reach the graph's output (directly or through a view) is not stored:
      the caller could mutate it and every later call would see the change;
    * a node whose evaluation raises is left alone (it will raise at run time, as before).

    The new node takes the ``meta`` of the node it replaces (source location, module, tensor
    meta). Evaluated nodes and constants left without users are erased, and
    ``_tensor_constant<N>`` attributes of ``gm`` no longer referenced are deleted. Only
    ``gm.graph`` is visited; :func:`fxtrace.passes.run_passes` recurses.

    Before (``c = torch.ones(3)`` captured from a closure)::

        def forward(self, x):
            _tensor_constant0 = self._tensor_constant0
            mul = _tensor_constant0 * 2
            return x + mul

    After (``self._tensor_constant1`` holds ``tensor([2., 2., 2.])``)::

        def forward(self, x):
            _tensor_constant1 = self._tensor_constant1
            return x + _tensor_constant1
    """
    graph = gm.graph
    effects = effects_of(graph)  # nothing is added or rewired until step 4
    mutated = possibly_mutated(graph, effects)
    output = next((n for n in graph.nodes if n.op == "output"), None)
    env, const_attrs = _evaluate_constants(gm, effects, mutated)  # 1.
    computed = [n for n in graph.nodes if n in env and n not in const_attrs]
    if not computed:
        return PassResult(gm, False)
    # 2. Values that may reach the output, directly or through views.
    escaping = close_over_aliases(output.all_input_nodes if output is not None else [], effects)
    stored = _choose_stored(env, const_attrs, computed, escaping)  # 3.
    if not stored:
        return PassResult(gm, False)
    had_users = {n for n in env if n.users}
    _store(gm, env, const_attrs, stored)  # 4.
    _erase_dead(gm, had_users)  # 5.
    return PassResult(gm, True)


def _evaluate_constants(gm: fx.GraphModule, effects: Any, mutated: Set[fx.Node]
                        ) -> Tuple[Dict[fx.Node, Any], Set[fx.Node]]:
    """1. Values of constants and of nodes computed only from constants."""
    env: Dict[fx.Node, Any] = {}
    const_attrs: Set[fx.Node] = set()
    for node in gm.graph.nodes:
        if node in mutated:
            continue
        if node.op == "get_attr":
            if is_constant_attr(gm, node.target):
                env[node] = _resolve(gm, node.target)[2]
                const_attrs.add(node)
            continue
        if node.op not in ("call_function", "call_method") or is_impure(node, effects):
            continue
        inputs = node.all_input_nodes
        if not all(i in env for i in inputs):
            continue
        if not inputs and not (node.op == "call_function"
                               and target_name(node.target) in _FACTORIES):
            continue
        args = fx.node.map_arg(node.args, lambda n: env[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if node.op == "call_function":
                    value = node.target(*args, **kwargs)
                else:
                    self_value, *rest = args
                    value = getattr(self_value, node.target)(*rest, **kwargs)
        except Exception:
            continue
        env[node] = value
    return env, const_attrs


def _choose_stored(env: Dict[fx.Node, Any], const_attrs: Set[fx.Node],
                   computed: List[fx.Node], escaping: Set[fx.Node]) -> Dict[fx.Node, Any]:
    """3. Decide, users first, which evaluated nodes are stored (the rest stay computed)."""
    sources: Dict[fx.Node, Set[fx.Node]] = {n: {n} for n in const_attrs}
    for node in computed:
        sources[node] = set().union(*(sources[i] for i in node.all_input_nodes))
    stored: Dict[fx.Node, Any] = {}
    kept: Set[fx.Node] = set()
    for node in reversed(computed):
        if not any(u not in env or u in kept for u in node.users):
            continue  # only feeds other evaluated nodes (or nothing)
        value = env[node]
        if isinstance(value, torch.Tensor):
            source_numel = sum(env[c].numel() for c in sources[node])
            ok = (node not in escaping and _storable(value)
                  and (value.numel() <= FOLD_NUMEL_LIMIT or value.numel() <= source_numel))
        else:
            ok = _inlinable(value)
        if ok:
            stored[node] = value
        else:
            kept.add(node)
    return stored


def _store(gm: fx.GraphModule, env: Dict[fx.Node, Any], const_attrs: Set[fx.Node],
           stored: Dict[fx.Node, Any]) -> None:
    """4. Rewrite: stored tensors become constant attributes, numbers are inlined."""
    graph = gm.graph
    attr_values = {id(env[n]): n for n in const_attrs}
    for node, value in stored.items():
        if isinstance(value, torch.Tensor):
            same = attr_values.get(id(value))
            if same is not None:
                # ``c.contiguous()``, ``c.to(c.dtype)``: the op returned the constant itself.
                replacement = same
            else:
                name = _new_constant_name(gm)
                gm.register_buffer(name, value.detach().clone())
                with graph.inserting_before(node):
                    replacement = graph.get_attr(name)
                replacement.meta = dict(node.meta)
            node.replace_all_uses_with(replacement)
        else:
            _inline_into_users(node, value)


def _erase_dead(gm: fx.GraphModule, had_users: Set[fx.Node]) -> None:
    """5. Erase what became dead: evaluated nodes and the constants they read."""
    graph = gm.graph
    erased_targets: Set[str] = set()
    for node in reversed(list(graph.nodes)):
        if node in had_users and not node.users:
            if node.op == "get_attr":
                erased_targets.add(node.target)
            graph.erase_node(node)
    referenced = {n.target for n in graph.nodes if n.op == "get_attr"}
    for name in erased_targets - referenced:
        if _CONSTANT_RE.fullmatch(name):  # fxtrace's own constants, directly on gm
            if name in gm._buffers:
                del gm._buffers[name]
            elif name in gm.__dict__:
                delattr(gm, name)
