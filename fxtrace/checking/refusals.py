"""Which error of a trace is a guard refusing an input, and which guard it was.

NOTE [Guard refusal]
A trace *refuses* an input only when one of its own guards fires: the error that ended the
run is fxtrace's guard assertion, whose message starts ``fxtrace guard failed at <file:line>
(<code>): traced with ...`` (concrete capture) or ``fxtrace guard failed: argument ...``
(symbolic capture). Any other error of the trace, on an input eager accepts, is a failure.

The guard text alone proves nothing: a TorchScript traceback quotes the generated source
around the failing line, and that source holds the messages of *other* guards
(``torch._assert(eq, "fxtrace guard failed at ...")`` next to an ``x.add(y)`` that raised a
shape error). The error that fired is the *last* ``...Error: message`` line of the traceback,
after the "The following operation failed in the TorchScript interpreter" and "builtin
cannot be used" frames; a nested call repeats the frames and prefixes the message
(``RuntimeError: AssertionError: fxtrace guard failed ...``). An error raised in Python (an
fx ``GraphModule`` run eagerly) is its own message.
"""
from __future__ import annotations

import re
from typing import Optional

__all__ = ["GUARD_PREFIX", "fired_message", "guard_refusal", "guard_location", "guard_code",
           "error_text"]

#: How every fxtrace guard message starts (see ``fxtrace.capture``).
GUARD_PREFIX = "fxtrace guard failed"

# ``RuntimeError: `` / ``torch.jit.Error: `` / ``AssertionError: `` at the start of a line
_ERROR_PREFIX = re.compile(r"^(?:[A-Za-z_][\w.]*(?:Error|Exception)): ")
_TORCHSCRIPT = "Traceback of TorchScript"
_LOCATION = re.compile(re.escape(GUARD_PREFIX) + r" at (.+?:\d+)(?= \(|: traced)")
_CODE = re.compile(r"\((.*)\): traced with")


def _strip_prefixes(line: str) -> str:
    while True:
        m = _ERROR_PREFIX.match(line)
        if m is None:
            return line
        line = line[m.end():]


def fired_message(e: BaseException) -> str:
    """The message of the error that ended the run (see NOTE [Guard refusal]), without its
    exception-name prefixes; for a TorchScript error, the last error line of its traceback
    and any lines after it."""
    text = str(e).strip()
    # quoted source lines are indented; the error lines of a traceback are not
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(e).__name__
    if _TORCHSCRIPT in text:
        starts = [i for i, line in enumerate(lines) if _ERROR_PREFIX.match(line)]
        i = starts[-1] if starts else len(lines) - 1
    else:
        i = 0
    return "\n".join([_strip_prefixes(lines[i].strip())] + [x.strip() for x in lines[i + 1:]])


def guard_refusal(e: BaseException) -> Optional[str]:
    """The message (one line) of the fxtrace guard that refused the input, or None when the
    error is anything else (see NOTE [Guard refusal])."""
    first = fired_message(e).splitlines()[0]
    return first if first.startswith(GUARD_PREFIX) else None


def guard_location(message: str) -> str:
    """``file:line`` of a guard message (``""`` for a guard without one)."""
    m = _LOCATION.search(message)
    return m.group(1) if m else ""


def guard_code(message: str) -> str:
    """The user's code a guard message quotes (the message itself when it quotes none)."""
    m = _CODE.search(message)
    return m.group(1) if m else message


def error_text(e: BaseException, limit: int = 200) -> str:
    """``RuntimeError: <fired message, first line>``, at most ``limit`` characters."""
    line = fired_message(e).splitlines()[0]
    text = f"{type(e).__name__}: {line}"
    return text if len(text) <= limit else text[: limit - 1] + "…"
