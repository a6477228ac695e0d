"""Tensor methods and properties the concrete tracer treats specially, and the tables that
classify torch calls (metadata reads, mode-dependent ops, sized factories)."""
from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, Optional, Tuple

import torch
import torch.fx as fx

if TYPE_CHECKING:
    from .concrete import ConcreteTracer

__all__ = ["CONVERSIONS", "iterate", "ITER_WARNING", "SPECIAL_METHODS", "METADATA_METHODS",
           "MODE_DEPENDENT", "DEVICE_PROPERTIES", "SIZED_FACTORIES", "property_name",
           "tensor_method_name", "reads_training", "outplace"]

# Tensor methods whose results are metadata (fixed by dtype, layout, device), not values.
METADATA_METHODS = frozenset({
    "data_ptr", "__repr__", "__format__", "__hash__", "storage_offset", "untyped_storage",
    "is_pinned", "is_shared", "type", "_is_view", "has_names", "__reduce_ex__", "__deepcopy__",
    "__dlpack_device__", "__array__", "requires_grad_", "retain_grad", "register_hook",
    "__setstate__", "__getstate__", "is_inference", "is_set_to", "dim_order", "nbytes",
})


# Calls whose result depends on the module's training flag (see _guard_training).
MODE_DEPENDENT = frozenset({
    "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
    "feature_dropout", "batch_norm", "instance_norm", "rrelu", "rrelu_",
    "dropout_", "alpha_dropout_", "feature_alpha_dropout_", "feature_dropout_",
})


#: Factories whose size arguments are the result's sizes (see note_factory_sizes).
SIZED_FACTORIES = frozenset({torch.zeros, torch.ones, torch.empty, torch.rand, torch.randn,
                              torch.full})


#: Tensor methods that convert dtype or device and return the tensor itself when there is
#: nothing to convert (see ``ConcreteTracer._noop_conversion``).
CONVERSIONS = frozenset({"to", "type", "type_as", "float", "double", "half", "bfloat16", "int",
                         "long", "short", "char", "byte", "bool", "cfloat", "cdouble", "cpu",
                         "cuda"})


def _size_method(tr: ConcreteTracer, func: Callable[..., Any], args: Tuple[Any, ...],
                 kwargs: Dict[str, Any]) -> Any:
    value = tr._untraced_call(func, args, kwargs)
    t = args[0]
    dim = args[1] if len(args) > 1 else kwargs.get("dim")
    if dim is None:
        return tr._sizes(t, value)
    if not tr._is_graph_tensor(t):
        return value
    known = tr.known_sizes.get(tr.resolve(t))
    if known is not None and type(dim) is int and -len(known) <= dim < len(known):
        return known[dim]  # fixed by the factory call that made ``t``
    return tr._scalar_method(t, "size", (tr.to_arg(dim),), value)


def _int_method(name: str) -> Callable[..., Any]:
    def handler(tr: ConcreteTracer, func: Callable[..., Any], args: Tuple[Any, ...],
                kwargs: Dict[str, Any]) -> Any:
        value = tr._untraced_call(func, args, kwargs)
        return tr._scalar_method(args[0], name, (), value)
    return handler


def _escape_method(kind: str, observe: Callable[[fx.Node], Tuple[str, Any, Tuple[Any, ...]]]
                   ) -> Callable[..., Any]:
    """A Tensor method that turns a tensor's value into a Python value (bool, int, item, len)."""
    def handler(tr: ConcreteTracer, func: Callable[..., Any], args: Tuple[Any, ...],
                kwargs: Dict[str, Any]) -> Any:
        value = tr._untraced_call(func, args, kwargs)
        if tr._is_graph_tensor(args[0]):
            tr.specialise_tensor(kind, args[0], value, observe)
        return value
    return handler


#: torch.jit.trace's warning for ``for row in x`` (torch/_tensor.py); fxtrace adds what
#: happens in its guards mode (``Guards.warn_frozen``).
ITER_WARNING = ("Iterating over a tensor might cause the trace to be incorrect. Passing a tensor "
                "of different shape won't change the number of iterations executed (and might "
                "lead to errors or silently give incorrect results)")


def iterate(tr: "ConcreteTracer", t: torch.Tensor) -> Any:
    """``iter(t)`` of a graph tensor: the number of rows is guarded, the rows are recorded
    (``Tensor.__iter__`` skips ``__torch_function__``, so the capture patches it)."""
    with torch._C.DisableTorchFunction():  # the count itself is not recorded: it is guarded
        rows = int(t.shape[0])
    tr.specialise_tensor("iter", t, rows, lambda node: ("call_function", len, (node,)),
                         message=ITER_WARNING)
    return iter(t.unbind(0))  # recorded: the mode sees unbind

def _setitem_method(tr: ConcreteTracer, func: Callable[..., Any], args: Tuple[Any, ...],
                    kwargs: Dict[str, Any]) -> Any:
    tr._untraced_call(func, args, kwargs)
    return tr.record("call_function", operator.setitem, args, kwargs, None)


def _deepcopy_method(tr: ConcreteTracer, func: Callable[..., Any], args: Tuple[Any, ...],
                     kwargs: Dict[str, Any]) -> Any:
    """``copy.deepcopy(t)``: a new leaf with ``t``'s values, dtype, device and requires_grad,
    and no autograd history. TorchScript has no ``__deepcopy__``: it is recorded as
    ``t.detach().clone()`` (then ``requires_grad_()`` when the copy requires grad)."""
    out = tr._untraced_call(func, args, kwargs)
    if isinstance(out, torch.Tensor) and args and isinstance(args[0], torch.Tensor):
        tr.record_deepcopy(args[0], out)
    return out


def _builtin(fn: Callable[..., Any]) -> Callable[[fx.Node], Tuple[str, Any, Tuple[Any, ...]]]:
    return lambda node: ("call_function", fn, (node,))


def _method(name: str) -> Callable[[fx.Node], Tuple[str, Any, Tuple[Any, ...]]]:
    return lambda node: ("call_method", name, (node,))


SPECIAL_METHODS: Dict[str, Callable[..., Any]] = {
    "size": _size_method,
    "dim": _int_method("dim"),
    "ndimension": _int_method("dim"),
    "numel": _int_method("numel"),
    "nelement": _int_method("numel"),
    "__bool__": _escape_method("bool", _builtin(bool)),
    "__int__": _escape_method("int", _builtin(int)),
    "__index__": _escape_method("index", _builtin(int)),
    "__float__": _escape_method("float", _builtin(float)),
    "item": _escape_method("item", _method("item")),
    "tolist": _escape_method("tolist", _method("tolist")),
    "__len__": _escape_method("len", _builtin(len)),
    "__setitem__": _setitem_method,
    "__deepcopy__": _deepcopy_method,
}


def property_name(func: Any) -> Optional[str]:
    if type(func).__name__ == "method-wrapper" and getattr(func, "__name__", "") == "__get__":
        owner = getattr(func, "__self__", None)
        return getattr(owner, "__name__", None)
    return None


_TENSOR_CLASSES = (torch.Tensor, torch._C.TensorBase)


DEVICE_PROPERTIES = frozenset({"is_cuda", "is_cpu", "is_xpu", "is_mps", "is_meta", "is_xla",
                                "is_ipu", "is_maia", "is_mtia", "is_vulkan"})


def tensor_method_name(func: Any) -> Optional[str]:
    name = getattr(func, "__name__", None)
    if name is None:
        return None
    for cls in _TENSOR_CLASSES:
        if cls.__dict__.get(name) is func:
            return name
    return None


_READS_TRAINING: Dict[type, bool] = {}


def _code_names(code: Any) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            yield from _code_names(const)


def reads_training(cls: type) -> bool:
    """Whether any method of ``cls`` (below ``nn.Module``) reads an attribute ``training``.

    Such a module may branch on its mode in Python, which no op records; its flag is guarded
    whenever it is called during capture (NOTE: conservative: a read used only for logging
    guards too)."""
    hit = _READS_TRAINING.get(cls)
    if hit is None:
        hit = False
        for klass in cls.__mro__:
            if klass in (torch.nn.Module, object):
                continue
            for member in vars(klass).values():
                fn = getattr(member, "__func__", member)
                code = getattr(fn, "__code__", None)
                if code is not None and "training" in set(_code_names(code)):
                    hit = True
                    break
            if hit:
                break
        _READS_TRAINING[cls] = hit
    return hit


def outplace(method: Optional[str], func: Any, kwargs: Dict[str, Any]
              ) -> Tuple[Optional[str], Dict[str, Any]]:
    """``_force_outplace``: ``x.add_(y)`` is recorded as ``x.add(y)`` (the tensor object is then
    bound to the out-of-place result, so later uses read it), ``F.relu(x, inplace=True)`` as
    ``inplace=False``. Writes through views are not reproduced, as in torch.jit."""
    if method is not None and method.endswith("_") and not method.endswith("__") and hasattr(
            torch.Tensor, method[:-1]):
        return method[:-1], kwargs
    if kwargs.get("inplace") is True:
        return method, {**kwargs, "inplace": False}
    return method, kwargs
