"""Finding the user's source line behind a recorded operation.

A frame belongs to the user unless its file lies inside fxtrace or inside torch itself: an op
issued by ``nn.Conv2d.forward`` is attributed to the user line that called the conv, which is
what a user can act on (torch.jit's TracerWarning filter draws the same line).
"""
from __future__ import annotations

import linecache
import os
import sys
from types import CodeType, FrameType
from typing import Dict, Optional, Tuple

import torch

from .meta import SourceLoc

__all__ = ["user_frame", "user_source", "is_internal_file", "in_torch_library"]

_FXTRACE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
_internal_cache: Dict[str, bool] = {}
# One SourceLoc per (code object, line): a capture asks for the same few lines again and again.
_source_cache: Dict[Tuple[CodeType, int], SourceLoc] = {}


def is_internal_file(filename: str) -> bool:
    """True for files of fxtrace, torch and Python's own context-manager plumbing."""
    hit = _internal_cache.get(filename)
    if hit is None:
        path = os.path.abspath(filename) if not filename.startswith("<") else filename
        hit = (path.startswith(_FXTRACE_DIR) or path.startswith(_TORCH_DIR)
               or path.endswith(os.sep + "contextlib.py"))
        _internal_cache[filename] = hit
    return hit


def user_frame(start: Optional[FrameType] = None) -> Optional[FrameType]:
    """The innermost frame on the stack that belongs to user code, or None."""
    frame: Optional[FrameType] = start if start is not None else sys._getframe(1)
    while frame is not None and is_internal_file(frame.f_code.co_filename):
        frame = frame.f_back
    return frame


def user_source(start: Optional[FrameType] = None) -> Optional[SourceLoc]:
    """The :class:`SourceLoc` of the innermost user frame, or None when there is none."""
    frame = user_frame(start if start is not None else sys._getframe(1))
    if frame is None:
        return None
    key = (frame.f_code, frame.f_lineno)
    loc = _source_cache.get(key)
    if loc is None:
        filename, lineno = frame.f_code.co_filename, frame.f_lineno
        code = linecache.getline(filename, lineno).strip()
        loc = SourceLoc(filename, lineno, frame.f_code.co_name, code)
        if len(_source_cache) >= 50000:  # bound memory in long-lived processes
            _source_cache.clear()
        _source_cache[key] = loc
    return loc


def in_torch_library(start: Optional[FrameType] = None) -> bool:
    """Whether the innermost frame outside fxtrace is torch's own code (a library site:
    torch.jit does not warn there, and neither does fxtrace)."""
    frame: Optional[FrameType] = start if start is not None else sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_FXTRACE_DIR):
        frame = frame.f_back
    return frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_TORCH_DIR)
