"""``check_trace``: torch.jit's trace check, on fxtrace's graphs.

For each check input set, as ``torch.jit.trace`` does (``torch/jit/_trace.py:_check_trace``):

1. **Re-trace** the original on (copies of) the check inputs with the settings of the first
   capture, and compare the two captures structurally (:func:`fxtrace.checking.graphs.graph_diff`:
   node order, opcodes, targets, arguments, Python constants and tensor constants; shapes do not
   count). A difference raises :class:`fxtrace.TracingCheckError` whose message holds the first
   diverging node of both traces with their source lines and a ``diff_table`` of the graph.
2. Run the trace and the original on fresh copies of the inputs and compare **every leaf** of the
   outputs (:func:`compare_outputs`). A mismatch warns (``TracerWarning``, "Output nr N. of the
   traced function does not match ..."), as torch.jit does.
3. An exception while running either side raises ``TracingCheckError`` carrying the user's error
   and the graph diagnostics. A guard failure (the check input takes another path) is such an
   exception; the re-trace diff shows which branch differs.

State: every run starts from the same saved state — grad mode, the CPU RNG (and the CUDA RNG
of initialised devices, forked with ``torch.random.fork_rng``), training flags, buffers and
parameter values — and that state is restored afterwards, so checking leaves the model exactly
as it was and random ops such as dropout compare equal. Only when the trace does not even agree
with itself from the same state are its random nodes reported as nondeterministic, by node and
source line. Like torch.jit, the check runs under ``torch.no_grad()``.
"""
from __future__ import annotations

import contextlib
import copy
import math
import textwrap
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.fx as fx

from .. import tree
from ..capture.meta import GUARD_TEXT, INFO
from ..capture.structure import GraphDiff
from ..errors import FxTraceError, TracerWarning, TracingCheckError
from ..state import StateSnapshot, preserved_state
from .graphs import capture_of, describe_node, diff_report, random_nodes, retrace_diff
from .put_back import writes_put_back
from .refusals import guard_refusal

__all__ = ["check_trace", "compare_outputs", "flatten_outputs", "leaf_errors", "clone_inputs",
           "run_isolated", "isolated_state", "is_script", "GUARD_TEXT", "is_guard_error"]


def is_guard_error(e: BaseException) -> bool:
    """Whether ``e`` is an fxtrace guard refusing an input (TorchScript or Python side): the
    assertion that fired is a guard's own, not a guard text quoted elsewhere in a traceback."""
    return guard_refusal(e) is not None


def _clone_leaf(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone().requires_grad_(value.requires_grad) if value.is_leaf \
            else value.clone()
    return copy.copy(value) if not isinstance(value, (int, float, bool, str, type(None))) else value


def clone_inputs(value: Any) -> Any:
    """Fresh copies of every tensor of an input structure (containers rebuilt, others kept)."""
    return tree.map_leaves(_clone_leaf, value)


_clone = clone_inputs  # the old private name


def _size_as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, torch.Size) else value


def flatten_outputs(value: Any, path: str = "output") -> List[Tuple[str, Any]]:
    """Every leaf of a nested output with its path (``output[0]['logits']``). A
    ``torch.Size`` counts as the tuple of its items: TorchScript returns sizes as lists."""
    return tree.leaves_with_paths(tree.map_leaves(_size_as_tuple, value), path)


def _atol(x: torch.Tensor, y: torch.Tensor) -> float:
    return torch.testing._comparison.default_tolerances(x, y)[1]


def leaf_errors(x: torch.Tensor, y: torch.Tensor) -> Tuple[float, float]:
    """``(max abs error, max rel error)`` between two same-shape tensors; NaN matches NaN."""
    if x.numel() == 0:
        return 0.0, 0.0
    try:
        if torch.equal(x, y):
            return 0.0, 0.0
    except (RuntimeError, TypeError):
        pass
    if x.dtype == y.dtype and x.dtype in (torch.float32, torch.float64):
        # The common case, in the tensors' own precision: no NaN or infinity in the
        # difference means none of the special cases below applies.
        diff = (x.detach() - y.detach()).abs()
        if bool(torch.isfinite(diff).all()):
            rel = diff / y.detach().abs()  # inf where the expected value is 0, NaN for 0/0
            rel = torch.nan_to_num(rel, nan=0.0, posinf=math.inf)
            return float(diff.max()), float(rel.max())
    xd, yd = (x.to(torch.cdouble), y.to(torch.cdouble)) if (x.is_complex() or y.is_complex()) \
        else (x.detach().double(), y.detach().double())
    both_nan = torch.isnan(xd) & torch.isnan(yd)
    same = (xd == yd) | both_nan
    diff = torch.where(same, torch.zeros_like(xd.real if xd.is_complex() else xd).double(),
                       (xd - yd).abs().double())
    diff = torch.nan_to_num(diff, nan=math.inf)
    rel = diff / yd.abs().double()  # inf where the expected value is 0 and the error is not
    rel = torch.where(diff == 0, torch.zeros_like(rel), rel)
    return float(diff.max()), float(rel.max())


def compare_outputs(traced: Any, eager: Any, tolerance: float) -> List[Tuple[int, str]]:
    """``(leaf number, message)`` for each output leaf that differs: structure first, then
    type, dtype, device and shape, then values (relative tolerance ``tolerance``, dtype-aware
    absolute tolerance, NaN equal only to NaN)."""
    a, b = flatten_outputs(traced), flatten_outputs(eager)
    if [p for p, _ in a] != [p for p, _ in b]:
        return [(0, f"output structure differs: trace gives {[p for p, _ in a]}, "
                    f"Python gives {[p for p, _ in b]}")]
    problems = []
    for i, ((path, x), (_, y)) in enumerate(zip(a, b)):
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            if x.dtype != y.dtype or x.device != y.device or x.shape != y.shape:
                problems.append((i, f"{path}: trace gives {x.dtype} {tuple(x.shape)} on "
                                    f"{x.device}, Python gives {y.dtype} {tuple(y.shape)} on "
                                    f"{y.device}"))
                continue
            if x.layout != torch.strided or y.layout != torch.strided:
                x, y = x.to_dense(), y.to_dense()
            if _close(x, y, tolerance):
                continue
            try:
                xd, yd = (x.to(torch.cdouble), y.to(torch.cdouble)) if x.is_complex() else (
                    x.detach().double(), y.detach().double())
                torch.testing.assert_close(xd, yd, rtol=tolerance, atol=_atol(x, y),
                                           equal_nan=True)
            except AssertionError as e:
                problems.append((i, f"{path}: {e}"))
        elif isinstance(x, torch.Tensor) != isinstance(y, torch.Tensor):
            problems.append((i, f"{path}: trace gives {type(x).__name__} {x!r:.60}, Python gives "
                                f"{type(y).__name__} {y!r:.60}"))
        elif not _same_plain(x, y):
            problems.append((i, f"{path}: trace gives {x!r}, Python gives {y!r}"))
    return problems


def _close(x: torch.Tensor, y: torch.Tensor, tolerance: float) -> bool:
    """The fast path of the value comparison: bitwise equal, or ``allclose`` with the same
    tolerances as ``assert_close`` (which then only runs for a mismatch, for its message)."""
    try:
        if torch.equal(x, y):
            return True
        if x.dtype == torch.bool or not (x.is_floating_point() or x.is_complex()):
            return False
        return bool(torch.allclose(x, y, rtol=tolerance, atol=_atol(x, y), equal_nan=True))
    except (RuntimeError, TypeError, NotImplementedError):
        return False


def _same_plain(x: Any, y: Any) -> bool:
    if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
        return True
    try:
        return bool(x == y)
    except Exception:  # noqa: BLE001 - uncomparable values are different
        return False


def _cuda_devices() -> List[int]:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return list(range(torch.cuda.device_count()))
    return []


@contextlib.contextmanager
def isolated_state(stateful: Sequence[torch.nn.Module], snapshot: Optional[StateSnapshot] = None,
                   watch: bool = True, script_body: bool = False) -> Iterator[None]:
    """Run a body from the current state and put everything back afterwards (see docstring).

    ``snapshot``: a :class:`fxtrace.state.StateSnapshot` of ``stateful`` taken once by a
    caller that runs many bodies from the same state (the buffers are then cloned once).
    ``watch=False``: no NOTE [Writes on later calls] around the body, for a caller whose
    parameter copies put back what the body writes (``put_back.parameter_copies``).
    ``script_body``: see :func:`fxtrace.state.preserved_state`."""
    devices = _cuda_devices()
    snap = snapshot if snapshot is not None else StateSnapshot(stateful, parameters=True)
    # preserved_state restores the CPU RNG; fork_rng is only needed for CUDA generators
    with preserved_state(stateful, always=True, parameters=True, snapshot=snap,
                         script_body=script_body), \
            (torch.random.fork_rng(devices=devices) if devices else contextlib.nullcontext()), \
            (writes_put_back(stateful, snap) if watch else contextlib.nullcontext()):
        yield


def is_script(fn: Any) -> bool:
    """Whether ``fn`` runs through TorchScript's graph executor."""
    return isinstance(fn, (torch.jit.ScriptModule, torch.jit.ScriptFunction,
                           torch._C.ScriptMethod, torch._C.ScriptFunction))


def run_isolated(fn: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any],
                 stateful: Sequence[torch.nn.Module],
                 snapshot: Optional[StateSnapshot] = None, script_body: bool = False
                 ) -> Any:
    """``fn`` on fresh copies of the inputs, with all state restored afterwards
    (``script_body``: see :func:`fxtrace.state.preserved_state`).

    A TorchScript ``fn`` runs with ``torch.jit.optimized_execution(False)``: the checks run
    each trace a few times on inputs of varying shapes, where the profiling executor would
    spend most of the time profiling and re-optimising; the graph run is the trace's own."""
    with isolated_state(stateful, snapshot, script_body=script_body):
        if is_script(fn):
            with torch.jit.optimized_execution(False):
                return fn(*clone_inputs(args), **clone_inputs(kwargs))
        return fn(*clone_inputs(args), **clone_inputs(kwargs))


def _run(what: str, fn: Callable[..., Any], args: Tuple[Any, ...], kwargs: dict,
         stateful: Sequence[torch.nn.Module], diagnostics: Callable[[], Tuple[Any, Any]],
         snapshot: Optional[StateSnapshot] = None) -> Any:
    try:
        return run_isolated(fn, args, kwargs, stateful, snapshot)
    except Exception as e:
        graph_error, tensor_error = diagnostics()
        raise TracingCheckError(graph_error, tensor_error, extra_msg=(
            f"encountered an exception while running the {what} with test inputs.\n"
            f"Exception:\n{textwrap.indent(str(e), '  ')}\n")) from e


def _method_name(traced: Any, method: Optional[str]) -> str:
    if method is not None:
        return method
    if isinstance(traced, torch._C.ScriptMethod):
        return traced.name
    return "forward"


def owning_module(func: Any) -> Optional[torch.nn.Module]:
    """The module ``func`` is (a module) or belongs to (its bound method), else None."""
    if isinstance(func, torch.nn.Module):
        return func
    owner = getattr(func, "__self__", None)
    if isinstance(owner, torch.nn.Module):
        return owner
    return None


def check_trace(traced: Callable[..., Any], func: Callable[..., Any],
                input_sets: Sequence[Tuple[Tuple[Any, ...], dict]], tolerance: float,
                stateful: Sequence[torch.nn.Module], *, capture: Optional[fx.GraphModule] = None,
                method: Optional[str] = None, retrace_graphs: bool = True) -> None:
    """Check ``traced`` against ``func`` on each ``(args, kwargs)`` of ``input_sets``.

    Args:
        traced: the ScriptModule / ScriptFunction (or a ScriptMethod of a traced module).
        func: the original (the module for ``forward``, a bound method or a function).
        input_sets: ``[(args, kwargs), ...]``.
        tolerance: relative tolerance of the output comparison.
        stateful: the modules whose state each run must leave untouched.
        capture: the ``fx.GraphModule`` of the trace; default ``traced._fxtrace_capture``.
            Without it (a ScriptMethod of another method than forward) the graph comparison
            is skipped.
        method: the traced method's name (default: the ScriptMethod's name, else forward).
        retrace_graphs: re-trace on every input set and compare the graphs (default True).

    Raises:
        TracingCheckError: the graphs differ, or either side raised on a check input.
    Warns:
        TracerWarning: an output differs (and, before it, the trace's random nodes, when the
        trace does not reproduce itself from the same RNG state).
    """
    gm = capture if capture is not None else capture_of(traced)
    method = _method_name(traced, method)
    root = owning_module(func)
    canon: Dict[Any, List[str]] = {}  # the trace's canonical graphs, computed once
    with torch.no_grad():
        # one snapshot (buffers cloned once) for every run; each run restores from it
        written = gm.meta[INFO].written if gm is not None and INFO in gm.meta else []
        snapshot = StateSnapshot(stateful, parameters=True, copies=written)
        root_snapshot = snapshot if root is not None and list(stateful) == [root] else None
        for args, kwargs in input_sets:
            diff = None
            retrace_error: Optional[BaseException] = None
            if gm is not None and retrace_graphs:
                try:
                    diff = retrace_diff(gm, root, func, method, clone_inputs(args),
                                        clone_inputs(kwargs), snapshot=root_snapshot,
                                        cache=canon)
                except FxTraceError as e:  # reported with the run's own error
                    retrace_error = e
                # The user's own exception from the re-trace passes through unchanged, as
                # torch.jit's re-trace lets it.

            def diagnostics(diff: Optional[GraphDiff] = diff) -> Tuple[Any, Any]:
                if diff is None:
                    return None, None
                text = diff_report(diff)
                return (None, text) if diff.kind == "constant" else (text, None)

            got = _run("trace", traced, args, kwargs, stateful, diagnostics, snapshot)
            want = _run("Python function", func, args, kwargs, stateful, diagnostics, snapshot)
            problems = compare_outputs(got, _plain_tuples(want), tolerance)
            if problems:
                _maybe_warn_nondeterministic(traced, gm, got, args, kwargs, stateful, tolerance,
                                             snapshot)
            for leaf, problem in problems:
                warnings.warn(f"Output nr {leaf + 1}. of the traced function does not match the "
                              f"corresponding output of the Python function. Detailed error:\n"
                              f"{problem}", TracerWarning, stacklevel=4)
            if retrace_error is not None:
                raise TracingCheckError(None, None, extra_msg=(
                    "encountered an exception while re-tracing the Python function with test "
                    f"inputs.\nException:\n{textwrap.indent(str(retrace_error), '  ')}\n")
                ) from retrace_error
            graph_error, tensor_error = diagnostics()
            if graph_error is not None or tensor_error is not None:
                raise TracingCheckError(graph_error, tensor_error)


def _maybe_warn_nondeterministic(traced: Any, gm: Optional[fx.GraphModule], got: Any,
                                 args: Tuple[Any, ...], kwargs: dict,
                                 stateful: Sequence[torch.nn.Module], tolerance: float,
                                 snapshot: Optional[StateSnapshot] = None) -> None:
    """Warn about random nodes when the trace, run twice from one RNG state, disagrees with
    itself: only then is its randomness not replayable (torch.jit warns on any random node)."""
    if gm is None:
        return
    nodes = random_nodes(gm)
    if not nodes:
        return
    try:
        again = run_isolated(traced, args, kwargs, stateful, snapshot)
    except Exception:  # noqa: BLE001 - the first run succeeded; this is diagnostics only
        return
    if not compare_outputs(again, got, tolerance):
        return
    listing = "\n".join("  " + describe_node(p, n) for p, n in nodes[:20])
    warnings.warn("Trace had nondeterministic nodes whose randomness could not be replayed "
                  "from the same RNG state. Did you forget call .eval() on your model? Nodes:\n"
                  f"{listing}\nThis may cause errors in trace checking. To disable trace "
                  "checking, pass check_trace=False to fxtrace.trace()", TracerWarning,
                  stacklevel=5)


plain_tuples = _plain_tuples = tree.plain  # TorchScript returns plain tuples and dicts
