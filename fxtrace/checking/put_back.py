"""The check's runs put back every parameter and tensor attribute they write in place.

NOTE [Writes on later calls]
A capture copies what forward writes in place *on the example* (NOTE [State writes]); the
check copies those tensors around each of its runs. A forward may also write a parameter only
on other inputs (``if x.size(0) > 4: self.weight.mul_(2)``), which the capture never saw.
The check's eager runs therefore run under a torch function mode that does what the capture
does: copy a parameter or tensor attribute the first time a call is about to write into its
storage, and copy it back when the run ends. A run that writes nothing costs the mode's
dispatch, no copy; the traced runs (TorchScript) write only what the capture recorded.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, List, Sequence, Set

import torch
from torch.overrides import TorchFunctionMode

from ..capture.writes import StateWrites, is_inplace_call
from ..state import StateSnapshot

__all__ = ["writes_put_back"]


class _SaveBeforeWrite(TorchFunctionMode):
    fxtrace_internal = True  # not a user mode: the fast paths look past it (NOTE [Fast paths])

    def __init__(self, writes: List[StateWrites]) -> None:
        super().__init__()
        self.writes = writes

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if is_inplace_call(name, kwargs):  # the usual call writes nothing: dispatch only
            for writes in self.writes:
                writes.before(name, args, kwargs)
        return func(*args, **kwargs)


@contextlib.contextmanager
def writes_put_back(modules: Sequence[torch.nn.Module], snapshot: StateSnapshot
                    ) -> Iterator[None]:
    """Run the body with NOTE [Writes on later calls]; on exit the written tensors are put
    back and ``snapshot`` forgets their version bumps (nothing is left to warn about)."""
    # One StateWrites per module for all the runs from this snapshot: the storage index of
    # the model's tensors is built once per check, not once per run (restore() empties them).
    cached = getattr(snapshot, "_put_back_writes", None)
    if cached is None or [w.root for w in cached] != list(modules):
        cached = [StateWrites(m) for m in modules]
        snapshot._put_back_writes = cached  # type: ignore[attr-defined]
    writes = cached
    try:
        with _SaveBeforeWrite(writes):
            yield
    finally:
        restored: Set[int] = set()
        for w in writes:
            restored.update(id(t) for t, _ in w.saved.values())
            w.restore()
        for entry in snapshot.params:
            if id(entry[1]) in restored:
                entry[2] = entry[1]._version
