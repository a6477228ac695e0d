"""The argument parser of the ``fxtrace`` command line."""
from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, NoReturn, Optional

from ..inspect._fit import DEFAULT_MAX_WIDTH, DEFAULT_WIDTH
from .check_cmd import cmd_check
from .common import EXIT_USAGE, PRINTABLE_TABLES, PROG
from .inspect_cmd import cmd_inspect
from .pictures import PICTURE_FORMATS
from .trace_cmd import cmd_trace

__all__ = ["build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``fxtrace: error: ... (see 'fxtrace trace --help')``."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        sys.stderr.write(f"{PROG}: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(EXIT_USAGE)


_SPEC_HELP = ("a tensor spec: randn/rand/zeros/ones(SIZES..., dtype=D) or "
              "randint([LOW,] HIGH, (SIZES,), dtype=D), e.g. 'randn(1,3,224,224)', "
              "'randint(0,10,(2,3))', 'randn(2,3,dtype=float64)'; parsed, never evaluated")
_TARGET_HELP = ("what to trace: IMPORT.PATH:ATTR or path/to/file.py:ATTR, where ATTR is an "
                "nn.Module instance, a class with a no-argument constructor, a factory "
                "function (no required arguments) returning a module, or a plain function "
                "(called with the inputs). The current directory is on sys.path")
_EPILOG = """\
examples:
  fxtrace trace models.py:Net --input 'randn(1,3,224,224)' --eval --save net.pt
  fxtrace trace mypkg.fns:foo --input 'rand(3)' --input 'rand(3)' --format github
  fxtrace inspect net.pt --table nodes,ops
  fxtrace inspect net.pt --dot net.dot --svg net.svg
  fxtrace check models.py:Net --input 'randn(2,3,32,32)' --eval --dynamic 0:0
  fxtrace demo

User mistakes print one line 'fxtrace: error: ...' and exit with status 2; a failed check
exits with status 1. See docs/cli.md.
"""


def _add_common(p: argparse.ArgumentParser, tables_default: Optional[str]) -> None:
    if tables_default is not None:
        p.add_argument("--table", default=tables_default, metavar="T1,T2",
                       help=f"comma-separated tables from {', '.join(PRINTABLE_TABLES)} "
                            f"(or none; default: {tables_default})")
    p.add_argument("--format", default="simple", metavar="FMT",
                   help="table format: any tabulate tablefmt (simple, github, grid, plain, "
                        "tsv, html, ...; default: simple)")
    p.add_argument("--max-width", type=int, default=DEFAULT_MAX_WIDTH, metavar="N",
                   help="cut table cells longer than N characters (0: never; default: "
                        f"{DEFAULT_MAX_WIDTH})")
    p.add_argument("--width", type=int, default=DEFAULT_WIDTH, metavar="N",
                   help="fit every table in N columns, cutting its text columns (0: never; "
                        f"default: {DEFAULT_WIDTH})")
    p.add_argument("--traceback", action="store_true", default=argparse.SUPPRESS,
                   help="show the Python traceback of an error instead of one line")


def _add_pictures(p: argparse.ArgumentParser, dot_optional: bool) -> None:
    extra: Dict[str, Any] = {"nargs": "?", "const": "-"} if dot_optional else {}
    p.add_argument("--dot", metavar="FILE" if not dot_optional else "FILE|-", **extra,
                   help="write the graph as Graphviz DOT text to FILE ('-': stdout, "
                        + ("the default; " if dot_optional else "") + "then only the DOT "
                        "text goes to stdout): nodes labelled with target and shape, edges "
                        "with tensors, submodules as clusters")
    for fmt in PICTURE_FORMATS:
        p.add_argument(f"--{fmt}", metavar="FILE",
                       help=f"render the graph to a {fmt.upper()} file with Graphviz "
                            f"(dot -T{fmt}; needs graphviz installed)")


def _add_target(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="MODULE:ATTR", help=_TARGET_HELP)
    p.add_argument("--input", action="append", metavar="SPEC",
                   help="a positional example input, repeat for more: " + _SPEC_HELP)
    p.add_argument("--kwarg", action="append", metavar="NAME=SPEC",
                   help="a keyword example input, e.g. --kwarg mask='ones(2,8)'")
    p.add_argument("--eval", action="store_true",
                   help="put the module in eval mode before tracing (dropout off, batchnorm "
                        "running stats)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of torch's RNG for the inputs (default: 0)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="torch.jit.trace reimplemented on torch.fx: "
                     "trace, inspect and check from the command line.",
                     epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traceback", action="store_true",
                        help="show the Python traceback of an error instead of one line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("trace", help="trace a module or function and print tables",
                       description="Trace MODULE:ATTR on example inputs with fxtrace.trace "
                                   "(check_trace on), print inspection tables, optionally save "
                                   "the TorchScript result.")
    _add_target(p)
    p.add_argument("--no-check", action="store_true",
                   help="skip check_trace (comparing the trace with eager on the inputs)")
    p.add_argument("--mode", choices=("concrete", "symbolic", "auto"), default="concrete",
                   help="capture mode (default: concrete; see docs/modes.md)")
    p.add_argument("--no-guards", action="store_true",
                   help="emit no runtime guards: freeze values as torch.jit.trace does")
    p.add_argument("--strict", action=argparse.BooleanOptionalAction, default=True,
                   help="--no-strict allows a dict (or list) as the traced output, as "
                        "strict=False does (Hugging Face models return dicts; default: strict)")
    p.add_argument("--recurse", action="store_true",
                   help="the nodes table lists the nodes of every submodule's graph too")
    p.add_argument("--save", metavar="OUT.pt",
                   help="write the result with torch.jit.save (loadable without fxtrace)")
    p.add_argument("--export", metavar="OUT.pt2",
                   help="also export the capture with fxtrace.export and write it with "
                        "torch.export.save (load it with torch.export.load; see docs/export.md)")
    _add_common(p, "nodes")
    _add_pictures(p, dot_optional=False)
    p.set_defaults(handler=cmd_trace)

    p = sub.add_parser("inspect", help="tables of a saved TorchScript file",
                       description="Load FILE with torch.jit.load and print inspection tables "
                                   "(specialisations: those fxtrace saved with the trace; a "
                                   "file fxtrace did not write has none).")
    p.add_argument("file", metavar="FILE", help="a file written by torch.jit.save")
    _add_common(p, "nodes,modules,ops")
    p.add_argument("--recurse", action="store_true",
                   help="the nodes table lists the file's inlined graph (every submodule)")
    _add_pictures(p, dot_optional=True)
    p.set_defaults(handler=cmd_inspect)

    p = sub.add_parser("check", help="property check: trace vs eager on many inputs",
                       description="Trace MODULE:ATTR, then run fxtrace.check (Hypothesis): "
                                   "the trace against eager on many generated input sets, "
                                   "shrinking a failure to a small input. A guard of the trace "
                                   "refusing an input is a correct refusal, counted apart; any "
                                   "other error of the trace is a failure, and a check that "
                                   "accepted no input fails. Exit 0 when it passed, 1 "
                                   "otherwise.")
    _add_target(p)
    p.add_argument("--examples", type=int, default=100, metavar="N",
                   help="number of input sets to check (default: 100)")
    p.add_argument("--dynamic", action="append", metavar="INPUT:DIM",
                   help="vary dimension DIM of input INPUT (an --input index from 0 or a "
                        "--kwarg name) between 1 and its example size + 4; repeat or "
                        "comma-separate. Dims of equal example size vary together. Default: "
                        "the dims at which the original itself takes other sizes")
    p.add_argument("--trace", metavar="SAVED.pt", default=None,
                   help="check this saved trace (torch.jit.save of fxtrace's or torch.jit's "
                        "trace, loaded with torch.jit.load) against MODULE:ATTR instead of "
                        "tracing MODULE:ATTR; --input/--kwarg are its example inputs")
    p.add_argument("--tolerance", "--rtol", type=float, default=1e-5, metavar="R",
                   dest="tolerance",
                   help="relative tolerance of the output comparison (the absolute one is "
                        "dtype-aware; default: 1e-5)")
    _add_common(p, None)
    p.set_defaults(handler=cmd_check)

    sub.add_parser("demo", add_help=False, help="run the demo (fxtrace demo --help for options)")
    return parser
