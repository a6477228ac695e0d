"""Python state a traced forward changes: find it, and refuse a trace that reads it.

NOTE [Python state]: a trace freezes every Python value it reads. When forward also changes
Python state (a plain attribute assigned, a list, dict or set attribute mutated in place), a
later call of the original computes with other values than the traced one did: torch.jit.trace
returns wrong results then. The concrete tracer records such changes (``python_writes``: the
attribute assignments its ``__setattr__`` hook sees, and the containers whose contents changed
between before and after the run); :func:`refuse_python_state_reads` then captures once more,
with the state the first run left, and refuses the trace if the graphs differ: the traced
computation read state its own forward changes.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.fx as fx

from ..errors import TraceError, TracerWarning
from ..state import preserved_state, restore_contents
from .source import user_source
from .structure import graph_diff, same_structure, structure_of

__all__ = ["python_containers", "mutated_containers", "state_name", "refuse_python_state_reads",
           "restore_containers"]

_MODULE_INTERNALS = frozenset(torch.nn.Module().__dict__)

Containers = List[Tuple[str, Any, Any]]


def python_containers(root: Optional[torch.nn.Module]) -> Containers:
    """``(name, container, shallow copy)`` of every list, dict and set attribute of the
    modules of ``root``'s tree (not torch's own bookkeeping dicts)."""
    found: Containers = []
    if root is None:
        return found
    for qual, module in root.named_modules():
        for attr, value in module.__dict__.items():
            if attr in _MODULE_INTERNALS or type(value) not in (list, dict, set):
                continue
            # a huge container (a vocabulary) is watched by its length only
            before = type(value)(value) if len(value) <= _COPY_LIMIT else len(value)
            found.append((state_name(module, qual, attr), value, before))
    return found


_COPY_LIMIT = 10000


def state_name(module: torch.nn.Module, path: Optional[str], attr: str) -> str:
    """How an error names a module's attribute: ``self.calls (Counter)`` or, below the root,
    ``self.calls (Counter at 'blocks.0')``."""
    where = f" at '{path}'" if path else ""
    return f"self.{attr} ({type(module).__name__}{where})"


def mutated_containers(containers: Containers) -> List[str]:
    """The names of the containers whose contents differ (by identity) from their copy."""
    changed = []
    for name, value, before in containers:
        if isinstance(before, int):
            if len(value) != before:
                changed.append(name)
        elif len(value) != len(before):
            changed.append(name)
        elif isinstance(value, list):
            if any(a is not b for a, b in zip(value, before)):
                changed.append(name)
        elif isinstance(value, dict):
            if any(k not in before or before[k] is not v for k, v in value.items()):
                changed.append(name)
        elif value != before:
            changed.append(name)
    return changed


def refuse_python_state_reads(gm: fx.GraphModule, tracer: Any,
                              root: Optional[torch.nn.Module], methods: List[str],
                              rng: torch.Tensor, recapture: Callable[[], fx.GraphModule]
                              ) -> None:
    """Raise :class:`TraceError` when the traced computation reads Python state that its own
    forward changes (NOTE [Python state]).

    Forward changed Python state (``tracer.python_writes``), so ``recapture()`` captures the
    ``methods`` once more (raw), from the RNG state ``rng`` the first capture started from,
    with the Python state the first run left; the raw graphs are compared. Equal graphs: the
    state does not reach the trace (a counter only logged), and the first capture stands.
    Afterwards every module's Python attributes, registries, containers, buffers, flags and
    the RNG are as the first capture left them.
    """
    first = {m: structure_of(gm, m) for m in methods}
    modules = list(root.modules()) if root is not None else []
    extra = [m for m in dict.fromkeys(tracer.python_writers) if all(m is not k for k in modules)]
    attributes = [(m, dict(m.__dict__), _registries(m)) for m in modules + extra]
    containers = python_containers(root) + [c for m in extra for c in python_containers(m)]
    after = torch.random.get_rng_state()
    again = None
    problem: Optional[BaseException] = None
    try:
        torch.random.set_rng_state(rng)
        with preserved_state([root] if root is not None else [], always=True), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore", TracerWarning)
            again = recapture()
    except Exception as e:  # noqa: BLE001 - reported below, as the reason to refuse
        problem = e
    finally:
        torch.random.set_rng_state(after)
        _restore_python_state(attributes, containers)
    if again is not None and all(same_structure(first[m], structure_of(again, m))
                                 for m in methods):
        return
    writes = "\n".join(f"  {what}" + (f", changed at {src}" if src is not None else
                                      ", mutated in place")
                       for what, src in dict.fromkeys(tracer.python_writes))
    if again is not None:
        diff = next((d for m in methods for d in [graph_diff(gm, again, m)] if d is not None),
                    None)
        how = ("A second capture, with the state the first one left, differs:\n" +
               (diff.first_nodes_text("first capture", "second capture") if diff else ""))
    else:
        how = f"A second capture, with the state the first one left, raised: {problem}"
    src = user_source()
    where = f" (called at {src})" if src is not None else ""
    raise TraceError(
        "forward changes Python state that the traced computation reads:\n"
        f"{writes}\n{how}\nA trace freezes the Python values of the traced call, so later "
        "calls would compute with them (torch.jit.trace returns wrong results here). Keep the "
        "state in a tensor buffer (register_buffer: fxtrace carries buffer updates from call "
        "to call), pass it as an input, or trace with guards=False to accept torch.jit.trace's "
        f"behaviour{where}") from problem


# A module's own registries: forward may rebind a buffer (``self.total = self.total + x``).
_MODULE_DICTS = ("_parameters", "_buffers", "_modules")


def _registries(module: torch.nn.Module) -> Dict[str, Dict[str, Any]]:
    """Copies of the module's plain-dict registries (a ScriptModule's are C++ views: left
    alone, forward cannot rebind them)."""
    out = {}
    for name in _MODULE_DICTS:
        registry = module.__dict__.get(name)
        if isinstance(registry, dict):
            out[name] = dict(registry)
    return out


def _restore_python_state(attributes: List[Tuple[torch.nn.Module, Dict[str, Any],
                                                 Dict[str, Dict[str, Any]]]],
                          containers: Any) -> None:
    """Put back the modules' attributes, registries and the containers' contents (in place,
    so references to them stay valid) as :func:`refuse_python_state_reads` saved them."""
    for module, saved, registries in attributes:
        for key in [k for k in module.__dict__ if k not in saved]:
            del module.__dict__[key]
        module.__dict__.update(saved)
        for name, entries in registries.items():
            registry = module.__dict__[name]
            registry.clear()
            registry.update(entries)
    restore_containers(containers)


def restore_containers(containers: Containers) -> None:
    """Put the containers' contents back (in place, so references to them stay valid) as
    :func:`python_containers` copied them; one watched by length only cannot be."""
    for _, value, before in containers:
        if not isinstance(before, int):
            restore_contents(value, before)
