"""Tensor methods and properties the concrete tracer treats specially, and the tables that
classify torch calls (metadata reads, mode-dependent ops, sized factories)."""
from __future__ import annotations

import operator
import sys
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
import torch.fx as fx

from .meta import GUARD, SOURCE, STATE_WRITE
from .source import user_source

if TYPE_CHECKING:
    from .concrete import ConcreteTracer

__all__ = ["CONVERSIONS", "iterate", "random_origin", "NumpyExports", "keep_random_alive",
           "guard_inputs_of_constant", "ITER_WARNING", "SPECIAL_METHODS", "METADATA_METHODS",
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


def _watched(tr: ConcreteTracer, t: Any) -> bool:
    """Whether a value read out of ``t`` must be guarded: a tensor the graph computes or
    reads, buffers included (forward or the user may change them: fuzz F9); parameters and
    plain constants are part of the model."""
    if tr._is_graph_tensor(t):
        return True
    return isinstance(t, torch.Tensor) and not isinstance(t, torch.nn.Parameter) and \
        id(t) in tr.param_names and tr._find(t, tr.frame) is not None


def _escape_method(kind: str, observe: Callable[[fx.Node], Tuple[str, Any, Tuple[Any, ...]]]
                   ) -> Callable[..., Any]:
    """A Tensor method that turns a tensor's value into a Python value (bool, int, item, len)."""
    def handler(tr: ConcreteTracer, func: Callable[..., Any], args: Tuple[Any, ...],
                kwargs: Dict[str, Any]) -> Any:
        value = tr._untraced_call(func, args, kwargs)
        if _watched(tr, args[0]):
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

def _value_observer(tr: ConcreteTracer, t: torch.Tensor
                    ) -> Callable[[fx.Node], Tuple[str, Any, Tuple[Any, ...]]]:
    """Re-read a whole tensor's value: ``torch.equal(t, <the example's value>)``. The guard of
    a value TorchScript cannot compare as a Python value (a list of unknown nesting, a NumPy
    array): it holds exactly when the tensor is what it was while tracing."""
    with torch._C.DisableTorchFunction():
        example = t.detach().clone()
    const = tr._constant(example, tr.frame)
    return lambda node: ("call_function", torch.equal, (node, const))


def _attribute(name: str) -> Callable[[fx.Node], Tuple[str, Any, Tuple[Any, ...]]]:
    return lambda node: ("call_function", getattr, (node, name))


def _guard_value(tr: ConcreteTracer, t: torch.Tensor, kind: str, message: str) -> None:
    """Guard ``t``'s whole value (and dtype: ``torch.equal`` compares across dtypes)."""
    observe = _value_observer(tr, t)
    with torch._C.DisableTorchFunction():
        dtype = t.dtype
    tr.specialise_tensor(kind, t, dtype, _attribute("dtype"), message=message)
    tr.specialise_tensor(kind, t, True, observe, message=message)


#: Tensor methods whose result reads only the tensor's dtype and device (not its values).
_METADATA_ONLY = frozenset({"new_tensor", "new_ones", "new_zeros", "new_full", "new_empty"})


def guard_inputs_of_constant(tr: ConcreteTracer, target: Any, args: Tuple[Any, ...],
                             kwargs: Dict[str, Any]) -> bool:
    """A call with an argument the graph cannot hold (a NumPy array) is baked as a
    constant: guard what it was computed from, the graph tensors among its arguments (their
    dtype and device for ``x.new_tensor(array)``, their whole value otherwise), so the
    constant is used only where eager would compute it again. False when nothing is guarded."""
    tensors = [a for a in (list(args) + list(kwargs.values()))
               if isinstance(a, torch.Tensor) and _watched(tr, a)]
    if not tensors:
        return False
    message = ("A value computed outside torch (a NumPy array argument) is a constant in the "
               "trace; fxtrace guards the tensors it was computed from at run time.")
    for t in tensors:
        if target in _METADATA_ONLY:
            with torch._C.DisableTorchFunction():
                meta = (("dtype", t.dtype), ("device", t.device))
            for kind, value in meta:
                tr.specialise_tensor(kind, t, value, _attribute(kind), message=message)
        else:
            _guard_value(tr, t, "value", message)
    return True


def _tolist_method(tr: ConcreteTracer, func: Callable[..., Any], args: Tuple[Any, ...],
                   kwargs: Dict[str, Any]) -> Any:
    """``t.tolist()``: the values feed Python, which the trace freezes; the tensor's whole
    value is guarded (torch.jit records the list as constants, silently wrong elsewhere)."""
    value = tr._untraced_call(func, args, kwargs)
    if _watched(tr, args[0]):
        message = ("Converting a tensor to a Python list might cause the trace to be "
                   "incorrect. fxtrace records the values as constants and guards the "
                   "tensor's value at run time.")
        if _has_nan(args[0]):
            _guard_value_with_nan(tr, args[0], "tolist", message)
        else:
            _guard_value(tr, args[0], "tolist", message=message)
    return value


def _has_nan(t: torch.Tensor) -> bool:
    with torch._C.DisableTorchFunction():
        return (t.is_floating_point() or t.is_complex()) and bool(t.isnan().any())


def _guard_value_with_nan(tr: ConcreteTracer, t: torch.Tensor, kind: str, message: str
                          ) -> None:
    """:func:`_guard_value` for a tensor holding NaN, which ``torch.equal`` never finds equal
    to itself (the guard failed on the trace's own example): the NaN positions are guarded,
    then the other values, with NaN replaced by 0 on both sides (infinities kept)."""
    frame, inf = tr.frame, float("inf")
    with torch._C.DisableTorchFunction():
        example = t.detach().clone()
        mask, filled = example.isnan(), torch.nan_to_num(example, 0.0, inf, -inf)
        dtype = t.dtype
    consts = tr._constant(mask, frame), tr._constant(filled, frame)
    tr.specialise_tensor(kind, t, dtype, _attribute("dtype"), message=message)
    tr.specialise_tensor(kind, t, True, lambda node: ("call_function", torch.equal, (
        tr._create(frame, "call_method", "isnan", (node,), {}, mask), consts[0])),
        message=message)
    tr.specialise_tensor(kind, t, True, lambda node: ("call_function", torch.equal, (
        tr._create(frame, "call_function", torch.nan_to_num, (node, 0.0, inf, -inf), {},
                   filled), consts[1])), message=message)


class NumpyExports:
    """Tensors whose memory left the capture as a NumPy array (``t.numpy()``), with their
    value and version counter then. NumPy writes into the array bypass torch (no recorded
    op, no version bump); :meth:`check` finds them by value and records the write as
    ``t.copy_(<the value written>)``: exact wherever the tensor's value guard (taken at
    ``.numpy()``) holds, since the write is then the one seen while tracing (fuzz F8)."""

    def __init__(self) -> None:
        self.pending: List[Tuple[torch.Tensor, torch.Tensor, int, Any]] = []

    def add(self, t: torch.Tensor, src: Any) -> None:
        with torch._C.DisableTorchFunction():
            self.pending.append((t, t.detach().clone(), t._version, src))

    def check(self, tr: ConcreteTracer) -> None:
        """Record the writes made through NumPy since the last check."""
        if not self.pending:
            return
        keep, written = [], []
        with torch._C.DisableTorchFunction():
            for t, before, version, src in self.pending:
                if t._version != version:
                    continue  # written by a recorded torch op: from here on torch tracks it
                if not _same_bits(t, before):
                    written.append((t, src))
                    continue
                keep.append((t, before, version, src))
        self.pending = keep
        for t, src in written:
            frame = tr.frame
            with torch._C.DisableTorchFunction():
                now = t.detach().clone()
            node = tr._create(frame, "call_method", "copy_",
                              (tr.resolve(t), tr._constant(now, frame)), {}, t, source=src)
            tr._bind_output(frame, node, t)
            tr._warn(src, "A tensor was written through its NumPy array: fxtrace records the "
                          "values written as a constant, right where the tensor's value guard "
                          "holds.")
            self.add(t, src)


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """``a`` equals ``b``, NaNs included (``torch.equal`` says NaN != NaN)."""
    if torch.equal(a, b):
        return True
    return a.is_floating_point() and bool(torch.equal(a.isnan(), b.isnan())) and \
        torch.equal(torch.nan_to_num(a, nan=0.0), torch.nan_to_num(b, nan=0.0))


def _numpy_method(tr: ConcreteTracer, func: Callable[..., Any], args: Tuple[Any, ...],
                  kwargs: Dict[str, Any]) -> Any:
    """``t.numpy()``: what NumPy computes from it is baked into the trace, so the tensor's
    value is guarded (only the example's value reproduces the baked result), and writes
    through the array are watched (:class:`NumpyExports`)."""
    value = tr._untraced_call(func, args, kwargs)
    if _watched(tr, args[0]):
        tr.numpy_exports.add(args[0], user_source(sys._getframe(1)))
        _guard_value(tr, args[0], "numpy",
                     message="Converting a tensor to a NumPy array might cause the trace to be "
                             "incorrect. fxtrace records what NumPy computes as constants and "
                             "guards the tensor's value at run time.")
    return value


_RANDOM_PREFIXES = ("rand", "bernoulli", "normal", "uniform", "exponential", "cauchy",
                    "log_normal", "geometric", "multinomial", "poisson", "rrelu")


def _draws(node: fx.Node) -> bool:
    """Whether ``node`` draws from the RNG (dropout only when its training flag is not False)."""
    if node.op not in ("call_function", "call_method"):
        return False
    target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
    name = target.lstrip("_")
    if "dropout" in name:
        training = node.kwargs.get("training", node.args[2] if len(node.args) > 2 else True)
        return training is not False
    return name.startswith(_RANDOM_PREFIXES)


def random_origin(node: fx.Node, limit: int = 2000) -> Optional[fx.Node]:
    """The nearest random op ``node``'s value depends on, if any: a guard on such a value
    holds only for the RNG state of the trace (dropout -> ``.item()`` -> branch)."""
    seen: set = set()
    todo = [node]
    while todo and len(seen) < limit:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        if _draws(n):
            return n
        todo.extend(n.all_input_nodes)
    return None


def keep_random_alive(tr: ConcreteTracer, graph: fx.Graph) -> None:
    """Random ops whose value reaches neither the output, a guard nor a state write (``x[:,
    torch.randperm(n)]`` left unused) still draw from the RNG in eager, and every later
    random value depends on that. TorchScript's dead-code elimination drops them, so each
    gets a use that cannot be dropped: a check ``numel(r) >= 0`` that always holds (fuzz F11)."""
    out = next(n for n in reversed(graph.nodes) if n.op == "output")
    todo = [out] + [n for n in graph.nodes if n.meta.get(GUARD) or n.meta.get(STATE_WRITE)]
    live: set = set()
    while todo:
        n = todo.pop()
        if n not in live:
            live.add(n)
            todo.extend(n.all_input_nodes)
    dead = [n for n in graph.nodes if n not in live and _draws(n)]
    frame = tr.frame
    with graph.inserting_before(out):
        for n in dead:
            src = n.meta.get(SOURCE)
            numel = tr._create(frame, "call_method", "numel", (n,), {}, 0, source=src)
            cond = tr._create(frame, "call_function", operator.ge, (numel, 0), {}, True,
                              source=src)
            keep = tr._create(frame, "call_function", torch._assert,
                              (cond, f"fxtrace keeps the unused random op at {src} so that "
                                     "the RNG stream is eager's"), {}, None, source=src)
            keep.meta[GUARD] = True


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
    "tolist": _tolist_method,
    "numpy": _numpy_method,
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
