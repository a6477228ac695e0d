"""One value tree: every walk over inputs, outputs and call results goes through here.

NOTE [Value tree]
A value is a *container* or a *leaf*. Containers are the structures TorchScript can take and
return: ``tuple``, ``list``, ``dict`` (any subclass: ``OrderedDict``, ``defaultdict``), named
tuples and torch's ``return_types`` (``torch.max(x, 1)``). Everything else is a leaf: tensors,
numbers, strings, None, devices, dtypes, and the tuple subclasses registered as *values*
rather than structure (:func:`register_leaf_type`: ``torch.Size``, fxtrace's live sizes).
Every room that walks a structure (capture binding call results, lowering writing
signatures, checks comparing outputs, tables printing them) uses these functions, so a new
container type is taught here once.

The walk is written for the capture's hot path (it runs on every recorded call's arguments):
plain recursion with the common types tested first, no registry look-ups.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator, List, Optional, Tuple

import torch

__all__ = ["register_leaf_type", "Spec", "LEAF", "is_container", "is_namedtuple", "children", "leaves", "any_leaf",
           "flatten", "unflatten", "map_leaves", "leaves_with_paths", "rebuild", "plain"]


#: Tuple subclasses that are values, not structure.
_LEAF_TUPLES: set = set()


def register_leaf_type(cls: type) -> None:
    """Treat instances of the tuple subclass ``cls`` as leaves (a size is one value)."""
    _LEAF_TUPLES.add(cls)


def is_namedtuple(value: Any) -> bool:
    """A named tuple instance (``collections.namedtuple`` or ``typing.NamedTuple``)."""
    return isinstance(value, tuple) and hasattr(type(value), "_fields")


def is_container(value: Any) -> bool:
    """Whether ``value`` is structure (walked into) rather than a leaf (see NOTE [Value tree])."""
    cls = type(value)
    if cls is tuple or cls is list or cls is dict:
        return True
    if isinstance(value, tuple):
        return cls not in _LEAF_TUPLES
    return isinstance(value, (list, dict))


def children(value: Any) -> List[Tuple[Any, Any]]:
    """``(key, child)`` of a container, in order: index for sequences, key for dicts."""
    if isinstance(value, dict):
        return list(value.items())
    return list(enumerate(value))


def rebuild(like: Any, items: List[Any]) -> Any:
    """A container of ``like``'s type holding ``items`` (values in ``children`` order)."""
    cls = type(like)
    if cls is tuple or cls is list:
        return cls(items)
    if isinstance(like, dict):
        out = dict(zip(like.keys(), items))
        if cls is dict:
            return out
        return _rebuild_mapping(cls, out)
    if is_namedtuple(like):
        return cls(*items)
    if isinstance(like, list):
        return list(items)
    try:  # torch.return_types and other structseqs take one sequence
        return cls(items)
    except TypeError:
        return tuple(items)


def _rebuild_mapping(cls: type, items: dict) -> Any:
    """A ``cls`` (dict subclass) holding ``items``, or a plain dict where ``cls`` cannot be
    built from its items (a dataclass-based mapping such as transformers' ``ModelOutput``
    is built from keywords; a ``defaultdict`` keeps no factory: TorchScript has none)."""
    if cls is dict:
        return items
    try:
        make: Any = cls
        if dataclasses.is_dataclass(cls):
            return make(**items)
        new = make()
        new.update(items)
        return new
    except Exception:  # noqa: BLE001 - any mapping the class refuses stays a plain dict
        return dict(items)


def leaves(value: Any) -> List[Any]:
    """Every leaf of ``value``, depth first, in ``children`` order.

    A list, not a generator: the capture asks this of every recorded call's arguments, and
    appending through plain recursion costs far less than nested generator frames."""
    out: List[Any] = []
    _collect(value, out)
    return out


def _collect(value: Any, out: List[Any]) -> None:
    cls = type(value)
    if cls is tuple or cls is list:
        for v in value:
            kind = type(v)
            if kind is tuple or kind is list or kind is dict or is_container(v):
                _collect(v, out)
            else:
                out.append(v)
    elif cls is dict:
        _collect(tuple(value.values()), out)
    elif is_container(value):
        for _, v in children(value):
            _collect(v, out)
    else:
        out.append(value)


def any_leaf(predicate: Callable[[Any], bool], value: Any) -> bool:
    """Whether some leaf of ``value`` satisfies ``predicate``."""
    return any(predicate(v) for v in leaves(value))


def map_leaves(fn: Callable[[Any], Any], value: Any) -> Any:
    """``value`` with every leaf replaced by ``fn(leaf)``; containers keep their types."""
    cls = type(value)
    if cls is tuple or cls is list:
        return cls([map_leaves(fn, v) for v in value])
    if cls is dict:
        return {k: map_leaves(fn, v) for k, v in value.items()}
    if is_container(value):
        return rebuild(value, [map_leaves(fn, v) for _, v in children(value)])
    return fn(value)


def plain(value: Any) -> Any:
    """``value`` with named tuples as plain tuples and dict subclasses as dicts: what a
    TorchScript function returns for the structure Python returned."""
    if not is_container(value):
        return value
    items = [plain(v) for _, v in children(value)]
    if isinstance(value, dict):
        return dict(zip(value.keys(), items))
    return list(items) if isinstance(value, list) else tuple(items)


def leaves_with_paths(value: Any, root: str = "output") -> List[Tuple[str, Any]]:
    """Every leaf with the path that reaches it: ``output[0]['logits']``."""
    out: List[Tuple[str, Any]] = []

    def walk(v: Any, path: str) -> None:
        if is_container(v):
            for k, child in children(v):
                walk(child, f"{path}[{k!r}]" if isinstance(v, dict) else f"{path}[{k}]")
        else:
            out.append((path, v))
    walk(value, root)
    return out


@dataclasses.dataclass(frozen=True)
class Spec:
    """The structure of a value with its leaves taken out: what a trace records about its
    inputs and outputs. ``type`` is None for a leaf (written ``*``)."""

    type: Optional[type]
    keys: Tuple[Any, ...] = ()
    children: Tuple["Spec", ...] = ()

    def walk(self) -> Iterator["Spec"]:
        """This structure and every structure inside it, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()

    @property
    def num_leaves(self) -> int:
        return 1 if self.type is None else sum(c.num_leaves for c in self.children)

    def __str__(self) -> str:
        if self.type is None:
            return "*"
        inner = [str(c) for c in self.children]
        if issubclass(self.type, dict):
            return "{" + ", ".join(f"{k!r}: {c}" for k, c in zip(self.keys, inner)) + "}"
        if issubclass(self.type, list):
            return "[" + ", ".join(inner) + "]"
        name = "" if self.type is tuple else self.type.__name__
        return f"{name}(" + ", ".join(inner) + ("," if len(inner) == 1 and not name else "") + ")"


LEAF = Spec(None)


def flatten(value: Any) -> Tuple[List[Any], Spec]:
    """The leaves of ``value`` and its structure; ``unflatten(*flatten(v)) == v``."""
    out: List[Any] = []

    def walk(v: Any) -> Spec:
        if not is_container(v):
            out.append(v)
            return LEAF
        items = children(v)
        return Spec(type(v), tuple(k for k, _ in items), tuple(walk(c) for _, c in items))
    spec = walk(value)
    return out, spec


def unflatten(values: List[Any], spec: Spec) -> Any:
    """Rebuild a value of structure ``spec`` from its leaves (in ``flatten`` order)."""
    it = iter(values)

    def build(s: Spec) -> Any:
        if s.type is None:
            return next(it)
        items = [build(c) for c in s.children]
        if issubclass(s.type, dict):
            return _rebuild_mapping(s.type, dict(zip(s.keys, items)))
        if issubclass(s.type, list):
            return items if s.type is list else s.type(items)
        if s.type is tuple:
            return tuple(items)
        cls: Any = s.type
        if hasattr(cls, "_fields"):
            return cls(*items)
        try:  # torch.return_types and other structseqs take one sequence
            return cls(items)
        except TypeError:
            return tuple(items)
    result = build(spec)
    if next(it, _END) is not _END:
        raise ValueError(f"unflatten: more leaves than the structure {spec} holds")
    return result


_END = object()


register_leaf_type(torch.Size)
