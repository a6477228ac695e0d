"""``trace`` / ``trace_module`` / ``capture``: the one place where the options meet.

Argument handling follows ``torch.jit.trace`` (``torch/jit/_trace.py``) exactly where it is
observable: the same wrapping of example inputs, the same exception types for the same
mistakes, the same warnings. The pipeline is capture → passes → lower → check.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
import torch.fx as fx

from . import arguments as A
from .arguments import where as _where
from .capture.assemble import assemble
from .capture.concrete import Method, capture_concrete
from .capture.gcpause import paused_gc
from .capture.meta import INFO, CaptureInfo
from .capture.pystate import refuse_python_state_reads
from .capture.structure import same_structure, structure_of, structure_of_trace
from .errors import InvalidArgument, InvalidAttribute
from .failures import pipeline_error
from .lower.script import lower_function, lower_module
from .lower.setattr import assigns_state
from .passes import eliminate_common_subexpressions, eliminate_dead_code, run_passes
from .passes.direct_ops import call_ops_directly
from .passes.fold_batchnorm import fold_on_request, require_eval_for_fold
from .passes.merge_guards import merge_guards
from .state import preserved_state

#: The passes every capture goes through. Constant folding is not among them: it would store
#: folded tensors as new module state, which torch.jit.trace's results do not have.
#: ``call_ops_directly`` and ``merge_guards`` leave every output and every guard's verdict
#: bitwise as they were (docs/passes.md).
CAPTURE_PASSES = [eliminate_dead_code, eliminate_common_subexpressions, call_ops_directly,
                  merge_guards, eliminate_dead_code]

__all__ = ["trace", "trace_module", "capture", "optimize"]



MODES = ("concrete", "symbolic", "auto")


def _capture(root: Optional[torch.nn.Module], methods: List[Method], name: str,
             **options: Any) -> fx.GraphModule:
    """:func:`_capture_unless_same` without ``same_as``: always a capture."""
    gm = _capture_unless_same(root, methods, name, **options)
    assert gm is not None  # only a same_as comparison returns None
    return gm


@paused_gc()  # NOTE [Paused GC]
def _capture_unless_same(root: Optional[torch.nn.Module], methods: List[Method], name: str, *,
                         mode: str = "concrete", guards: bool = True,
                         force_outplace: bool = False, fold_batchnorm: bool = False,
                         passes: bool = True, keep_structure: bool = False,
                         preserve: bool = True, same_as: Optional[Dict[str, Any]] = None,
                         fast_paths: Optional[bool] = None) -> Optional[fx.GraphModule]:
    """Capture ``methods`` in ``mode`` and run the capture passes; ``gm.meta["fxtrace"]`` says
    which mode produced the graph (``"auto"`` resolves to one of the other two).
    ``fold_batchnorm`` (eval mode only) folds Conv/Linear + BatchNorm afterwards.
    ``passes=False`` returns the raw capture (:func:`finish_capture` completes it);
    ``keep_structure`` records the raw graphs' structure for the trace check.
    ``preserve=False``: the caller restores the module's state itself (a re-trace), so the
    capture takes no snapshot of its own for the failure path. ``same_as``: the kept
    structures of an earlier capture (``{method: Structure}``); a concrete capture equal to
    them returns None before its graphs are assembled (the trace check's fast path).
    ``fast_paths``: record the fused kernels eager takes without grad (NOTE [Fast paths]);
    default: whether grad is off now (a re-trace repeats the first capture's answer)."""
    if mode not in MODES:
        raise InvalidArgument(f"mode must be one of {MODES}; got {mode!r}{_where()}")
    if fold_batchnorm:
        require_eval_for_fold(root)
    fast_paths = not torch.is_grad_enabled() if fast_paths is None else fast_paths
    options = {"guards": guards, "force_outplace": force_outplace, "fast_paths": fast_paths}
    gm: Optional[fx.GraphModule] = None
    reason = ""  # why mode="auto" chose what it chose (CaptureInfo.mode_reason)
    if mode in ("symbolic", "auto"):
        from .capture.symbolic import (
            AUTO_DISAGREES,
            AUTO_SYMBOLIC,
            capture_symbolic,
            fallback_reason,
        )
        from .checking.agreement import symbolic_matches_eager
        from .lower.opaque import check_opaque_functions
        try:
            gm = capture_symbolic(root, methods, name)
            check_opaque_functions(gm)
        except Exception as e:
            if mode == "symbolic":
                raise
            gm, reason = None, fallback_reason(e)
        if gm is not None and not (mode == "symbolic" or
                                   symbolic_matches_eager(gm, root, methods)):
            gm, reason = None, AUTO_DISAGREES
        if gm is not None:
            gm.meta[INFO].options = options
            gm.meta[INFO].mode_reason = AUTO_SYMBOLIC if mode == "auto" else ""
    if gm is None:
        info = CaptureInfo(mode="concrete", is_function=root is None, name=name,
                           training=bool(root.training) if root is not None else False,
                           options=options, mode_reason=reason)
        rng = torch.random.get_rng_state()
        # A trace is an observation: buffers, flags, RNGs and Python attributes come back
        # after the capture and its Python-state test (NOTE [State writes] for parameters).
        with preserved_state([root] if root is not None and preserve else [], always=True):
            tracer, root_trace = capture_concrete(methods, root=root, name=name, guards=guards,
                                                  force_outplace=force_outplace,
                                                  fast_paths=fast_paths)
            info.written = list(tracer.writes.written)
            try:
                fn = methods[0][1] if root is None else None
                if same_as is not None and not tracer.python_writes and all(
                        same_structure(same_as[m], structure_of_trace(tracer, root_trace, m))
                        for m, *_ in methods):
                    return None
                if keep_structure:
                    info.structure = {m: structure_of_trace(tracer, root_trace, m)
                                      for m, *_ in methods}
                gm = assemble(tracer, root_trace, info, fn)
                if guards and tracer.python_writes:
                    def recapture() -> fx.GraphModule:
                        again, again_root = capture_concrete(methods, root=root, name=name,
                                                             guards=True,
                                                             force_outplace=force_outplace,
                                                             fast_paths=fast_paths)
                        return assemble(again, again_root,
                                        CaptureInfo(mode="concrete", is_function=root is None,
                                                    name=name), fn)
                    refuse_python_state_reads(gm, tracer, root, [m for m, *_ in methods], rng,
                                              recapture)
            finally:
                tracer.restore_python_state()
    info = gm.meta[INFO]
    if keep_structure and not info.structure:  # symbolic: read the GraphModules
        info.structure = {m: structure_of(gm, m) for m, *_ in methods}
    info.recapture = _recapture(name if root is None else type(root).__name__, info.mode,
                                options)
    info.finish = lambda raw: finish_capture(raw, fold_batchnorm)
    return finish_capture(gm, fold_batchnorm) if passes else gm


def _recapture(name: str, mode: str, options: Dict[str, Any]) -> Callable[..., Any]:
    """The ``CaptureInfo.recapture`` of a capture: the checks re-trace through it, with the
    capture's own settings, without importing this module."""
    def recapture(root: Optional[torch.nn.Module], method: str, func: Callable[..., Any],
                  args: Tuple[Any, ...], kwargs: Dict[str, Any], *, passes: bool = True,
                  same_as: Optional[Dict[str, Any]] = None) -> Optional[fx.GraphModule]:
        return _capture_unless_same(root, [(method, func, args, kwargs)], name, mode=mode,
                                    passes=passes, preserve=False, same_as=same_as, **options)
    return recapture


def finish_capture(gm: fx.GraphModule, fold_batchnorm: bool = False) -> fx.GraphModule:
    """Run the capture passes (then, on request, the BatchNorm fold) over a raw capture,
    recording them in ``gm.meta["fxtrace"].passes``; returns the new root."""
    info = gm.meta[INFO]
    gm, records = run_passes(gm, CAPTURE_PASSES)
    gm.meta[INFO] = info
    info.passes = records
    return fold_on_request(gm) if fold_batchnorm else gm


def optimize(traced: Any) -> Any:
    """The opt-in optimisation set (NOTE [Optimisation set], ``docs/passes.md``): a new trace
    computing what ``traced`` computes, through the passes of
    ``fxtrace.passes.optimize.OPTIMIZE_PASSES`` (inactive dropout dropped, eval-mode
    BatchNorm folded into the Conv/Linear before it, then the default passes again).

    ``traced`` is a result of :func:`trace` / :func:`trace_module` (a new ScriptModule or
    ScriptFunction is returned, sharing the model's parameters) or an ``fx.GraphModule`` of
    :func:`capture` (a new GraphModule is returned). ``traced`` itself is left unchanged.
    Not torch.jit's ``optimize=`` argument, which is deprecated and only warns."""
    from .passes.optimize import copy_capture, optimize_capture
    gm = traced if isinstance(traced, fx.GraphModule) else (
        getattr(traced, "_fxtrace_capture", None) or
        getattr(traced, "__dict__", {}).get("_fxtrace_capture"))
    if not isinstance(gm, fx.GraphModule) or not isinstance(gm.meta.get(INFO), CaptureInfo):
        raise InvalidArgument("fxtrace.optimize takes what fxtrace.trace, trace_module or "
                              f"capture returned; got {type(traced).__name__}{_where()}")
    new = optimize_capture(copy_capture(gm))
    if traced is gm:
        return new
    info = new.meta[INFO]
    out: Any = lower_function(new, info.name) if info.is_function else lower_module(new)
    out.__dict__["_fxtrace_capture"] = new
    stored = getattr(traced, "_fxtrace_traced_inputs", None)
    if stored is not None:
        out.__dict__["_fxtrace_traced_inputs"] = stored
    return out


def _function_name(func: Callable[..., Any]) -> str:
    name = getattr(func, "__name__", None) or type(func).__name__
    name = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return name if name and not name[0].isdigit() else f"fn_{name}"


def trace_module(mod: torch.nn.Module, inputs: Dict[str, Any], optimize: Any = None,
                 check_trace: bool = True, check_inputs: Optional[List[Dict[str, Any]]] = None,
                 check_tolerance: float = 1e-5, strict: bool = True, _force_outplace: bool = False,
                 _module_class: Optional[type] = None, _compilation_unit: Any = None,
                 example_inputs_is_kwarg: bool = False, _store_inputs: bool = True, *,
                 mode: str = "concrete", guards: bool = True,
                 fold_batchnorm: bool = False) -> torch.jit.ScriptModule:
    """Trace methods of ``mod`` into a ``torch.jit.ScriptModule``, as ``torch.jit.trace_module``.

    Args:
        mod: the module. Its submodules keep their names; the result holds the original
            Parameter and buffer objects.
        inputs: ``{method_name: example_inputs}``; ``"forward"`` runs through ``mod(...)`` so
            hooks are traced, other methods are called directly.
        check_trace / check_inputs / check_tolerance: see :func:`trace`.
        strict: as torch.jit: ``False`` allows lists and dicts at the output.
        _module_class / _compilation_unit: as torch.jit (the class wrapping the result).
        example_inputs_is_kwarg: the values of ``inputs`` are dicts of keyword arguments.
        _store_inputs: keep the example inputs on the result as ``_fxtrace_traced_inputs``
            (``{method: (args, kwargs)}``); torch.jit's ``_retrieve_traced_inputs()`` store has
            no Python setter, so it stays empty.

    Returns:
        A ``torch.jit.ScriptModule`` (a ``TopLevelTracedModule`` unless ``_module_class``).
    """
    if optimize is not None:
        warnings.warn("`optimize` is deprecated and has no effect. "
                      "Use `with torch.jit.optimized_execution()` instead",
                      FutureWarning, stacklevel=2)
    if not isinstance(mod, torch.nn.Module):
        raise InvalidAttribute(f"expected torch.nn.Module as the first argument; got "
                               f"{type(mod).__name__} {A.short(mod)}: trace_module traces the "
                               f"methods of a module, fxtrace.trace traces a function{_where()}")
    if not isinstance(inputs, dict):
        raise InvalidAttribute(f"expected a dictionary of (method_name, input) pairs; got "
                               f"{type(inputs).__name__}: pass e.g. {{'forward': (x,)}}{_where()}")
    A.validate_options(MODES, check_trace=check_trace, check_tolerance=check_tolerance,
                       strict=strict, _force_outplace=_force_outplace,
                       _module_class=_module_class, _compilation_unit=_compilation_unit,
                       _store_inputs=_store_inputs,
                       example_inputs_is_kwarg=example_inputs_is_kwarg, mode=mode,
                       guards=guards, fold_batchnorm=fold_batchnorm)
    if not inputs:
        raise InvalidArgument("inputs names no method to trace: pass {'forward': example_inputs}"
                              + _where())
    A.validate_module(mod)
    methods = []
    for method_name, example in inputs.items():
        target = A.method_of(mod, method_name, "inputs")
        func = mod if method_name == "forward" else target
        args, kwargs = A.method_args(target, example, example_inputs_is_kwarg,
                                     f"inputs[{method_name!r}]")
        methods.append((method_name, func, args, kwargs))
    sets = A.module_check_sets(check_inputs, list(inputs)) if check_trace else None
    check_sets = {m: [(a, k)] if not sets else [
        A.method_args(getattr(mod, m), s[m], example_inputs_is_kwarg,
                      f"check_inputs[{i}][{m!r}]") for i, s in enumerate(sets)]
        for m, _, a, k in methods}
    try:
        gm = _capture(mod, methods, type(mod).__name__, mode=mode, guards=guards,
                      force_outplace=_force_outplace, fold_batchnorm=fold_batchnorm,
                      keep_structure=check_trace)
        A.check_outputs(gm, strict)
        script = lower_module(gm, module_class=_module_class, compilation_unit=_compilation_unit,
                              exports_of=mod)
        script.__dict__["_fxtrace_capture"] = gm
        if _store_inputs:
            # torch.jit keeps these in C++ for ``_retrieve_traced_inputs()``, which has no
            # Python setter; fxtrace keeps the same mapping on the result.
            script.__dict__["_fxtrace_traced_inputs"] = {m: (a, k) for m, _, a, k in methods}
        if check_trace:
            from .checking.trace_check import check_trace as run_check
            for method_name, func, _, _ in methods:
                run_check(script if method_name == "forward" else
                          script._c._get_method(method_name), func, check_sets[method_name],
                          check_tolerance, stateful=[mod, *([script] if assigns_state(gm) else [])],
                          capture=gm, method=method_name)
    except Exception as e:
        err = pipeline_error(e, mod, "trace_module")
        if err is e:
            raise
        raise err  # noqa: B904 - pipeline_error set its __cause__ (or hid its context)
    return script


def trace(func: Union[Callable[..., Any], torch.nn.Module], example_inputs: Any = None,
          optimize: Any = None, check_trace: bool = True, check_inputs: Optional[List[Any]] = None,
          check_tolerance: float = 1e-5, strict: bool = True, _force_outplace: bool = False,
          _module_class: Optional[type] = None, _compilation_unit: Any = None,
          example_kwarg_inputs: Optional[Dict[str, Any]] = None, _store_inputs: bool = True, *,
          mode: str = "concrete", guards: bool = True, fold_batchnorm: bool = False
          ) -> Union[torch.jit.ScriptModule, torch.jit.ScriptFunction]:
    """Trace ``func`` on example inputs into TorchScript, with ``torch.jit.trace``'s contract.

    Capture runs ``func`` once on the real inputs and records every tensor operation into a
    ``torch.fx`` graph; fxtrace then writes TorchScript source for it and compiles it.

    Args:
        func: a function or an ``nn.Module`` (or a module's bound ``forward``).
        example_inputs: a tensor (wrapped into a 1-tuple) or a tuple of positional inputs.
        optimize: deprecated, as in torch.jit; warns.
        check_trace: run the trace and the original on ``check_inputs`` (default: the example
            inputs) and compare outputs with ``check_tolerance``.
        check_inputs: a list of input tuples to check with.
        check_tolerance: relative tolerance of the output comparison.
        strict: ``False`` allows lists and dicts at the output.
        example_kwarg_inputs: a dict of keyword example inputs instead of ``example_inputs``.
        mode: ``"concrete"`` (run the code, record what it does), ``"symbolic"``
            (``torch.fx.symbolic_trace``) or ``"auto"`` (symbolic when it captures the program
            and agrees with eager on the example inputs, concrete otherwise). fxtrace-only.
        guards: emit a runtime check for every specialisation (default). ``False`` gives
            torch.jit.trace's behaviour: values are frozen without checks. fxtrace-only.
        fold_batchnorm: fold eval-mode Conv/Linear + BatchNorm into new weights (the model
            must be in eval mode; the user's module is untouched; ``state_dict`` keys differ
            from torch.jit's). fxtrace-only.

    Returns:
        A ``torch.jit.ScriptFunction`` for a function, a ``torch.jit.ScriptModule`` for a
        module. Both can be saved with ``torch.jit.save`` and loaded without fxtrace.

    Example::

        >>> def foo(x, y):
        ...     return 2 * x + y
        >>> traced = fxtrace.trace(foo, (torch.rand(3), torch.rand(3)))
    """
    if isinstance(func, torch.jit.ScriptModule):
        warnings.warn("The input to trace is already a ScriptModule, tracing it is a no-op. "
                      "Returning the object as is.", stacklevel=2)
        return func
    A.validate_callable(func)
    A.validate_options(MODES, check_trace=check_trace, check_tolerance=check_tolerance,
                       strict=strict, _force_outplace=_force_outplace,
                       _module_class=_module_class, _compilation_unit=_compilation_unit,
                       _store_inputs=_store_inputs, mode=mode,
                       guards=guards, fold_batchnorm=fold_batchnorm)
    example, is_kwarg = A.example_of("trace", example_inputs, example_kwarg_inputs)
    argument = "example_kwarg_inputs" if is_kwarg else "example_inputs"
    sets = A.check_sets(check_inputs) if check_trace else None
    module = func if isinstance(func, torch.nn.Module) else getattr(func, "__self__", None)
    if isinstance(module, torch.nn.Module) and (func is module or func.__name__ == "forward"):
        # checked here too, so that a mistake is named as the caller of trace() wrote it
        A.validate_module(module)
        A.method_args(module, example, is_kwarg, argument)
        for i, c in enumerate(sets or []):
            A.method_args(module, c, is_kwarg, f"check_inputs[{i}]")
        if optimize is not None:  # warned here so that the warning points at the caller
            warnings.warn("`optimize` is deprecated and has no effect. "
                          "Use `with torch.jit.optimized_execution()` instead",
                          FutureWarning, stacklevel=2)
        return trace_module(module, {"forward": example}, None, check_trace,
                            [{"forward": c} for c in sets] if sets else None,
                            check_tolerance, strict, _force_outplace, _module_class,
                            _compilation_unit, example_inputs_is_kwarg=is_kwarg,
                            _store_inputs=_store_inputs, mode=mode, guards=guards,
                            fold_batchnorm=fold_batchnorm)
    if isinstance(module, torch.nn.Module):
        raise InvalidAttribute(
            "trace doesn't support compiling individual module's functions.\n"
            f"Please use trace_module: fxtrace.trace_module(module, {{{func.__name__!r}: "
            f"example_inputs}}) traces {A.describe(func)}{_where()}")
    if optimize is not None:
        warnings.warn("`optimize` is deprecated and has no effect. "
                      "Use `with torch.jit.optimized_execution()` instead",
                      FutureWarning, stacklevel=2)
    args, kwargs = A.method_args(func, example, is_kwarg, argument)
    check_sets = [(args, kwargs)] if not sets else [
        A.method_args(func, c, is_kwarg, f"check_inputs[{i}]") for i, c in enumerate(sets)]
    name = _function_name(func)
    try:
        gm = _capture(None, [("forward", func, args, kwargs)], name, mode=mode, guards=guards,
                      force_outplace=_force_outplace, fold_batchnorm=fold_batchnorm,
                      keep_structure=check_trace)
        A.check_outputs(gm, strict)
        traced = lower_function(gm, name)
        traced._fxtrace_capture = gm  # type: ignore[attr-defined]
        if _store_inputs:
            traced._fxtrace_traced_inputs = {"forward": (args, kwargs)}  # type: ignore[attr-defined]
        if check_trace:
            from .checking.trace_check import check_trace as run_check
            run_check(traced, func, check_sets, check_tolerance, stateful=[], capture=gm)
    except Exception as e:
        err = pipeline_error(e, func, "trace")
        if err is e:
            raise
        raise err  # noqa: B904 - pipeline_error set its __cause__ (or hid its context)
    return traced


def capture(func: Union[Callable[..., Any], torch.nn.Module], example_inputs: Any = None, *,
            example_kwarg_inputs: Optional[Dict[str, Any]] = None, method: str = "forward",
            mode: str = "concrete", guards: bool = True,
            fold_batchnorm: bool = False) -> fx.GraphModule:
    """Capture ``func`` into an ``fx.GraphModule`` tree without lowering it to TorchScript.

    The result runs in Python with the same results as eager on inputs that take the same path
    (guards raise on others); ``gm.meta["fxtrace"]`` holds the :class:`CaptureInfo`.
    """
    A.validate_callable(func)
    A.validate_options(MODES, mode=mode, guards=guards, fold_batchnorm=fold_batchnorm)
    example, is_kwarg = A.example_of("capture", example_inputs, example_kwarg_inputs)
    argument = "example_kwarg_inputs" if is_kwarg else "example_inputs"
    module = func if isinstance(func, torch.nn.Module) else getattr(func, "__self__", None)
    if isinstance(module, torch.nn.Module):
        A.validate_module(module)
        target = A.method_of(module, method if func is module else func.__name__, "method")
        name = method if func is module and isinstance(method, str) else target.__name__
        args, kwargs = A.method_args(target, example, is_kwarg, argument)
        methods: List[Method] = [(name, module if name == "forward" else target, args, kwargs)]
        root = module
        label = type(module).__name__
    else:
        args, kwargs = A.method_args(func, example, is_kwarg, argument)
        root, methods, label = None, [("forward", func, args, kwargs)], _function_name(func)
    try:
        return _capture(root, methods, label, mode=mode, guards=guards,
                        fold_batchnorm=fold_batchnorm)
    except Exception as e:
        err = pipeline_error(e, func, "capture")
        if err is e:
            raise
        raise err  # noqa: B904 - pipeline_error set its __cause__ (or hid its context)


