"""``trace`` / ``trace_module`` / ``capture``: the one place where the options meet.

Argument handling follows ``torch.jit.trace`` (``torch/jit/_trace.py``) exactly where it is
observable: the same wrapping of example inputs, the same exception types for the same
mistakes, the same warnings. The pipeline is capture → passes → lower → check.
"""
from __future__ import annotations

import inspect
import sys
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
import torch.fx as fx

from . import tree
from .capture.assemble import assemble
from .capture.concrete import Method, capture_concrete
from .capture.meta import INFO, CaptureInfo
from .capture.pystate import refuse_python_state_reads
from .capture.source import user_source
from .capture.structure import same_structure, structure_of, structure_of_trace
from .errors import InvalidArgument, InvalidAttribute, TracerWarning
from .lower.script import lower_function, lower_module
from .passes import eliminate_common_subexpressions, eliminate_dead_code, run_passes
from .passes.fold_batchnorm import fold_on_request, require_eval_for_fold
from .state import preserved_state

#: The passes every capture goes through. Constant folding is not among them: it would store
#: folded tensors as new module state, which torch.jit.trace's results do not have.
CAPTURE_PASSES = [eliminate_dead_code, eliminate_common_subexpressions, eliminate_dead_code]

__all__ = ["trace", "trace_module", "capture"]



def _where() -> str:
    src = user_source(sys._getframe(2))
    return f" (called at {src})" if src is not None else ""


def _make_tuple(example_inputs: Any, argument: str) -> Tuple[Any, ...]:
    """torch.jit's ``make_tuple``: a tensor or dict is one argument; other iterables unpack."""
    if isinstance(example_inputs, (torch.Tensor, dict)):
        return (example_inputs,)
    if isinstance(example_inputs, tuple):
        return example_inputs
    try:
        return tuple(example_inputs)
    except TypeError:
        raise InvalidArgument(
            f"{argument} must be a tensor, a tuple of inputs or a dict; got "
            f"{type(example_inputs).__name__}{_where()}") from None


def _output_containers(out: Any) -> Tuple[bool, bool]:
    """(has list, has dict) anywhere in an output structure."""
    types = [s.type for s in tree.flatten(out)[1].walk() if s.type is not None]
    return any(issubclass(t, list) for t in types), any(issubclass(t, dict) for t in types)


_CONTAINER_MESSAGE = (
    "Encountering a {kind} at the output of the tracer might cause the trace to be incorrect, "
    "this is only valid if the container structure does not change based on the module's "
    "inputs. Consider using a constant container instead (e.g. for `list`, use a `tuple` "
    "instead. for `dict`, use a `NamedTuple` instead). If you absolutely need this and know "
    "the side effects, pass strict=False to trace() to allow this behavior.")


def _check_strict(gm: fx.GraphModule, strict: bool) -> None:
    """As torch.jit with ``strict=True``: a dict at the output raises, a list warns."""
    if not strict:
        return
    for node in gm.graph.nodes:
        if node.op == "output":
            has_list, has_dict = _output_containers(node.args[0])
            if has_dict:
                raise RuntimeError(_CONTAINER_MESSAGE.format(kind="dict"))
            if has_list:
                warnings.warn(_CONTAINER_MESSAGE.format(kind="list"), TracerWarning, stacklevel=4)


MODES = ("concrete", "symbolic", "auto")


def _capture(root: Optional[torch.nn.Module], methods: List[Method], name: str,
             **options: Any) -> fx.GraphModule:
    """:func:`_capture_unless_same` without ``same_as``: always a capture."""
    gm = _capture_unless_same(root, methods, name, **options)
    assert gm is not None  # only a same_as comparison returns None
    return gm


def _capture_unless_same(root: Optional[torch.nn.Module], methods: List[Method], name: str, *,
                         mode: str = "concrete", guards: bool = True,
                         force_outplace: bool = False, fold_batchnorm: bool = False,
                         passes: bool = True, keep_structure: bool = False,
                         preserve: bool = True, same_as: Optional[Dict[str, Any]] = None
                         ) -> Optional[fx.GraphModule]:
    """Capture ``methods`` in ``mode`` and run the capture passes; ``gm.meta["fxtrace"]`` says
    which mode produced the graph (``"auto"`` resolves to one of the other two).
    ``fold_batchnorm`` (eval mode only) folds Conv/Linear + BatchNorm afterwards.
    ``passes=False`` returns the raw capture (:func:`finish_capture` completes it);
    ``keep_structure`` records the raw graphs' structure for the trace check.
    ``preserve=False``: the caller restores the module's state itself (a re-trace), so the
    capture takes no snapshot of its own for the failure path. ``same_as``: the kept
    structures of an earlier capture (``{method: Structure}``); a concrete capture equal to
    them returns None before its graphs are assembled (the trace check's fast path)."""
    if mode not in MODES:
        raise InvalidArgument(f"mode must be one of {MODES}; got {mode!r}{_where()}")
    if fold_batchnorm:
        require_eval_for_fold(root)
    options = {"guards": guards, "force_outplace": force_outplace}
    gm: Optional[fx.GraphModule] = None
    if mode in ("symbolic", "auto"):
        from .capture.symbolic import capture_symbolic
        from .checking.agreement import symbolic_matches_eager
        from .lower.opaque import check_opaque_functions
        try:
            gm = capture_symbolic(root, methods, name)
            check_opaque_functions(gm)
        except Exception:
            if mode == "symbolic":
                raise
            gm = None
        if gm is not None and not (mode == "symbolic" or
                                   symbolic_matches_eager(gm, root, methods)):
            gm = None
        if gm is not None:
            gm.meta["fxtrace"].options = options
    if gm is None:
        info = CaptureInfo(mode="concrete", is_function=root is None, name=name,
                           training=bool(root.training) if root is not None else False,
                           options=options)
        rng = torch.random.get_rng_state()
        # A trace is an observation: buffers, flags, RNGs and Python attributes come back
        # after the capture and its Python-state test (NOTE [State writes] for parameters).
        with preserved_state([root] if root is not None and preserve else [], always=True):
            tracer, root_trace = capture_concrete(methods, root=root, name=name, guards=guards,
                                                  force_outplace=force_outplace)
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
                                                             force_outplace=force_outplace)
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


def _function_name(func: Callable[..., Any]) -> str:
    name = getattr(func, "__name__", None) or type(func).__name__
    name = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return name if name and not name[0].isdigit() else f"fn_{name}"


def _validate_callable(func: Any) -> None:
    if not callable(func):
        raise InvalidArgument(f"func must be a callable (a function or an nn.Module); got "
                              f"{type(func).__name__}{_where()}")


def _method_args(func: Callable[..., Any], example: Any, is_kwarg: bool
                 ) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
    if is_kwarg:
        names = _argument_names(func)
        owner = "forward() method's" if isinstance(func, torch.nn.Module) or getattr(
            func, "__name__", "") == "forward" else f"{getattr(func, '__name__', 'function')}()'s"
        for key in example:
            if names is not None and key not in names:
                raise NameError(f"'{key}' is not in {owner} arguments, valid "
                                f"arguments name are [{','.join(names)}]")
        return (), dict(example)
    return _make_tuple(example, "example_inputs"), {}


def _argument_names(func: Callable[..., Any]) -> Optional[List[str]]:
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return None
    return [p for p, v in params.items() if v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)]


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
        raise AttributeError("expected torch.nn.Module as the first argument")
    if not isinstance(inputs, dict):
        raise AttributeError("expected a dictionary of (method_name, input) pairs")
    methods = []
    for method_name, example in inputs.items():
        target = getattr(mod, method_name, None)
        if target is None or not callable(target):
            raise InvalidAttribute(f"inputs names method {method_name!r}, which "
                                  f"{type(mod).__name__} does not have{_where()}")
        func = mod if method_name == "forward" else target
        args, kwargs = _method_args(target, example, example_inputs_is_kwarg)
        methods.append((method_name, func, args, kwargs))
    gm = _capture(mod, methods, type(mod).__name__, mode=mode, guards=guards,
                  force_outplace=_force_outplace, fold_batchnorm=fold_batchnorm,
                  keep_structure=check_trace)
    _check_strict(gm, strict)
    script = lower_module(gm, module_class=_module_class, compilation_unit=_compilation_unit)
    script.__dict__["_fxtrace_capture"] = gm
    if _store_inputs:
        # torch.jit keeps these in C++ for ``_retrieve_traced_inputs()``, which has no Python
        # setter; fxtrace keeps the same mapping on the result.
        script.__dict__["_fxtrace_traced_inputs"] = {m: (a, k) for m, _, a, k in methods}
    if check_trace:
        from .checking.trace_check import check_trace as run_check
        for method_name, func, args, kwargs in methods:
            sets = [c[method_name] for c in check_inputs] if check_inputs else None
            run_check(script if method_name == "forward" else script._c._get_method(method_name), func,
                      [(args, kwargs)] if sets is None else
                      [_method_args(func, s, example_inputs_is_kwarg) for s in sets],
                      check_tolerance, stateful=[mod], capture=gm, method=method_name)
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
    _validate_callable(func)
    is_kwarg = isinstance(example_kwarg_inputs, dict)
    if example_inputs is None and not is_kwarg:
        raise InvalidArgument("trace needs example inputs: pass example_inputs (a tensor or a "
                              "tuple) or example_kwarg_inputs (a dict)" + _where())
    if example_kwarg_inputs is not None and not is_kwarg:
        raise InvalidArgument("example_kwarg_inputs must be a dict of argument name to value; got "
                              f"{type(example_kwarg_inputs).__name__}{_where()}")
    module = func if isinstance(func, torch.nn.Module) else getattr(func, "__self__", None)
    if isinstance(module, torch.nn.Module) and (func is module or func.__name__ == "forward"):
        example = example_inputs if example_inputs is not None else example_kwarg_inputs
        if optimize is not None:  # warned here so that the warning points at the caller
            warnings.warn("`optimize` is deprecated and has no effect. "
                          "Use `with torch.jit.optimized_execution()` instead",
                          FutureWarning, stacklevel=2)
        return trace_module(module, {"forward": example}, None, check_trace,
                            [{"forward": c} for c in check_inputs] if check_inputs else None,
                            check_tolerance, strict, _force_outplace, _module_class,
                            _compilation_unit, example_inputs_is_kwarg=is_kwarg,
                            _store_inputs=_store_inputs, mode=mode, guards=guards,
                            fold_batchnorm=fold_batchnorm)
    if isinstance(module, torch.nn.Module):
        raise AttributeError("trace doesn't support compiling individual module's functions.\n"
                             "Please use trace_module")
    if optimize is not None:
        warnings.warn("`optimize` is deprecated and has no effect. "
                      "Use `with torch.jit.optimized_execution()` instead",
                      FutureWarning, stacklevel=2)
    args, kwargs = _method_args(func, example_kwarg_inputs if is_kwarg else example_inputs, is_kwarg)
    name = _function_name(func)
    gm = _capture(None, [("forward", func, args, kwargs)], name, mode=mode, guards=guards,
                  force_outplace=_force_outplace, fold_batchnorm=fold_batchnorm,
                  keep_structure=check_trace)
    _check_strict(gm, strict)
    traced = lower_function(gm, name)
    traced._fxtrace_capture = gm  # type: ignore[attr-defined]
    if _store_inputs:
        traced._fxtrace_traced_inputs = {"forward": (args, kwargs)}  # type: ignore[attr-defined]
    if check_trace:
        from .checking.trace_check import check_trace as run_check
        sets = [(args, kwargs)] if not check_inputs else [
            _method_args(func, c, is_kwarg) for c in check_inputs]
        run_check(traced, func, sets, check_tolerance, stateful=[], capture=gm)
    return traced


def capture(func: Union[Callable[..., Any], torch.nn.Module], example_inputs: Any = None, *,
            example_kwarg_inputs: Optional[Dict[str, Any]] = None, method: str = "forward",
            mode: str = "concrete", guards: bool = True,
            fold_batchnorm: bool = False) -> fx.GraphModule:
    """Capture ``func`` into an ``fx.GraphModule`` tree without lowering it to TorchScript.

    The result runs in Python with the same results as eager on inputs that take the same path
    (guards raise on others); ``gm.meta["fxtrace"]`` holds the :class:`CaptureInfo`.
    """
    _validate_callable(func)
    is_kwarg = isinstance(example_kwarg_inputs, dict)
    if example_inputs is None and not is_kwarg:
        raise InvalidArgument("capture needs example inputs: pass example_inputs or "
                              "example_kwarg_inputs" + _where())
    example = example_kwarg_inputs if is_kwarg else example_inputs
    module = func if isinstance(func, torch.nn.Module) else getattr(func, "__self__", None)
    if isinstance(module, torch.nn.Module):
        name = method if func is module else func.__name__
        target = getattr(module, name)
        args, kwargs = _method_args(target, example, is_kwarg)
        return _capture(module, [(name, module if name == "forward" else target, args, kwargs)],
                        type(module).__name__, mode=mode, guards=guards,
                        fold_batchnorm=fold_batchnorm)
    args, kwargs = _method_args(func, example, is_kwarg)
    return _capture(None, [("forward", func, args, kwargs)], _function_name(func), mode=mode,
                    guards=guards, fold_batchnorm=fold_batchnorm)

