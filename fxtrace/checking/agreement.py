"""Does a capture agree with eager on its own example inputs? (``mode="auto"`` asks.)"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.fx as fx

from .. import tree
from ..capture.meta import INFO, METHODS
from ..capture.symbolic import flat_binding
from ..lower.script import lower_function, lower_module
from ..state import preserved_state

__all__ = ["symbolic_matches_eager", "same_values"]

Method = Tuple[str, Callable[..., Any], Tuple[Any, ...], Dict[str, Any]]


def same_values(a: Any, b: Any) -> bool:
    """Equal structures (named tuples and tuples alike, as TorchScript returns them) with
    close floating tensors and equal everything else."""
    leaves_a, spec_a = tree.flatten(tree.plain(a))
    leaves_b, spec_b = tree.flatten(tree.plain(b))
    return spec_a == spec_b and all(_same_leaf(x, y) for x, y in zip(leaves_a, leaves_b))


def _same_leaf(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.is_floating_point() or a.is_complex():
            return torch.allclose(a.detach(), b.detach(), rtol=1e-5, atol=1e-6, equal_nan=True)
        return torch.equal(a, b)
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - incomparable values are not the same
        return False


def symbolic_matches_eager(gm: fx.GraphModule, root: Optional[torch.nn.Module],
                           methods: List[Method]) -> bool:
    """Whether the symbolic capture ``gm`` — as a GraphModule and lowered to TorchScript —
    gives eager's outputs on the example inputs of every method. Any error counts as a
    disagreement. State is restored after every run."""
    stateful = [root] if root is not None else []
    try:
        script = lower_function(gm, gm.meta[INFO].name) if root is None else lower_module(gm)
        for method_name, fn, args, kwargs in methods:
            with preserved_state(stateful, always=True):
                want = fn(*args, **kwargs)
            target = gm if method_name == "forward" else gm.meta[METHODS][method_name]
            sig = inspect.signature(fn.forward if isinstance(fn, torch.nn.Module) else fn)
            flat = [v for _, v in flat_binding(sig.bind(*args, **kwargs))]
            with preserved_state(stateful, always=True):
                got = target(*flat)
            if not same_values(got, want):
                return False
            runner = script if method_name == "forward" or root is None else \
                script._c._get_method(method_name)  # type: ignore[union-attr]
            with preserved_state(stateful, always=True):
                lowered = runner(*flat)
            if not same_values(lowered, want):
                return False
    except Exception:  # noqa: BLE001 - a capture that cannot run is one that disagrees
        return False
    return True
