"""The line a failing input leaves the example's path: the value the trace froze there.

NOTE [Frozen line]
A wrong trace is wrong because it froze a value at the example (a branch's ``bool``, a loop's
``range(x.size(0))``, an ``int(i)``) that this input changes. The first fx node whose value
differs (:mod:`fxtrace.checking.divergence`) is downstream of that decision: the body of the
branch, or, for a loop, the output of a re-trace that ran more iterations. What the user must
change is the decision's own line. fxtrace's guarded capture knows it: every frozen value is
a guard carrying ``file:line (code)`` of the decision. So the original is captured again on
the *example* inputs with guards on, and that graph is run (in Python) on the failing input;
the first guard that fires is the first decision this input takes differently from the
example, in execution order, and names the frozen line. It works for any trace (fxtrace's
with ``guards=False``, torch.jit's, a loaded one): only the original and the example inputs
are needed. When no guard fires, the input takes the example's path everywhere fxtrace
freezes a value, and no frozen line is claimed.

Invariant: a diagnosis only; the model's state (buffers, flags, parameters, RNG, Python
attributes) is as before, and any error of the diagnosis yields None.
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Dict, Optional, Tuple

import torch

from ..capture.assemble import assemble
from ..capture.concrete import capture_concrete
from ..capture.meta import CaptureInfo
from ..state import preserved_state
from .divergence import record_raising
from .refusals import guard_code, guard_location, guard_refusal
from .trace_check import clone_inputs

__all__ = ["Frozen", "frozen_line"]


@dataclasses.dataclass(frozen=True)
class Frozen:
    """A frozen decision: ``location`` (``file.py:10``), the user's ``code`` there and what
    the example gave (``traced with bool gave True``)."""

    location: str
    code: str
    traced: str

    @property
    def column(self) -> str:
        """What the report's ``first divergence`` column shows."""
        return f"frozen at {self.location}"

    def note(self) -> str:
        return (f"frozen line: {self.location} ({self.code}): the trace keeps what the example "
                f"gave there ({self.traced}); this input takes another path from that line on")


def _guarded_capture(original: Any, root: Optional[torch.nn.Module], args: Tuple[Any, ...],
                     kwargs: Dict[str, Any]) -> Any:
    fn = original.forward if isinstance(original, torch.nn.Module) else original
    name = type(root).__name__ if root is not None else getattr(original, "__name__", "fn")
    tracer, root_trace = capture_concrete([("forward", fn, args, kwargs)], root=root, name=name,
                                          guards=True)
    try:
        info = CaptureInfo(mode="concrete", is_function=root is None, name=name,
                           training=bool(root.training) if root is not None else False)
        return assemble(tracer, root_trace, info, fn if root is None else None)
    finally:
        tracer.restore_python_state()


def frozen_line(original: Any, root: Optional[torch.nn.Module], example: Tuple[Any, Any],
                failing: Tuple[Any, Any]) -> Optional[Frozen]:
    """The frozen decision the ``failing`` input takes differently from the ``example`` input
    (NOTE [Frozen line]), or None."""
    stateful = [root] if root is not None else []
    try:
        with warnings.catch_warnings(), torch.no_grad(), torch.random.fork_rng(), \
                preserved_state(stateful, always=True, parameters=True):
            warnings.simplefilter("ignore")
            gm = _guarded_capture(original, root, clone_inputs(tuple(example[0])),
                                  clone_inputs(dict(example[1])))
            try:
                # through the recording interpreter, not gm(...): a GraphModule called
                # directly prints the generated code of a raising node to stderr
                record_raising(gm, clone_inputs(tuple(failing[0])),
                               clone_inputs(dict(failing[1])))
            except Exception as e:  # noqa: BLE001 - a guard firing is the answer
                message = guard_refusal(e)
                if message is None:
                    return None
                location = guard_location(message)
                if not location:
                    return None
                traced = message.split("): ", 1)[1] if "): " in message else message
                traced = traced.split(";", 1)[0]
                return Frozen(location, guard_code(message), traced)
    except Exception:  # noqa: BLE001 - a diagnosis must not hide the failure
        return None
    return None
