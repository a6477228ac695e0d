"""Silence torch's TorchScript deprecation warnings around the calls fxtrace itself makes.

TorchScript is deprecated: torch 2.13 warns on ``torch.jit.save``/``load`` (DeprecationWarning),
torch 2.14 and later on ``torch.jit.script`` and friends (FutureWarning, once per call, so up
to dozens of times per trace under ``simplefilter("always")``). fxtrace compiles its own
generated code with TorchScript and saves/loads traces in its checks: those warnings are about
calls the user never made, so fxtrace hides them, and only them.

Invariant: inside :func:`quiet_jit` a DeprecationWarning or FutureWarning whose message names
``torch.jit``/TorchScript as deprecated or unsupported is ignored; every other warning (a
TracerWarning, a user's own DeprecationWarning, torch's other FutureWarnings) goes through
the caller's filters unchanged, and the caller's filter list is restored exactly on exit,
success or failure. Wrap only fxtrace's own torch.jit calls, never user code, so a user's own
``torch.jit`` call keeps its warning.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Iterator

__all__ = ["quiet_jit", "JIT_DEPRECATION_MESSAGE"]

#: torch's wordings: "`torch.jit.script` is deprecated. Please switch to ...",
#: "`torch.jit.save` is not supported in Python 3.14+ and may break", "TorchScript is
#: deprecated ...". ``warnings`` matches it at the start of the message, case-insensitively.
JIT_DEPRECATION_MESSAGE = r".*(torch\.jit|TorchScript).*(deprecated|not supported)"


@contextlib.contextmanager
def quiet_jit() -> Iterator[None]:
    """Ignore torch's TorchScript deprecation warnings in this block (see the module doc)."""
    with warnings.catch_warnings():  # restores the caller's filters, and their order, on exit
        for category in (DeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", message=JIT_DEPRECATION_MESSAGE, category=category)
        yield
