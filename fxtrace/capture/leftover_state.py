"""The model's state after a capture: what forward left behind is made as after an eager run.

Forward may rebind buffers and tensor attributes, and may leave traced numbers or sizes in
module attributes and containers. Once the capture ends, the model holds its own objects
again and plain values where forward stored traced ones.
"""
from __future__ import annotations

from typing import Any, Iterable, Tuple

import torch

from .recorder import holds_traced_numbers
from .values import TracedSize, is_traced, untraced

__all__ = ["unbind_state", "leave_plain_state"]


def unbind_state(rebound: Iterable[Tuple[torch.nn.Module, str, torch.Tensor]]) -> None:
    """Buffers and tensor attributes forward rebound (``self.running = ...``) hold their own
    objects again, so the model and its trace share the state they had before."""
    for module, name, old in rebound:
        if name in module._buffers:
            module._buffers[name] = old
        else:
            module.__dict__[name] = old


def _plain(value: Any) -> Any:
    """``value`` with traced numbers and sizes replaced by plain ones (sizes: torch.Size)."""
    if isinstance(value, TracedSize):
        return torch.Size(untraced(value))
    if is_traced(value):
        return untraced(value)
    if type(value) in (tuple, list):
        return type(value)(_plain(v) for v in value)
    if type(value) is dict:
        return {k: _plain(v) for k, v in value.items()}
    return value


def leave_plain_state(traced_attributes: Iterable[Tuple[torch.nn.Module, str]],
                      containers: Any) -> None:
    """Module state forward left holding traced numbers or sizes (``self.shape = x.shape``,
    ``self.sizes.append(x.size(0))``) gets their plain values, as after an eager run: a
    traced value outliving its capture would record into a finished graph when used."""
    for module, name in traced_attributes:
        value = module.__dict__.get(name)
        if value is not None and holds_traced_numbers(value):
            module.__dict__[name] = _plain(value)
    for _, container, _ in containers:
        if not holds_traced_numbers(container):
            continue
        if isinstance(container, list):
            container[:] = [_plain(v) for v in container]
        elif isinstance(container, dict):
            for key in list(container):
                container[key] = _plain(container[key])
        else:
            plain = {_plain(v) for v in container}
            container.clear()
            container.update(plain)
