"""``fxtrace.export``: from fxtrace's concrete capture to a ``torch.export.ExportedProgram``.

The same capture as :func:`fxtrace.trace` (same guards, same live sizes), handed to
``torch.export.export(strict=False)`` instead of fxtrace's TorchScript code generator. What
export sees is fxtrace's graph, never the user's Python: branches on data and Python-side logic
were decided by the capture and are guarded at run time.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
import torch.fx as fx
from torch.export import Dim

from . import arguments as A
from .api import MODES, _capture, _function_name
from .arguments import where as _where
from .capture.concrete import Method
from .errors import InvalidOption
from .exporting.guards import exportable_guards
from .exporting.program import ExportRefused, InputDim, export_graph, shapes_spec
from .failures import pipeline_error
from .state import preserved_state

__all__ = ["export"]


def export(model: Union[Callable[..., Any], torch.nn.Module], example_inputs: Any = None,
           example_kwarg_inputs: Optional[Dict[str, Any]] = None, *, dynamic: Any = None,
           guards: bool = True, strict: bool = False) -> torch.export.ExportedProgram:
    """Capture ``model`` on the example inputs as :func:`fxtrace.trace` does and export the
    captured graph with ``torch.export``.

    Args:
        model: a function or an ``nn.Module`` (its ``forward`` is exported).
        example_inputs / example_kwarg_inputs: as :func:`fxtrace.trace`.
        dynamic: which dims the program keeps symbolic (``torch.export.Dim``).
            ``None`` (default): the dims the capture keeps live, confirmed by
            :func:`fxtrace.probe_dynamic` (trace and eager agree at other sizes); dims of
            equal example size that were resized together share one ``Dim``. ``True``:
            ``Dim.AUTO`` on every dim (export decides). ``False``: every dim static. A dict
            or tuple is ``torch.export``'s own ``dynamic_shapes``, keyed by the parameter
            names of ``forward``.
        guards: as :func:`fxtrace.trace`: each guard becomes a runtime assertion of the
            program (``aten._assert_async.msg`` with fxtrace's message for values read from
            tensors; export's own input checks for sizes the trace fixed).
        strict: ``torch.export``'s ``strict``: ``True`` traces fxtrace's graph with
            TorchDynamo instead of running it on fake tensors.

    Returns:
        An ``ExportedProgram``; ``torch.export.save``/``load`` round-trip it without fxtrace.

    Raises:
        ExportRefused: ``torch.export`` refused the captured graph; the message names the user
            line of the node it was running.
    """
    A.validate_callable(model)
    A.validate_options(MODES, guards=guards, strict=strict)
    if not (dynamic is None or isinstance(dynamic, (bool, dict, tuple, list))):
        raise InvalidOption("dynamic must be None, True, False or torch.export's dynamic_shapes "
                            f"(a dict or tuple); got {type(dynamic).__name__}{_where()}")
    example, is_kwarg = A.example_of("export", example_inputs, example_kwarg_inputs)
    argument = "example_kwarg_inputs" if is_kwarg else "example_inputs"
    module = model if isinstance(model, torch.nn.Module) else getattr(model, "__self__", None)
    root: Optional[torch.nn.Module] = None
    if isinstance(module, torch.nn.Module):
        A.validate_module(module)
        target = A.method_of(module, "forward", "model")
        args, kwargs = A.method_args(target, example, is_kwarg, argument)
        root, label = module, type(module).__name__
    else:
        args, kwargs = A.method_args(model, example, is_kwarg, argument)
        label = _function_name(model)
    methods: List[Method] = [("forward", root if root is not None else model, args, kwargs)]
    try:
        # an observation: the capture, the probe and export leave the model as it was (its
        # buffers too: the exported program starts from the values they had before)
        bound = _buffer_bindings(root)
        with preserved_state([root] if root is not None else [], always=True):
            gm = _capture(root, methods, label, guards=guards)
            ep = _export_capture(gm, model, args, kwargs, dynamic, strict, label)
        for (module, name), buffer in bound.items():
            module._buffers[name] = buffer  # a forward rebinding ``self.count = ...``
        return _own_state(ep, root)
    except ExportRefused:
        raise
    except Exception as e:
        err = pipeline_error(e, model, "export")
        if err is e:
            raise
        raise err  # noqa: B904 - pipeline_error set its __cause__ (or hid its context)


def _export_capture(gm: fx.GraphModule, model: Any, args: Tuple[Any, ...],
                    kwargs: Dict[str, Any], dynamic: Any, strict: bool,
                    label: str) -> torch.export.ExportedProgram:
    """Choose the dims, make the guards exportable, export; named dims that export proves
    static (a relation the probe's sizes did not reach) fall back to ``Dim.AUTO``."""
    exportable_guards(gm)  # first: the probe runs the graph that export will see
    if isinstance(dynamic, (dict, tuple, list)):
        return export_graph(gm, args, kwargs, dynamic, strict, label)
    dims = _chosen_dims(gm, model, args, kwargs, dynamic)
    spec = shapes_spec(gm, args, kwargs, dims)
    try:
        return export_graph(gm, args, kwargs, spec, strict, label)
    except ExportRefused as e:
        if not dims or not _is_constraint_violation(e.__cause__):
            raise
    auto = shapes_spec(gm, args, kwargs, {d: Dim.AUTO for d in dims})
    return export_graph(gm, args, kwargs, auto, strict, label)


def _buffer_bindings(root: Optional[torch.nn.Module]) -> Dict[Tuple[Any, str], torch.Tensor]:
    """``{(module, name): buffer}``: the objects a forward may rebind, to bind them again."""
    if root is None:
        return {}
    return {(m, n): b for m in root.modules() for n, b in m._buffers.items() if b is not None}


def _own_state(ep: torch.export.ExportedProgram,
               root: Optional[torch.nn.Module]) -> torch.export.ExportedProgram:
    """The program's buffers start from the model's values before the export (restored), in
    tensors of its own: calling the program does not write into the model, nor the reverse."""
    buffers = dict(root.named_buffers()) if root is not None else {}
    for name, value in list(ep.state_dict.items()):
        if isinstance(value, torch.Tensor) and not isinstance(value, torch.nn.Parameter):
            ep.state_dict[name] = buffers.get(name, value).detach().clone()
    return ep


def _is_constraint_violation(e: Optional[BaseException]) -> bool:
    text = f"{type(e).__name__}: {e}"
    return "Constraints violated" in text or "ConstraintViolation" in text


def _chosen_dims(gm: fx.GraphModule, model: Any, args: Tuple[Any, ...],
                 kwargs: Dict[str, Any], dynamic: Optional[bool]) -> Dict[InputDim, Any]:
    """``{(tensor input, dim): Dim}``. Size 0 and 1 dims stay static: export specialises
    them (a size-1 dim broadcasts)."""
    from .checking.calls import tensor_leaves
    leaves = tensor_leaves(args, kwargs)
    if dynamic is False:
        return {}
    if dynamic is True:
        return {(i, d): Dim.AUTO for i, (_, t) in enumerate(leaves)
                for d in range(t.dim()) if t.shape[d] >= 2}
    from .checking.dynamic import probe_dynamic
    gm.__dict__["_fxtrace_traced_inputs"] = {"forward": (args, kwargs)}
    try:
        # the probe runs the graph, which writes its own buffers (``self.count += 1``): they
        # are the program's initial state, so they come back as they were
        with preserved_state([gm], always=True):
            report = probe_dynamic(gm, model)
    finally:
        del gm.__dict__["_fxtrace_traced_inputs"]
    groups: Dict[str, List[InputDim]] = {}
    for p in report.dims:
        if p.status == "dynamic" and p.size >= 2:
            # the dims resized together (``linked``) share one Dim; every other dim its own
            key = ",".join(sorted([f"{p.input}:{p.dim}"] + (p.linked.split(", ")
                                                              if p.linked else [])))
            groups.setdefault(key, []).append((p.input, p.dim))
    dims: Dict[InputDim, Any] = {}
    for k, members in enumerate(groups.values()):
        shared = Dim(f"dim{k}", min=1)
        dims.update({m: shared for m in members})
    return dims
