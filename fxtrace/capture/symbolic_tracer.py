"""The ``torch.fx`` tracer of symbolic capture and what it needs to bind inputs.

:class:`SymbolicTracer` is ``fx.Tracer`` with fxtrace's leaf policy, its user frames (so a
node's source is the user's line, not fxtrace's) and its input handling: tensor inputs become
placeholders, non-tensor inputs are specialised and guarded. :func:`normalise` rewrites what
fx records into targets TorchScript lowering spells.
"""
from __future__ import annotations

import collections
import dataclasses
import inspect
import linecache
import math
import operator
import re
import traceback
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.fx as fx

from .. import tree
from .meta import GUARD, TENSOR_META, SourceLoc, guard_message
from .source import is_internal_file
from .types import python_type_of

__all__ = ["ENTRY", "SymbolicOptions", "is_torch_leaf", "SymbolicTracer", "source_from_stack_trace",
           "flat_binding", "rebind", "normalise", "call_key", "user_source_of_exception", "fetch",
           "has_hooks"]

ENTRY = "_fxtrace_symbolic_entry"  # the frame that separates fxtrace's stack from the user's



@dataclasses.dataclass(frozen=True)
class SymbolicOptions:
    """Options of symbolic capture (see the module docstring)."""

    leaf_modules: Tuple[Any, ...] = ()
    autowrap_functions: Tuple[Callable[..., Any], ...] = ()
    autowrap_modules: Tuple[Any, ...] = (math,)
    #: torch.fx's default policy: ``torch.nn``'s own modules are leaves (see :func:`is_torch_leaf`).
    torch_leaves: bool = True

    def is_leaf(self, module: torch.nn.Module, path: str) -> bool:
        """A leaf is captured concretely on the inputs it receives, not traced symbolically:
        the modules named in ``leaf_modules``, and (``torch_leaves``) torch's own modules."""
        if self.torch_leaves and is_torch_leaf(module):
            return True
        for leaf in self.leaf_modules:
            if isinstance(leaf, str):
                if leaf == path:
                    return True
            elif isinstance(leaf, type):
                if isinstance(module, leaf):
                    return True
            elif leaf is module:
                return True
        return False


def is_torch_leaf(module: torch.nn.Module) -> bool:
    """``fx.Tracer.is_leaf_module``'s default: a module whose class is defined in ``torch.nn``
    or ``torch.ao.nn``, except ``Sequential`` (a container whose calls fx follows). A user
    subclass of a ``torch.nn`` class is not a leaf (its class lives in the user's module)."""
    where = type(module).__module__ or ""
    return (where.startswith("torch.nn") or where.startswith("torch.ao.nn")) \
        and not isinstance(module, torch.nn.Sequential)


def _has_tensor(value: Any) -> bool:
    return any(isinstance(v, torch.Tensor) for v in tree.leaves(value))


def flat_binding(bound: inspect.BoundArguments) -> List[Tuple[str, Any]]:
    """(placeholder name, value) for every passed argument, ``*args`` as ``name_0, ...``."""
    out: List[Tuple[str, Any]] = []
    for name, value in bound.arguments.items():
        kind = bound.signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            out.extend((f"{name}_{i}", v) for i, v in enumerate(value))
        elif kind is inspect.Parameter.VAR_KEYWORD:
            out.extend(value.items())
        else:
            out.append((name, value))
    return out


def rebind(bound: inspect.BoundArguments, values: List[Any]) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
    """The call ``bound`` describes, with the flat values replaced by ``values``."""
    it = iter(values)
    new = inspect.BoundArguments(bound.signature, collections.OrderedDict())
    for name, value in bound.arguments.items():
        kind = bound.signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            new.arguments[name] = tuple(next(it) for _ in value)
        elif kind is inspect.Parameter.VAR_KEYWORD:
            new.arguments[name] = {k: next(it) for k in value}
        else:
            new.arguments[name] = next(it)
    return new.args, new.kwargs


def call_key(flat: List[Tuple[str, Any]]) -> Tuple[Any, ...]:
    """Equal for two calls that the same symbolic graph computes."""
    key = []
    for name, value in flat:
        if _has_tensor(value):
            key.append((name, "tensor", repr(python_type_of(value, name))))
        else:
            key.append((name, type(value).__name__, repr(value)))
    return tuple(key)


_FRAME = re.compile(r'File "([^"]+)", line (\d+), in ([^\n]+)')


def source_from_stack_trace(text: Optional[str]) -> Optional[SourceLoc]:
    """The innermost frame of fx's ``node.stack_trace`` (already filtered to user frames)."""
    if not text:
        return None
    found = _FRAME.findall(text)
    if not found:
        return None
    filename, lineno, function = found[-1]
    line = int(lineno)
    return SourceLoc(filename, line, function.strip(), linecache.getline(filename, line).strip())


def user_source_of_exception(exc: BaseException) -> Optional[SourceLoc]:
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not is_internal_file(f.filename)]
    if not frames:
        return None
    f = frames[-1]
    return SourceLoc(f.filename, f.lineno or 0, f.name, (f.line or "").strip())


def fetch(module: torch.nn.Module, target: str) -> Any:
    obj: Any = module
    for atom in target.split("."):
        obj = getattr(obj, atom)
    return obj


def has_hooks(root: Optional[torch.nn.Module]) -> bool:
    from torch.nn.modules import module as m
    if any(getattr(m, name, None) for name in ("_global_forward_hooks", "_global_forward_pre_hooks",
                                               "_global_backward_hooks")):
        return True
    if root is None:
        return False
    return any(mod._forward_hooks or mod._forward_pre_hooks for mod in root.modules())


# ------------------------------------------------------------------------------- tracer

class SymbolicTracer(fx.Tracer):
    """An fx tracer whose every submodule is a leaf, which records user source lines, keeps
    tensor constants off the user's module, and builds placeholders from a real call."""

    def __init__(self, flat: List[Tuple[str, Any]], bound: inspect.BoundArguments,
                 constants: Dict[str, torch.Tensor], options: SymbolicOptions) -> None:
        super().__init__(autowrap_modules=options.autowrap_modules,
                         autowrap_functions=options.autowrap_functions)
        self.record_stack_traces = True
        self.flat = flat
        self.bound = bound
        self.constants = constants
        self.specialised: List[Tuple[str, Any, bool]] = []

    def is_leaf_module(self, m: torch.nn.Module, module_qualified_name: str) -> bool:
        return True

    def _filter_traceback_frames(self, summary: traceback.StackSummary) -> traceback.StackSummary:
        frames = list(summary)
        start = None
        for i, f in enumerate(frames):
            if f.name == ENTRY and f.filename == __file__:
                start = i
        if start is None:
            return traceback.StackSummary.from_list([])
        return traceback.StackSummary.from_list(
            [f for f in frames[start + 1:] if not is_internal_file(f.filename)])

    def create_arg(self, a: Any) -> Any:
        if isinstance(a, torch.Tensor) and not isinstance(a, torch.nn.Parameter) \
                and a not in self.tensor_attrs and not any(a is b for b in self.root.buffers()):
            name = f"_tensor_constant{len(self.constants)}"
            while hasattr(self.root, name) or name in self.constants:
                name += "_"
            self.constants[name] = a
            self.tensor_attrs[a] = name
            return self.create_node("get_attr", name, (), {})
        return super().create_arg(a)

    def create_args_for_root(self, root_fn: Callable[..., Any], is_module: bool,
                             concrete_args: Any = None) -> Tuple[Callable[..., Any], List[Any]]:
        values: List[Any] = []
        for name, value in self.flat:
            ph = self.create_proxy("placeholder", name, (), {},
                                   type_expr=python_type_of(value, f"argument '{name}'"))
            if _has_tensor(value):
                values.append(ph)
                continue
            guarded = isinstance(value, (bool, int, float, str)) and not (
                isinstance(value, float) and math.isnan(value))
            if guarded:
                eq = self.create_proxy("call_function", operator.eq, (ph, value), {})
                guard = self.create_proxy(
                    "call_function", torch._assert,
                    (eq, guard_message("the trace's inputs", f"argument '{name}' specialised "
                                       f"to {value!r} by symbolic capture")), {})
                guard.node.meta[GUARD] = True
            self.specialised.append((name, value, guarded))
            values.append(value)
        args, kwargs = rebind(self.bound, values)
        self_arg = (self.root,) if is_module else ()

        def _fxtrace_symbolic_entry(*_unused: Any) -> Any:
            return root_fn(*self_arg, *args, **kwargs)

        return _fxtrace_symbolic_entry, []


# ------------------------------------------------------------------------------- capture


# ------------------------------------------------------------------------------- normalisation

#: ``getattr(tensor, name)`` -> a lowerable node: ("method", name) or ("function", callable).
_TENSOR_ATTRIBUTES: Dict[str, Tuple[str, Any]] = {
    "shape": ("method", "size"),
    "ndim": ("method", "dim"),
    "dtype": ("function", torch.ops.prim.dtype),
    "device": ("function", torch.ops.prim.device),
    "is_cuda": ("function", torch.ops.prim.is_cuda),
    "requires_grad": ("function", torch.ops.prim.requires_grad),
}
_INPLACE: Dict[Any, Tuple[str, Any]] = {
    operator.iadd: ("add_", operator.add), operator.isub: ("sub_", operator.sub),
    operator.imul: ("mul_", operator.mul), operator.itruediv: ("div_", operator.truediv),
    operator.ifloordiv: ("floor_divide_", operator.floordiv),
    operator.imod: ("remainder_", operator.mod), operator.ipow: ("pow_", operator.pow),
    operator.iand: ("bitwise_and_", operator.and_), operator.ior: ("bitwise_or_", operator.or_),
    operator.ixor: ("bitwise_xor_", operator.xor),
}


def _is_tensor_node(arg: Any) -> bool:
    if not isinstance(arg, fx.Node):
        return False
    meta = arg.meta.get(TENSOR_META)
    return meta is not None and hasattr(meta, "shape")


def normalise(graph: fx.Graph) -> None:
    """Rewrite what fx symbolic tracing records into targets TorchScript lowering spells:
    ``getattr(x, "shape")`` -> ``x.size()`` (and ``ndim``/``dtype``/``device``/...), in-place
    operators (``operator.iadd``) -> ``x.add_(y)`` on tensors / ``operator.add`` on numbers,
    ``operator.abs`` -> ``torch.abs`` / ``abs``."""
    for node in list(graph.nodes):
        if node.op != "call_function":
            continue
        target, args = node.target, node.args
        if target is getattr and len(args) == 2 and _is_tensor_node(args[0]) \
                and args[1] in _TENSOR_ATTRIBUTES:
            kind, new = _TENSOR_ATTRIBUTES[args[1]]
            if kind == "method":
                node.op, node.target, node.args = "call_method", new, (args[0],)
            else:
                node.target, node.args = new, (args[0],)
        elif target in _INPLACE and not node.kwargs:
            method, plain = _INPLACE[target]
            if _is_tensor_node(args[0]):
                node.op, node.target = "call_method", method
            else:
                node.target = plain
        elif target is operator.abs:
            node.target = torch.abs if _is_tensor_node(args[0]) else abs
