"""Calls normalised against the TorchScript schema they compile to.

NOTE [Schema normalisation]
The capture records calls as the user's Python spelled them, and Python's argument parser
accepts more than TorchScript's schema matcher: sizes as separate arguments
(``torch.randn(2, 3)``, ``x.new_empty(2, 3)``), ints where a schema declares a float
(``x.normal_(0, 1)``), ``input=`` for ``self``, Python-only keywords (``requires_grad=`` of
the factories, ``as_tuple=`` of ``nonzero``), and dtype-conversion methods with arguments
(``x.byte(memory_format=...)``), which TorchScript only has as argument-less builtins, if at
all. Before a call is written, it is matched against ``aten::<name>``'s schemas (TorchScript's
own list, ``torch._C._jit_get_schemas_for_operator``):

1. if the call as recorded binds to one schema exactly, it is written unchanged;
2. otherwise the first schema it binds to with the conversions above is chosen, and the call
   is rewritten in that schema's spelling: positional arguments in schema order, keyword-only
   ones by their schema names, ints as floats where the schema wants a float;
3. a call no schema accepts is written unchanged (TorchScript may still know a special form;
   if not, its compile error names the user's line).

Invariant: a rewrite only changes how the same values reach the same aten operator; every
value the call was recorded with is passed, or was a Python-only default (``requires_grad=False``,
``as_tuple=False``) whose effect is reproduced.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.fx as fx

from ..capture.meta import TENSOR_META, VALUE_TYPE, TensorMeta

__all__ = ["Expr", "Normalised", "binds_as_recorded", "normalise_call", "DTYPE_METHODS",
           "aten_name"]

#: Tensor methods that convert the dtype; TorchScript has some only as argument-less
#: builtins and some (``bool``, ``bfloat16``, ``cfloat``, ...) not at all.
DTYPE_METHODS: Dict[str, torch.dtype] = {
    "byte": torch.uint8, "char": torch.int8, "short": torch.int16, "int": torch.int32,
    "long": torch.int64, "half": torch.float16, "float": torch.float32,
    "double": torch.float64, "bfloat16": torch.bfloat16, "bool": torch.bool,
    "cfloat": torch.complex64, "cdouble": torch.complex128, "chalf": torch.complex32,
}


@dataclasses.dataclass(frozen=True)
class Expr:
    """TorchScript text standing for a value: ``text`` with each ``{}`` replaced by the
    written form of the matching entry of ``values`` (``float({})`` for a traced int passed
    where a schema declares a float)."""

    text: str
    values: Tuple[Any, ...] = ()


@dataclasses.dataclass
class Normalised:
    """A call in its schema's spelling, and what must follow it (``.requires_grad_()``)."""

    args: Tuple[Any, ...]
    kwargs: Dict[str, Any]
    requires_grad: bool = False


class _Any:
    """A value whose kind lowering cannot tell: it matches every type, unconverted."""


_ANY = _Any()
_FAIL = object()


@functools.lru_cache(maxsize=None)
def _schemas(qualified: str) -> Tuple[Any, ...]:
    try:
        return tuple(torch._C._jit_get_schemas_for_operator(qualified))
    except RuntimeError:
        return ()


def aten_name(fn: Any) -> Optional[str]:
    """``aten::name`` TorchScript compiles a torch callable to, or None (Python-defined)."""
    if isinstance(fn, torch._ops.OpOverload):
        fn = fn.overloadpacket
    if isinstance(fn, torch._ops.OpOverloadPacket):
        return fn._qualified_op_name
    try:
        from torch.jit._builtins import _find_builtin
        name = _find_builtin(fn)
    except Exception:  # noqa: BLE001 - unhashable or odd callables are simply not builtins
        return None
    return name if isinstance(name, str) and name.startswith("aten::") else None


def _kind(value: Any) -> Any:
    """The Python type lowering knows for ``value``: int, float, bool, torch.Tensor, ...,
    a list of kinds for a literal list, or ``_ANY``."""
    if isinstance(value, fx.Node):
        vt = value.meta.get(VALUE_TYPE)
        meta = value.meta.get(TENSOR_META)
        if isinstance(meta, TensorMeta):
            return torch.Tensor
        if vt in (int, float, bool, complex, str, torch.dtype, torch.device, torch.layout,
                  torch.memory_format):
            return vt
        if isinstance(meta, (tuple, list)) and meta and all(isinstance(m, TensorMeta) for m in meta):
            return [torch.Tensor]
        return _ANY
    if isinstance(value, Expr):
        return _ANY
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return [_kind(v) for v in value]
    if value is None:
        return type(None)
    return type(value)


_ENUMS = (torch.dtype, torch.layout, torch.memory_format)


def _fits(value: Any, kind: Any, t: Any, convert: bool, n: Optional[int]) -> Any:
    """``value`` (of ``kind``) as it must be written for a schema argument of type ``t``,
    or ``_FAIL``; without ``convert`` only values that fit as they are."""
    if kind is _ANY:
        return value
    k = t.kind()
    if k == "OptionalType":
        return value if kind is type(None) else _fits(value, kind, t.getElementType(), convert, n)
    if kind is type(None):
        return _FAIL
    if k == "TensorType":
        return value if kind is torch.Tensor else _FAIL
    if k in ("IntType", "SymIntType"):
        if kind is int or kind in _ENUMS:
            return value
        return _FAIL
    if k == "FloatType":
        if kind is float:
            return value
        if convert and kind is int:
            return float(value) if not isinstance(value, fx.Node) else Expr("float({})", (value,))
        return _FAIL
    if k == "NumberType":
        return value if kind in (int, float, bool, complex) else _FAIL
    if k == "ComplexType":
        return value if kind is complex else _FAIL
    if k == "BoolType":
        return value if kind is bool else _FAIL
    if k == "StringType":
        return value if kind is str else _FAIL
    if k == "DeviceObjType":
        if kind is torch.device:
            return value
        return torch.device(value) if convert and kind is str else _FAIL
    if k == "ListType":
        return _fits_list(value, kind, t.getElementType(), convert, n)
    if k == "GeneratorType":
        return _FAIL
    return value  # types lowering does not model: let TorchScript decide


def _fits_list(value: Any, kind: Any, elem: Any, convert: bool, n: Optional[int]) -> Any:
    if isinstance(kind, list):
        if isinstance(value, fx.Node):  # a node holding a list of tensors
            return value if elem.kind() in ("TensorType", "OptionalType") else _FAIL
        items = [_fits(v, k, elem, convert, None) for v, k in zip(value, kind)]
        if any(i is _FAIL for i in items):
            return _FAIL
        if elem.kind() == "OptionalType" and elem.getElementType().kind() == "TensorType" \
                and type(None) not in kind:
            # TorchScript types [a, b] as List[Tensor], which Tensor?[] does not accept
            return Expr("annotate(List[Optional[Tensor]], {})", (list(items),)) if convert else _FAIL
        return list(items) if convert else value
    if n is not None and elem.kind() in ("IntType", "SymIntType") and kind is int:
        return value  # int[2] stride=1: TorchScript broadcasts a single int
    return _FAIL


def _bind(schema: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any], convert: bool
          ) -> Optional[Normalised]:
    """``args``/``kwargs`` bound to ``schema`` (the receiver of a method call is ``args[0]``)."""
    params = list(schema.arguments)
    positional = [p for p in params if not p.kwarg_only]
    kwargs = dict(kwargs)
    requires_grad: Optional[bool] = False
    if convert:
        requires_grad = _python_only(kwargs, {p.name for p in params})
        if requires_grad is None:
            return None
        # Python wrappers (Tensor.norm, ...) pass None for "not given"; a schema argument
        # that cannot be None is then simply not given
        declared = {p.name: p.type.kind() for p in params}
        kwargs = {k: v for k, v in kwargs.items()
                  if not (v is None and declared.get(k) != "OptionalType")}
        outs = [p.name for p in params if p.kwarg_only and p.alias_info is not None
                and p.alias_info.is_write]
        if isinstance(kwargs.get("out"), (tuple, list)) and "out" not in declared and \
                len(outs) == len(kwargs["out"]) > 1:  # Python's out=(a, b): one per output
            kwargs.update(zip(outs, kwargs.pop("out")))
        if "input" in kwargs and "input" not in {p.name for p in params} and positional \
                and positional[0].name == "self":
            kwargs["self"] = kwargs.pop("input")
    args = _pack_sizes(positional, args, last_only=not convert)
    if len(args) > len(positional):
        return None
    out_args: List[Any] = []
    out_kwargs: Dict[str, Any] = {}
    by_keyword = False
    for i, p in enumerate(params):
        if i < len(args) and not p.kwarg_only:
            value = args[i]
        elif p.name in kwargs:
            value = kwargs.pop(p.name)
        elif p.has_default_value():
            by_keyword = True  # a skipped positional: later ones must be named
            continue
        else:
            return None
        fitted = _fits(value, _kind(value), p.type, convert, p.N)
        if fitted is _FAIL:
            return None
        if p.kwarg_only or by_keyword:
            out_kwargs[p.name] = fitted
        else:
            out_args.append(fitted)
    if kwargs:
        return None
    return Normalised(tuple(out_args), out_kwargs, bool(requires_grad))


def _python_only(kwargs: Dict[str, Any], names: set) -> Optional[bool]:
    """Drop keywords Python's binding adds to the schema; None if one cannot be dropped.
    Returns whether ``requires_grad=True`` must be applied after the call."""
    requires_grad = False
    if "requires_grad" in kwargs and "requires_grad" not in names:
        value = kwargs.pop("requires_grad")
        if not isinstance(value, bool):
            return None
        requires_grad = value
    if "as_tuple" in kwargs and "as_tuple" not in names:
        if kwargs.pop("as_tuple") is not False:
            return None
    return requires_grad


def _pack_sizes(positional: List[Any], args: Tuple[Any, ...], last_only: bool
                ) -> Tuple[Any, ...]:
    """Python's ``f(2, 3)`` for ``f(int[] size)``: the trailing ints become one list.
    TorchScript packs them itself only for the last positional argument (``last_only``)."""
    for i, p in enumerate(positional):
        if last_only and i != len(positional) - 1:
            continue
        if i >= len(args):
            break
        t = p.type
        if t.kind() == "OptionalType":
            t = t.getElementType()
        if t.kind() != "ListType" or t.getElementType().kind() not in ("IntType", "SymIntType"):
            continue
        rest = args[i:]
        if all(_kind(a) is int for a in rest) and (len(rest) > 1 or p.N is None):
            return (*args[:i], list(rest))
    return args


def _shape_key(value: Any) -> Any:
    """What binding without conversion reads of ``value``: its kind, element by element for a
    literal list, and whether it is a node (a node holding a list binds differently)."""
    if isinstance(value, fx.Node):
        kind = _kind(value)
        return ("node", tuple(kind) if isinstance(kind, list) else kind)
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return ("list", tuple(_shape_key(v) for v in value))
    return _kind(value)


#: (qualified, argument shape keys) -> binds as recorded. Binding without conversion depends
#: on the kinds only (``_fits`` returns the value itself or fails), so one answer serves every
#: call of that spelling: a chain of 8,000 ``mul``/``add`` calls binds two spellings, not
#: 8,000 x (number of schemas) times.
_BINDS_AS_RECORDED: Dict[Any, bool] = {}


def binds_as_recorded(qualified: str, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> bool:
    """Whether the call binds to one of ``qualified``'s schemas as it is spelled."""
    try:
        key: Any = (qualified, tuple(_shape_key(a) for a in args),
                    tuple((k, _shape_key(v)) for k, v in kwargs.items()))
        hit = _BINDS_AS_RECORDED.get(key)
    except TypeError:  # an unhashable kind: bind without the cache
        key, hit = None, None
    if hit is not None:
        return hit
    found = any(_bind(s, args, kwargs, convert=False) is not None for s in _schemas(qualified))
    if key is not None and len(_BINDS_AS_RECORDED) < 100000:
        _BINDS_AS_RECORDED[key] = found
    return found


def normalise_call(qualified: str, args: Tuple[Any, ...], kwargs: Dict[str, Any]
                   ) -> Optional[Normalised]:
    """``args``/``kwargs`` of a call to ``qualified`` (``aten::name``) in the spelling of
    the first schema they bind to, or None when they bind as recorded or not at all."""
    schemas = _schemas(qualified)
    if not schemas:
        return None
    if binds_as_recorded(qualified, args, kwargs):
        return None
    for s in schemas:
        bound = _bind(s, args, kwargs, convert=True)
        if bound is not None:
            return bound
    return None
