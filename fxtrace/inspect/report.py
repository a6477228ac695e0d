"""The contract between checkers and :func:`fxtrace.inspect.check_table`.

A trace check or a property check produces a :class:`CheckReport`; the table renders it.
Checkers fill these dataclasses; nothing here computes anything.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

__all__ = ["OutputCheck", "CheckReport", "STATUSES"]

#: The statuses a checker is expected to use (free text is rendered as given).
STATUSES = ("ok", "mismatch", "error", "skipped")


@dataclasses.dataclass
class OutputCheck:
    """The comparison of one output (a leaf of the output structure) of a check.

    ``path`` names the leaf in the output structure (``"out"``, ``"out[0]"``, ``"out['a']"``).
    ``max_abs``/``max_rel`` are the largest absolute/relative errors, ``None`` when not
    computed (non-tensor output, shape mismatch, error). ``expected``/``actual`` describe the
    two values compactly (``"Tensor(2x3, float32)"``). ``first_divergence`` names the first
    graph node whose value diverged (``"%add_1 (model.py:12)"``), when a checker found it.
    """

    path: str
    status: str
    max_abs: Optional[float] = None
    max_rel: Optional[float] = None
    expected: str = ""
    actual: str = ""
    first_divergence: Optional[str] = None


@dataclasses.dataclass
class CheckReport:
    """The result of one trace check or property check: one :class:`OutputCheck` per output.

    ``counts`` holds a property check's input counts (``inputs``, ``agreed``, ``refused``,
    ``skipped``; empty for other checks), for programs that read the verdict."""

    outputs: List[OutputCheck] = dataclasses.field(default_factory=list)
    title: str = ""
    notes: List[str] = dataclasses.field(default_factory=list)
    counts: Dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every output has status ``"ok"`` (or ``"skipped"``)."""
        return all(o.status in ("ok", "skipped") for o in self.outputs)
