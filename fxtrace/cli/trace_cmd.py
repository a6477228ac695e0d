"""``fxtrace trace``: trace MODULE:ATTR, print tables, optionally save."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .common import EXIT_OK, PRINTABLE_TABLES, check_format, quiet_jit_deprecation, tables_arg
from .common import fail as _fail
from .export_cmd import check_export_path, export_target
from .pictures import dot_to_stdout, picture_requests, write_pictures
from .target import describe, do_trace, prepare

__all__ = ["cmd_trace"]


def _result_type(traced: Any) -> str:
    import torch

    if isinstance(traced, torch.jit.ScriptFunction):
        return "torch.jit.ScriptFunction"
    if isinstance(traced, torch.jit.ScriptModule):
        return f"torch.jit.ScriptModule ({type(traced).__name__})"
    return type(traced).__qualname__


def cmd_trace(args: argparse.Namespace) -> int:
    import torch

    tables = tables_arg(args.table, PRINTABLE_TABLES)
    fmt = check_format(args.format)
    if args.save:
        parent = os.path.dirname(os.path.abspath(args.save))
        if not os.path.isdir(parent):
            _fail(f"cannot save to {args.save}: directory {parent} does not exist")
    check_export_path(getattr(args, "export", None))
    pictures = picture_requests(args)
    # with --dot - the DOT text is stdout; everything else goes to stderr, tables are skipped
    out = sys.stderr if dot_to_stdout(args) else sys.stdout
    if dot_to_stdout(args):
        tables = []
    target = prepare(args)
    traced = do_trace(target, check=not args.no_check, mode=args.mode, guards=not args.no_guards,
                      strict=args.strict)
    import fxtrace.inspect as fi

    given = [describe(a) for a in target.args] + [f"{k}={describe(v)}"
                                                  for k, v in target.kwargs.items()]
    print(f"traced {target.ref} ({target.kind} {target.name}) on {', '.join(given)}", file=out)
    print(f"result: {_result_type(traced)}", file=out)
    print("check_trace: " + ("skipped (--no-check)" if args.no_check else
                             "passed (trace matches eager on the example inputs)"), file=out)
    print(file=out)
    if tables:
        fi.show(traced, tables=tables, fmt=fmt, max_width=args.max_width or None,
                width=args.width or None, recurse=args.recurse)
    if args.save:  # before the pictures: a picture Graphviz cannot render fails the command
        with quiet_jit_deprecation():
            torch.jit.save(traced, args.save)
        print(f"saved {args.save} ({os.path.getsize(args.save)} bytes); load it with "
              "torch.jit.load, no fxtrace needed", file=out)
    if getattr(args, "export", None):
        export_target(target, args.export, not args.no_guards, out)
    write_pictures(traced, args, pictures, out)
    return EXIT_OK

