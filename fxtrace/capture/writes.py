"""Model state a capture writes in place is put back afterwards (a trace is an observation).

NOTE [State writes]
Running the user's forward once is how a concrete capture sees the program, and that run
may write the model's own tensors in place: ``self.weight.mul_(2)``, an ``nn.init`` call,
``self.count += 1`` on a tensor attribute. Buffers are cloned before every capture and copied
back (``fxtrace.state``), but parameters are most of a model's memory, so they are not copied
up front. Instead the torch function mode, which sees every in-place call, copies a
parameter or tensor attribute the first time a call is about to write into its storage
(through the tensor itself, a view, or ``.data``), and :meth:`StateWrites.restore` copies the
saved values back when the capture ends, whether it succeeded or raised. The cost is one copy
of what forward actually writes, nothing for the usual forward that writes nothing.
"""
from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch

from .. import tree

__all__ = ["StateWrites", "is_inplace_call"]

_INPLACE_DUNDERS = frozenset({"__setitem__", "__iadd__", "__isub__", "__imul__", "__itruediv__",
                              "__ifloordiv__", "__imod__", "__ipow__", "__iand__", "__ior__",
                              "__ixor__", "__ilshift__", "__irshift__", "__imatmul__"})


def is_inplace_call(name: str, kwargs: Dict[str, Any]) -> bool:
    """Whether a torch call of this name writes its first argument or ``out=``."""
    return (name.endswith("_") and not name.endswith("__")) or name in _INPLACE_DUNDERS or \
        kwargs.get("inplace") is True or kwargs.get("out") is not None


def _storage_key(t: torch.Tensor) -> Optional[int]:
    try:
        return t.untyped_storage().data_ptr() if t.device.type != "meta" else None
    except (RuntimeError, NotImplementedError):  # sparse, functional or other storage-less tensors
        return None


class StateWrites:
    """The parameters and tensor attributes of a module tree, by storage, and the copies of
    those a capture wrote (see NOTE [State writes])."""

    def __init__(self, root: Optional[torch.nn.Module]) -> None:
        self.root = root
        self._by_storage: Optional[Dict[int, List[torch.Tensor]]] = None
        self.saved: Dict[int, Tuple[torch.Tensor, torch.Tensor]] = {}  # id -> (tensor, copy)
        #: every tensor a restore put back: a check copies these around its eager runs
        self.written: List[torch.Tensor] = []

    def _index(self) -> Dict[int, List[torch.Tensor]]:
        if self._by_storage is None:
            self._by_storage = {}
            for t in self._state_tensors():
                key = _storage_key(t)
                if key is not None and key != 0:
                    self._by_storage.setdefault(key, []).append(t)
        return self._by_storage

    def _state_tensors(self) -> Iterator[torch.Tensor]:
        if self.root is None:
            return
        yield from self.root.parameters()
        for module in self.root.modules():
            for name, value in module.__dict__.items():
                if isinstance(value, torch.Tensor) and name not in ("_parameters", "_buffers"):
                    yield value

    def before(self, name: str, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> None:
        """Called before a torch call runs: save what it may write, on its first write."""
        if self.root is None or not is_inplace_call(name, kwargs):
            return
        targets: List[Any] = [args[0]] if args else []
        if kwargs.get("out") is not None:
            targets.extend(tree.leaves(kwargs["out"]))
        for target in targets:
            if not isinstance(target, torch.Tensor):
                continue
            key = _storage_key(target)
            for t in self._index().get(key, ()) if key is not None else ():
                if id(t) not in self.saved:
                    with torch._C.DisableTorchFunction():
                        self.saved[id(t)] = (t, t.detach().clone())

    def restore(self) -> None:
        """Copy every saved tensor back (bitwise), without touching autograd history."""
        self.written.extend(t for t, _ in self.saved.values())
        with torch.no_grad(), torch._C.DisableTorchFunction():
            for t, copy in self.saved.values():
                t.data.copy_(copy)
        self.saved.clear()

