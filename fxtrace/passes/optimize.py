"""The opt-in optimisation set (``fxtrace.optimize``): passes that make a trace faster to call.

NOTE [Optimisation set]
``fxtrace.trace`` runs only passes that keep the trace equal to what the user's code
recorded (dead code, common subexpressions, constant folding: ``DEFAULT_PASSES``).
``fxtrace.optimize(traced)`` additionally runs :data:`OPTIMIZE_PASSES`, which change *how*
the result is computed, not what (up to float rounding for the BatchNorm fold), and only
where the recorded flags make that safe: BatchNorm folding needs every module in eval mode
and is skipped otherwise; dropout is dropped only where the trace recorded it as off. The
default passes then run again over what the new ones left. The list and each pass's
invariant are documented in ``docs/passes.md``; torch.jit's ``optimize=`` argument is
unrelated (deprecated, it only warns).
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Dict, List

import torch
import torch.fx as fx

from ..capture.meta import INFO
from .cse import eliminate_common_subexpressions
from .dce import eliminate_dead_code
from .direct_ops import call_ops_directly
from .fold_batchnorm import fold_batchnorm
from .fold_constants import fold_constants
from .identities import drop_inactive_dropout
from .manager import run_passes
from .result import PassResult

__all__ = ["OPTIMIZE_PASSES", "optimize_capture", "copy_capture"]

#: The passes ``fxtrace.optimize`` runs, in order (``fold_batchnorm`` only in eval mode).
OPTIMIZE_PASSES: List[Callable[[fx.GraphModule], PassResult]] = [
    drop_inactive_dropout,
    fold_batchnorm,
    call_ops_directly,
    eliminate_dead_code,
    eliminate_common_subexpressions,
    fold_constants,
    eliminate_dead_code,
]


def optimize_capture(gm: fx.GraphModule) -> fx.GraphModule:
    """Run :data:`OPTIMIZE_PASSES` over a capture tree (in place, as every pass does) and
    append their records to ``gm.meta["fxtrace"].passes``; returns the new root.
    (``fold_batchnorm`` folds only modules in eval mode; in training mode it changes
    nothing.)"""
    info = gm.meta.get(INFO)
    gm, records = run_passes(gm, OPTIMIZE_PASSES)
    if info is not None:
        gm.meta[INFO] = info
        info.passes = list(info.passes or []) + records
    return gm


def _share(obj: Any, memo: Dict[int, Any]) -> None:
    """Make ``deepcopy`` keep ``obj`` (a user module, parameter or buffer) and what it holds."""
    if isinstance(obj, torch.Tensor):
        memo[id(obj)] = obj
    elif isinstance(obj, torch.nn.Module) and id(obj) not in memo:
        memo[id(obj)] = obj
        for t in (*obj.parameters(), *obj.buffers()):
            memo[id(t)] = t
        for m in obj.modules():
            _share(m, memo)


def copy_capture(gm: fx.GraphModule) -> fx.GraphModule:
    """A copy of a capture tree whose graphs and GraphModules are new and whose parameters,
    buffers and user modules (``meta["fxtrace_original"]``, leaf modules) are the same
    objects: passes may then rewrite the copy without touching the trace it came from."""
    memo: Dict[int, Any] = {}
    for m in gm.modules():
        for t in (*m.parameters(recurse=False), *m.buffers(recurse=False)):
            memo[id(t)] = t
        if not isinstance(m, fx.GraphModule):
            _share(m, memo)
        for value in getattr(m, "meta", {}).values():
            if isinstance(value, torch.nn.Module):
                _share(value, memo)
    return copy.deepcopy(gm, memo)
