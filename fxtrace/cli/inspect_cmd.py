"""``fxtrace inspect``: tables and pictures of a saved TorchScript file."""
from __future__ import annotations

import argparse
import os
import sys

from .common import EXIT_OK, PRINTABLE_TABLES, check_format, quiet_jit_deprecation, tables_arg
from .common import fail as _fail
from .common import first_line as _first_line
from .export_cmd import inspect_exported, is_exported_file
from .pictures import dot_to_stdout, picture_requests, write_pictures

__all__ = ["cmd_inspect"]


def cmd_inspect(args: argparse.Namespace) -> int:
    import torch

    if is_exported_file(args.file):  # written by torch.export.save (fxtrace trace --export)
        return inspect_exported(args)
    tables = tables_arg(args.table, PRINTABLE_TABLES)
    fmt = check_format(args.format)
    pictures = picture_requests(args)
    if not os.path.exists(args.file):
        _fail(f"no such file: {args.file}")
    if not os.path.isfile(args.file):
        _fail(f"not a file: {args.file}")
    try:
        with quiet_jit_deprecation():
            loaded = torch.jit.load(args.file, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - not a TorchScript archive
        _fail(f"cannot load {args.file} with torch.jit.load (is it a TorchScript file "
              f"written by torch.jit.save?): {_first_line(e)}")
    import fxtrace.inspect as fi
    from fxtrace.lower.metadata import remember

    remember(loaded, args.file)  # what fxtrace saved with the trace (NOTE [Saved metadata])

    if dot_to_stdout(args):  # the DOT text alone, nothing else on stdout
        write_pictures(loaded, args, pictures, sys.stderr)
        return EXIT_OK
    print(f"{args.file}: {type(loaded).__qualname__} "
          f"(original name {getattr(loaded, 'original_name', '?')})")
    print()
    if tables:
        fi.show(loaded, tables=tables, fmt=fmt, max_width=args.max_width or None,
                width=args.width or None, recurse=args.recurse)
    write_pictures(loaded, args, pictures, sys.stdout)
    return EXIT_OK

