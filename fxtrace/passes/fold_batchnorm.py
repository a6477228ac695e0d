"""Fold eval-mode BatchNorm into the Conv/Linear module before it."""
from __future__ import annotations

import operator
from typing import Dict, List, Optional, Set, Tuple, cast

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from ..capture.meta import FOLDED_FROM, METHODS, ORIGINAL, ORIGINAL_TYPE
from ..errors import InvalidArgument
from .result import PassResult

__all__ = ["fold_batchnorm", "ORIGINAL_META", "FOLDED_META", "require_eval_for_fold",
           "fold_on_request"]

#: ``GraphModule.meta`` key under which capture may record the module a traced submodule
#: GraphModule was made from (``sub_gm.meta["fxtrace_original"] = original_module``).
ORIGINAL_META = ORIGINAL
#: ``GraphModule.meta`` key of a GraphModule this pass built: ``(layer path, bn path)`` of the
#: two call targets (relative to the parent GraphModule) it replaces.
FOLDED_META = FOLDED_FROM
_ORIGINAL_TYPE_META = ORIGINAL_TYPE
_METHODS_META = METHODS

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BNS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)

#: What a traced Conv/Linear graph computes its result with (weight at position 1, bias at 2).
_LAYER_OPS = {torch.conv1d, torch.conv2d, torch.conv3d, F.conv1d, F.conv2d, F.conv3d,
              F.linear, torch._C._nn.linear}
#: What a traced BatchNorm graph computes its result with (input at position 0).
_BN_OPS = {F.batch_norm, torch.batch_norm}
#: Attributes a traced BatchNorm graph may read besides the ones batch_norm consumes (its
#: training-mode guard reads ``self.training``).
_BN_KEPT_ATTRS = {"training"}


def _original(module: nn.Module) -> nn.Module:
    if isinstance(module, fx.GraphModule):
        original = module.meta.get(ORIGINAL_META) if isinstance(
            getattr(module, "meta", None), dict) else None
        if isinstance(original, nn.Module):
            return original
    return module


def _hooked(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks
                or module._backward_hooks or getattr(module, "_backward_pre_hooks", None))


def _call_module(gm: fx.GraphModule, node: fx.Node) -> Optional[nn.Module]:
    if node.op != "call_module" or not isinstance(node.target, str):
        return None
    try:
        return gm.get_submodule(node.target)
    except AttributeError:
        return None


def _rank(node: fx.Node) -> Optional[int]:
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return len(shape) if shape is not None else None


# -- traced (GraphModule) submodules -----------------------------------------------------------
# NOTE [Folding traced submodules]
# Capture traces every called submodule into its own GraphModule (meta["fxtrace_original"] is
# the user's module). Its graph returns one value or a flat tuple (NOTE [Submodule outputs] in
# capture/concrete.py); the caller reads item i of a tuple through ``getitem(call, i)``. A
# layer and a BatchNorm are folded only when each returns exactly one value, either directly
# or as a 1-tuple read by a single ``getitem(call, 0)``. The replacement is a new GraphModule:
# the layer's graph (reading the new ``weight``/``bias`` Parameters) followed by every node of
# the BatchNorm's graph except the ``batch_norm`` call and what only feeds it, so the
# BatchNorm's guards (eval mode, input rank) stay. It returns what the layer's graph returned,
# so the call site keeps the layer's output convention.

def _value(node: fx.Node) -> fx.Node:
    """The node the caller reads a single-valued call's result through (the call itself, or
    its only ``getitem(call, 0)`` user)."""
    users = list(node.users)
    if len(users) == 1 and users[0].op == "call_function" and users[0].target is operator.getitem \
            and users[0].args == (node, 0):
        return users[0]
    return node


def _single_output(graph: fx.Graph) -> Optional[Tuple[fx.Node, bool]]:
    """``(value node, returned as a 1-tuple)`` when ``graph`` returns exactly one node."""
    out = graph.output_node()
    value = out.args[0] if out.args else None
    if isinstance(value, fx.Node):
        return value, False
    if isinstance(value, (tuple, list)) and len(value) == 1 and isinstance(value[0], fx.Node):
        return value[0], True
    return None


def _placeholders(graph: fx.Graph) -> List[fx.Node]:
    return [n for n in graph.nodes if n.op == "placeholder"]


def _get_attr(graph: fx.Graph, target: str) -> List[fx.Node]:
    return [n for n in graph.nodes if n.op == "get_attr" and n.target == target]


def _layer_plan(layer_sub: fx.GraphModule, first: fx.Node
                ) -> Optional[Tuple[fx.Node, Optional[fx.Node], bool]]:
    """``(op node, bias get_attr or None, tuple output)`` when the layer's graph is a plain
    ``conv*d``/``linear`` of ``self.weight`` and ``self.bias`` whose result is returned."""
    graph = layer_sub.graph
    single = _single_output(graph)
    if single is None:
        return None
    op, as_tuple = single
    if (_value(first) is first) == as_tuple:        # the call site must match the convention
        return None
    if op.op != "call_function" or op.target not in _LAYER_OPS or len(op.args) < 2:
        return None
    weights, biases = _get_attr(graph, "weight"), _get_attr(graph, "bias")
    if len(weights) != 1 or op.args[1] is not weights[0] or list(weights[0].users) != [op]:
        return None
    bias_arg = op.args[2] if len(op.args) > 2 else op.kwargs.get("bias")
    if len(biases) > 1 or (biases and (bias_arg is not biases[0] or list(biases[0].users) != [op])):
        return None
    if not biases and bias_arg is not None:
        return None
    if len(_placeholders(graph)) != len(first.args) or first.kwargs:
        return None
    for node in graph.nodes:                       # every other attribute must be a plain name
        if node.op == "call_module" or (node.op == "get_attr" and "." in node.target):
            return None
    return op, (biases[0] if biases else None), as_tuple


def _bn_plan(bn_sub: fx.GraphModule, bn_value_node: fx.Node, bn_node: fx.Node
             ) -> Optional[Tuple[fx.Node, Set[fx.Node]]]:
    """``(batch_norm node, nodes to drop)`` when the BatchNorm's graph returns one
    ``batch_norm`` of its only input; the dropped nodes are the call and what only feeds it."""
    graph = bn_sub.graph
    single = _single_output(graph)
    if single is None:
        return None
    bn_op, as_tuple = single
    if (bn_value_node is bn_node) == as_tuple:
        return None
    places = _placeholders(graph)
    if len(places) != 1 or bn_op.op != "call_function" or bn_op.target not in _BN_OPS \
            or not bn_op.args or bn_op.args[0] is not places[0]:
        return None
    dropped = {bn_op}
    for node in reversed(list(graph.nodes)):
        if node.op in ("placeholder", "output") or node in dropped:
            continue
        if node.users and all(u in dropped for u in node.users):
            dropped.add(node)
    for node in graph.nodes:
        if node in dropped or node.op in ("placeholder", "output"):
            continue
        if node.op == "call_module" or (node.op == "get_attr"
                                        and node.target not in _BN_KEPT_ATTRS):
            return None
    return bn_op, dropped


def _folded_graph_module(layer_sub: fx.GraphModule, bn_sub: fx.GraphModule,
                         fused: nn.Module, layer_plan, bn_plan, folded_from: Tuple[str, str]
                         ) -> fx.GraphModule:
    op, bias, as_tuple = layer_plan
    bn_op, dropped = bn_plan
    graph = fx.Graph()
    env: Dict[fx.Node, fx.Node] = {}
    for node in layer_sub.graph.nodes:
        if node.op == "output":
            continue
        if node is op and bias is None:           # the layer had no bias; the folded one has
            weight = env[op.args[1]]
            with graph.inserting_after(weight):
                new_bias = graph.get_attr("bias")
            new_bias.meta = dict(weight.meta)
            env[node] = graph.node_copy(node, lambda n: env[n])
            args = list(env[node].args)
            if len(args) > 2:
                args[2] = new_bias
                env[node].args = tuple(args)
            else:
                kwargs = dict(env[node].kwargs)
                kwargs["bias"] = new_bias
                env[node].kwargs = kwargs
            continue
        env[node] = graph.node_copy(node, lambda n: env[n])
    result = env[op]
    (bn_input,) = _placeholders(bn_sub.graph)
    bn_env: Dict[fx.Node, fx.Node] = {bn_input: result, bn_op: result}
    for node in bn_sub.graph.nodes:
        if node.op in ("placeholder", "output") or node in dropped:
            continue
        bn_env[node] = graph.node_copy(node, lambda n: bn_env[n])
    graph.output((result,) if as_tuple else result)

    holder = nn.Module()
    for node in graph.nodes:
        if node.op == "get_attr" and node.target not in ("weight", "bias", "training"):
            setattr(holder, node.target, getattr(layer_sub, node.target))
    # fuse_*_bn_eval gives the fused layer new Parameters for both.
    holder.register_parameter("weight", cast(nn.Parameter, fused.weight))
    holder.register_parameter("bias", cast(nn.Parameter, fused.bias))
    gm = fx.GraphModule(holder, graph, class_name=type(fused).__name__)
    gm.training = False
    gm.meta[ORIGINAL_META] = fused
    gm.meta[_ORIGINAL_TYPE_META] = f"{type(fused).__module__}.{type(fused).__qualname__}"
    gm.meta[_METHODS_META] = {}
    gm.meta[FOLDED_META] = folded_from
    return gm


# -- the pass -----------------------------------------------------------------------------------

def _fusable(gm: fx.GraphModule, first: fx.Node, bn_node: fx.Node):
    """``(layer, bn, plans)`` (originals, never modified) when ``first -> bn_node`` may be
    folded; ``plans`` is None for plain modules and the graph plans for traced ones."""
    layer_sub, bn_sub = _call_module(gm, first), _call_module(gm, bn_node)
    if layer_sub is None or bn_sub is None:
        return None
    layer, bn = _original(layer_sub), _original(bn_sub)
    if type(layer) not in _CONVS + (nn.Linear,) or type(bn) not in _BNS:
        return None
    value = _value(first)
    if len(bn_node.args) != 1 or bn_node.args[0] is not value or bn_node.kwargs \
            or len(value.users) != 1 or len(first.users) != 1:
        return None
    if any(m.training for m in (layer, bn, layer_sub, bn_sub)):
        return None
    if not bn.track_running_stats or bn.running_mean is None or bn.running_var is None:
        return None
    if any(_hooked(m) for m in (layer, bn, layer_sub, bn_sub)):
        return None
    if type(layer) is nn.Linear:
        # BatchNorm normalises dim 1; that is Linear's feature dim only for 2-d outputs.
        if not bn.affine or layer.out_features != bn.num_features or _rank(value) != 2:
            return None
    elif layer.out_channels != bn.num_features:
        return None
    if not isinstance(layer_sub, fx.GraphModule) and not isinstance(bn_sub, fx.GraphModule):
        return layer, bn, None
    if not (isinstance(layer_sub, fx.GraphModule) and isinstance(bn_sub, fx.GraphModule)):
        return None
    layer_plan = _layer_plan(layer_sub, first)
    bn_plan = _bn_plan(bn_sub, _value(bn_node), bn_node)
    if layer_plan is None or bn_plan is None:
        return None
    return layer, bn, (layer_sub, bn_sub, layer_plan, bn_plan)


def _fresh_name(gm: fx.GraphModule, base: str) -> str:
    base = base.replace(".", "_")
    name, i = base, 1
    while hasattr(gm, name):
        name, i = f"{base}_{i}", i + 1
    return name


def _used_targets(gm: fx.GraphModule) -> Set[str]:
    graphs = [gm.graph]
    methods = gm.meta.get(_METHODS_META) if isinstance(getattr(gm, "meta", None), dict) else None
    if isinstance(methods, dict):
        graphs += [m.graph for m in methods.values() if isinstance(m, fx.GraphModule)]
    return {n.target for g in graphs for n in g.nodes
            if n.op in ("call_module", "get_attr") and isinstance(n.target, str)}


def fold_batchnorm(gm: fx.GraphModule) -> PassResult:
    """Replace ``call_module`` Conv/Linear followed by ``call_module`` BatchNorm with one module.

    Invariant: afterwards no eval-mode ``Conv{1,2,3}d``/``Linear`` -> ``BatchNorm{1,2,3}d``
    pair that satisfies the conditions below is left in ``gm.graph``; outputs are unchanged up
    to float rounding (in eval mode BatchNorm is an affine map that can be merged into the
    preceding layer's weight and bias).

    Conditions: both modules are exactly those classes (not subclasses), all in eval mode
    (``not module.training``), without hooks; the BatchNorm tracks running stats and its only
    argument is the layer's output, which has no other user; channels match; for ``Linear``
    the BatchNorm is affine and the layer's output is known (``meta["tensor_meta"]``) to be
    2-d. In training mode the pass changes nothing: BatchNorm then uses batch statistics and
    updates its buffers.

    The folded weight and bias are new Parameters computed by
    ``torch.nn.utils.fusion.fuse_conv_bn_eval`` / ``fuse_linear_bn_eval`` (which deep-copy the
    layer); the user's conv/linear and BatchNorm modules and their parameters and buffers are
    never modified. The new module is registered on ``gm`` under a fresh name
    ``<layer path>_bn_fused``; the layer's node is kept (with its ``meta``) and retargeted to
    it; the BatchNorm node is erased. The old modules stay attributes of ``gm`` unless they
    were direct children of ``gm`` that no graph of ``gm`` (its own or an extra method's in
    ``meta["fxtrace_methods"]``) uses any more; nested paths may be shared with other
    modules' trees and are left alone.

    Plain modules are replaced by the fused plain module. Submodules that capture already
    traced into ``GraphModule``s are recognised through ``sub_gm.meta["fxtrace_original"]``
    (:data:`ORIGINAL_META`) and replaced by a new GraphModule (see NOTE [Folding traced
    submodules]) so lowering compiles a ``forward`` for it; a GraphModule submodule without
    that key, or whose graph is not a plain ``conv``/``linear`` resp. ``batch_norm`` returning
    one value, is skipped. Only ``gm.graph`` is visited. Not in the default passes: fxtrace
    runs it on request (``fold_batchnorm=True``).

    Before::

        def forward(self, x):
            conv = self.conv(x)
            bn = self.bn(conv)
            return bn.relu()

    After::

        def forward(self, x):
            conv = self.conv_bn_fused(x)
            return conv.relu()
    """
    graph = gm.graph
    modified = False
    replaced: Set[str] = set()
    for bn_node in list(graph.nodes):
        if bn_node.op != "call_module" or not bn_node.args:
            continue
        first = bn_node.args[0]
        if not isinstance(first, fx.Node):
            continue
        if first.op == "call_function" and first.target is operator.getitem \
                and isinstance(first.args[0], fx.Node):
            first = first.args[0]
        found = _fusable(gm, first, bn_node)
        if found is None:
            continue
        layer, bn, plans = found
        # Both are call_module nodes (_fusable found their submodules): targets are names.
        layer_name, bn_name = cast(str, first.target), cast(str, bn_node.target)
        with torch.no_grad():
            fused = (fuse_linear_bn_eval(layer, bn) if type(layer) is nn.Linear
                     else fuse_conv_bn_eval(layer, bn))
        fused.eval()
        if plans is not None:
            layer_sub, bn_sub, layer_plan, bn_plan = plans
            fused = _folded_graph_module(layer_sub, bn_sub, fused, layer_plan, bn_plan,
                                         (layer_name, bn_name))
        name = _fresh_name(gm, f"{layer_name}_bn_fused")
        gm.add_submodule(name, fused)
        replaced.update((layer_name, bn_name))
        first.target = name
        value, bn_value = _value(first), _value(bn_node)
        if "tensor_meta" in bn_value.meta:
            value.meta["tensor_meta"] = bn_value.meta["tensor_meta"]
        bn_value.replace_all_uses_with(value)
        if bn_value is not bn_node:
            graph.erase_node(bn_value)
        graph.erase_node(bn_node)
        modified = True
    if modified:
        used = _used_targets(gm)
        for target in replaced:
            if "." not in target and target not in used and not any(
                    u.startswith(target + ".") for u in used):
                delattr(gm, target)
    return PassResult(gm, modified)


# -- on request: ``fold_batchnorm=True`` -------------------------------------------------------

def require_eval_for_fold(root: Optional[nn.Module]) -> None:
    """Raise :class:`~fxtrace.errors.InvalidArgument` when ``fold_batchnorm=True`` is asked
    for a module (or any of its submodules) in training mode."""
    if root is None:
        return
    for path, module in root.named_modules():
        if module.training:
            where = f"its submodule '{path}' ({type(module).__name__}) is" if path else "it is"
            raise InvalidArgument(
                f"fold_batchnorm=True needs the model in eval mode, but {where} in training "
                f"mode; call .eval() on the model before tracing it (BatchNorm can only be "
                f"folded when it uses its running statistics)")


def fold_on_request(gm: fx.GraphModule) -> fx.GraphModule:
    """Run ``fold_batchnorm`` and then dead code elimination over the capture tree, appending
    their records to ``gm.meta["fxtrace"].passes`` and recording ``fold_batchnorm=True`` in
    its ``options``; returns the (same) root."""
    from .dce import eliminate_dead_code
    from .manager import run_passes
    gm, records = run_passes(gm, [fold_batchnorm, eliminate_dead_code])
    info = gm.meta.get("fxtrace")
    if info is not None:
        info.passes = list(info.passes or []) + records
        # The trace check re-captures with ``_capture(..., **info.options)``: it must fold too.
        info.options = {**(info.options or {}), "fold_batchnorm": True}
    return gm
