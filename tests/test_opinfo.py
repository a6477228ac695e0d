"""A differential sweep over torch's OpInfo database: fxtrace vs torch.jit.trace vs eager.

Every ``op_db`` entry that supports float32 on CPU gives its first ``n`` samples. Each sample
is traced as a plain function of its tensors (``lambda *tensors: op(...)`` with the sample's
non-tensor arguments baked in). A sample counts when eager runs it and torch.jit.trace traces
it correctly (output equal to eager on the example); on those, fxtrace must

* trace it (``check_trace=False``),
* equal eager on the example,
* equal eager on a *probe*: the same sample regenerated with other sizes (the OpInfo size
  constants ``S``/``M``/``L``/``XS`` patched), used only where the regenerated sample is the
  same program (same non-tensor arguments, same tensor ranks and dtypes) at other sizes; a
  probe fxtrace refuses with its own guard counts as sound, not as a failure,
* survive ``torch.jit.save``/``load`` with the same output.

The engine here is shared with ``benchmarks/opinfo_sweep.py``. The default run sweeps a
fixed subset (``QUICK_OPS``); the whole database runs under ``-m slow``. A known failure is
listed in ``KNOWN_FAILURES`` with its reason, and the test asserts it *still* fails, so a
fix forces the list to shrink.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import sys
import types
import unittest
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest
import torch
import torch.utils._pytree as pytree

import fxtrace

__all__ = ["Outcome", "SampleResult", "load_op_db", "op_name", "sweep_op", "QUICK_OPS",
           "KNOWN_FAILURES"]

#: Sizes used for the probe: each OpInfo size constant moved by one or two.
_PROBE_SIZES = {"XS": 4, "S": 6, "M": 11, "L": 22}


def load_op_db() -> List[Any]:
    """OpInfo entries that support float32 on CPU.

    ``common_utils`` imports ``expecttest`` only for its ``TestCase`` base class; where that
    package is not installed a stand-in module providing ``unittest.TestCase`` is used."""
    try:
        import expecttest  # noqa: F401
    except ImportError:
        stub = types.ModuleType("expecttest")
        stub.TestCase = unittest.TestCase  # type: ignore[attr-defined]
        sys.modules["expecttest"] = stub
    from torch.testing._internal.common_methods_invocations import op_db
    return [op for op in op_db if torch.float32 in op.supported_dtypes("cpu")]


@contextlib.contextmanager
def _probe_sizes() -> Iterator[None]:
    """OpInfo sample functions read ``S``, ``M``, ... from their module globals at call time."""
    saved: List[Tuple[Any, str, Any]] = []
    for name, module in list(sys.modules.items()):
        if not name.startswith("torch.testing._internal") or module is None:
            continue
        for const, size in _PROBE_SIZES.items():
            if isinstance(module.__dict__.get(const), int):
                saved.append((module, const, module.__dict__[const]))
                setattr(module, const, size)
    try:
        yield
    finally:
        for module, const, value in saved:
            setattr(module, const, value)


def _samples(op: Any, n: int, probe: bool) -> List[Any]:
    torch.manual_seed(0)
    out: List[Any] = []
    with _probe_sizes() if probe else contextlib.nullcontext():
        try:
            for sample in op.sample_inputs("cpu", torch.float32, requires_grad=False):
                out.append(sample)
                if len(out) >= n:
                    break
        except Exception:  # noqa: BLE001 - a sample function that rejects the probe sizes
            if not probe:
                raise
    return out


@dataclasses.dataclass
class Program:
    """One sample as a function of its tensors; ``rebuild`` puts other tensors in their places."""

    fn: Callable[..., Any]
    tensors: Tuple[torch.Tensor, ...]
    constants: List[Any]  # non-tensor leaves, to decide whether a probe is the same program
    signature: List[Tuple[int, torch.dtype]]


def _program(op: Any, sample: Any, function: Optional[Callable[..., Any]] = None) -> Program:
    leaves, spec = pytree.tree_flatten((sample.input, tuple(sample.args), dict(sample.kwargs)))
    slots = [i for i, leaf in enumerate(leaves) if isinstance(leaf, torch.Tensor)]
    function = function or op.op

    def fn(*tensors: torch.Tensor) -> Any:
        filled = list(leaves)
        for slot, t in zip(slots, tensors):
            filled[slot] = t
        inp, args, kwargs = pytree.tree_unflatten(filled, spec)
        return function(inp, *args, **kwargs)

    fn.__name__ = f"op_{op.name.replace('.', '_')}"
    constants = [repr(leaf) for i, leaf in enumerate(leaves) if i not in slots] + [repr(spec)]
    tensors = tuple(leaves[i] for i in slots)
    return Program(fn, tensors, constants, [(t.dim(), t.dtype) for t in tensors])


def _clone(tensors: Tuple[torch.Tensor, ...]) -> Tuple[torch.Tensor, ...]:
    return tuple(t.clone() for t in tensors)


def _equal(a: Any, b: Any, values: bool = True) -> bool:
    """Same structure, shapes and dtypes, and (``values``) the same numbers."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if not values:
            return True
        if a.is_sparse or a.layout != torch.strided:
            return False
        try:
            torch.testing.assert_close(a, b, equal_nan=True, rtol=1e-4, atol=1e-5)
            return True
        except AssertionError:
            return False
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y, values) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (a != a and b != b)
    return type(a) is type(b) and a == b


def _run(fn: Callable[..., Any], tensors: Tuple[torch.Tensor, ...]) -> Any:
    torch.manual_seed(1234)  # random ops: both sides draw from the same RNG state
    with warnings.catch_warnings():  # deprecation notices of the ops themselves
        warnings.simplefilter("ignore")
        return fn(*_clone(tensors))


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    return f"{type(e).__name__}: {text}"[:160]


@dataclasses.dataclass
class Outcome:
    """One tracer on one sample. ``stage`` is where it stopped: ``"ok"``, ``"trace"``,
    ``"example"`` (wrong output), ``"save"``; ``probe`` is None (no probe), "ok",
    "guard" (refused at run time with a guard), "wrong" or "error"."""

    stage: str
    error: str = ""
    probe: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.stage == "ok"


def _trace_with(tracer: str, prog: Program) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(1234)
        if tracer == "jit":
            return torch.jit.trace(prog.fn, _clone(prog.tensors), check_trace=False)
        return fxtrace.trace(prog.fn, _clone(prog.tensors), check_trace=False)


def _probe(traced: Any, probe: Optional[Program], values: bool) -> Optional[str]:
    if probe is None:
        return None
    try:
        expected = _run(probe.fn, probe.tensors)
    except Exception:  # noqa: BLE001 - eager rejects the probe: no probe
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = _run(traced, probe.tensors)
    except Exception as e:  # noqa: BLE001
        return "guard" if "fxtrace guard failed" in str(e) else "error"
    return "ok" if _equal(expected, got, values) else "wrong"


def run_tracer(tracer: str, prog: Program, expected: Any, values: bool,
               probe: Optional[Program]) -> Outcome:
    """Trace ``prog`` with ``"jit"`` or ``"fxtrace"`` and compare with eager everywhere
    (``values=False``: shapes and dtypes only)."""
    try:
        traced = _trace_with(tracer, prog)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = _run(traced, prog.tensors)
    except Exception as e:  # noqa: BLE001 - the sweep records every failure
        return Outcome("trace", _first_line(e))
    if not _equal(expected, got, values):
        return Outcome("example", "output differs from eager on the example")
    try:
        with warnings.catch_warnings():  # torch.jit.save/load's deprecation notices
            warnings.simplefilter("ignore")
            buf = io.BytesIO()
            torch.jit.save(traced, buf)
            buf.seek(0)
            loaded = torch.jit.load(buf)
            again = _run(loaded, prog.tensors)
    except Exception as e:  # noqa: BLE001
        return Outcome("save", _first_line(e))
    if not _equal(got, again, values):
        return Outcome("save", "output differs after torch.jit.save/load")
    return Outcome("ok", probe=_probe(traced, probe, values))


@dataclasses.dataclass
class SampleResult:
    """Both tracers on one sample; ``counted`` when eager runs and torch.jit.trace is right."""

    op: str
    index: int
    counted: bool
    jit: Optional[Outcome] = None
    fx: Optional[Outcome] = None
    note: str = ""


def _compare_values(op: Any) -> bool:
    """False for ops whose values no trace can reproduce: uninitialised memory (``empty*``)
    and OpInfo's random factories, which reseed the RNG inside the op's own wrapper (a
    ``manual_seed`` no tracer records); those compare shapes and dtypes only."""
    code = getattr(op.op, "__code__", None)
    reseeds = code is not None and "wrapper_set_seed" in code.co_names
    return not reseeds and "empty" not in op.name


def _same_program(a: Program, b: Program) -> bool:
    return a.constants == b.constants and a.signature == b.signature and any(
        x.shape != y.shape for x, y in zip(a.tensors, b.tensors))


def op_name(op: Any) -> str:
    """``name.variant`` as OpInfo's own test names spell an entry."""
    return f"{op.name}.{op.variant_test_name}" if op.variant_test_name else op.name


def sweep_op(op: Any, n: int = 2, tracers: Tuple[str, ...] = ("jit", "fxtrace"),
             inplace: bool = True) -> List[SampleResult]:
    """Every sample of ``op`` (the first ``n``) through eager, torch.jit.trace and fxtrace;
    with ``inplace``, also the op's in-place variant (reported as ``name_``)."""
    try:
        samples = _samples(op, n, probe=False)
    except Exception as e:  # noqa: BLE001 - sample generation itself broke: nothing to count
        return [SampleResult(op_name(op), -1, False, note=f"samples: {_first_line(e)}")]
    probes = _samples(op, n, probe=True)
    variants: List[Tuple[str, Any]] = [(op_name(op), op.op)]
    if inplace and op.inplace_variant is not None:
        variants.append((op_name(op) + "_", op.inplace_variant))
    return [r for name, fn in variants for r in _sweep_variant(op, name, fn, samples, probes, tracers)]


def _sweep_variant(op: Any, name: str, function: Callable[..., Any], samples: List[Any],
                   probes: List[Any], tracers: Tuple[str, ...]) -> List[SampleResult]:
    results = []
    for i, sample in enumerate(samples):
        prog = _program(op, sample, function)
        probe = _program(op, probes[i], function) if i < len(probes) else None
        if probe is not None and not _same_program(prog, probe):
            probe = None
        try:
            expected = _run(prog.fn, prog.tensors)
            values = _compare_values(op) and _equal(expected, _run(prog.fn, prog.tensors))
        except Exception as e:  # noqa: BLE001
            results.append(SampleResult(name, i, False, note=f"eager: {_first_line(e)}"))
            continue
        res = SampleResult(name, i, False)
        if "jit" in tracers:
            res.jit = run_tracer("jit", prog, expected, values, probe)
            res.counted = res.jit.ok
        if "fxtrace" in tracers and (res.counted or "jit" not in tracers):
            res.fx = run_tracer("fxtrace", prog, expected, values, probe)
        results.append(res)
    return results


# -- the tests -------------------------------------------------------------------------------

#: A fixed subset spread over the op families (factories, conversions, random in-place ops,
#: Python-defined functions, indexing, reductions, linear algebra, shape ops, nn.functional).
QUICK_OPS = [
    "add", "mul", "pow", "abs", "exp", "sigmoid", "where", "clamp", "lerp", "addcmul",
    "sum", "mean", "amax", "argmax", "std", "cumsum", "sort", "topk", "max.reduction_with_dim",
    "view", "reshape", "permute", "transpose", "squeeze", "unsqueeze", "cat", "stack", "split",
    "expand", "flip", "roll", "gather", "index_select", "index_put", "masked_fill", "take",
    "__getitem__", "matmul", "mm", "bmm", "linalg.norm", "cholesky",
    "nn.functional.conv2d", "nn.functional.linear", "softmax",
    "nn.functional.layer_norm", "nn.functional.interpolate.bilinear", "nn.functional.max_pool2d",
    "nn.functional.embedding", "nn.functional.gaussian_nll_loss", "nn.functional.pad.reflect",
    "randn", "zeros", "full", "empty_strided", "new_empty", "new_zeros", "ones_like",
    "byte", "double", "half", "bool", "bfloat16", "to", "normal", "uniform", "cauchy",
    "nonzero", "eye", "signal.windows.hann", "slice", "max_pool2d_with_indices_backward",
    "nn.functional.adaptive_max_pool3d", "nn.functional.ctc_loss", "_unsafe_masked_index",
]

#: Samples (op name, sample index) fxtrace is known to get wrong, with the reason. The test
#: asserts each still fails: when one starts passing, remove it from here. None of them is
#: inside fxtrace/lower: each needs the capture to record something else.
KNOWN_FAILURES: Dict[Tuple[str, int], str] = {
    # Python-defined functions TorchScript cannot compile; TorchScript has no builtin for
    # them, so the capture must record their inner torch calls instead.
    ("nn.functional.gaussian_nll_loss", 0): "TorchScript: comprehension ifs are not supported",
    ("nn.functional.gaussian_nll_loss", 1): "TorchScript: comprehension ifs are not supported",
    ("nn.functional.linear_cross_entropy", 0): "TorchScript: keyword-only arguments",
    ("nn.functional.linear_cross_entropy", 1): "TorchScript: keyword-only arguments",
    # Capture: distance_function=nn.PairwiseDistance() cannot be recorded as an argument, so
    # the whole call becomes a constant (warned) -- wrong at other sizes.
}

_OP_DB: Optional[Dict[str, Any]] = None


def _ops_by_name() -> Dict[str, Any]:
    global _OP_DB
    if _OP_DB is None:
        _OP_DB = {}
        for op in load_op_db():
            _OP_DB.setdefault(op.name if not op.variant_test_name else
                              f"{op.name}.{op.variant_test_name}", op)
    return _OP_DB


def _check_op(name: str, n: int, require: bool = True) -> None:
    """fxtrace is right on every sample of ``name`` that torch.jit.trace gets right, except
    the listed KNOWN_FAILURES, which must still fail. ``require``: at least one such sample
    (a quick op that sweeps nothing tests nothing); else an op none of whose samples eager
    or torch.jit.trace handles (``torch.equal``'s bool, ``resize_``) is skipped."""
    op = _ops_by_name().get(name)
    if op is None:
        pytest.skip(f"{name} is not in this torch's op_db for float32/CPU")
    problems = []
    results = sweep_op(op, n)
    swept = {(res.op, res.index) for res in results if res.counted}
    if not swept:
        message = f"no sample of {name} runs in eager and traces correctly with torch.jit.trace"
        assert not require, message
        pytest.skip(message)
    problems += [f"{key} is in KNOWN_FAILURES but was not swept (eager or torch.jit.trace "
                 f"fails on it): remove it" for key in KNOWN_FAILURES
                 if key[0] in (name, name + "_") and key not in swept]
    for res in results:
        key = (res.op, res.index)
        if not res.counted:
            continue
        assert res.fx is not None
        bad = not res.fx.ok or res.fx.probe in ("wrong", "error")
        detail = res.fx.error or f"probe {res.fx.probe}"
        if key in KNOWN_FAILURES:
            if not bad:
                problems.append(f"{key} now passes: remove it from KNOWN_FAILURES")
        elif bad:
            problems.append(f"{key}: fxtrace {res.fx.stage}: {detail}")
    assert not problems, "\n".join(problems)


#: Quick ops swept with more samples, where a later sample exercises a fixed lowering
#: (sample 5 of embedding passes max_norm=).
QUICK_SAMPLES = {"nn.functional.embedding": 6}


@pytest.mark.parametrize("name", QUICK_OPS)
def test_opinfo_quick(name: str) -> None:
    _check_op(name, QUICK_SAMPLES.get(name, 2))


@pytest.mark.parametrize("name", QUICK_OPS[::3])
def test_opinfo_default_check(name: str) -> None:
    """``fxtrace.trace`` with its default ``check_trace=True`` accepts the first sample (a
    third of the quick ops: the check re-traces, so it costs a second capture)."""
    op = _ops_by_name()[name]
    if not _compare_values(op):
        pytest.skip("uninitialised or reseeded outputs: no check can compare their values")
    prog = _program(op, _samples(op, 1, probe=False)[0])
    if (name, 0) in KNOWN_FAILURES:
        pytest.skip(KNOWN_FAILURES[(name, 0)])
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = fxtrace.trace(prog.fn, _clone(prog.tensors))
        expected, got = _run(prog.fn, prog.tensors), _run(traced, prog.tensors)
    assert _equal(expected, got)


@pytest.mark.parametrize("name", sorted({op for op, _ in KNOWN_FAILURES} - set(QUICK_OPS)))
def test_known_failures_still_fail(name: str) -> None:
    """Every listed failure is checked in the default run, in or out of ``QUICK_OPS``
    (``name_`` is the in-place variant of the op ``name``)."""
    _check_op(name if name in _ops_by_name() else name[:-1], 2)


def pytest_generate_tests(metafunc: Any) -> None:
    """The whole op_db parametrises ``test_opinfo_all`` only when slow tests are selected:
    loading op_db takes seconds, which the default run should not pay at collection."""
    if metafunc.function is not test_opinfo_all:
        return
    markexpr = metafunc.config.getoption("markexpr", "") or ""
    wanted = "slow" in markexpr and "not slow" not in markexpr
    metafunc.parametrize("name", sorted(_ops_by_name()) if wanted else [])


@pytest.mark.slow
def test_opinfo_all(name: str) -> None:
    _check_op(name, 2, require=False)
