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
from .trace_check import compare_outputs

__all__ = ["symbolic_matches_eager", "same_values"]

Method = Tuple[str, Callable[..., Any], Tuple[Any, ...], Dict[str, Any]]


def same_values(a: Any, b: Any) -> bool:
    """Equal structures (named tuples and tuples alike, as TorchScript returns them) with
    close tensors and equal everything else: the trace check's own output comparison."""
    return not compare_outputs(tree.plain(a), tree.plain(b), _TOLERANCE)


_TOLERANCE = 1e-5


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
