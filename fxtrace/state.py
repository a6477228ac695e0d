"""Saving and restoring the state a traced program can change, for capture and for checks.

The state is: grad mode, the modules' plain Python attributes (numbers, strings, and the
contents of list, dict and set attributes), the random number generators (torch's CPU generator and those of
initialised CUDA devices, Python's ``random``, NumPy's global generator once
``numpy.random`` is imported), every module's training flag, the buffers (e.g. BatchNorm running statistics) and,
on request, *watching* the parameters.

Buffers are cloned and copied back (``copy_``) on restore: they are small, and copying back
unconditionally also undoes writes that bypass the version counter (``buf.data.add_(1)``).

NOTE [Trusted counters]: a caller that runs a model many times from one snapshot and knows
that no module class of it writes past a version counter (``fxtrace.check``, whose class scan
in ``fxtrace.checking.put_back`` found no ``.data``, ``set_(`` or storage write) sets
``trust_versions``: a restore then copies back only the buffers whose counter moved (on a
ResNet-style model most runs write none), and ``refresh`` skips the shape comparisons.

Parameters are **not** copied: a model's parameters are most of its memory, and a forward
that writes its own parameters in place is rare. With ``parameters=True`` each parameter's
``_version`` counter (bumped by every in-place write through the tensor or a view of it) is
recorded, and a parameter whose counter moved is reported with a ``TracerWarning`` naming it:
the write cannot be undone without a copy. Writes through ``.data`` do not bump the counter
and are neither undone nor reported.

A :class:`StateSnapshot` can be taken once and reused by many :func:`preserved_state` bodies
(``snapshot=``), so that running a model N times from the same state clones the buffers once,
not N times.
"""
from __future__ import annotations

import contextlib
import random
import sys
import warnings
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch.nn.parameter import UninitializedTensorMixin  # type: ignore[attr-defined]

__all__ = ["preserved_state", "StateSnapshot", "RngStates", "restore_contents",
           "restore_torch_rng"]


class RngStates:
    """Every random number generator a traced program may draw from, saved for restoring."""

    def __init__(self) -> None:
        self.cpu = torch.random.get_rng_state()
        self.cuda = ([torch.cuda.get_rng_state(i) for i in range(torch.cuda.device_count())]
                     if torch.cuda.is_available() and torch.cuda.is_initialized() else [])
        self.python = random.getstate()
        # numpy.random is imported lazily (numpy >= 2): until someone imports it, its global
        # generator does not exist to be drawn from, and reading it here would create it
        # (its import and a state read cost more than the rest of this snapshot).
        numpy_random = sys.modules.get("numpy.random")
        self.numpy: Any = numpy_random.get_state() if numpy_random is not None else None

    def restore(self) -> None:
        torch.random.set_rng_state(self.cpu)
        for i, state in enumerate(self.cuda):
            torch.cuda.set_rng_state(state, i)
        random.setstate(self.python)
        numpy_random = sys.modules.get("numpy.random")
        if numpy_random is not None and self.numpy is not None:
            numpy_random.set_state(self.numpy)


class StateSnapshot:
    """The buffers (cloned), training flags and parameter version counters of ``modules``.

    :meth:`restore` puts the buffers and flags back and warns about parameters written in
    place since the snapshot. Reusable: after a restore the snapshot still describes the state;
    a buffer written outside a restore (its version counter moved) is cloned afresh by
    :meth:`refresh`.
    """

    def __init__(self, modules: Sequence[torch.nn.Module], parameters: bool = False,
                 copies: Sequence[torch.Tensor] = ()) -> None:
        self.flags = [(m, m.training) for root in modules for m in root.modules()]
        # plain tensor attributes (``self.h``): a trace may write them (a recorded rebinding)
        self.tensor_attributes = [(m, name, t) for m, _ in self.flags
                                  for name, t in m.__dict__.items()
                                  if isinstance(t, torch.Tensor)]
        copies = list(copies) + [t for _, _, t in self.tensor_attributes
                                 if not isinstance(t, UninitializedTensorMixin)]
        # tensors known to be written in place (a capture saw it): copied, put back bitwise
        copied: set = set()
        self.copies: List[Tuple[torch.Tensor, torch.Tensor]] = []
        for t in copies:
            if id(t) not in copied:
                copied.add(id(t))
                self.copies.append((t, t.detach().clone()))
        self.python = [(m, _python_attributes(m)) for m, _ in self.flags]
        seen = set()
        self.buffers: List[list] = []  # [tensor, clone, version after clone/restore]
        for root in modules:
            for b in root.buffers():
                if id(b) not in seen and not isinstance(b, UninitializedTensorMixin):
                    seen.add(id(b))  # (a lazy module's buffers: materialised, not restored)
                    self.buffers.append([b, b.detach().clone(), b._version])
        # which tensor each buffer slot holds: ``self.count = self.count + 1`` rebinds it
        # (a ScriptModule's too: a trace rebinds one with a TorchScript assignment, F10)
        self.slots = [(m, name, b) for m, _ in self.flags if isinstance(m._buffers, dict) or
                      isinstance(m, torch.jit.ScriptModule)
                      for name, b in m._buffers.items() if b is not None]
        self.params: List[list] = []  # [name, tensor, version]
        if parameters:
            seen = set()
            for root in modules:
                for name, p in root.named_parameters():
                    if id(p) not in seen and id(p) not in copied:
                        seen.add(id(p))
                        self.params.append([name, p, p._version])
        self.warned = False
        # NOTE [Trusted counters]: set by a caller that knows no forward run from this
        # snapshot writes a buffer past its version counter (``.data``, ``set_``, storages):
        # a restore then copies back only the buffers whose counter moved.
        self.trust_versions = False
        # set by a caller running many bodies from this snapshot: the RNG states every body
        # starts from (restored before it, instead of saved and restored around it)
        self.rng: Optional[RngStates] = None

    def refresh(self) -> "StateSnapshot":
        """Re-clone the buffers written since the last clone or restore (by version)."""
        trusted = self.trust_versions  # NOTE [Trusted counters]: a resize moves the counter
        for entry in self.buffers:
            t = entry[0]
            if t._version != entry[2] or (not trusted and t.shape != entry[1].shape):
                entry[1], entry[2] = t.detach().clone(), t._version
        if not trusted:  # (trusted: a restore or put-back left every counter read)
            for entry in self.params:
                entry[2] = entry[1]._version
        return self

    def restore(self, python: bool = True) -> None:
        """Put the state back; ``python=False``: not the training flags and Python
        attributes (after a body that cannot set them)."""
        if python:
            for m, training in self.flags:
                if m.training is not training:  # setting goes through Module.__setattr__
                    m.training = training
            self._restore_python()
        for m, name, b in self.slots:
            slots = m._buffers  # (a ScriptModule's is a wrapper without .get)
            if (slots.get(name) if isinstance(slots, dict) else slots[name]) is not b:
                slots[name] = b
        for m, name, t in self.tensor_attributes:
            if m.__dict__.get(name) is not t:
                m.__dict__[name] = t
        with torch.no_grad():
            for t, copy in self.copies:
                t.data.copy_(copy)
        self._restore_buffers()
        written = []
        for e in self.params:  # each counter read once
            version = e[1]._version
            if version != e[2]:
                written.append(e[0])
                e[2] = version
        if written and not self.warned:
            self.warned = True
            from .errors import TracerWarning
            names = ", ".join(written[:10]) + (", ..." if len(written) > 10 else "")
            warnings.warn(f"forward wrote parameter(s) {names} in place; fxtrace does not copy "
                          "parameters, so running the model again to check the trace left "
                          "these writes in the model and later runs started from the written "
                          "values", TracerWarning, stacklevel=4)

    def _restore_python(self) -> None:
        """:func:`_restore_python_attributes` of every module in :attr:`python`, from a flat
        list of ``(attribute dict, name, value, container copy)`` built once per list (a
        caller may filter :attr:`python` after the snapshot is taken)."""
        if getattr(self, "_flat_of", None) is not self.python:
            self._flat_of = self.python
            self._flat = [(m.__dict__, name, value, copy) for m, saved in self.python
                          for name, (value, copy) in saved.items()]
        for attrs, name, value, copy in self._flat:
            if attrs.get(name, _MISSING) is not value:
                attrs[name] = value
            if copy is not None:
                restore_contents(value, copy)

    def _restore_buffers(self) -> None:
        """Copy the saved buffers back: all of them (writes through ``.data`` move no
        counter), or with :attr:`trust_versions` only those whose counter moved."""
        if self.trust_versions:
            moved = [e for e in self.buffers if e[0]._version != e[2]]
            if not moved:
                return
        else:
            moved = self.buffers
        with torch.no_grad():
            same = [e for e in moved if e[0].shape == e[1].shape]
            _copy_all([e[0] for e in same], [e[1] for e in same])
            for entry in moved:
                entry[2] = entry[0]._version


def restore_torch_rng(states: RngStates) -> None:
    """Put back torch's generators (CPU and CUDA) of ``states``, not Python's or NumPy's
    (whose restore costs ten times torch's)."""
    torch.random.set_rng_state(states.cpu)
    for i, state in enumerate(states.cuda):
        torch.cuda.set_rng_state(state, i)


#: Plain Python values a forward may assign on a module (``self.calls += 1``).
_PLAIN = (int, float, bool, str, type(None))
_CONTAINERS = (list, dict, set)


def _python_attributes(module: torch.nn.Module) -> Dict[str, Tuple[Any, Any]]:
    """``name -> (value, shallow copy of a container)`` of the module's own plain Python
    attributes (torch's bookkeeping, named ``_...``, and ``training`` are not)."""
    out: Dict[str, Tuple[Any, Any]] = {}
    for name, value in module.__dict__.items():
        if name.startswith("_") or name == "training":
            continue
        kind = type(value)
        if kind in _PLAIN:
            out[name] = (value, None)
        elif kind in _CONTAINERS and len(value) <= 10000:
            out[name] = (value, kind(value))
    return out


def _restore_python_attributes(module: torch.nn.Module,
                               saved: Dict[str, Tuple[Any, Any]]) -> None:
    attrs = module.__dict__
    for name, (value, copy) in saved.items():
        if attrs.get(name, _MISSING) is not value:
            attrs[name] = value
        if copy is not None:
            restore_contents(value, copy)


def restore_contents(container: Any, copy: Any) -> None:
    """Put ``copy``'s items back into the list, dict or set ``container`` in place, so that
    references to it stay valid."""
    if isinstance(container, list):
        container[:] = copy
    else:
        container.clear()
        container.update(copy)


_MISSING = object()


def _copy_all(targets: List[torch.Tensor], values: List[torch.Tensor]) -> None:
    """``t.copy_(v)`` for each pair; one fused call where torch has it (a model with hundreds
    of buffers is restored after every run of a check)."""
    if not targets:
        return
    foreach = getattr(torch, "_foreach_copy_", None)
    if foreach is not None:
        try:
            foreach(targets, values)
            return
        except (RuntimeError, TypeError):  # mixed devices or dtypes it does not take
            pass
    for t, v in zip(targets, values):
        t.copy_(v)


@contextlib.contextmanager
def preserved_state(modules: Sequence[torch.nn.Module], *, always: bool,
                    parameters: bool = False, snapshot: Optional[StateSnapshot] = None,
                    script_body: bool = False) -> Iterator[None]:
    """Restore the state of ``modules`` (see the module docstring) on exit.

    Grad mode is always restored. The rest is restored on every exit when ``always`` is True,
    and only when the body raises otherwise (for a caller that decides itself whether a
    successful body's effects stay). ``parameters=True`` watches the
    parameters for in-place writes (reported, not undone). ``snapshot``: a
    :class:`StateSnapshot` of the same modules to reuse instead of taking a new one; when
    its ``rng`` is set, the generators are set to those states before the body instead
    ``script_body``: the body runs TorchScript only (a trace fxtrace generated): it can
    neither draw from Python's or NumPy's generators nor set a Python module's attributes or
    training flags, so with a snapshot only torch's generators are set before it and the
    restore skips the Python attributes and flags (:meth:`StateSnapshot.restore`).
    """
    grad = torch.is_grad_enabled()
    start = snapshot.rng if snapshot is not None else None
    if start is not None:
        # every body starts from the snapshot's RNG states: one restore per body, and the
        # caller that set them restores the generators once its last body ran
        if script_body:
            restore_torch_rng(start)
        else:
            start.restore()
    rng = RngStates() if start is None else None
    snap = snapshot.refresh() if snapshot is not None else StateSnapshot(modules, parameters)

    def restore() -> None:
        if rng is not None:
            rng.restore()
        snap.restore(python=not (script_body and snapshot is not None))

    try:
        yield
    except BaseException:
        if not always:
            restore()
        raise
    finally:
        if always:
            restore()
        torch.set_grad_enabled(grad)
