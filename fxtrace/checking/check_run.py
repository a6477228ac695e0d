"""One input of ``fxtrace.check``: trace = eager, save/load = eager, re-trace stability.

:class:`InputChecker` checks one input set and counts it in :class:`Stats`; a wrong answer
raises :class:`Failure` (inside Hypothesis, which shrinks it). Only a guard's own assertion
is a refusal (NOTE [Guard refusal] in :mod:`fxtrace.checking.refusals`); any other error of
the trace on an input eager accepts is a failure, shrunk and reported like a wrong output.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch

from .. import tree
from ..state import StateSnapshot
from .attributes import KeptAttributes
from .calls import Call, describe_inputs, input_leaves
from .check_report import Failure, Stats, add_agreed_leaves
from .graphs import diff_report, retrace_diff
from .refusals import error_text, guard_refusal
from .trace_check import compare_outputs, run_isolated
from .variants import dtype_tolerance

__all__ = ["Sampler", "InputChecker"]


class Sampler:
    """Which inputs also get the save/load and re-trace checks.

    The first input of each new *signature* (shapes, dtypes and other leaves of the input,
    and whether the trace refused it), up to ``budget`` inputs; every input once a failure
    was found (Hypothesis is then shrinking it, and a shrunk input must be checked in full).
    An input seen before (by content) is not checked in full again: its first check passed
    or was not taken, and either way a replay gives the same verdict. ``budget=None``: every
    input.
    """

    def __init__(self, budget: Optional[int]) -> None:
        self.budget = budget
        self.failing = False
        self.signatures: set = set()
        self.decided: Dict[Any, bool] = {}

    def take(self, args: Any, kwargs: Any, refused: bool) -> bool:
        if self.budget is None:
            return True
        leaves = input_leaves(args, kwargs)
        signature = (refused,) + tuple(
            (p, tuple(v.shape), v.dtype) if isinstance(v, torch.Tensor) else (p, type(v))
            for p, v in leaves)
        key = (signature,) + tuple(_content(v) for _, v in leaves)
        if key in self.decided:
            # checked in full once already (Hypothesis draws an input again, e.g. a list
            # element it copied): once is enough, unless a failure is being shrunk
            return self.failing
        take = self.failing or (signature not in self.signatures and
                                len(self.signatures) < self.budget)
        if take:
            self.signatures.add(signature)
        self.decided[key] = take
        return take


def _content(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        t = v.detach()
        if t.numel() <= 65536 and t.layout == torch.strided:
            try:
                return hash(t.cpu().contiguous().numpy().tobytes())
            except (TypeError, RuntimeError):  # no numpy dtype (bfloat16, ...)
                pass
        return float(t.double().sum()) if t.numel() else 0.0
    try:
        return hash(v)
    except TypeError:
        return repr(v)


class InputChecker:
    """Checks input sets against one trace; ``snapshot`` is set once the outer isolated
    state is entered (every run starts from it)."""

    def __init__(self, traced: Any, original: Any, loaded: Any, gm: Any,
                 root: Optional[torch.nn.Module], tolerance: float, retrace_stable: bool,
                 sampler: Sampler, stats: Stats) -> None:
        self.traced, self.original, self.loaded, self.gm = traced, original, loaded, gm
        self.root = root
        self.stateful: List[torch.nn.Module] = [root] if root is not None else []
        self.tolerance = tolerance
        self.retrace = retrace_stable and gm is not None
        self.sampler, self.stats = sampler, stats
        self.snapshot: Optional[StateSnapshot] = None
        self.canon: Dict[Any, List[str]] = {}  # the trace's canonical graphs, computed once
        self.kept: Optional[KeptAttributes] = None
        self.example: Optional[Call] = None  # the example input set (NOTE [Frozen line])

    def _kept(self) -> Any:
        """The tensor state the snapshot does not cover, saved once (on first use: after
        ``stateful`` is final)."""
        if self.kept is None:
            self.kept = KeptAttributes(self.stateful)
        return self.kept.kept()

    def _run(self, fn: Any, call: Call) -> Any:
        # fxtrace's own trace (and its loaded copy) runs TorchScript only: it cannot draw
        # from Python's or NumPy's generators or set the original's Python attributes, so
        # only torch's generators are set before it and the restore skips the attributes
        own = self.gm is not None and fn is not self.original
        with self._kept():
            return run_isolated(fn, call[0], call[1], self.stateful, self.snapshot,
                                script_body=own)

    def _diff(self, call: Call) -> Optional[Any]:
        """The graph difference of a re-trace on this input (None: the same graph)."""
        with self._kept():
            return retrace_diff(self.gm, self.root, self.original, "forward", call[0],
                                call[1], snapshot=self.snapshot, cache=self.canon)

    def one(self, call: Call) -> bool:
        """Check one input; False when it lies outside the original's domain (skipped)."""
        stats = self.stats
        stats.examples += 1
        try:
            want = tree.plain(self._run(self.original, call))
        except Exception as e:  # noqa: BLE001 - outside the original's domain
            stats.skipped += 1
            stats.first_skip = stats.first_skip or (
                f"{describe_inputs(*call)}: eager raised {type(e).__name__}: "
                f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}")
            return False
        refused: Optional[str] = None
        got = None
        try:
            got = self._run(self.traced, call)
        except Exception as e:  # noqa: BLE001
            refused = guard_refusal(e)
            if refused is None:  # eager answered, the trace raised: a failure
                raise Failure("trace raised", call, want=want, detail=error_text(e)) from e
        tolerance = dtype_tolerance(call, self.tolerance)
        if refused is None and compare_outputs(got, want, tolerance):
            raise Failure("trace output differs from eager", call, got=got, want=want)
        full = (self.loaded is not None or self.retrace) and \
            self.sampler.take(call[0], call[1], refused is not None)
        if full:
            stats.sampled += 1
        got_loaded = self._check_loaded(call, want, refused) if full else None
        if refused is not None:
            stats.refuse(call, refused)
            if full and self.retrace:
                self._count_spurious(call)
            return True
        if got_loaded is not None and compare_outputs(got_loaded, want, tolerance):
            raise Failure("loaded trace output differs from eager", call, got=got_loaded,
                          want=want)
        if full and self.retrace:
            self._check_retrace(call, got, want)
        stats.agreed += 1
        add_agreed_leaves(stats, got, want)
        return True

    def _check_loaded(self, call: Call, want: Any, refused: Optional[str]) -> Any:
        """The save/load round trip's output (None when there is none or it refused, as the
        trace did)."""
        if self.loaded is None:
            return None
        try:
            got = self._run(self.loaded, call)
        except Exception as e:  # noqa: BLE001
            if guard_refusal(e) is None or refused is None:
                raise Failure("loaded trace raised", call, want=want,
                              detail=error_text(e)) from e
            return None
        if refused is not None:
            raise Failure("loaded trace accepts what the trace refuses", call, got=got,
                          want=want, detail=refused)
        return got

    def _count_spurious(self, call: Call) -> None:
        try:
            diff = self._diff(call)
        except Exception:  # noqa: BLE001 - the re-trace itself fails: not spurious
            return
        if diff is None:
            self.stats.spurious += 1

    def _check_retrace(self, call: Call, got: Any, want: Any) -> None:
        try:
            diff = self._diff(call)
        except Exception as e:  # noqa: BLE001
            raise Failure("re-trace raised", call, got=got, want=want,
                          detail=f"{type(e).__name__}: {e}") from e
        if diff is not None:
            raise Failure("graph changes with the input but no guard fired", call, got=got,
                          want=want, detail=diff_report(diff, "trace", "re-trace"))
