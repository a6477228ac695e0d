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
=====================  ======================================================================

Placeholder nodes additionally carry ``node.type`` (a ``typing`` type such as ``torch.Tensor``
or ``Tuple[torch.Tensor, torch.Tensor]``) which lowering writes into the signature.

Graph-module metadata: ``gm.meta["fxtrace"]`` is a :class:`CaptureInfo` on the root module.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Tuple

import torch

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
]

SOURCE = "fxtrace_source"
MODULE = "fxtrace_module"
TENSOR_META = "tensor_meta"
VALUE_TYPE = "fxtrace_value"


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


def tensor_meta_of(value: Any) -> Any:
    """``TensorMeta`` for tensors, the same container shape for tuples/lists/dicts, else None."""
    if isinstance(value, torch.Tensor):
        return TensorMeta.of(value)
    if isinstance(value, (tuple, list)):
        # The base iterator: a traced size's own __iter__ would record a rank guard.
        items = tuple.__iter__(value) if isinstance(value, tuple) else list.__iter__(value)
        metas = [tensor_meta_of(v) for v in items]
        return type(value)(metas) if type(value) in (tuple, list) else tuple(metas)
    if isinstance(value, dict):
        return {k: tensor_meta_of(v) for k, v in value.items()}
    return None


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
    #: ``{method: fxtrace.checking.graphs.Structure}`` of the capture *before* its passes, kept
    #: when a trace check will follow: a re-trace is compared raw first, skipping its passes.
    structure: Dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)
