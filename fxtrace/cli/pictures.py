"""``--dot`` / ``--svg`` / ``--png``: the graph as Graphviz text or a rendered picture."""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from typing import Any, List, Tuple

from .common import fail as _fail
from .common import first_line as _first_line

__all__ = ["PICTURE_FORMATS", "GRAPHVIZ_MISSING", "picture_requests", "dot_to_stdout",
           "write_pictures"]

#: Render formats of ``--svg``/``--png`` (Graphviz ``dot -T<fmt>``).
PICTURE_FORMATS = ("svg", "png")
GRAPHVIZ_MISSING = ("graphviz is not installed: {opt} renders with its `dot` program, which is "
                    "not on PATH (install it: apt-get install graphviz; or write DOT text with "
                    "--dot FILE and render it elsewhere)")


def picture_requests(args: argparse.Namespace) -> List[Tuple[str, str]]:
    """``[(fmt, path), ...]`` for --svg/--png, checked before any work is done."""
    wanted = [(fmt, getattr(args, fmt)) for fmt in PICTURE_FORMATS if getattr(args, fmt, None)]
    if wanted and shutil.which("dot") is None and getattr(args, "dot", None) in (None, "-"):
        # nothing to write without Graphviz: fail before any work (with --dot FILE, the DOT
        # is written first and write_pictures says what it could not render)
        _fail(GRAPHVIZ_MISSING.format(opt=" and ".join(f"--{f}" for f, _ in wanted)))
    paths = [p for _, p in wanted] + ([args.dot] if getattr(args, "dot", None) not in
                                      (None, "-") else [])
    for path in paths:
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            _fail(f"cannot write {path}: directory {parent} does not exist")
    return wanted


def dot_to_stdout(args: argparse.Namespace) -> bool:
    return getattr(args, "dot", None) == "-"


def write_pictures(obj: Any, args: argparse.Namespace, wanted: List[Tuple[str, str]],
                    out: Any) -> None:
    """--dot / --svg / --png of ``obj``; a line on ``out`` per file written."""
    if not args.dot and not wanted:
        return
    import fxtrace.inspect as fi

    text = fi.to_dot(obj)
    if dot_to_stdout(args):
        sys.stdout.write(text)
    elif args.dot:
        with open(args.dot, "w", encoding="utf-8") as f:
            f.write(text)
        nodes = len(re.findall(r"^\s*n\d+ \[", text, re.M))
        clusters = text.count("subgraph cluster_")
        print(f"wrote {args.dot} (Graphviz DOT: {nodes} nodes, {clusters} module clusters)",
              file=out)
    if wanted and shutil.which("dot") is None:
        _fail(GRAPHVIZ_MISSING.format(opt=" and ".join(f"--{f}" for f, _ in wanted))
              + f"; the DOT text is in {args.dot}")
    for fmt, path in wanted:
        try:
            fi.render_dot(text, path, fmt)
        except fi.GraphvizNotFound:
            _fail(GRAPHVIZ_MISSING.format(opt=f"--{fmt}"))
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            _fail(f"rendering {path} failed: {_first_line(e)}")
        print(f"rendered {path} (dot -T{fmt})", file=out)

