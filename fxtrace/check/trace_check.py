"""``check_trace``: run the trace and the original on check inputs and compare, as torch.jit does.

torch.jit's semantics are kept where they are observable: an exception while running either
side raises ``TracingCheckError``; a value mismatch warns with ``TracerWarning`` ("Output nr
N. of the traced function does not match ..."). fxtrace compares *every* leaf of nested
outputs, and runs both sides from the same RNG state with the model's state restored between
runs, so checking leaves the model as it was.
"""
from __future__ import annotations

import contextlib
import copy
import textwrap
import warnings
from typing import Any, Callable, Iterator, List, Sequence, Tuple

import torch

from ..errors import TracerWarning, TracingCheckError

__all__ = ["check_trace", "compare_outputs", "flatten_outputs"]


def _clone(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone().requires_grad_(value.requires_grad) if value.is_leaf \
            else value.clone()
    if isinstance(value, (tuple, list)):
        items = [_clone(v) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    return copy.copy(value) if not isinstance(value, (int, float, bool, str, type(None))) else value


def flatten_outputs(value: Any, path: str = "output") -> List[Tuple[str, Any]]:
    """Every leaf of a nested output with its path (``output[0]['logits']``)."""
    if isinstance(value, (tuple, list)):
        out: List[Tuple[str, Any]] = []
        for i, v in enumerate(value):
            out.extend(flatten_outputs(v, f"{path}[{i}]"))
        return out
    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            out.extend(flatten_outputs(v, f"{path}[{k!r}]"))
        return out
    return [(path, value)]


@contextlib.contextmanager
def _restored(stateful: Sequence[torch.nn.Module]) -> Iterator[None]:
    """Save buffers, parameters' values, training flags, RNG and grad mode; restore on exit."""
    rng = torch.random.get_rng_state()
    grad = torch.is_grad_enabled()
    tensors = [(t, t.detach().clone()) for m in stateful
               for t in list(m.parameters()) + list(m.buffers())]
    flags = [(sub, sub.training) for m in stateful for sub in m.modules()]
    try:
        yield
    finally:
        with torch.no_grad():
            for t, saved in tensors:
                if t.shape == saved.shape:
                    t.copy_(saved)
        for sub, training in flags:
            sub.training = training
        torch.random.set_rng_state(rng)
        torch.set_grad_enabled(grad)


def compare_outputs(traced: Any, eager: Any, tolerance: float) -> List[str]:
    """Messages for each leaf that differs: structure, dtype, shape, then values."""
    a, b = flatten_outputs(traced), flatten_outputs(eager)
    if [p for p, _ in a] != [p for p, _ in b]:
        return [f"output structure differs: trace gives {[p for p, _ in a]}, "
                f"Python gives {[p for p, _ in b]}"]
    problems = []
    for (path, x), (_, y) in zip(a, b):
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            if x.dtype != y.dtype or x.shape != y.shape:
                problems.append(f"{path}: trace gives {x.dtype} {tuple(x.shape)}, "
                                f"Python gives {y.dtype} {tuple(y.shape)}")
                continue
            try:
                xd, yd = (x.to(torch.cdouble), y.to(torch.cdouble)) if x.is_complex() else (
                    x.double(), y.double())
                torch.testing.assert_close(xd, yd, rtol=tolerance,
                                           atol=torch.testing._comparison.default_tolerances(x, y)[1],
                                           equal_nan=True)
            except AssertionError as e:
                problems.append(f"{path}: {e}")
        elif isinstance(x, torch.Tensor) != isinstance(y, torch.Tensor) or (
                not isinstance(x, torch.Tensor) and x != y):
            problems.append(f"{path}: trace gives {x!r}, Python gives {y!r}")
    return problems


def check_trace(traced: Callable[..., Any], func: Callable[..., Any],
                input_sets: Sequence[Tuple[Tuple[Any, ...], dict]], tolerance: float,
                stateful: Sequence[torch.nn.Module]) -> None:
    """Compare ``traced`` with ``func`` on each input set (see the module docstring)."""
    for args, kwargs in input_sets:
        with _restored(stateful):
            try:
                got = traced(*_clone(args), **_clone(kwargs))
            except Exception as e:
                raise TracingCheckError(None, None, extra_msg=(
                    "encountered an exception while running the trace with test inputs.\n"
                    f"Exception:\n{textwrap.indent(str(e), '  ')}")) from e
        with _restored(stateful):
            try:
                want = func(*_clone(args), **_clone(kwargs))
            except Exception as e:
                raise TracingCheckError(None, None, extra_msg=(
                    "encountered an exception while running the Python function with test inputs.\n"
                    f"Exception:\n{textwrap.indent(str(e), '  ')}")) from e
        for i, problem in enumerate(compare_outputs(got, _as_tuple_like(want, got), tolerance)):
            warnings.warn(f"Output nr {i + 1}. of the traced function does not match the "
                          f"corresponding output of the Python function. Detailed error:\n{problem}",
                          TracerWarning, stacklevel=4)


def _as_tuple_like(want: Any, got: Any) -> Any:
    # TorchScript returns tuples where Python returned namedtuples or ModelOutput-likes.
    if isinstance(want, tuple) and hasattr(want, "_fields"):
        return tuple(want)
    return want
