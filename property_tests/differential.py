"""Differential run of one generated program: eager vs torch.jit.trace vs fxtrace.trace.

Invariant checked (fxtrace's promise): on every probe input eager accepts, an fxtrace trace
either returns what eager returns (outputs, buffers after the call, inputs it mutates) or
raises an fxtrace guard; on its own example inputs it must return what eager returns. Each
call runs from the same RNG seed on both sides. A stateful module is compared call by call:
before each call the eager reference takes the traced module's buffers, so one divergence
does not cascade and a buffer the trace fails to update is a wrong result of that call.

:func:`run_program` returns a JSON-able record; :func:`classify` names the worst outcome.
torch.jit.trace is run as an oracle here only (it is never part of fxtrace).
"""
from __future__ import annotations

import dataclasses
import os
import re
import signal
import traceback
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from programs import Program, make_inputs

import fxtrace
from fxtrace.checking.trace_check import compare_outputs, is_guard_error
from fxtrace.errors import FxTraceError

__all__ = ["run_program", "classify", "group_key", "error_info", "probes_for", "FX_CLASSES", "JIT_CLASSES"]

_FX_DIR = os.path.dirname(os.path.abspath(fxtrace.__file__))
_REPO = os.path.dirname(_FX_DIR)
TOLERANCE = 1e-4

#: fxtrace outcome classes, worst first (a program gets the first that applies).
FX_CLASSES = ("timeout", "fx-wrong-example", "fx-wrong", "fx-crash", "fx-refused",
              "fx-run-error", "fx-guard-on-example", "fx-guarded", "fx-ok")
JIT_CLASSES = ("jit-trace-error", "jit-wrong-example", "jit-wrong", "jit-run-error", "jit-ok")


class Timeout(BaseException):
    """A program ran past its time (BaseException: no ``except Exception`` swallows it)."""


def error_info(e: BaseException) -> Dict[str, Any]:
    """Type, first message line, the innermost fxtrace frame (``fxtrace/x.py:N func``) and
    the innermost frame of all, of an exception; ``fxtrace_error``: one of fxtrace's own."""
    frames = traceback.extract_tb(e.__traceback__)
    fx_frame = inner = None
    for fr in frames:
        name = os.path.relpath(fr.filename, _REPO) if fr.filename.startswith(_REPO) else fr.filename
        where = f"{name}:{fr.lineno} {fr.name}"
        inner = where
        if fr.filename.startswith(_FX_DIR):
            fx_frame = where
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    return {"type": type(e).__name__, "message": (lines[0] if lines else "")[:300],
            "last_line": (lines[-1] if lines else "")[:300], "fx_frame": fx_frame,
            "inner_frame": inner, "fxtrace_error": isinstance(e, FxTraceError),
            "guard": is_guard_error(e)}


def probes_for(program: Program, seed: int) -> List[Tuple[str, Tuple[torch.Tensor, ...]]]:
    """The probe inputs: the example (twice: state carried between calls), other values,
    negated values (other branches), other sizes, float64 (float32) for float inputs, int32
    for int64 inputs, and two distinct tensors where the example passes one twice."""
    spec = program.inputs
    b, n = spec.shape
    out = [("example", make_inputs(spec, seed=seed)), ("example-again", make_inputs(spec, seed=seed)),
           ("values", make_inputs(spec, seed=seed + 1)),
           ("negated", make_inputs(spec, seed=seed, negate=True)),
           ("batch", make_inputs(spec, (b + 1, n), seed=seed + 2)),
           ("width", make_inputs(spec, (b, n + 1), seed=seed + 3)),
           ("both", make_inputs(spec, (b + 2 if b < 3 else b - 1, n + 2), seed=seed + 4))]
    if "float32" in spec.dtypes:
        f64 = tuple("float64" if d == "float32" else d for d in spec.dtypes)
        out.append(("float64", make_inputs(spec, seed=seed + 5, dtypes=f64)))
    elif "float64" in spec.dtypes:
        f32 = tuple("float32" if d == "float64" else d for d in spec.dtypes)
        out.append(("float32", make_inputs(spec, seed=seed + 5, dtypes=f32)))
    if spec.aliased:  # a trace taken with f(a, a) must still be right for f(a, b)
        out.append(("unaliased", make_inputs(dataclasses.replace(spec, aliased=False),
                                             seed=seed + 7)))
    if "int64" in spec.dtypes:
        i32 = tuple("int32" if d == "int64" else d for d in spec.dtypes)
        out.append(("int32", make_inputs(spec, seed=seed + 6, dtypes=i32)))
    return out


def _clone(inputs: Tuple[torch.Tensor, ...], aliased: bool) -> Tuple[torch.Tensor, ...]:
    """Fresh copies; one tensor passed twice stays one tensor (``aliased`` or by identity)."""
    if aliased or (len(inputs) == 2 and inputs[0] is inputs[1]):
        x = inputs[0].clone()
        return (x, x)
    return tuple(t.clone() for t in inputs)


def _buffers(m: Any) -> Dict[str, torch.Tensor]:
    return {k: v for k, v in m.named_buffers()} if hasattr(m, "named_buffers") else {}


def _sync(eager: Any, traced: Any) -> None:
    """Give the eager reference the traced module's current buffers (values, dtype)."""
    with torch.no_grad():
        for name, value in _buffers(traced).items():
            owner, _, attr = name.rpartition(".")
            mod = eager.get_submodule(owner) if owner else eager
            if attr in mod._buffers:
                mod._buffers[attr] = value.detach().clone()


def _reset(traced: Any, fresh: Any) -> None:
    """Put a fresh module's buffer values into the traced module's buffers (in place)."""
    with torch.no_grad():
        want = _buffers(fresh)
        for name, value in _buffers(traced).items():
            if name in want and want[name].shape == value.shape:
                value.copy_(want[name])


def _compare_call(eager: Any, traced: Any, inputs: Tuple[torch.Tensor, ...], aliased: bool,
                  rng_seed: int) -> Tuple[str, str]:
    """One probe call: ``("skip"|"ok"|"wrong"|"guard"|"raised", detail)``."""
    _sync(eager, traced)
    e_in, t_in = _clone(inputs, aliased), _clone(inputs, aliased)
    torch.manual_seed(rng_seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = eager(*e_in)
    except Exception:
        return "skip", ""
    torch.manual_seed(rng_seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = traced(*t_in)
    except Exception as e:  # noqa: BLE001 - any failure is data here
        info = error_info(e)
        return ("guard" if info["guard"] else "raised"), f"{info['type']}: {info['last_line']}"
    problems = compare_outputs(got, want, TOLERANCE)
    if not problems:
        problems = compare_outputs(_buffers(traced), _buffers(eager), TOLERANCE)
        problems = [(i, "buffer " + m) for i, m in problems]
    if not problems:
        problems = [(i, "mutated input " + m)
                    for i, m in compare_outputs(list(t_in), list(e_in), TOLERANCE)]
    return ("wrong", problems[0][1][:300]) if problems else ("ok", "")


def _trace(tracer: Callable[..., Any], program: Program, example: Tuple[torch.Tensor, ...],
           **options: Any) -> Dict[str, Any]:
    """Trace a fresh instance of ``program``; the record holds the trace or the error."""
    target = program.make()
    ex = _clone(example, program.inputs.aliased)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.manual_seed(0)
        try:
            traced = tracer(target, ex, strict=False, **options)
        except Timeout:
            raise
        except Exception as e:  # noqa: BLE001
            return {"error": error_info(e), "warnings": len(caught)}
    warned = sorted({str(w.message).splitlines()[0][:160] for w in caught})
    return {"traced": traced, "warnings": len(caught), "warned": warned[:8]}


def _probe_all(program: Program, traced: Any, seed: int) -> Dict[str, Any]:
    eager = program.make()
    results: Dict[str, Any] = {}
    for i, (label, inputs) in enumerate(probes_for(program, seed)):
        # the example runs from the RNG state of the capture (seed 0): a random value the
        # trace froze and guarded is then the same, and the trace must agree
        rng = 0 if label == "example" else 1000 + i
        if label == "example" and program.is_module:  # and from the state of the capture
            _reset(traced, program.make())
        results[label] = _compare_call(eager, traced, inputs, False, rng)  # aliasing: by identity
    return results


def _jit_trace(target: Any, ex: Any, **options: Any) -> Any:
    return torch.jit.trace(target, ex, check_trace=False, **options)


def _fx_trace(target: Any, ex: Any, check: bool = False, **options: Any) -> Any:
    return fxtrace.trace(target, ex, check_trace=check, **options)


def run_program(program: Program, seed: int = 0, check_sample: bool = False,
                timeout_s: int = 30, jit: bool = True) -> Dict[str, Any]:
    """The differential record of one program (see the module doc); ``jit=False`` leaves
    torch.jit.trace out (its record is then empty and its class ``jit-ok``)."""
    record: Dict[str, Any] = {"source": program.source, "inputs": dict(
        dtypes=list(program.inputs.dtypes), aliased=program.inputs.aliased,
        shape=list(program.inputs.shape)), "entries": list(program.entries)}
    example = make_inputs(program.inputs, seed=seed)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout_s)
    try:
        try:
            torch.manual_seed(0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                program.make()(*_clone(example, program.inputs.aliased))
        except Timeout:
            raise
        except Exception as e:  # noqa: BLE001
            record["eager_error"] = error_info(e)
            return record
        record["jit"] = {"probes": {}}
        for side, tracer in (("jit", _jit_trace), ("fx", _fx_trace))[0 if jit else 1:]:
            res = _trace(tracer, program, example)
            if "traced" in res:
                res["probes"] = _probe_all(program, res.pop("traced"), seed)
            record[side] = res
        if check_sample and "error" not in record["fx"]:
            res = _trace(lambda t, e, **o: _fx_trace(t, e, check=True, **o), program, example)
            record["fx_check"] = res.get("error") or "ok"
    except Timeout:
        record["timeout"] = True
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return record


def _alarm(signum: int, frame: Any) -> None:
    raise Timeout()


def _probe_class(probes: Dict[str, Tuple[str, str]], prefix: str) -> Optional[str]:
    kinds = {label: kind for label, (kind, _) in probes.items()}
    if kinds.get("example") == "wrong":
        return f"{prefix}-wrong-example"
    if "wrong" in kinds.values():
        return f"{prefix}-wrong"
    if "raised" in kinds.values():
        return f"{prefix}-run-error"
    return None


def classify(record: Dict[str, Any]) -> Tuple[Optional[str], Optional[str]]:
    """``(fx class, jit class)`` of a record; ``(None, None)`` when eager rejects the example."""
    if "eager_error" in record:
        return None, None
    if record.get("timeout"):
        return "timeout", "timeout"
    jit, fx = record["jit"], record["fx"]
    if "error" in jit:
        jit_class = "jit-trace-error"
    else:
        jit_class = _probe_class(jit["probes"], "jit") or "jit-ok"
    if "error" in fx:
        fx_class = "fx-refused" if fx["error"]["fxtrace_error"] else "fx-crash"
    else:
        fx_class = _probe_class(fx["probes"], "fx")
        if fx_class is None:
            kinds = {label: kind for label, (kind, _) in fx["probes"].items()}
            if kinds.get("example") == "guard":
                fx_class = "fx-guard-on-example"
            else:
                fx_class = "fx-guarded" if "guard" in kinds.values() else "fx-ok"
    return fx_class, jit_class


def _norm(text: str) -> str:
    text = re.sub(r"<fuzz-program-[0-9a-f]+>", "<prog>", text)
    text = re.sub(r"\bv\d+\b", "vN", text)
    return re.sub(r"(?<![\w.])\d+(\.\d+)?", "N", text)[:140]  # float64 stays float64


def error_key(err: Dict[str, Any]) -> str:
    """An error's group: type, raising fxtrace frame (else innermost frame), first line."""
    message = re.split(r"\{|tensor\(", err["message"])[0]  # no tensor values in a group name
    return f"{err['type']} @ {err['fx_frame'] or err['inner_frame']}: {_norm(message)}"


def group_key(record: Dict[str, Any]) -> Optional[str]:
    """The finding group of a record's fxtrace outcome (None for fine outcomes)."""
    fx_class, _ = classify(record)
    if fx_class in ("fx-crash", "fx-refused"):
        return f"{fx_class} | {error_key(record['fx']['error'])}"
    if fx_class in ("fx-wrong", "fx-wrong-example", "fx-run-error"):
        kind = "raised" if fx_class == "fx-run-error" else "wrong"
        for label, (k, detail) in record["fx"]["probes"].items():
            if k == kind:
                first = detail.splitlines()[0] if detail else ""
                return f"{fx_class} | {label}: {_norm(first)[:100]}"
    if fx_class == "fx-guard-on-example":
        return f"{fx_class} | {_norm(record['fx']['probes']['example'][1])[:120]}"
    return None
