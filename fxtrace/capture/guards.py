"""Specialisations and guards: every value a capture freezes is recorded, warned and checked.

Every guard is built by :meth:`Guards.guard_equal`: read the value again from the graph
(``seen``), compare it with what the capture saw, and assert the comparison at run time with
the message of :func:`fxtrace.capture.meta.guard_message`. ``guards=False`` keeps only the
structural ones (how many items a list has), which torch.jit checks too.
"""
from __future__ import annotations

import dis
import linecache
import operator
import sys
import warnings
from typing import Any, Callable, Dict, Optional, Tuple

import torch
import torch.fx as fx

from ..errors import TracerWarning
from .frames import Frame, short
from .meta import ADVICE, GUARD, SOURCE, SourceLoc, Specialisation, frozen_warning, guard_message
from .methods import random_origin
from .recorder import Recorder
from .source import in_torch_library, is_internal_file, user_source
from .values import TracedSize, is_traced, untraced

__all__ = ["Guards", "LIST_RESULTS"]

# Calls returning a list whose length depends on the input's values or sizes.
LIST_RESULTS = frozenset({
    "split", "split_with_sizes", "chunk", "unbind", "tensor_split", "unsafe_split",
    "unsafe_chunk", "hsplit", "vsplit", "dsplit", "unsafe_split_with_sizes", "unbind_copy",
    "split_copy", "split_with_sizes_copy",
})


_OP_TEXT = {operator.eq: "==", operator.ne: "!=", operator.lt: "<", operator.le: "<=",
            operator.gt: ">", operator.ge: ">="}


def _value_name(node: fx.Node) -> str:
    """The name a user knows a graph value by: an input's parameter name, else the node's."""
    return str(node.target) if node.op == "placeholder" else node.name


def _rank_of(value: Any) -> Optional[str]:
    """The name of the tensor whose rank ``value`` (a graph node) reads: ``x.dim()``,
    ``x.ndim``, ``len(x.shape)``; None for any other value."""
    if not isinstance(value, fx.Node) or not value.args or not isinstance(value.args[0], fx.Node):
        return None
    base = value.args[0]
    if value.op == "call_method" and value.target in ("dim", "ndimension"):
        return _value_name(base)
    if value.op == "call_function" and value.target is getattr and value.args[1:] == ("ndim",):
        return _value_name(base)
    if value.op == "call_function" and value.target is len and base.args and \
            isinstance(base.args[0], fx.Node) and base.target in ("size", getattr):
        return _value_name(base.args[0])
    return None


def _training_read(cls: type) -> Optional[SourceLoc]:
    """The first line of ``cls``'s methods (``forward`` first) that reads ``self.training``,
    else the line defining ``forward``; None without Python source."""
    methods = [getattr(cls, "forward", None)] + [
        vars(k)[name] for k in cls.__mro__ if k not in (torch.nn.Module, object)
        for name in vars(k)]
    first: Optional[SourceLoc] = None
    for member in methods:
        code = getattr(getattr(member, "__func__", member), "__code__", None)
        if code is None or is_internal_file(code.co_filename):
            continue
        if first is None:
            first = _loc(code, code.co_firstlineno)
        for ins in dis.get_instructions(code):
            if ins.argval == "training" and ins.opname.startswith("LOAD_") and \
                    ins.positions is not None and ins.positions.lineno is not None:
                return _loc(code, ins.positions.lineno)
    return first


def _loc(code: Any, line: int) -> SourceLoc:
    return SourceLoc(code.co_filename, line, code.co_name,
                     linecache.getline(code.co_filename, line).strip())


class Guards(Recorder):
    """The specialisation and guard layer of the concrete tracer."""

    def _guard_unconsumed_reads(self, frame: Frame) -> None:
        """Guard every metadata read that leaked into Python (see NOTE [Metadata])."""
        for read in frame.reads:
            if read.consumed:
                continue
            with frame.graph.inserting_before(read.after.next):
                self.guard_equal(frame, ("call_function", getattr, (read.tensor, read.kind)),
                                 read.value, read.kind, read.source, f"{read.kind} {read.value}")

    def _guard_training(self, frame: Frame, module: Optional[torch.nn.Module], why: str) -> None:
        """``module``'s training flag decided something at capture time (a branch on
        ``self.training``, a dropout or batch_norm call): guard it, so ``.eval()``/``.train()``
        on the trace raises instead of silently keeping the traced mode."""
        if module is None or id(module) in frame.training_guarded:
            return
        prefix = frame.path + "." if frame.path else ""
        if module is frame.module:
            attr = "training"
        else:
            names = [q for q in self.module_names.get(id(module), ()) if q.startswith(prefix)
                     and frame.module is not None]
            if not names:
                self.specialise_plain("training", module.training,
                                      f"the training flag of {type(module).__name__} ({why})")
                return
            attr = names[0][len(prefix):] + ".training"
        frame.training_guarded.add(id(module))
        src = user_source(sys._getframe(2))
        if frame.parent is None and module is frame.module:
            # the root is called by fxtrace itself: the user's line is where its code reads
            # the flag, not the caller's ``fxtrace.trace(...)``
            src = _training_read(type(module)) or src
        value = bool(module.__dict__["training"])
        mode = "training" if value else "eval"
        self.guard_equal(frame, ("get_attr", attr, ()), value, "training", src,
                         f"the module in {mode} mode ({why}); trace it again in the mode you "
                         "call it in")

    def _guard_length(self, frame: Frame, node: fx.Node, out: Any) -> None:
        """Results whose number of items depends on the input (``split``, ``chunk``,
        ``unbind``, ...) are lists in TorchScript: check the count the trace unpacked."""
        name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
        if name not in LIST_RESULTS:
            return
        self.guard_equal(frame, ("call_function", len, (node,)), len(out), "length",
                         node.meta.get(SOURCE), f"{name}() giving {len(out)} parts",
                         structural=True)

    # -- specialisations ------------------------------------------------------------------
    def specialise_scalar(self, kind: str, op: Callable[[Any, Any], Any], args: Tuple[Any, Any],
                          result: Any) -> None:
        """A traced number left the graph through ``op(*args) == result``: record and guard."""
        if self.finished:
            return
        src = user_source(sys._getframe(2))
        frame = self.frame
        fx_args = tuple(self.resolve(a) if is_traced(a) else untraced(a) for a in args)
        cond = self._create(frame, "call_function", op, fx_args, {}, result, source=src)
        if result is not True:
            cond = self._create(frame, "call_function", operator.not_, (cond,), {}, True, source=src)
        ranked = _rank_of(fx_args[0])
        if kind == "compare":
            text = _OP_TEXT.get(op, op.__name__)
            detail = f"{untraced(args[0])} {text} {untraced(args[1])} is {result}"
            if ranked is not None:  # x.dim() != 4: a rank check, named as one
                kind, detail = "rank", f"rank of {ranked} is {untraced(args[0])} ({detail})"
        else:
            detail = f"a size or size expression equal to {untraced(args[0])} ({kind})"
        self._guard(frame, cond, kind, untraced(args[0]), src, detail)
        if not in_torch_library(sys._getframe(2)):
            self.warn_frozen(src, f"A size was used as a Python value ({detail}): the trace "
                                  "is specialised to it", "size")

    def specialise_tensor(self, kind: str, tensor: torch.Tensor, value: Any,
                          observe: Callable[[fx.Node], Tuple[str, Any, Tuple[Any, ...]]],
                          message: Optional[str] = None) -> None:
        """A tensor's *value* left the graph (``bool(t)``, ``t.item()``): record and guard.

        ``observe(node) -> (op, target, args)`` re-reads the value from the tensor's node in
        the graph; the guard asserts that it equals ``value`` at run time.
        """
        src = user_source(sys._getframe(2))
        frame = self.frame
        if isinstance(tensor, torch.nn.Parameter):
            return  # its value is part of the model, not the input (buffers change: guarded)
        node = self.resolve(tensor)
        self.guard_equal(frame, observe(node), value, kind, src, f"{kind} gave {value!r}")
        drawn = random_origin(node)
        if drawn is not None and self.guards:
            self._warn(src, f"the value guarded here ({kind}) comes from a random op "
                            f"({drawn.target if isinstance(drawn.target, str) else drawn.name}"
                            f" at {drawn.meta.get(SOURCE)}): the guard holds only for the RNG "
                            "state of the trace, so calls from another RNG state fail it "
                            "at run time; keep random values out of Python (or trace in eval "
                            "mode).")
        self.warn_frozen(src, message or f"Converting a tensor to a Python {kind} might cause "
                                         "the trace to be incorrect", kind)

    def warn_frozen(self, src: Optional[SourceLoc], what: str, kind: str) -> None:
        """Warn at ``src`` that a value was frozen there, saying what happens with the guards
        setting of this capture and what to do (``capture/meta.py:frozen_warning``)."""
        where = src.short if src is not None else "the trace's inputs"
        advice = ADVICE.get(kind if kind in ADVICE else ("value" if kind != "rank" else "size"))
        self._warn(src, frozen_warning(what, self.guards, where, advice or ""))

    def specialise_plain(self, kind: str, value: Any, detail: str) -> None:
        """A value frozen without a guard (nothing in the graph can check it): recorded, and
        warned at the user's line, since only the warning stands between it and a silently
        wrong result."""
        src = user_source(sys._getframe(2))
        self.specialisations.append(Specialisation(kind, short(value), src, self.frame.path,
                                                   guarded=False, detail=detail))
        self._warn(src, f"{detail}; fxtrace cannot check this at run time: the trace reuses "
                        "the value seen while tracing.")

    def guard_equal(self, frame: Frame, observe: Tuple[str, Any, Tuple[Any, ...]], value: Any,
                    kind: str, src: Optional[SourceLoc], detail: str,
                    structural: bool = False, kwargs: Optional[Dict[str, Any]] = None) -> None:
        """The one guard shape: ``observe = (op, target, args)`` (with ``kwargs``) reads the
        value again from the graph; assert at run time that it equals ``value``, what the
        capture saw."""
        op, target, args = observe
        seen = self._create(frame, op, target, args, kwargs or {}, value, source=src)
        cond = self._create(frame, "call_function", operator.eq, (seen, value), {}, True,
                            source=src)
        self._guard(frame, cond, kind, value, src, detail, structural)

    def _guard(self, frame: Frame, cond: fx.Node, kind: str, value: Any,
               src: Optional[SourceLoc], detail: str, structural: bool = False) -> None:
        """Assert ``cond`` at run time. ``structural`` guards check the shape of containers
        (how many items a list has), which torch.jit checks too: kept with ``guards=False``."""
        where = "the trace's inputs" if src is None else (
            f"{src.short} ({src.code})" if src.code else src.short)
        if self.guards or structural:  # otherwise the condition nodes are dead; DCE drops them
            guard = self._create(frame, "call_function", torch._assert,
                                 (cond, guard_message(where, detail, structural)), {}, None,
                                 source=src)
            guard.meta[GUARD] = True
        self.specialisations.append(Specialisation(kind, short(value), src, frame.path,
                                                   guarded=self.guards or structural,
                                                   detail=detail))

    def _warn(self, src: Optional[SourceLoc], message: str) -> None:
        key = (src.filename, src.lineno, message) if src is not None else (None, None, message)
        if key in self._warned:
            return
        self._warned.add(key)
        if src is None:
            warnings.warn(message, TracerWarning, stacklevel=3)
        else:
            warnings.warn_explicit(message, TracerWarning, src.filename, src.lineno)

    def _guard_constant_input(self, frame: Frame, node: fx.Node, name: str, value: Any) -> None:
        """A Python scalar or None given as a top-level input is baked into the trace (as in
        torch.jit): guard that later calls pass the same value. A list or dict input is
        unpacked item by item: guard its length (a list's structurally, as torch.jit checks
        it; a dict's only with guards on: torch.jit ignores keys the trace does not read)."""
        if isinstance(value, (list, dict)):
            kind = "list" if isinstance(value, list) else "dict"
            self.guard_equal(frame, ("call_function", len, (node,)), len(value), "length", None,
                             f"argument '{name}' a {kind} of {len(value)} items",
                             structural=isinstance(value, list))
            return
        if value is None:
            cond = self._create(frame, "call_function", operator.is_, (node, None), {}, True,
                                source=None)
        elif isinstance(value, (bool, int, float, str)) and not is_traced(value):
            cond = self._create(frame, "call_function", operator.eq, (node, value), {}, True,
                                source=None)
        else:
            return
        self._guard(frame, cond, "input", value, None, f"argument '{name}' = {value!r}")

    def guard_rank(self, sizes: TracedSize) -> None:
        """A use of a whole size tuple that depends on the rank: guard ``len(size) == rank``
        (none for sizes the graph fixed itself: their rank is the number of arguments)."""
        if sizes.known is not None or self.finished:
            return
        src = user_source(sys._getframe(2))
        frame = self.frame
        rank = tuple.__len__(sizes)
        node = self.resolve(sizes)
        tensor = node.args[0] if isinstance(node, fx.Node) and node.args else None
        name = _value_name(tensor) if isinstance(tensor, fx.Node) else "a tensor"
        self.guard_equal(frame, ("call_function", len, (node,)), rank, "rank", src,
                         f"rank of {name} is {rank}")
