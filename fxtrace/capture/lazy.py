"""Lazy modules (``nn.LazyLinear``, ``nn.LazyConv2d``, ...) met by a capture.

NOTE [Lazy modules]
A lazy module materialises its parameters in a forward pre-hook on its first call, from the
shapes of that call's inputs. The trace depends on those parameters, so the capture keeps the
materialisation: it is the one exception to "a trace leaves the model as it was"
(issue 12), and it is warned at the user's line. The hook runs before the module's frame
opens, with the capture's torch function mode off: creating and initialising the parameters
is model set-up, not part of the traced computation, and the in-place initialisation must
not be mistaken for a forward writing its own weights (which the capture would put back).
"""
from __future__ import annotations

import sys
import warnings
from typing import Any, Dict, Optional, Tuple

import torch
from torch.nn.modules.lazy import LazyModuleMixin

from ..errors import TracerWarning
from .meta import SourceLoc
from .recorder import untraced_tree
from .source import user_source

__all__ = ["materialise_lazy", "LAZY_WARNING"]

LAZY_WARNING = ("{name} is a lazy module: its parameters were materialised by the trace, from "
                "the example inputs' shapes, and stay materialised (the trace depends on them); "
                "every other piece of model state is as before the trace.")


def materialise_lazy(module: torch.nn.Module, args: Tuple[Any, ...], kwargs: Dict[str, Any],
                     src: Optional[SourceLoc]) -> None:
    """Run ``module``'s materialising pre-hook now, unrecorded, and warn (NOTE [Lazy
    modules]); nothing for a module that is not lazy or already materialised."""
    if not isinstance(module, LazyModuleMixin) or not module.has_uninitialized_params():
        return
    message = LAZY_WARNING.format(name=type(module).__name__)  # (materialising renames it)
    with torch._C.DisableTorchFunction():
        module._infer_parameters(module, untraced_tree(args), untraced_tree(kwargs))
    src = src if src is not None else user_source(sys._getframe(1))
    if src is None:
        warnings.warn(message, TracerWarning, stacklevel=2)
    else:
        warnings.warn_explicit(message, TracerWarning, src.filename, src.lineno)
