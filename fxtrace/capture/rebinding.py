"""Buffers and tensor attributes that forward rebinds (``self.running = <computed tensor>``).

NOTE [Rebinding state]
Eager rebinds the attribute to whatever tensor comes, so the next call reads that object.
A trace carries it in one of two ways:

* ``copy_`` into the attribute's ``get_attr``, when the new value has the old one's dtype,
  shape and device: the trace keeps sharing storage with the model. The copy is right only
  while the values keep fitting, so their dtype, device, rank and sizes are guarded.
* a :func:`set_state` node otherwise (fuzz F10: a float32 buffer rebound to a float64
  value): lowering writes it as a TorchScript attribute assignment (``prim::SetAttr``), which
  rebinds the attribute of the traced module exactly as eager does, call after call, also
  after ``torch.jit.save``/``load``. Once a forward rebound an attribute this way, its later
  rebindings in that forward are assignments too (a ``copy_`` would write the old object).

The rebinding always targets the attribute itself, whichever node its current object resolves
to (fuzz F17: after ``self.count.add_(1)`` the buffer resolves to the ``add_`` node). The
model's own objects are put back when the capture ends (:mod:`.leftover_state`).
"""
from __future__ import annotations

import dataclasses
import keyword
import operator
import sys
import types
from typing import TYPE_CHECKING, Any, List, Optional, Tuple

import torch
import torch.fx as fx

from .meta import STATE_WRITE, TENSOR_META
from .source import user_source

if TYPE_CHECKING:
    from .concrete import ConcreteTracer

__all__ = ["set_state", "rebind_state", "owner_and_name", "StateCopy", "assign_aliased_copies",
           "forget_rebound_values"]


def owner_and_name(node: fx.Node) -> "tuple[str, str]":
    """``(owner path, attribute name)`` of a :func:`set_state` node (owner "" = the module
    whose graph holds the node)."""
    path = node.args[0]
    assert isinstance(path, str)
    owner, _, name = path.rpartition(".")
    return owner, name


def _calling_module() -> Optional[torch.nn.Module]:
    """The module whose fx code runs this call: ``self`` of a GraphModule's generated
    ``forward``, or the module an ``fx.Interpreter`` runs. The fx graph has no value for the
    module itself (``get_attr`` reads attributes of it), so the Python fallback finds it here;
    the TorchScript the trace compiles to assigns ``self.<path>`` directly."""
    frame: Optional[types.FrameType] = sys._getframe(2)
    for _ in range(4):
        if frame is None:
            break
        owner = frame.f_locals.get("self")
        if isinstance(owner, fx.Interpreter):
            return owner.module
        if isinstance(owner, torch.nn.Module):
            return owner
        frame = frame.f_back
    return None


def set_state(path: str, value: torch.Tensor) -> None:
    """Rebind the tensor attribute ``path`` (relative to the running module) to ``value``
    (see NOTE [Rebinding state]). The target of the fx node lowering writes as an assignment."""
    module = _calling_module()
    if module is None:
        raise RuntimeError(f"fxtrace: set_state('{path}') called outside a module's code")
    owner_path, _, name = path.rpartition(".")
    owner = module.get_submodule(owner_path) if owner_path else module
    if name in owner._buffers:
        owner._buffers[name] = value
    else:
        owner.__dict__[name] = value


def _spellable(path: str) -> bool:
    """Whether TorchScript can assign ``self.<path>`` (identifiers only)."""
    return all(part.isidentifier() and not keyword.iskeyword(part) for part in path.split("."))


def _target(tracer: "ConcreteTracer", frame: Any, old: torch.Tensor, is_buffer: bool
            ) -> Optional[fx.Node]:
    """The ``get_attr`` of the attribute being rebound, or None when the trace has none.
    A buffer is found by its path even when its object resolves to another node (F17)."""
    node = tracer._find(old, frame)
    if node is not None and node.op == "get_attr":
        return node
    if is_buffer:
        attr = tracer._attr_path(old, frame)
        if attr is not None:
            return tracer._create(frame, "get_attr", attr, (), {}, old)
    return None


@dataclasses.dataclass
class StateCopy:
    """A rebinding recorded as ``copy_`` into ``target`` (and the guard nodes before it)."""

    key: Tuple[int, int, str]
    node: fx.Node
    target: fx.Node
    guards: List[fx.Node]


def _fit_guards(tracer: "ConcreteTracer", frame: Any, target: fx.Node, written: fx.Node,
                value: torch.Tensor, name: str, src: Any) -> List[fx.Node]:
    """Assert, before the ``copy_``, that the value fits the attribute's tensor (dtype,
    device, sizes): only then is a copy what eager's rebinding does (F10). Compared with the
    attribute as it is at run time, not with constants: a forward that also rebinds it by
    assignment changes its dtype from call to call. Returns the nodes created."""
    created: List[fx.Node] = []
    with torch._C.DisableTorchFunction():
        seen = {"dtype": value.dtype, "device": value.device, "shape": tuple(value.shape)}
    for what, current in seen.items():
        reads = [tracer._create(frame, "call_method", "size", (n,), {}, current, source=src)
                 if what == "shape" else
                 tracer._create(frame, "call_function", getattr, (n, what), {}, current,
                                source=src) for n in (written, target)]
        cond = tracer._create(frame, "call_function", operator.eq, tuple(reads), {}, True,
                              source=src)
        tracer._guard(frame, cond, what, current, src,
                      f"buffer '{name}' rebound to a tensor of its own {what}")
        created += reads + [cond, *cond.users]
    return created


def _stands_for_attribute(tracer: "ConcreteTracer", old: torch.Tensor, value: torch.Tensor
                          ) -> None:
    """From here on ``value`` is the attribute ``old`` was: a later frame (the module called
    again, its parent reading ``self.child.n``) reads it as that attribute (``get_attr``),
    which at run time holds what this rebinding wrote. The value is kept alive until the
    capture ends, so its id cannot be reused by another tensor meanwhile."""
    names = tracer.param_names.get(id(old))
    if names and id(value) not in tracer.param_names:
        tracer.param_names[id(value)] = names
        tracer.rebound_values.append(value)


def forget_rebound_values(tracer: "ConcreteTracer") -> None:
    """Undo :func:`_stands_for_attribute` when the capture ends."""
    for value in tracer.rebound_values:
        tracer.param_names.pop(id(value), None)
    tracer.rebound_values.clear()


def rebind_state(tracer: "ConcreteTracer", module: torch.nn.Module, name: str,
                 value: torch.Tensor) -> bool:
    """``self.<name> = <computed tensor>`` where ``<name>`` holds a buffer or a tensor the
    trace reads as a constant: record the rebinding (see NOTE [Rebinding state]), so the trace
    carries the state from call to call as eager does. False when there is nothing to carry."""
    old = module.__dict__.get(name, module._buffers.get(name))
    if not isinstance(old, torch.Tensor) or isinstance(old, torch.nn.Parameter):
        return False
    frame = tracer.frame
    key = (id(frame.graph), id(module), name)
    target = tracer.rebound.get(key)  # rebound before in this forward (fuzz F12)
    is_buffer = module._buffers.get(name) is old
    if target is None and not is_buffer and frame.lookup(old) is None:
        return False  # never read by the trace: nothing to carry
    if target is None:
        target = _target(tracer, frame, old, is_buffer)
        if target is None:
            return False
    with torch._C.DisableTorchFunction():  # comparing metadata must not be recorded
        fits = (old.shape, old.dtype, old.device) == (value.shape, value.dtype, value.device)
    assign = not fits or key in tracer.assigned_state
    assert isinstance(target.target, str)
    if assign and not _spellable(target.target):
        return False  # no TorchScript spelling of the attribute: warned by the caller
    tracer.rebound_objects.setdefault((id(module), name), (module, name, old))
    tracer.rebound[key] = target
    _stands_for_attribute(tracer, old, value)
    src = user_source(sys._getframe(2))
    written = tracer.resolve(value)
    if assign:
        node = tracer._create(frame, "call_function", set_state, (target.target, written), {},
                              None, source=src)
        node.meta[STATE_WRITE] = True
        tracer.assigned_state.add(key)
        return True
    guards = _fit_guards(tracer, frame, target, written, value, name, src) if tracer.guards else []
    node = tracer._create(frame, "call_method", "copy_", (target, written), {}, value,
                          source=src)
    node.meta[STATE_WRITE] = True
    # From here on eager's ``value`` *is* the attribute: an in-place op on it writes the
    # attribute, so the object now stands for the copy_'s result, the attribute (fuzz F18).
    frame.bind(value, node)
    tracer.state_copies.append(StateCopy(key, node, target, guards))
    return True


#: Calls whose result may share the memory of their first argument: a view of a buffer
#: taken before a ``copy_`` into it sees the written values, where eager's view keeps the old.
_VIEWS = frozenset({
    "view", "view_as", "reshape", "reshape_as", "expand", "expand_as", "squeeze", "unsqueeze",
    "flatten", "unflatten", "transpose", "permute", "t", "narrow", "select", "getitem",
    "__getitem__", "detach", "contiguous", "as_strided", "unfold", "diagonal", "split", "chunk",
    "unbind", "real", "imag", "to", "type", "type_as", "float", "double", "half", "int",
    "long", "bool", "movedim", "swapaxes", "swapdims", "alias", "view_as_real", "ravel",
})


def _target_name(node: fx.Node) -> str:
    return node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")


def _aliases(user: fx.Node, node: fx.Node, ignored: set) -> bool:
    """Whether ``user``'s result may be ``node``'s tensor or share its memory: a view, an
    in-place op on it, or an earlier rebinding's ``copy_`` into it (which returns it, and
    stands for the rebound object from then on: fuzz F18)."""
    name = _target_name(user)
    if user in ignored:
        return name == "copy_" and user.args[0] is node
    in_place = name.endswith("_") and not name.startswith("_") and user.args[:1] == (node,)
    return in_place or name in _VIEWS


def _read_after(copy: StateCopy, ignored: set) -> bool:
    """Whether the old tensor (or a view of it) is used after the ``copy_`` overwrote it."""
    order = {n: i for i, n in enumerate(copy.node.graph.nodes)}
    at = order[copy.node]
    aliases, todo = set(), [copy.target]
    while todo:
        n = todo.pop()
        if n in aliases:
            continue
        aliases.add(n)
        todo.extend(u for u in n.users if order[u] < at and _aliases(u, n, ignored))
    return any(order[u] > at and u not in ignored for n in aliases for u in n.users)


def assign_aliased_copies(copies: List[StateCopy]) -> None:
    """A ``copy_`` rebinding is only right when nothing reads the old tensor afterwards
    (``old = self.count; self.count = self.count + 1; return old``): eager's old object
    keeps its values. Those rebindings, and the others of the same attribute in that forward,
    become assignments (NOTE [Rebinding state]); their fit guards go."""
    ignored = {n for c in copies for n in (c.node, *c.guards)}
    unsafe = {c.key for c in copies if _read_after(c, ignored)}
    for c in copies:
        path = c.target.target
        if c.key not in unsafe or not isinstance(path, str) or not _spellable(path):
            continue
        written = c.node.args[1]
        assert isinstance(written, fx.Node)
        c.node.replace_all_uses_with(written)  # an assignment rebinds to the value itself
        c.node.op, c.node.target, c.node.args = "call_function", set_state, (path, written)
        c.node.meta[TENSOR_META] = None
        for n in reversed(c.guards):
            if not n.users:
                n.graph.erase_node(n)
