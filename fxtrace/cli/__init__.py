"""The ``fxtrace`` command line: ``trace``, ``inspect``, ``check`` and ``demo``.

``fxtrace trace MODULE:ATTR --input 'randn(1,3,224,224)'`` traces a module or a function
found by import path (``pkg.models:Net``) or file path (``path/to/models.py:Net``) and
prints inspection tables (:mod:`.trace_cmd`); ``fxtrace inspect out.pt`` tables a saved
TorchScript file (:mod:`.inspect_cmd`); ``fxtrace check`` runs :func:`fxtrace.check` on the
trace (:mod:`.check_cmd`); ``fxtrace demo`` runs :mod:`fxtrace.demo`. See ``docs/cli.md``.

User mistakes (a bad ``MODULE:ATTR``, an import that fails, a malformed input spec, a missing
file) print one line ``fxtrace: error: ...`` on stderr and exit with status 2; ``--traceback``
shows the Python traceback instead. Input specs are parsed, never evaluated (:mod:`.specs`).
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable, List, Optional, Sequence, Tuple

from .args import build_parser
from .common import EXIT_OK, EXIT_USAGE, PROG, TraceFailed, UserError
from .specs import InputSpec, parse_input_spec
from .target import load_target, resolve_traceable

__all__ = ["main", "build_parser", "UserError", "InputSpec", "parse_input_spec", "load_target",
           "resolve_traceable"]


def cmd_demo(argv: Sequence[str]) -> int:
    from .. import demo

    return demo.main(list(argv))


def _split_demo(argv: Sequence[str]) -> Optional[Tuple[List[str], List[str]]]:
    """(global options, demo arguments) when the command is ``demo``; else None."""
    for i, a in enumerate(argv):
        if a == "demo":
            return list(argv[:i]), list(argv[i + 1:])
        if not a.startswith("-"):
            return None
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 check failed, 2 usage error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    demo_split = _split_demo(argv)
    if demo_split is not None:
        extra = [a for a in demo_split[0] if a != "--traceback"]
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        show_tb = "--traceback" in demo_split[0]
        handler: Callable[[], int] = lambda: cmd_demo(demo_split[1])  # noqa: E731
    else:
        args = parser.parse_args(argv)
        show_tb = args.traceback
        handler = lambda: args.handler(args)  # noqa: E731
    try:
        return handler()
    except UserError as e:
        if show_tb:
            raise
        sys.stderr.write(f"{PROG}: error: {e}\n")
        return EXIT_USAGE
    except TraceFailed as e:
        if show_tb:
            raise
        lines = str(e).splitlines() or [""]
        sys.stderr.write(f"{PROG}: error: {lines[0]}\n")
        for line in lines[1:]:
            sys.stderr.write(f"  {line}\n")
        return e.status
    except KeyboardInterrupt:
        sys.stderr.write(f"\n{PROG}: interrupted\n")
        return 130
    except BrokenPipeError:  # `fxtrace ... | head`
        with contextlib.suppress(Exception):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
