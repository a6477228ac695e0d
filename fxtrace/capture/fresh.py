"""Constants that forward makes anew on every call, and writes into them.

NOTE [Fresh constants]
A call the graph cannot hold (``torch.from_numpy(array)``) makes a tensor that becomes a
constant, and eager makes it anew on every call. The value kept is the one it was made with,
taken right then (a later in-place op at capture must not leak into the constant: fuzz F16),
and an in-place op on it (or on a view of it) writes a clone that the graph makes where the
constant is read, never the constant itself (else each call's write would carry into the
next, and a guard reading it earlier would see the written value: fuzz seed 841).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

import torch
import torch.fx as fx

from .frames import holder
from .writes import StateWrites, is_inplace_call

if TYPE_CHECKING:
    from .recorder import Recorder

__all__ = ["FreshWrites", "TensorConstant", "storage_key"]


def storage_key(t: torch.Tensor) -> Optional[int]:
    """The address of ``t``'s storage (None for tensors without one): views share it."""
    try:
        return t.untyped_storage().data_ptr() if t.device.type != "meta" else None
    except (RuntimeError, NotImplementedError):
        return None


class FreshWrites(StateWrites):
    """:class:`StateWrites`, and before an in-place call: the value of a written tensor that
    no open frame knows yet and that is not the model's state, which becomes a constant when
    the call is recorded (NOTE [Fresh constants]: ``torch.from_numpy`` is not seen by the
    torch function mode, so such a tensor is first met by the op that writes it)."""

    def __init__(self, root: Optional[torch.nn.Module], recorder: "Recorder") -> None:
        super().__init__(root)
        self.recorder = recorder

    def before(self, name: str, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> None:
        super().before(name, args, kwargs)
        if not args or not isinstance(args[0], torch.Tensor) or not is_inplace_call(name, kwargs):
            return
        t, rec = args[0], self.recorder
        with torch._C.DisableTorchFunction():
            key = storage_key(t)
            for const in rec.fresh_nodes.get(key, ()) if key is not None else ():
                const.keep_value()
            if id(t) in rec.fresh or id(t) in rec.param_names or not rec.frames or \
                    rec._known_anywhere(t) or self.is_state(key):
                return
            rec.fresh[id(t)] = (holder(t), t.detach().clone())

    def is_state(self, key: Optional[int]) -> bool:
        """Whether storage ``key`` is a parameter's or tensor attribute's of the model (it
        persists across calls: a write into it is the model's, not a fresh tensor's)."""
        return key is not None and key in self._index()


class TensorConstant:
    """A constant the graph reads (NOTE [Fresh constants]): its ``get_attr`` node, the clone
    in-place ops write (once one does), and the live tensor while the constant is that very
    object (``keep_value`` replaces it by its value before the first write)."""

    __slots__ = ("node", "clone", "table", "live")

    def __init__(self, node: fx.Node, table: Dict[str, Any], live: Optional[torch.Tensor]
                 ) -> None:
        self.node, self.table, self.live = node, table, live
        self.clone: Optional[fx.Node] = None

    def keep_value(self) -> None:
        if self.live is not None:
            self.table[str(self.node.target)] = self.live.detach().clone()
            self.live = None
