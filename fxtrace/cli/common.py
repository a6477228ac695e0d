"""What every ``fxtrace`` command shares: exit statuses, the user-error type, small parsers.

A mistake on the command line raises :class:`UserError` (printed as one ``fxtrace: error:``
line, exit status 2); fxtrace failing on the user's program raises :class:`TraceFailed`.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, List, NoReturn, Sequence

from ..lower.quiet import quiet_jit

__all__ = ["PROG", "EXIT_OK", "EXIT_FAIL", "EXIT_USAGE", "PRINTABLE_TABLES", "UserError",
           "TraceFailed", "fail", "quiet_jit_deprecation", "first_line", "tables_arg",
           "check_format"]

PROG = "fxtrace"
EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
#: Tables ``trace`` and ``inspect`` can print (``diff`` and ``check`` need other inputs).
PRINTABLE_TABLES = ("nodes", "modules", "specialisations", "ops", "passes")


class UserError(Exception):
    """A mistake on the command line: printed as one ``fxtrace: error:`` line, exit 2."""


class TraceFailed(Exception):
    """fxtrace could not trace the target; ``status`` is the exit status to use."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def fail(message: str) -> NoReturn:
    raise UserError(message)


@contextlib.contextmanager
def quiet_jit_deprecation() -> Iterator[None]:
    """Silence torch's TorchScript deprecation warnings (``torch.jit.save/load is deprecated``),
    only those: :func:`fxtrace.lower.quiet.quiet_jit`."""
    with quiet_jit():
        yield


def first_line(exc: BaseException) -> str:
    """``TypeName: first line of the message``."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def tables_arg(text: str, allowed: Sequence[str]) -> List[str]:
    """``--table a,b`` (or ``none``) checked against ``allowed``."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if names == ["none"]:
        return []
    for n in names:
        if n not in allowed:
            fail(f"unknown table {n!r} for --table; choose from {', '.join(allowed)} "
                 "(comma-separated) or none")
    return names


def check_format(fmt: str) -> str:
    """``--format``: any tabulate table format."""
    from tabulate import tabulate_formats

    if fmt not in tabulate_formats:
        fail(f"unknown --format {fmt!r}; choose from {', '.join(tabulate_formats)}")
    return fmt
