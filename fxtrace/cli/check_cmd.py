"""``fxtrace check``: trace MODULE:ATTR, then :func:`fxtrace.check` it and print the report.

The command is a front end of ``fxtrace.check`` and nothing else (``--trace SAVED.pt``: the
saved trace is loaded and checked against MODULE:ATTR instead of a fresh trace, so a trace
already shipped, fxtrace's or torch.jit's, can be audited): the input specs become its
example inputs, ``--dynamic`` its ``dynamic=`` pairs, ``--examples`` ``max_examples``, ``--seed``
the Hypothesis seed, ``--tolerance`` its relative tolerance. Its verdict is the command's:
the report table, then ``PASSED: ...`` (exit 0) or ``FAILED: ...`` (exit 1).
"""
from __future__ import annotations

import argparse
import inspect as pyinspect
import os
from typing import Any, List, Mapping, Tuple

from .common import EXIT_FAIL, EXIT_OK, check_format, quiet_jit_deprecation
from .common import fail as _fail
from .target import Target, do_trace, prepare, trace_kwargs

__all__ = ["cmd_check", "parse_dynamic"]


def _input_keys(target: Target) -> List[Any]:
    """The inputs in the order the trace takes them (``inputs_like`` numbers its tensors so):
    ``--input`` indices, then ``--kwarg`` names; with keyword inputs, the order of the bound
    parameters."""
    if not target.kwargs:
        return list(range(len(target.args)))
    bound = trace_kwargs(target, target.args, target.kwargs)["example_kwarg_inputs"]
    positional = {id(v): i for i, v in enumerate(target.args)}
    return [name if name in target.kwargs else positional.get(id(value), name)
            for name, value in bound.items()]


def parse_dynamic(items: List[str], target: Target) -> List[Tuple[int, int]]:
    """``0:0`` / ``mask:1`` (comma-separated or repeated) -> ``(tensor input, dim)`` pairs in
    ``fxtrace.strategies.inputs_like``'s numbering (dims of equal example size vary together,
    as ``inputs_like`` links them)."""
    keys = _input_keys(target)
    pairs: List[Tuple[int, int]] = []
    for item in items:
        for part in (p.strip() for p in item.split(",")):
            if part:
                key, dim = _parse_dim(part, target)
                pair = (keys.index(key), dim)
                if pair not in pairs:
                    pairs.append(pair)
    return pairs


def _parse_dim(part: str, target: Target) -> Tuple[Any, int]:
    key_text, sep, dim_text = part.partition(":")
    try:
        dim = int(dim_text)
    except ValueError:
        dim = None
    if not sep or dim is None:
        _fail(f"bad --dynamic {part!r}: expected INPUT:DIM, e.g. 0:0 (first input, first "
              "dimension) or NAME:DIM for a --kwarg")
    key: Any
    if key_text.lstrip("-").isdigit():
        key = int(key_text)
        if not 0 <= key < len(target.specs):
            _fail(f"bad --dynamic {part!r}: there are {len(target.specs)} --input(s), "
                  "numbered from 0")
        shape = target.specs[key].shape
    else:
        key = key_text
        if key not in target.kwarg_specs:
            _fail(f"bad --dynamic {part!r}: no --kwarg named {key!r}")
        shape = target.kwarg_specs[key].shape
    if not -len(shape) <= dim < len(shape):
        _fail(f"bad --dynamic {part!r}: input {key!r} has {len(shape)} dimension(s)")
    return key, dim % len(shape)


def _verdict_line(report: Any, passed: bool) -> str:
    """``PASSED: 49 agreed, 51 refused by a guard (49% accepted), 0 skipped`` or
    ``FAILED: <what failed>``."""
    title = getattr(report, "title", "")
    if not passed:
        return "FAILED" + (f": {title.split('FAILED: ', 1)[1]}" if "FAILED: " in title else "")
    counts = getattr(report, "counts", None) or {}
    if not counts:
        return "PASSED"
    checked = counts["agreed"] + counts["refused"]
    share = f" ({100 * counts['agreed'] / checked:.0f}% accepted)" if checked else ""
    return (f"PASSED: {counts['agreed']} agreed, {counts['refused']} refused by a guard{share}, "
            f"{counts['skipped']} skipped")


def _load(path: str) -> Any:
    """``--trace``: the saved trace, any TorchScript file (fxtrace's or torch.jit's)."""
    import torch

    if not os.path.isfile(path):
        _fail(f"--trace {path}: no such file")
    try:
        with quiet_jit_deprecation():
            return torch.jit.load(path)
    except Exception as e:  # noqa: BLE001 - not a TorchScript file
        _fail(f"--trace {path}: torch.jit.load cannot read it: "
              f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}")


def cmd_check(args: argparse.Namespace) -> int:
    import fxtrace
    import fxtrace.inspect as fi

    fmt = check_format(args.format)
    if args.examples < 1:
        _fail(f"--examples must be at least 1, got {args.examples}")
    target = prepare(args)
    dynamic = parse_dynamic(args.dynamic or [], target)
    traced = _load(args.trace) if getattr(args, "trace", None) else do_trace(target, check=True)
    inputs = target.args if not target.kwargs else \
        trace_kwargs(target, target.args, target.kwargs)["example_kwarg_inputs"]
    kw: dict = {"inputs": inputs, "max_examples": args.examples, "seed": args.seed,
                "tolerance": args.tolerance}
    if dynamic:
        kw["dynamic"] = dynamic
    check = fxtrace.check  # looked up now: a test (or a user) may replace it
    params: Mapping[str, pyinspect.Parameter]
    try:
        params = pyinspect.signature(check).parameters
    except (TypeError, ValueError):
        params = {}
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        kw = {k: v for k, v in kw.items() if k in params}
    width = args.max_width or None
    try:
        report = check(traced, target.func, **kw)
    except fxtrace.PropertyCheckError as e:
        print(fi.check_table(e.report, fmt=fmt, max_width=width))
        print(_verdict_line(e.report, False))
        return EXIT_FAIL
    except fxtrace.InvalidArgument as e:
        _fail(f"fxtrace.check refused the arguments: {e}")
    print(fi.check_table(report, fmt=fmt, max_width=width))
    passed = bool(getattr(report, "ok", True))
    print(_verdict_line(report, passed))
    return EXIT_OK if passed else EXIT_FAIL
