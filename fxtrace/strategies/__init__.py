"""Hypothesis strategies for torch tensors and for whole argument structures.

The strategies follow ``hypothesis.extra.numpy`` and ``hypothesis.extra.array_api``:

* every argument after the first obvious one is keyword-only and has a small default;
* every argument is checked when the strategy is built, and a bad one raises
  :class:`hypothesis.errors.InvalidArgument` naming the argument and the bound
  (``"min_dims=3 is larger than max_dims=2"``);
* ``dtype``, ``shape``, ``device``, ``layout`` and ``requires_grad`` of :func:`tensors` each take a
  value or a strategy; a strategy is resolved with ``flatmap``, a value costs nothing;
* element values are inferred from the dtype (:func:`from_dtype`), and all strategies shrink
  towards the smallest shape, contiguous memory and zeros.

Public strategies: :func:`dtypes`, :func:`shapes`, :func:`from_dtype`, :func:`tensors` and
:func:`inputs_like`, which derives a strategy for a whole argument structure (tensors nested in
tuples, lists and dicts, plus constants) from the example inputs given to ``fxtrace.trace``. By
default inputs_like seeds its tensor values (a kind and a seed per tensor fill it through a
private ``torch.Generator``, NOTE [seeded]) instead of drawing every element, so a large input
costs as few Hypothesis choices as a small one.

Why not ``hypothesis-torch``
----------------------------
The ``hypothesis-torch`` package (2.0.7 evaluated) was read and not used, for these reasons:

* its ``tensor_strategy`` ends with ``tensor.contiguous()``: it cannot produce non-contiguous,
  sliced, expanded or arbitrarily strided tensors, which are the inputs a tracer most often
  gets wrong; its only memory-layout knob is ``channels_last`` for 4-d/5-d tensors;
* it builds every tensor through ``hypothesis.extra.numpy`` and ``torch.from_numpy``, so numpy
  becomes a run-time dependency (fxtrace needs numpy only for its tests; hypothesis-torch's own
  metadata lists numpy only as an extra), and bfloat16 is drawn as float32, filtered and cast;
* its defaults suit fuzzing, not trace checks: elements include NaN and infinities, and
  ``requires_grad`` and the device are drawn at random unless pinned;
* nothing is validated when a strategy is built (it is one ``@composite``), so a bad argument
  surfaces mid-test instead of at the call;
* importing it registers a global strategy for ``torch.Tensor``, and installing it registers a
  Hypothesis entry-point plugin that manages torch's global RNG in every test session;
* it has no counterpart to :func:`inputs_like` (structures, dynamic dims, linked sizes);
* its metadata caps Python below 3.14 (``Requires-Python <3.14,>=3.9``); fxtrace has no cap.

What it does that this module does not (sparse layouts, named tensors, modules and optimizers)
is outside what a trace check needs. The tensor code here is a few hundred lines; owning it costs
less than working around the points above, and adds no dependency.
"""
from __future__ import annotations

from ._base import LAYOUTS, NDIM_MAX
from ._elements import dtypes, from_dtype, shapes
from ._inputs import inputs_like
from ._tensors import tensors

__all__ = [
    "LAYOUTS",
    "NDIM_MAX",
    "dtypes",
    "shapes",
    "from_dtype",
    "tensors",
    "inputs_like",
]
