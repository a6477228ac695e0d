"""Saving and restoring the state a traced program can change, for capture and for checks.

The state is: grad mode, the CPU RNG state, every module's training flag, the buffers (e.g.
BatchNorm running statistics) and, on request, the parameters' values.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch

__all__ = ["preserved_state"]


@contextlib.contextmanager
def preserved_state(modules: Sequence[torch.nn.Module], *, always: bool,
                    parameters: bool = False) -> Iterator[None]:
    """Restore the state of ``modules`` (see the module docstring) on exit.

    Grad mode is always restored. The rest is restored on every exit when ``always`` is True,
    and only when the body raises otherwise (a successful capture keeps its effects, as
    torch.jit.trace's single run of the model does).
    """
    grad = torch.is_grad_enabled()
    rng = torch.random.get_rng_state()
    flags = [(m, m.training) for root in modules for m in root.modules()]
    tensors = [t for root in modules for t in root.buffers()]
    if parameters:
        tensors += [p for root in modules for p in root.parameters()]
    saved = [(t, t.detach().clone()) for t in tensors]

    def restore() -> None:
        torch.random.set_rng_state(rng)
        for m, training in flags:
            m.training = training
        with torch.no_grad():
            for t, value in saved:
                if t.shape == value.shape:
                    t.copy_(value)

    try:
        yield
    except BaseException:
        if not always:
            restore()
        raise
    finally:
        if always:
            restore()
        torch.set_grad_enabled(grad)
