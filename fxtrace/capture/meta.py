"""The contract every capture mode fulfils: what a captured ``fx.GraphModule`` carries.

Both capture modes (concrete and symbolic) return an ``fx.GraphModule`` whose tree mirrors the
user's module tree. Passes, lowering, checks and tables read only what this module defines.

Node metadata (``node.meta``):

=====================  ======================================================================
key                    value
=====================  ======================================================================
``"fxtrace_source"``   :class:`SourceLoc` of the user line that produced the node, or ``None``
                       for nodes without a user origin (placeholders of a module's inputs).
``"stack_trace"``      fx's own key: ``'  File "f.py", line 12, in forward\\n    y = x.sum()'``
                       so fx tools that print stack traces keep working.
``"fxtrace_module"``   qualified path of the module whose code produced the node ("" = root).
``"tensor_meta"``      :class:`TensorMeta` for a tensor value, a tuple/list/dict of them for a
                       container, ``None`` for a non-tensor value (int, dtype, device, ...).
``"fxtrace_value"``    the Python type of a non-tensor value (``int``, ``float``, ``bool``,
                       ``torch.dtype``, ``torch.device``, ...), ``None`` for tensors.
``"fxtrace_guard"``    ``True`` on a runtime guard (``torch._assert`` of a specialisation);
                       its message is :func:`guard_message`'s, starting with
                       :data:`GUARD_TEXT`.
``"fxtrace_state_write"`` ``True`` on the ``copy_`` that carries a buffer rebinding
                       (``self.total = self.total + x``) from call to call.
=====================  ======================================================================

Placeholder nodes additionally carry ``node.type`` (a ``typing`` type such as ``torch.Tensor``
or ``Tuple[torch.Tensor, torch.Tensor]``) which lowering writes into the signature.

Graph-module metadata: ``gm.meta["fxtrace"]`` is a :class:`CaptureInfo` on the root module;
``gm.meta["fxtrace_methods"]`` (:data:`METHODS`) maps each extra traced method (``trace_module``
with several methods, or a submodule called in several ways) to its GraphModule.
Every key above is spelled here once; readers import the names, never the strings.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from .. import tree

__all__ = [
    "SourceLoc",
    "TensorMeta",
    "Specialisation",
    "CaptureInfo",
    "SOURCE",
    "MODULE",
    "TENSOR_META",
    "VALUE_TYPE",
    "tensor_meta_of",
    "source_of",
    "GUARD",
    "STATE_WRITE",
    "METHODS",
    "INFO",
    "IMPURE",
    "ORIGINAL",
    "ORIGINAL_TYPE",
    "HAS_FORWARD",
    "UNTRACED",
    "FOLDED_FROM",
    "GUARD_TEXT",
    "guard_message",
    "frozen_warning",
    "ADVICE",
]

SOURCE = "fxtrace_source"
MODULE = "fxtrace_module"
TENSOR_META = "tensor_meta"
VALUE_TYPE = "fxtrace_value"
GUARD = "fxtrace_guard"
IMPURE = "fxtrace_impure"
STATE_WRITE = "fxtrace_state_write"
METHODS = "fxtrace_methods"
INFO = "fxtrace"
#: ``gm.meta`` of each GraphModule: the user's module it was traced from, its class's
#: qualified name, whether it has a traced ``forward``, that it is a graph-less container
#: (a module only holding submodules, never called), and the modules a fold replaced.
ORIGINAL = "fxtrace_original"
ORIGINAL_TYPE = "fxtrace_original_type"
HAS_FORWARD = "fxtrace_has_forward"
UNTRACED = "fxtrace_untraced"
FOLDED_FROM = "fxtrace_folded_from"

#: The text every fxtrace guard failure starts with (a refusal, not a wrong result).
GUARD_TEXT = "fxtrace guard failed"


def guard_message(where: str, detail: str, structural: bool = False) -> str:
    """The assertion message of a guard: where the value was frozen and what it was.

    ``fxtrace guard failed at f.py:12 (if x.sum() > 0:): traced with bool gave True; ...``;
    checks find the place with :data:`GUARD_TEXT` followed by `` at ``."""
    return (f"{GUARD_TEXT} at {where}: traced with {detail}; "
            "this trace only covers inputs that take the same path"
            + (" [container check, kept with guards=False]" if structural else ""))


#: What a user can do instead of freezing a value, by the kind of value frozen.
ADVICE: Dict[str, str] = {
    "bool": ("compute both sides and pick one with torch.where (the trace follows the data), or "
             "put the branch in a function compiled with torch.jit.script and call that"),
    "value": ("keep the value a tensor (x.sum() rather than x.sum().item()) so that the "
              "trace follows it"),
    "size": ("keep sizes as x.size(d) / x.shape[d] expressions fed to tensor ops, which the "
             "trace follows; fxtrace.probe_dynamic(traced, model, inputs) lists the sizes a "
             "trace accepts"),
    "iter": ("iterate over a fixed number of rows (x.unbind(0) of a known size) or script "
             "the loop with torch.jit.script"),
}


def frozen_warning(what: str, guarded: bool, where: str, advice: str = "") -> str:
    """The TracerWarning of a value frozen into the trace, saying what happens in the mode
    used: guarded (an input giving another value raises the guard at ``where``) or not
    (``guards=False``: that input silently reuses the traced value, as in torch.jit).

    ``what`` is the first sentence (torch.jit's wording where it has one), ``advice`` the
    way out (:data:`ADVICE`)."""
    what = what.rstrip(". ") + "."
    if guarded:
        text = (f"{what} fxtrace records the value seen while tracing and guards it: an input "
                f"that gives another value raises '{GUARD_TEXT} at {where}' instead of "
                "returning a wrong result")
        tail = "; guards=False gives torch.jit's behaviour (no check)."
    else:
        text = (f"{what} With guards=False fxtrace records the value seen while tracing "
                "without a check, as torch.jit does: an input that gives another value "
                "silently reuses it")
        tail = "; with guards on (the default) such an input raises instead."
    return text + (f". To cover such inputs: {advice}" if advice else "") + tail


@dataclasses.dataclass(frozen=True)
class SourceLoc:
    """A user source line: where a node, a specialisation or an error comes from."""

    filename: str
    lineno: int
    function: str = ""
    code: str = ""

    def __str__(self) -> str:
        return f"{self.filename}:{self.lineno}"

    @property
    def short(self) -> str:
        """``basename:line``, for narrow table columns and guard messages."""
        return f"{self.filename.rsplit('/', 1)[-1]}:{self.lineno}"

    def stack_trace(self) -> str:
        """The same location in fx's ``node.meta["stack_trace"]`` format."""
        text = self.__dict__.get("_stack_trace")
        if text is None:  # computed once: one SourceLoc serves every node of its line
            text = f'  File "{self.filename}", line {self.lineno}, in {self.function}\n'
            text += f"    {self.code}\n" if self.code else ""
            object.__setattr__(self, "_stack_trace", text)
        return text


@dataclasses.dataclass(frozen=True)
class TensorMeta:
    """What a table or a type rule needs to know about a tensor value, without the data."""

    shape: Tuple[int, ...]
    dtype: torch.dtype
    device: torch.device
    requires_grad: bool = False
    stride: Tuple[int, ...] = ()

    @classmethod
    def of(cls, t: torch.Tensor) -> "TensorMeta":
        stride = tuple(t.stride()) if t.layout == torch.strided else ()
        return cls(tuple(t.shape), t.dtype, t.device, t.requires_grad, stride)


def _meta_leaf(value: Any) -> Any:
    return TensorMeta.of(value) if isinstance(value, torch.Tensor) else None


def tensor_meta_of(value: Any) -> Any:
    """``TensorMeta`` for tensors, the same container shape for tuples/lists/dicts, else None."""
    return tree.map_leaves(_meta_leaf, value)


def source_of(node: torch.fx.Node) -> Optional[SourceLoc]:
    """The user source line of ``node``, or None when it has none."""
    return node.meta.get(SOURCE)


@dataclasses.dataclass
class Specialisation:
    """A place where a traced value left the graph and was frozen at its example value.

    ``kind`` names the escape (``"bool"``, ``"int"``, ``"len"``, ``"item"``, ``"iter"``,
    ``"input"``, ...), ``value`` is the value seen at capture time, ``guarded`` says whether
    a runtime check was emitted into the graph for it.
    """

    kind: str
    value: Any
    source: Optional[SourceLoc]
    module: str = ""
    guarded: bool = False
    detail: str = ""


@dataclasses.dataclass
class CaptureInfo:
    """Facts about one capture, stored as ``root_gm.meta["fxtrace"]``."""

    mode: str                                   # "concrete" or "symbolic"
    is_function: bool                           # traced a plain function, not a module
    name: str                                   # the function's or module class's name
    specialisations: List[Specialisation] = dataclasses.field(default_factory=list)
    module_calls: Dict[str, int] = dataclasses.field(default_factory=dict)  # path -> calls
    training: bool = False
    passes: List[Any] = dataclasses.field(default_factory=list)  # PassRecords of the pipeline
    #: The capture keywords (``guards``, ``force_outplace``) that a re-trace must repeat.
    options: Dict[str, Any] = dataclasses.field(default_factory=dict)
    #: ``{method: fxtrace.capture.structure.Structure}`` of the capture *before* its passes, kept
    #: when a trace check will follow: a re-trace is compared raw first, skipping its passes.
    structure: Dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)
    #: ``recapture(root, method, func, args, kwargs, passes=..., same_as=...)``: capture
    #: again with this capture's settings (set by ``fxtrace.api``; checks call it, so that
    #: they never import the layer above them). None for a capture built by hand.
    recapture: Optional[Callable[..., Any]] = dataclasses.field(default=None, repr=False)
    #: Parameters and tensor attributes the captured forward writes in place (the capture
    #: put them back); checks copy them around their eager runs of the original.
    written: List[Any] = dataclasses.field(default_factory=list, repr=False)
    #: ``finish(raw_gm) -> gm``: run the passes this capture went through over a raw one.
    finish: Optional[Callable[..., Any]] = dataclasses.field(default=None, repr=False)
    #: Why ``mode="auto"`` chose ``mode`` ("" outside auto): the symbolic failure, with its
    #: file:line, or its disagreement with eager, when it fell back to concrete capture.
    mode_reason: str = ""
