"""Fold eval-mode BatchNorm into the Conv/Linear module before it."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.fx as fx
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from .result import PassResult

__all__ = ["fold_batchnorm", "ORIGINAL_META"]

#: ``GraphModule.meta`` key under which capture may record the module a traced submodule
#: GraphModule was made from (``sub_gm.meta["fxtrace_original"] = original_module``).
ORIGINAL_META = "fxtrace_original"

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BNS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


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
    if node.op != "call_module":
        return None
    try:
        return gm.get_submodule(node.target)
    except AttributeError:
        return None


def _rank(node: fx.Node) -> Optional[int]:
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return len(shape) if shape is not None else None


def _fusable(gm: fx.GraphModule, first: fx.Node, bn_node: fx.Node
             ) -> Optional[Tuple[nn.Module, nn.Module]]:
    """``(layer, bn)`` (originals, never modified) when ``first -> bn_node`` may be folded."""
    layer_sub, bn_sub = _call_module(gm, first), _call_module(gm, bn_node)
    if layer_sub is None or bn_sub is None:
        return None
    layer, bn = _original(layer_sub), _original(bn_sub)
    if type(layer) not in _CONVS + (nn.Linear,) or type(bn) not in _BNS:
        return None
    if bn_node.args != (first,) or bn_node.kwargs or len(first.users) != 1:
        return None
    if any(m.training for m in (layer, bn, layer_sub, bn_sub)):
        return None
    if not bn.track_running_stats or bn.running_mean is None or bn.running_var is None:
        return None
    if any(_hooked(m) for m in (layer, bn, layer_sub, bn_sub)):
        return None
    if type(layer) is nn.Linear:
        # BatchNorm normalises dim 1; that is Linear's feature dim only for 2-d outputs.
        if not bn.affine or layer.out_features != bn.num_features or _rank(first) != 2:
            return None
    elif layer.out_channels != bn.num_features:
        return None
    return layer, bn


def _fresh_name(gm: fx.GraphModule, base: str) -> str:
    base = base.replace(".", "_")
    name, i = base, 1
    while hasattr(gm, name):
        name, i = f"{base}_{i}", i + 1
    return name


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

    The folded module is a new module (``torch.nn.utils.fusion.fuse_conv_bn_eval`` /
    ``fuse_linear_bn_eval`` deep-copy the layer) registered on ``gm`` under a fresh name
    ``<layer path>_bn_fused``; the user's conv/linear and BatchNorm modules and their
    parameters and buffers are never modified. The layer's node is kept (with its ``meta``)
    and retargeted to the new module; the BatchNorm node is erased. The old modules stay
    attributes of ``gm`` unless they were direct children of ``gm`` that no node uses any
    more (nested paths may be shared with the user's own module tree and are left alone).

    Submodules that capture already traced into ``GraphModule``s are recognised through
    ``sub_gm.meta["fxtrace_original"]`` (:data:`ORIGINAL_META`), the module they were traced
    from; a GraphModule submodule without it is skipped. Only ``gm.graph`` is visited.
    Not in the default passes: fxtrace runs it on request (``fold_batchnorm=True``).

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
    replaced = set()
    for bn_node in list(graph.nodes):
        if bn_node.op != "call_module" or not bn_node.args:
            continue
        first = bn_node.args[0]
        if not isinstance(first, fx.Node):
            continue
        pair = _fusable(gm, first, bn_node)
        if pair is None:
            continue
        layer, bn = pair
        with torch.no_grad():
            fused = (fuse_linear_bn_eval(layer, bn) if type(layer) is nn.Linear
                     else fuse_conv_bn_eval(layer, bn))
        fused.eval()
        name = _fresh_name(gm, f"{first.target}_bn_fused")
        gm.add_submodule(name, fused)
        replaced.update((first.target, bn_node.target))
        first.target = name
        if "tensor_meta" in bn_node.meta:
            first.meta["tensor_meta"] = bn_node.meta["tensor_meta"]
        bn_node.replace_all_uses_with(first)
        graph.erase_node(bn_node)
        modified = True
    if modified:
        used = {n.target for n in graph.nodes if n.op in ("call_module", "get_attr")}
        for target in replaced:
            if "." not in target and target not in used and not any(
                    u.startswith(target + ".") for u in used):
                delattr(gm, target)
    return PassResult(gm, modified)
