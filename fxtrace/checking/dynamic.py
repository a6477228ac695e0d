"""``fxtrace.probe_dynamic``: which input dims a trace handles at other sizes.

Dims of the same example size, across all tensor inputs, are *linked* by default (as
``inputs_like`` and ``fxtrace.check``'s ``dynamic=None`` link them): BERT's ``input_ids`` and
``attention_mask`` share their sequence length, and resizing one alone only makes eager
raise. Each group of linked dims is resized together (to ``size + 1`` and ``size - 1``, or
``size + 2`` where ``size <= 2``; values are the example's own, repeated cyclically with
``index_select``, so index tensors stay in range) and the trace and the original run on it.
Where eager raises for the whole group (a coincidence of sizes: a batch of 4 beside 4
features), each dim of the group is probed alone. Every dim gets one row; ``linked`` names
the other ``input:dim`` pairs resized with it (``-``: resized alone).

=============  =============================================================================
status         meaning
=============  =============================================================================
``dynamic``    the trace agrees with eager at every probed size
``specialised``a guard refused the other size; ``location`` is the guard's ``file:line``
``wrong``      the trace returned a different answer (a specialisation without guard)
``fails``      the trace raised something else than a guard's refusal
``n/a``        eager itself raises at the other size (the dim is tied to a weight)
=============  =============================================================================
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Dict, List, Tuple

import torch

from .. import tree
from ..errors import InvalidArgument
from .attributes import kept_tensor_attributes
from .calls import Call, abbrev, example_call, tensor_leaves
from .refusals import fired_message, guard_code, guard_location, guard_refusal
from .trace_check import compare_outputs, isolated_state, owning_module, run_isolated

__all__ = ["probe_dynamic", "ProbeReport", "DimProbe", "eager_dynamic_dims"]

#: ``(tensor input number, dim)``
Dim = Tuple[int, int]


@dataclasses.dataclass
class DimProbe:
    """The verdict for one dim of one input."""

    input: int          # tensor input number (depth-first, as inputs_like numbers them)
    path: str           # where it is in the inputs: ``args[0]``, ``kwargs['x']``
    dim: int
    size: int           # the example size
    status: str         # dynamic / specialised / wrong / fails / n/a
    sizes: Tuple[int, ...] = ()
    location: str = ""  # file:line of the guard that refused, for ``specialised``
    detail: str = ""
    linked: str = ""    # other ``input:dim`` pairs resized together


@dataclasses.dataclass
class ProbeReport:
    """``dims`` (one :class:`DimProbe` per input dim) and ``table`` (the same, as text)."""

    dims: List[DimProbe]
    table: str

    def __str__(self) -> str:
        return self.table

    def status(self, input: int, dim: int) -> str:
        """The status of ``dim`` of tensor input ``input``."""
        ndim = sum(1 for d in self.dims if d.input == input)
        for d in self.dims:
            if d.input == input and d.dim == dim % max(1, ndim):
                return d.status
        raise KeyError((input, dim))


def _resize(t: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    idx = torch.arange(size, device=t.device) % t.shape[dim]
    out = t.detach().index_select(dim, idx).clone()
    return out.requires_grad_(t.requires_grad) if t.is_floating_point() or t.is_complex() else out


def _resized(args: Any, kwargs: Any, dims: List[Dim], size: int) -> Call:
    """The input set with every dim of ``dims`` resized to ``size``."""
    number = itertools.count()

    def leaf(v: Any) -> Any:
        if not isinstance(v, torch.Tensor):
            return v
        i = next(number)
        for j, d in dims:
            if j == i:
                v = _resize(v, d, size)
        return v
    return tree.map_leaves(leaf, tuple(args)), tree.map_leaves(leaf, dict(kwargs))


def _other_sizes(size: int) -> Tuple[int, ...]:
    return (size + 1, size - 1) if size > 2 else (size + 2,)


def _groups(leaves: List[Tuple[str, torch.Tensor]], link: bool) -> List[List[Dim]]:
    """The dims of the inputs, grouped by example size when ``link`` (in input order)."""
    groups: Dict[Any, List[Dim]] = {}
    for i, (_, t) in enumerate(leaves):
        for d in range(t.dim()):
            groups.setdefault(int(t.shape[d]) if link else (i, d), []).append((i, d))
    return list(groups.values())


def probe_dynamic(traced: Any, original: Any, example_inputs: Any = None, *,
                  tolerance: float = 1e-5, link_sizes: bool = True) -> ProbeReport:
    """Probe each dim of each tensor input at other sizes (see the module docstring).

    ``example_inputs`` defaults to the inputs stored on the trace; a tuple is positional
    inputs, a tensor one input. ``link_sizes=False`` resizes every dim alone. Returns a
    :class:`ProbeReport`: ``str(report)`` is the table, ``report.dims`` the structured result
    (one row per dim, in input order). Model state and RNG are left as they were.
    """
    call, _ = example_call(traced, example_inputs)
    if call is None:
        raise InvalidArgument("probe_dynamic needs example_inputs (the trace stores none)")
    root = owning_module(original)
    prober = _Prober(traced, original, call, [root] if root is not None else [], tolerance)
    found: Dict[Dim, DimProbe] = {}
    with isolated_state(prober.stateful), torch.no_grad():
        for group in _groups(prober.leaves, link_sizes):
            for probe in prober.group(group):
                found[(probe.input, probe.dim)] = probe
    probes = [found[k] for k in sorted(found)]
    return ProbeReport(probes, _table(probes))


class _Prober:
    """Runs the trace and the original on resized example inputs."""

    def __init__(self, traced: Any, original: Any, call: Call, stateful: List[Any],
                 tolerance: float) -> None:
        self.traced, self.original, self.call = traced, original, call
        self.stateful, self.tolerance = stateful, tolerance
        self.leaves = tensor_leaves(*call)

    def _row(self, dim: Dim, status: str, others: List[Dim], **kw: Any) -> DimProbe:
        i, d = dim
        path, t = self.leaves[i]
        size = int(t.shape[d])
        return DimProbe(i, path, d, size, status, _other_sizes(size) if size else (),
                        linked=", ".join(f"{j}:{e}" for j, e in others if (j, e) != dim), **kw)

    def group(self, group: List[Dim]) -> List[DimProbe]:
        """One row per dim of ``group``: resized together, else (eager raised) one by one."""
        i, d = group[0]
        size = int(self.leaves[i][1].shape[d])
        if size == 0:
            return [self._row(m, "n/a", [], detail="zero-size dim") for m in group]
        outcome = self.attempt(group, size)
        if outcome[0] != "n/a" or len(group) == 1:
            return [self._row(m, outcome[0], group, location=outcome[1], detail=outcome[2])
                    for m in group]
        rows = []
        for m in group:
            status, location, detail = self.attempt([m], size)
            rows.append(self._row(m, status, [], location=location, detail=detail))
        return rows

    def attempt(self, dims: List[Dim], size: int) -> Tuple[str, str, str]:
        """``(status, guard location, detail)`` with ``dims`` resized to each other size."""
        for new in _other_sizes(size):
            args, kwargs = _resized(*self.call, dims, new)
            try:
                with kept_tensor_attributes(self.stateful):
                    want = tree.plain(run_isolated(self.original, args, kwargs, self.stateful))
            except Exception as e:  # noqa: BLE001 - the size is outside the original's domain
                return "n/a", "", f"eager raises at size {new}: {_first(e)}"
            try:
                got = run_isolated(self.traced, args, kwargs, self.stateful)
            except Exception as e:  # noqa: BLE001
                message = guard_refusal(e)
                if message is None:
                    return "fails", "", f"size {new}: {_first(e)}"
                return "specialised", guard_location(message), guard_code(message)
            problems = compare_outputs(got, want, self.tolerance)
            if problems:
                return "wrong", "", f"size {new}: " + problems[0][1].splitlines()[0]
        return "dynamic", "", ""


def _first(e: BaseException) -> str:
    return abbrev(fired_message(e).splitlines()[0], 100)


def _table(probes: List[DimProbe]) -> str:
    from tabulate import tabulate
    rows = [(p.input, p.path, p.dim, p.size, "/".join(map(str, p.sizes)), p.status,
             p.location or "-", p.linked or "-", abbrev(p.detail, 60) or "-") for p in probes]
    return tabulate(rows, headers=["input", "path", "dim", "size", "probed", "status",
                                   "location", "linked", "detail"], tablefmt="simple",
                    disable_numparse=True)


def eager_dynamic_dims(original: Any, args: Any, kwargs: Any,
                       stateful: List[Any]) -> List[Dim]:
    """The ``(input, dim)`` pairs at which the *original* accepts other sizes (alone, or
    together with the dims of the same example size): what ``fxtrace.check`` varies by
    default. Model state and RNG are restored after every run."""
    leaves = tensor_leaves(args, kwargs)
    out: List[Dim] = []
    with torch.no_grad():
        for group in _groups(leaves, link=True):
            i, d = group[0]
            size = int(leaves[i][1].shape[d])
            if size == 0:
                continue
            if _eager_takes(original, args, kwargs, stateful, group, size):
                out.extend(group)
                continue
            out.extend(m for m in group if len(group) > 1 and
                       _eager_takes(original, args, kwargs, stateful, [m], size))
    return sorted(out)


def _eager_takes(original: Any, args: Any, kwargs: Any, stateful: List[Any], dims: List[Dim],
                 size: int) -> bool:
    try:
        for new in _other_sizes(size):
            with kept_tensor_attributes(stateful):
                run_isolated(original, *_resized(args, kwargs, dims, new), stateful)
    except Exception:  # noqa: BLE001 - a fixed dim
        return False
    return True
