"""``check_trace``: run the trace and the original on check inputs and compare, as torch.jit does.

torch.jit's semantics are kept where they are observable: an exception while running either
side raises ``TracingCheckError``; a value mismatch warns with ``TracerWarning`` ("Output nr
N. of the traced function does not match ..."). fxtrace compares *every* leaf of nested
outputs, and runs both sides from the same RNG state with the model's state restored between
runs, so checking leaves the model as it was.
"""
from __future__ import annotations

import copy
import textwrap
import warnings
from typing import Any, Callable, List, Sequence, Tuple

import torch

from ..errors import TracerWarning, TracingCheckError
from ..state import preserved_state

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


def compare_outputs(traced: Any, eager: Any, tolerance: float) -> List[Tuple[int, str]]:
    """``(leaf number, message)`` for each output leaf that differs: structure, dtype, shape,
    then values (relative tolerance ``tolerance``, dtype-aware absolute tolerance, NaN equal
    only to NaN)."""
    a, b = flatten_outputs(traced), flatten_outputs(eager)
    if [p for p, _ in a] != [p for p, _ in b]:
        return [(0, f"output structure differs: trace gives {[p for p, _ in a]}, "
                    f"Python gives {[p for p, _ in b]}")]
    problems = []
    for i, ((path, x), (_, y)) in enumerate(zip(a, b)):
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            if x.dtype != y.dtype or x.shape != y.shape:
                problems.append((i, f"{path}: trace gives {x.dtype} {tuple(x.shape)}, "
                                    f"Python gives {y.dtype} {tuple(y.shape)}"))
                continue
            try:
                xd, yd = (x.to(torch.cdouble), y.to(torch.cdouble)) if x.is_complex() else (
                    x.double(), y.double())
                torch.testing.assert_close(xd, yd, rtol=tolerance,
                                           atol=torch.testing._comparison.default_tolerances(x, y)[1],
                                           equal_nan=True)
            except AssertionError as e:
                problems.append((i, f"{path}: {e}"))
        elif isinstance(x, torch.Tensor) != isinstance(y, torch.Tensor) or (
                not isinstance(x, torch.Tensor) and x != y):
            problems.append((i, f"{path}: trace gives {x!r}, Python gives {y!r}"))
    return problems


def _run(what: str, fn: Callable[..., Any], args: Tuple[Any, ...], kwargs: dict,
         stateful: Sequence[torch.nn.Module]) -> Any:
    """Run one side of the check on fresh copies of the inputs, leaving all state as it was."""
    with preserved_state(stateful, always=True, parameters=True):
        try:
            return fn(*_clone(args), **_clone(kwargs))
        except Exception as e:
            raise TracingCheckError(None, None, extra_msg=(
                f"encountered an exception while running the {what} with test inputs.\n"
                f"Exception:\n{textwrap.indent(str(e), '  ')}")) from e


def check_trace(traced: Callable[..., Any], func: Callable[..., Any],
                input_sets: Sequence[Tuple[Tuple[Any, ...], dict]], tolerance: float,
                stateful: Sequence[torch.nn.Module]) -> None:
    """Compare ``traced`` with ``func`` on each input set (see the module docstring).

    Both sides start from the same RNG state and model state, so random ops in training
    mode (dropout) compare equal.
    """
    for args, kwargs in input_sets:
        got = _run("trace", traced, args, kwargs, stateful)
        want = _run("Python function", func, args, kwargs, stateful)
        for leaf, problem in compare_outputs(got, _plain_tuples(want), tolerance):
            warnings.warn(f"Output nr {leaf + 1}. of the traced function does not match the "
                          f"corresponding output of the Python function. Detailed error:\n{problem}",
                          TracerWarning, stacklevel=4)


def _plain_tuples(value: Any) -> Any:
    """TorchScript returns plain tuples where Python returned namedtuples."""
    if isinstance(value, tuple):
        return tuple(_plain_tuples(v) for v in value)
    if isinstance(value, list):
        return [_plain_tuples(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain_tuples(v) for k, v in value.items()}
    return value
