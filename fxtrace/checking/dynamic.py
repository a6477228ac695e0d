"""``fxtrace.probe_dynamic``: which input dims a trace handles at other sizes.

For every dim of every tensor input, the example input is resized along that dim alone (to
``size + 1`` and to ``size - 1``, or ``size + 2`` where ``size <= 2``; values are the example's
own, repeated cyclically with ``index_select``, so index tensors stay in range) and the trace
and the original run on it:

=============  =============================================================================
status         meaning
=============  =============================================================================
``dynamic``    the trace agrees with eager at every probed size
``specialised``a guard refused the other size; ``location`` is the guard's ``file:line``
``wrong``      the trace returned a different answer (a specialisation without guard)
``fails``      the trace raised something else than a guard failure
``n/a``        eager itself raises at the other size (the dim is tied to a weight or to
               another input); where the same size appears in other dims of the inputs, those
               are resized together and ``linked`` names them
=============  =============================================================================
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Dict, List, Optional, Tuple

import torch

from .trace_check import (compare_outputs, flatten_outputs, is_guard_error, isolated_state,
                          plain_tuples, run_isolated)

__all__ = ["probe_dynamic", "ProbeReport", "DimProbe"]

_GUARD_AT = re.compile(r"fxtrace guard failed at (.+?:\d+)(?= \(|: traced)")


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
    linked: str = ""    # other (input, dim) pairs resized together


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


def _replace(value: Any, changes: Dict[int, Dict[int, int]], counter: List[int]) -> Any:
    if isinstance(value, torch.Tensor):
        i = counter[0]
        counter[0] += 1
        out = value
        for dim, size in changes.get(i, {}).items():
            out = _resize(out, dim, size)
        return out
    if isinstance(value, (tuple, list)):
        items = [_replace(v, changes, counter) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    if isinstance(value, dict):
        return type(value)((k, _replace(v, changes, counter)) for k, v in value.items())
    return value


def _tensors(args: Any, kwargs: Any) -> List[Tuple[str, torch.Tensor]]:
    leaves = flatten_outputs(tuple(args), "args") + flatten_outputs(dict(kwargs), "kwargs")
    return [(p, v) for p, v in leaves if isinstance(v, torch.Tensor)]


def _other_sizes(size: int) -> Tuple[int, ...]:
    return (size + 1, size - 1) if size > 2 else (size + 2,)


def probe_dynamic(traced: Any, original: Any, example_inputs: Any = None, *,
                  tolerance: float = 1e-5) -> ProbeReport:
    """Probe each dim of each tensor input at other sizes (see the module docstring).

    ``example_inputs`` defaults to the inputs stored on the trace; a tuple is positional
    inputs, a tensor one input. Returns a :class:`ProbeReport`: ``str(report)`` is the table,
    ``report.dims`` the structured result. Model state and RNG are left as they were.
    """
    from .properties import _example_call
    from .trace_check import owning_module

    call, _ = _example_call(traced, example_inputs)
    if call is None:
        from ..errors import InvalidArgument
        raise InvalidArgument("probe_dynamic needs example_inputs (the trace stores none)")
    args, kwargs = call
    root = owning_module(original)
    stateful = [root] if root is not None else []
    leaves = _tensors(args, kwargs)
    probes: List[DimProbe] = []
    with isolated_state(stateful), torch.no_grad():
        for i, (path, t) in enumerate(leaves):
            for dim in range(t.dim()):
                size = int(t.shape[dim])
                if size == 0:
                    probes.append(DimProbe(i, path, dim, size, "n/a", detail="zero-size dim"))
                    continue
                probes.append(_probe(traced, original, args, kwargs, stateful, leaves, i, path,
                                     dim, size, tolerance))
    return ProbeReport(probes, _table(probes))


def _probe(traced: Any, original: Any, args: Any, kwargs: Any, stateful: List[Any],
           leaves: List[Tuple[str, torch.Tensor]], i: int, path: str, dim: int, size: int,
           tolerance: float) -> DimProbe:
    linked_sets = [{i: {dim: None}}]
    group = {j: [d for d in range(t.dim()) if int(t.shape[d]) == size and (j, d) != (i, dim)]
             for j, (_, t) in enumerate(leaves)}
    if any(group.values()):
        both = {j: {d: None for d in ds} for j, ds in group.items() if ds}
        both.setdefault(i, {})[dim] = None
        linked_sets.append(both)
    last: Optional[DimProbe] = None
    for attempt, changes in enumerate(linked_sets):
        linked = "" if attempt == 0 else ", ".join(
            f"{j}:{d}" for j, ds in changes.items() for d in ds if (j, d) != (i, dim))
        verdict = DimProbe(i, path, dim, size, "dynamic", _other_sizes(size), linked=linked)
        eager_ok = True
        for new in _other_sizes(size):
            sized = {j: {d: new for d in ds} for j, ds in changes.items()}
            a = _replace(tuple(args), sized, [0])
            k = _replace(dict(kwargs), sized, [_count(args)])
            try:
                want = plain_tuples(run_isolated(original, a, k, stateful))
            except Exception as e:  # noqa: BLE001
                eager_ok = False
                verdict = DimProbe(i, path, dim, size, "n/a", _other_sizes(size), linked=linked,
                                   detail=f"eager raises at size {new}: {_first(e)}")
                break
            try:
                got = run_isolated(traced, a, k, stateful)
            except Exception as e:  # noqa: BLE001
                if is_guard_error(e):
                    m = _GUARD_AT.search(str(e))
                    verdict.status = "specialised"
                    verdict.location = m.group(1) if m else ""
                    verdict.detail = _guard_text(e)
                else:
                    verdict.status, verdict.detail = "fails", _first(e)
                break
            problems = compare_outputs(got, want, tolerance)
            if problems:
                verdict.status = "wrong"
                verdict.detail = f"size {new}: " + problems[0][1].splitlines()[0]
                break
        if eager_ok:
            return verdict
        last = verdict
    assert last is not None
    return last


def _count(args: Any) -> int:
    return sum(1 for _, v in flatten_outputs(tuple(args)) if isinstance(v, torch.Tensor))


def _first(e: BaseException) -> str:
    lines = [l.strip() for l in str(e).strip().splitlines() if l.strip()]
    text = lines[-1] if lines else type(e).__name__
    return text if len(text) <= 100 else text[:97] + "..."


def _guard_text(e: BaseException) -> str:
    text = str(e)
    j = text.find("fxtrace guard failed")
    line = text[j:].splitlines()[0]
    m = re.search(r"\((.*)\): traced with", line)
    return m.group(1) if m else line


def _table(probes: List[DimProbe]) -> str:
    from tabulate import tabulate
    rows = [(p.input, p.path, p.dim, p.size, "/".join(map(str, p.sizes)), p.status,
             p.location or "-", p.linked or "-", _abbrev(p.detail, 60) or "-") for p in probes]
    return tabulate(rows, headers=["input", "path", "dim", "size", "probed", "status",
                                   "location", "linked", "detail"], tablefmt="simple",
                    disable_numparse=True)


def _abbrev(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def eager_dynamic_dims(original: Any, args: Any, kwargs: Any,
                       stateful: List[Any]) -> List[Tuple[int, int]]:
    """The ``(input, dim)`` pairs at which the *original* accepts other sizes (alone, or
    together with the dims of the same example size): what ``fxtrace.check`` varies by
    default. Model state and RNG are restored after every run."""
    leaves = _tensors(args, kwargs)
    out: List[Tuple[int, int]] = []
    with torch.no_grad():
        for i, (_, t) in enumerate(leaves):
            for dim in range(t.dim()):
                size = int(t.shape[dim])
                if size == 0:
                    continue
                same = {j: [d for d in range(u.dim()) if int(u.shape[d]) == size]
                        for j, (_, u) in enumerate(leaves)}
                for changes in ({i: [dim]}, {j: ds for j, ds in same.items() if ds}):
                    try:
                        for new in _other_sizes(size):
                            sized = {j: {d: new for d in ds} for j, ds in changes.items()}
                            run_isolated(original, _replace(tuple(args), sized, [0]),
                                         _replace(dict(kwargs), sized, [_count(args)]), stateful)
                    except Exception:  # noqa: BLE001 - a fixed dim
                        continue
                    out.append((i, dim))
                    break
    return out
