"""Rank and dtype variants of ``fxtrace.check``'s generated inputs.

``inputs_like`` keeps every tensor's rank and dtype; a trace that is wrong only at another
rank (``x[..., 0]`` recorded as ``select(dim=1)``) or another dtype (``dtype=x.dtype``
frozen) then passes. This module finds, on the example inputs, which rank and dtype changes
the *original* accepts, and turns a strategy of input sets into one that also draws those
changes (applied on top of the drawn shapes and values).

Invariant: a variant is offered only if eager ran on the example changed by it (no false
alarm from an input the original cannot take); a drawn input that eager then refuses is
skipped as any other input outside the original's domain. The identity is drawn at least as
often as all variants together, so most inputs keep the example's rank and dtype, and
Hypothesis shrinks a failure towards the identity (the first choice).
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from .. import tree
from .attributes import kept_tensor_attributes
from .calls import Call, tensor_leaves
from .trace_check import run_isolated

__all__ = ["Variant", "find_variants", "find_int_ranges", "with_variants", "with_batch_variants",
           "dtype_tolerance"]

_FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_INTS = (torch.int64, torch.int32)
#: the relative tolerance a dtype allows at least (a few ulps of its own precision)
_RTOL = {torch.float16: 1e-2, torch.bfloat16: 5e-2}
#: the size of a leading dim that a rank variant adds
_LEAD = 2


@dataclasses.dataclass(frozen=True)
class Variant:
    """A change of some tensor inputs (numbered as ``inputs_like`` numbers them): ``rank+1``
    adds a leading dim of size 2 (the tensor repeated), ``rank-1`` drops the leading dim
    (its first row), ``dtype`` converts to ``dtype``."""

    kind: str
    inputs: Tuple[int, ...]
    dtype: Optional[torch.dtype] = None

    def _one(self, t: torch.Tensor) -> torch.Tensor:
        grad = t.requires_grad
        t = t.detach()
        if self.kind == "rank+1":
            t = t.unsqueeze(0).expand(_LEAD, *t.shape).clone()
        elif self.kind == "rank-1":
            if t.dim() == 0 or t.shape[0] == 0:
                return t  # nothing to drop: the input stays as drawn
            t = t[0].clone()
        else:
            t = t.to(self.dtype)
        return t.requires_grad_(grad) if t.is_floating_point() or t.is_complex() else t

    def apply(self, call: Call) -> Call:
        number = itertools.count()

        def leaf(v: Any) -> Any:
            if not isinstance(v, torch.Tensor):
                return v
            return self._one(v) if next(number) in self.inputs else v
        return tree.map_leaves(leaf, tuple(call[0])), tree.map_leaves(leaf, dict(call[1]))

    def __str__(self) -> str:
        what = self.kind if self.dtype is None else str(self.dtype).replace("torch.", "")
        return f"{what} of input{'s' if len(self.inputs) > 1 else ''} " + \
            ",".join(map(str, self.inputs))


def _candidates(leaves: List[Tuple[str, torch.Tensor]], ranks: bool,
                dtypes: bool) -> Tuple[List[Variant], List[Variant]]:
    numbers = tuple(range(len(leaves)))
    groups = [(i,) for i in numbers] + ([numbers] if len(numbers) > 1 else [])
    rank: List[Variant] = []
    if ranks:
        for g in groups:
            rank.append(Variant("rank+1", g))
            if all(leaves[i][1].dim() >= 1 for i in g):
                rank.append(Variant("rank-1", g))
    dtype: List[Variant] = []
    if dtypes:
        for family in (_FLOATS, _INTS):
            members = tuple(i for i in numbers if leaves[i][1].dtype in family)
            kinds = {leaves[i][1].dtype for i in members}
            groups = [(i,) for i in members] + ([members] if len(members) > 1 else [])
            for g in groups:
                own = {leaves[i][1].dtype for i in g}
                dtype.extend(Variant("dtype", g, d) for d in family
                             if d not in own and not (len(g) > 1 and len(kinds) > 1))
            # across the families (float <-> int), where the original runs them: code that
            # branches on x.is_floating_point() or divides with // takes its other path
            other = _INTS[0] if family is _FLOATS else _FLOATS[0]
            dtype.extend(Variant("dtype", g, other) for g in groups)
    return rank, dtype


def find_variants(original: Any, call: Call, stateful: Sequence[Any], *, ranks: bool = True,
                  dtypes: bool = True) -> Tuple[List[Variant], List[Variant]]:
    """``(rank variants, dtype variants)`` of the example ``call`` that eager accepts.

    Each candidate runs the original once on the example changed by it (state restored);
    the candidates are every tensor input alone and all of them together."""
    leaves = tensor_leaves(*call)
    if not leaves:
        return [], []
    rank, dtype = _candidates(leaves, ranks, dtypes)
    with torch.no_grad():
        return ([v for v in rank if _eager_takes(original, v.apply(call), stateful)],
                [v for v in dtype if _eager_takes(original, v.apply(call), stateful)])


#: how far beyond the example's values an integral input's range is probed (doubling steps)
_INT_STEPS = (1, 2, 4, 8)


def find_int_ranges(original: Any, call: Call, stateful: Sequence[Any]
                    ) -> Dict[int, Tuple[int, int]]:
    """``{tensor input: (low, high)}``: for each integral (not bool) tensor input, the range of
    values the original takes when the input is filled with one value, found on both sides of
    the example's own range (eager run on the example with that input filled).

    An index (``x[int(i)]``, an embedding's ids) is taken up to an edge where eager raises:
    the range ends at that edge (found exactly by bisection). A side with no edge within
    ``_INT_STEPS`` is widened by the last step. Only inputs whose range grows are returned.
    """
    out: Dict[int, Tuple[int, int]] = {}
    leaves = tensor_leaves(*call)
    with torch.no_grad():
        for i, (_, t) in enumerate(leaves):
            if t.dtype == torch.bool or t.is_floating_point() or t.is_complex() or \
                    t.numel() == 0:
                continue
            lo, hi = int(t.min()), int(t.max())
            info = torch.iinfo(t.dtype)

            def takes(v: int, i: int = i) -> bool:
                return _eager_takes(original, _filled(call, i, v), stateful)
            new = (_edge(takes, lo, -1, info.min), _edge(takes, hi, 1, info.max))
            if new != (lo, hi):
                out[i] = new
    return out


def _edge(takes: Any, start: int, sign: int, limit: int) -> int:
    """The farthest value from ``start`` (in direction ``sign``, within ``limit``) such that
    eager takes every probed value up to it."""
    good = start
    for step in _INT_STEPS:
        v = start + sign * step
        if (v - limit) * sign > 0:
            return good
        if not takes(v):
            bad = v
            while abs(bad - good) > 1:  # bisect the edge between good and bad
                mid = (good + bad) // 2
                good, bad = (mid, bad) if takes(mid) else (good, mid)
            return good
        good = v
    return good


def _filled(call: Call, index: int, value: int) -> Call:
    number = itertools.count()

    def leaf(v: Any) -> Any:
        if isinstance(v, torch.Tensor) and next(number) == index:
            return torch.full_like(v, value)
        return v
    return tree.map_leaves(leaf, tuple(call[0])), tree.map_leaves(leaf, dict(call[1]))


def _eager_takes(original: Any, call: Call, stateful: Sequence[Any]) -> bool:
    try:
        with kept_tensor_attributes(stateful):
            run_isolated(original, call[0], call[1], stateful)
    except Exception:  # noqa: BLE001 - the original does not take this variant
        return False
    return True


def _choice(variants: List[Variant]) -> SearchStrategy:
    """None (the identity) first and as often as the variants together."""
    return st.sampled_from([None] * max(1, len(variants)) + list(variants))


def with_variants(strategy: SearchStrategy, rank: List[Variant],
                  dtype: List[Variant]) -> SearchStrategy:
    """``strategy`` (of calls) with a rank and a dtype variant drawn for each call."""
    if not rank and not dtype:
        return strategy

    def apply(drawn: Tuple[Call, Optional[Variant], Optional[Variant]]) -> Call:
        call, r, d = drawn
        for v in (r, d):
            if v is not None:
                call = v.apply(call)
        return call
    return st.tuples(strategy, _choice(rank), _choice(dtype)).map(apply)


def with_batch_variants(lists: SearchStrategy, rank: List[Variant],
                        dtype: List[Variant], fixed: bool = False) -> SearchStrategy:
    """``lists`` (of lists of calls) with one rank and one dtype variant drawn per list, after
    it, and applied to each of its calls (``fixed``: never the identity, for a search that
    shrinks a failure of one given variant)."""
    if not rank and not dtype:
        return lists
    choice = (lambda vs: st.sampled_from(vs) if vs else st.none()) if fixed else _choice

    def apply(drawn: Tuple[List[Call], Optional[Variant], Optional[Variant]]) -> List[Call]:
        calls, r, d = drawn
        for v in (r, d):
            if v is not None:
                calls = [v.apply(c) for c in calls]
        return calls
    return st.tuples(lists, choice(rank), choice(dtype)).map(apply)


def coverage_calls(example: Call, rank: List[Variant], dtype: List[Variant],
                   ranges: Dict[int, Tuple[int, int]]) -> List[Tuple[Call, Tuple[List[Variant],
                                                                                List[Variant]]]]:
    """The example under every variant, and with each integral input at both ends of its
    range: ``(call, (rank, dtype))``, the variants that draw inputs like it. Run after the
    random search, so that each variant the original takes is checked at least once (a few
    Hypothesis examples may never draw a rare one)."""
    out: List[Tuple[Call, Tuple[List[Variant], List[Variant]]]] = []
    out += [(v.apply(example), ([v], [])) for v in rank]
    out += [(v.apply(example), ([], [v])) for v in dtype]
    for i, (lo, hi) in ranges.items():
        out += [(_filled(example, i, value), ([], [])) for value in (lo, hi)]
    return out


def dtype_tolerance(call: Call, tolerance: float) -> float:
    """The relative tolerance for an input set: at least what its least precise floating
    input dtype allows (float16 and bfloat16 round far more than float32)."""
    rtol = tolerance
    for _, t in tensor_leaves(*call):
        rtol = max(rtol, _RTOL.get(t.dtype, 0.0))
    return rtol
