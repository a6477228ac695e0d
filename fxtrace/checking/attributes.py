"""Plain tensor attributes of modules, put back after a run.

``fxtrace.state.StateSnapshot`` restores buffers, training flags and plain Python attributes
(ints, strings, containers), but not a tensor that is neither a parameter nor a buffer: a
forward doing ``self.h = out.detach()`` rebinds it, and every later run of the check would
start from the last run's value (eager drifts while the trace, which keeps it as its own
state, is restored). Invariant: after :func:`kept_tensor_attributes`, every module of the
trees has the same tensor objects bound to the same names as before (rebinding undone; an
in-place write into a plain tensor attribute is not; one into a buffer is, by the snapshot).
"""
from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, List, Sequence, Tuple

import torch

__all__ = ["kept_tensor_attributes", "KeptAttributes"]

_MISSING = object()


def _bound(modules: Sequence[Any]) -> List[Tuple[Dict[str, Any], str, Any]]:
    """``(namespace, name, tensor)``: plain tensor attributes and the buffer objects."""
    out: List[Tuple[Dict[str, Any], str, Any]] = []
    for root in modules:
        if not isinstance(root, torch.nn.Module) or isinstance(root, torch.jit.ScriptModule):
            continue  # a ScriptModule's attributes live in C++: buffers cover its state
        for m in root.modules():
            for name, value in vars(m).items():
                if isinstance(value, torch.Tensor) and not name.startswith("_"):
                    out.append((vars(m), name, value))
            # ``self.count = self.count + 1`` on a buffer binds a new tensor in _buffers;
            # the snapshot restores values into the old one, which must be bound again
            out.extend((m._buffers, name, b) for name, b in m._buffers.items())
    return out


def _script_tensors(modules: Sequence[Any]) -> List[Tuple[torch.Tensor, torch.Tensor, int]]:
    """``(tensor, clone, version)`` of the tensor attributes of ScriptModules that are neither
    parameters nor buffers: a trace keeps a rebound tensor attribute of its original as such
    a constant and writes it in place (``copy_``), and no snapshot covers it."""
    out = []
    for root in modules:
        if not isinstance(root, torch.jit.ScriptModule):
            continue
        found = torch._C._jit_debug_module_iterators(root._c)  # type: ignore[attr-defined]
        covered = {n for n, _ in found["named_parameters_r"]} | \
            {n for n, _ in found["named_buffers_r"]}
        for name, value in found["named_attributes_r"]:
            if isinstance(value, torch.Tensor) and name not in covered:
                out.append((value, value.detach().clone(), value._version))
    return out


class KeptAttributes:
    """The rebindable and constant tensor state of ``modules`` that ``StateSnapshot`` does
    not restore, saved once; :meth:`restore` puts it back (see the module docstring)."""

    def __init__(self, modules: Sequence[Any]) -> None:
        self.bound = _bound(modules)
        self.script: List[List[Any]] = [list(t) for t in _script_tensors(modules)]

    def restore(self) -> None:
        for space, name, value in self.bound:
            if space.get(name, _MISSING) is not value:
                space[name] = value
        with torch.no_grad():
            for entry in self.script:
                tensor, clone, version = entry
                if tensor._version != version:
                    tensor.copy_(clone)
                    entry[2] = tensor._version

    @contextlib.contextmanager
    def kept(self) -> Iterator[None]:
        try:
            yield
        finally:
            self.restore()


@contextlib.contextmanager
def kept_tensor_attributes(modules: Sequence[Any]) -> Iterator[None]:
    """Run the body, then rebind every plain tensor attribute and buffer of ``modules`` as
    it was and undo in-place writes into a ScriptModule's tensor constants."""
    with KeptAttributes(modules).kept():
        yield
