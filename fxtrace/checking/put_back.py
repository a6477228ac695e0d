"""The check's runs put back every parameter and tensor attribute they write in place.

NOTE [Writes on later calls]
A capture copies what forward writes in place *on the example* (NOTE [State writes]); the
check copies those tensors around each of its runs. A forward may also write a parameter only
on other inputs (``if x.size(0) > 4: self.weight.mul_(2)``), which the capture never saw.
Tensor attributes are copied by the snapshot around every run anyway; parameters are put back
one of two ways:

* **Parameter copies** (:func:`parameter_copies`, what ``fxtrace.check`` uses when the
  model's parameters fit :data:`COPY_BUDGET`): the original's parameters are cloned once per
  check; after every run a parameter whose version counter moved (an in-place write through
  it or a view) is copied back, and when the check ends every parameter is copied back
  bitwise. The runs themselves run bare: no torch function mode, whose dispatch on every
  torch call was most of the check's own cost per input on convolutional models. A write
  that moves no counter (through ``.data``, ``set_`` or a storage) would be put back only at
  the end, and a later run could start from it: so a model whose own module classes'
  source mentions one of those (or whose source is unknown) keeps the mode, and so does a
  function (no parameters, but it may write a global tensor the trace holds). (Code outside
  the module classes, a helper function writing ``p.data``, is not scanned; the end of the
  check still puts such a write back.)
* **Save before write** (check_trace, re-captures, a check of a model over the budget): the
  eager runs run under a torch function mode that does what the capture does: copy a
  parameter or tensor attribute the first time a call is about to write into its storage, and
  copy it back when the run ends. A run that writes nothing costs the mode's dispatch, no
  copy; the traced runs (TorchScript) write only what the capture recorded.
"""
from __future__ import annotations

import contextlib
import inspect
import re
import weakref
from typing import AbstractSet, Iterator, List, Optional, Sequence, Set

import torch
from torch.nn.parameter import UninitializedTensorMixin  # type: ignore[attr-defined]
from torch.overrides import TorchFunctionMode

from ..capture.writes import StateWrites, is_inplace_call
from ..state import StateSnapshot

__all__ = ["writes_put_back", "parameter_copies", "ParameterCopies", "COPY_BUDGET"]

#: The most parameter bytes a check clones up front (NOTE [Writes on later calls]); a larger
#: model keeps the save-before-write mode, which copies only what is written.
COPY_BUDGET = 1 << 30


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


class ParameterCopies:
    """Clones of a module tree's parameters, each with the version counter it had when it
    last held its saved value (NOTE [Writes on later calls])."""

    def __init__(self, params: List[torch.Tensor]) -> None:
        self.entries: List[list] = [[p, p.detach().clone(), p._version] for p in params]

    @staticmethod
    def of(root: Optional[torch.nn.Module], skip: Sequence[torch.Tensor] = (),
           budget: Optional[int] = None) -> Optional["ParameterCopies"]:
        """The copies of ``root``'s parameters but ``skip`` (tensors the snapshot already
        copies around every run), or None when they exceed ``budget`` bytes,
        one cannot be cloned (a lazy or meta parameter), ``root`` is None (a function) or
        writes past the version counters: the caller keeps the mode.
        ``budget``: default :data:`COPY_BUDGET`."""
        budget = COPY_BUDGET if budget is None else budget
        # a function has no parameters to copy, but may write a tensor the trace holds
        # (a global it closes over): the mode watches the trace's state for it
        if root is None or _writes_past_counters(root):
            return None
        skipped = {id(t) for t in skip}
        seen: Set[object] = set()
        params: List[torch.Tensor] = []
        size = 0
        for p in root.parameters():
            if isinstance(p, UninitializedTensorMixin) or p.device.type == "meta" or \
                    p.layout != torch.strided:
                return None
            key = (p.untyped_storage().data_ptr(), p.storage_offset(), tuple(p.shape),
                   tuple(p.stride()), p.dtype)
            if id(p) in skipped or key in seen:
                continue
            seen.add(key)
            params.append(p)
            size += p.numel() * p.element_size()
            if size > budget:
                return None
        return ParameterCopies(params)

    def put_back_written(self) -> Set[int]:
        """Copy back each parameter whose version counter moved since its last put-back;
        returns their storages' addresses (another module object may hold the same tensor,
        e.g. a trace's parameter of the same storage)."""
        written: Set[int] = set()
        for entry in self.entries:
            p = entry[0]
            if p._version != entry[2]:
                with torch.no_grad(), torch._C.DisableTorchFunction():
                    p.data.copy_(entry[1])
                entry[2] = p._version
                written.add(p.untyped_storage().data_ptr())
        return written

    def put_back_all(self) -> None:
        """Copy every parameter back bitwise (writes through ``.data`` move no counter)."""
        with torch.no_grad(), torch._C.DisableTorchFunction():
            for entry in self.entries:
                entry[0].data.copy_(entry[1])
                entry[2] = entry[0]._version


#: Source text of a way to write a tensor that moves no version counter.
_PAST_COUNTERS = re.compile(r"\.data\b|\bset_\(|storage\(|data_ptr\(")


def _writes_past_counters(root: torch.nn.Module) -> bool:
    """Whether a module class of ``root``'s tree (torch's own excepted) may write a tensor
    without moving its version counter (``.data``, ``set_``, storages), or its source is
    unknown: the copies would then miss such a write until the check ends."""
    for cls in {type(m) for m in root.modules()}:
        if cls.__module__.startswith("torch."):
            continue
        found = _SCANNED.get(cls)
        if found is None:
            try:
                found = bool(_PAST_COUNTERS.search(inspect.getsource(cls)))
            except (OSError, TypeError):
                found = True
            _SCANNED[cls] = found
        if found:
            return True
    return False


_SCANNED: "weakref.WeakKeyDictionary[type, bool]" = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def parameter_copies(root: Optional[torch.nn.Module], snapshot: StateSnapshot
                     ) -> Iterator[bool]:
    """Within the body, :func:`writes_put_back` with ``snapshot`` uses copies of ``root``'s
    parameters instead of the mode (yields False when they are over the budget: the mode
    stays); on exit every parameter is put back bitwise."""
    copies = ParameterCopies.of(root, [t for t, _ in snapshot.copies])
    if copies is None:
        yield False
        return
    snapshot._put_back_copies = copies  # type: ignore[attr-defined]
    try:
        yield True
    finally:
        del snapshot._put_back_copies  # type: ignore[attr-defined]
        copies.put_back_all()
        for entry in snapshot.params:  # nothing left to warn about
            entry[2] = entry[1]._version


def _forget(snapshot: StateSnapshot, restored: Set[int], storages: AbstractSet[int] = frozenset()
            ) -> None:
    """``snapshot`` forgets the version bumps of the tensors put back (by id or storage)."""
    for entry in snapshot.params:
        t = entry[1]
        if id(t) in restored or (storages and t.layout == torch.strided
                                 and t.untyped_storage().data_ptr() in storages):
            entry[2] = t._version


@contextlib.contextmanager
def writes_put_back(modules: Sequence[torch.nn.Module], snapshot: StateSnapshot
                    ) -> Iterator[None]:
    """Run the body with NOTE [Writes on later calls]; on exit the written tensors are put
    back and ``snapshot`` forgets their version bumps (nothing is left to warn about)."""
    copies: Optional[ParameterCopies] = getattr(snapshot, "_put_back_copies", None)
    if copies is not None:
        try:
            yield
        finally:
            _forget(snapshot, set(), copies.put_back_written())
        return
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
        _forget(snapshot, restored)
