"""What ``fxtrace.check`` draws: the strategy of input sets, its variants and coverage calls,
and the Hypothesis settings it runs under.

Shared by :mod:`~fxtrace.checking.properties` (``fxtrace.check``) and
:mod:`~fxtrace.checking.sequences` (``check_calls``), so that neither imports the other's
internals. Invariant: the default strategy draws only inputs like the example (its structure,
sizes the original takes at the dims it varies) and variants eager ran on the example.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Tuple

import torch
from hypothesis import HealthCheck, Phase, Verbosity
from hypothesis import settings as Settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from ..errors import InvalidArgument
from ..strategies import inputs_like
from .calls import Call, as_call, example_call
from .dynamic import eager_dynamic_dims
from .variants import Variant, coverage_calls, find_int_ranges, find_variants, with_variants

__all__ = ["Plan", "strategy_parts", "strategy", "hypothesis_settings"]


def strategy(traced: Any, inputs: Any, dynamic: Any, example_inputs: Any, original: Any,
              stateful: List[torch.nn.Module], ranks: Optional[bool] = None,
              dtypes: Optional[bool] = None, indices: Optional[bool] = None) -> SearchStrategy:
    """The strategy of input sets (as calls), each with its own rank and dtype variant."""
    plan = strategy_parts(traced, inputs, dynamic, example_inputs, original, stateful, ranks,
                           dtypes, indices)
    return with_variants(plan.strategy, plan.rank, plan.dtype)


@dataclasses.dataclass
class Plan:
    """What ``fxtrace.check`` draws: ``strategy`` (of calls) with one of the ``rank`` and one
    of the ``dtype`` variants per list; ``cover``: calls checked after the search, each with
    the variants that draw inputs like it (:func:`~fxtrace.checking.variants.coverage_calls`)."""

    strategy: SearchStrategy
    rank: List[Variant] = dataclasses.field(default_factory=list)
    dtype: List[Variant] = dataclasses.field(default_factory=list)
    cover: List[Tuple[Call, Tuple[List[Variant], List[Variant]]]] = \
        dataclasses.field(default_factory=list)
    #: the example input set (None: an ``inputs=`` strategy and no example stored or given)
    example: Optional[Call] = None


def strategy_parts(traced: Any, inputs: Any, dynamic: Any, example_inputs: Any,
                    original: Any, stateful: List[torch.nn.Module], ranks: Optional[bool],
                    dtypes: Optional[bool], indices: Optional[bool] = None) -> Plan:
    """The strategy of input sets (as calls): the dims it varies, integral values over the
    range the original takes (half of the inputs; the other half keep the example's range);
    and the rank and dtype changes the original accepts (:mod:`fxtrace.checking.variants`)."""
    example, kw_mode = example_call(traced, example_inputs)
    if isinstance(inputs, SearchStrategy):
        if dynamic is not None or ranks or dtypes or indices:
            raise InvalidArgument("fxtrace.check: dynamic=, ranks=, dtypes= and indices= shape "
                                  "the default strategy; they cannot be combined with an inputs= "
                                  "strategy")
        return Plan(inputs.map(lambda v: as_call(v, kw_mode)), example=example)
    if inputs is not None:  # concrete example inputs (as the CLI passes them)
        example = as_call(inputs, kw_mode)
    if example is None:
        raise InvalidArgument("fxtrace.check needs inputs: pass inputs= (a strategy or example "
                              "inputs) or example_inputs=, or a trace made with _store_inputs=True")
    args, kwargs = example
    base = kwargs if kw_mode else args
    # auto (None): with dynamic=None only; an explicit dynamic= says exactly what varies
    ranks = dynamic is None if ranks is None else ranks
    dtypes = dynamic is None if dtypes is None else dtypes
    indices = dynamic is None if indices is None else indices
    if dynamic is None:  # auto: the dims at which the original itself takes other sizes
        dynamic = eager_dynamic_dims(original, args, kwargs, stateful) or False
    values = inputs_like(base, dynamic=dynamic)
    ranges = find_int_ranges(original, (tuple(args), dict(kwargs)), stateful) if indices else {}
    if ranges:  # the example's values first: what a failure shrinks towards
        values = st.one_of(values, inputs_like(base, dynamic=dynamic, int_ranges=ranges))
    base_calls = values.map(lambda v: as_call(v, kw_mode))
    rank, dtype = find_variants(original, (tuple(args), dict(kwargs)), stateful,
                                ranks=bool(ranks), dtypes=bool(dtypes))
    cover = coverage_calls((tuple(args), dict(kwargs)), rank, dtype, ranges)
    return Plan(base_calls, rank, dtype, cover, (tuple(args), dict(kwargs)))


def hypothesis_settings(base: Optional[Settings], max_examples: Optional[int]) -> Settings:
    parent = base if base is not None else Settings()
    kw: Dict[str, Any] = dict(
        deadline=None, report_multiple_bugs=False,
        suppress_health_check=list(parent.suppress_health_check) + [
            HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    if base is None:
        kw["database"] = None
    # Hypothesis' explain phase re-runs the shrunk failure many times to annotate its own
    # printout, which the check's report replaces: about half of a failing check's time
    kw["phases"] = tuple(p for p in parent.phases if p != Phase.explain)
    if max_examples is not None:
        kw["max_examples"] = max_examples
    if parent.verbosity == Verbosity.normal:
        kw["verbosity"] = Verbosity.quiet  # the report replaces Hypothesis' own printout
    return Settings(parent, **kw)
