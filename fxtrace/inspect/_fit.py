"""Tables that fit a terminal: cells cut to a line width, class names qualified once.

NOTE [Table width]
A table is rendered whole (every column of ``COLUMNS``) and then made to fit ``width``
characters: the text columns share what is left after the fixed ones (numbers, flags), the
widest giving up characters first, none below its header or :data:`MIN_CELL`. Paths and
qualified names (module paths, types, call targets, locations) are cut from the left, so the
end that names the thing survives (``…attention.self``, ``…modeling_bert.py:440``); code,
arguments and details are cut from the right. ``max_width`` still caps every cell first.
Formats that are data rather than a picture (html, tsv, latex, ...) are never cut to a width.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Sequence

from ._format import ELLIPSIS

__all__ = ["DEFAULT_WIDTH", "DEFAULT_MAX_WIDTH", "MIN_CELL", "CUT_LEFT", "TIERS", "cut", "fit_rows",
           "fits_width",
           "short_names", "legend"]

#: The line width tables fit by default (a terminal with room for a scrollbar).
DEFAULT_WIDTH = 120
#: The default cap of one cell, the same for every table and the command line.
DEFAULT_MAX_WIDTH = 60
#: No text column is cut below this many characters (or its header's width).
MIN_CELL = 8
#: Columns whose text is a path or qualified name: cut from the left, keeping the end.
CUT_LEFT = frozenset({"target", "module", "type", "location", "location a", "location b", "op"})
#: The order in which text columns give up characters: free text and module paths first
#: (sharing the cut), then (any other text column) names, targets and locations.
TIERS = (frozenset({"code", "args", "kwargs", "value", "detail", "module", "shape", "a", "b",
                    "expected", "actual", "first divergence"}),)
#: Columns never cut to fit a width (numbers, flags, marks).
FIXED = frozenset({"#", "#a", "#b", "", "mark", "opcode", "guarded", "count", "share", "delta",
                   "ms", "modified", "own params", "own bytes", "total params", "total bytes",
                   "nodes", "calls", "max abs", "max rel", "status", "kind", "nodes before",
                   "nodes after", "dtype", "device"})
#: tabulate formats that are data, not a picture: never cut to a width.
_UNCUT_FORMATS = ("html", "unsafehtml", "tsv", "latex", "latex_raw", "latex_booktabs",
                  "latex_longtable", "mediawiki", "moinmoin", "jira", "textile", "asciidoc")


def cut(text: str, n: Optional[int], left: bool = False) -> str:
    """``text`` in at most ``n`` characters, ``…`` where it was cut (at the start when
    ``left``); one line; ``n`` of None or 0 keeps it whole."""
    if "\n" in text:
        text = " ".join(part.strip() for part in text.splitlines() if part.strip())
    if not n or len(text) <= n:
        return text
    if n <= 1:
        return ELLIPSIS
    return ELLIPSIS + text[len(text) - n + 1:] if left else text[: n - 1] + ELLIPSIS


def fits_width(fmt: str) -> bool:
    """Whether tables in ``fmt`` are pictures cut to a line width (not data: html, tsv...)."""
    return fmt not in _UNCUT_FORMATS and not fmt.startswith("latex")


def _widths(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> List[int]:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    return widths


def _cap(widths: List[int], floors: List[int], shrink: List[int], room: int) -> Optional[int]:
    """The largest cap ``c`` with ``sum(min(w, max(c, floor)))`` over ``shrink`` <= ``room``."""
    def used(c: int) -> int:
        return sum(min(widths[i], max(c, floors[i])) for i in shrink)

    lo, hi = 0, max((widths[i] for i in shrink), default=0)
    if not shrink or used(hi) <= room:
        return None  # fits uncut
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if used(mid) <= room else (lo, mid - 1)
    return lo


def fit_rows(rows: List[List[Any]], headers: Sequence[str], fmt: str, width: Optional[int],
             max_width: Optional[int], render: Any) -> List[List[Any]]:
    """``rows`` with every text cell cut to ``max_width`` and the text columns cut so that
    ``render(rows)`` is at most ``width`` characters wide (see NOTE [Table width])."""
    text_cols = [i for i, h in enumerate(headers) if h not in FIXED]
    left = [headers[i] in CUT_LEFT for i in range(len(headers))]
    cells = [[cut(str(c), max_width, left[i]) if i in text_cols else c for i, c in enumerate(r)]
             for r in rows]
    if not width or not rows or not fits_width(fmt):
        return cells
    texts = [[str(c) for c in r] for r in cells]
    widths = _widths(texts, headers)
    sample = render([["x" * w for w in widths]])  # the format's own padding and borders
    overhead = max(len(line) for line in sample.splitlines()) - sum(widths)
    floors = [max(len(headers[i]), MIN_CELL) for i in range(len(headers))]
    room = width - overhead - sum(w for i, w in enumerate(widths) if i not in text_cols)
    current = list(widths)
    limit: Dict[int, int] = {}
    tiers = [[i for i in text_cols if headers[i] in tier] for tier in TIERS]
    tiers.append([i for i in text_cols if not any(i in t for t in tiers)])
    for tier in tiers:  # each tier is cut only as far as the earlier ones could not go
        if not tier:
            continue
        cap = _cap(current, floors, tier, room - sum(current[i] for i in text_cols
                                                        if i not in tier))
        if cap is None:
            break
        for i in tier:
            limit[i] = min(current[i], max(cap, floors[i]))
            current[i] = limit[i]
        if sum(current[i] for i in text_cols) <= room:
            break
    if not limit:
        return cells
    return [[cut(str(c), limit[i], left[i]) if i in limit else c for i, c in enumerate(r)]
            for r in cells]


def short_names(qualified: Iterable[str]) -> Dict[str, str]:
    """``{qualified class name: the name a table prints}``: the class name alone, unless two
    classes of that name come from different modules (then both stay qualified)."""
    names = set(qualified)
    by_short: Dict[str, List[str]] = {}
    for q in names:
        by_short.setdefault(q.rsplit(".", 1)[-1], []).append(q)
    return {q: (s if len(qs) == 1 else q) for s, qs in by_short.items() for q in qs}


def legend(qualified: Iterable[str], width: Optional[int]) -> str:
    """``classes: models.vision.{Bottleneck, ResNetStyle}; torch.nn.modules.conv.Conv2d``:
    where each class a table names by its short name comes from, every module once."""
    qualified = sorted(set(qualified))
    shorts = short_names(qualified)
    modules: Dict[str, List[str]] = {}
    for q in qualified:
        module, _, name = q.rpartition(".")
        if module and shorts[q] != q:
            modules.setdefault(module, []).append(name)
    if not modules:
        return ""
    words: List[str] = []  # wrapped between words, never inside a name
    for k, module in enumerate(sorted(modules)):
        names = modules[module]
        end = ";" if k < len(modules) - 1 else ""
        if len(names) == 1:
            words.append(f"{module}.{names[0]}{end}")
            continue
        words += [f"{module}.{{{names[0]},"] + [f"{n}," for n in names[1:-1]] + \
            [f"{names[-1]}}}{end}"]
    lines = ["classes:"]
    for word in words:
        if width and len(lines[-1]) + 1 + len(word) > width and lines[-1].strip():
            lines.append(" ")
        lines[-1] += " " + word
    return "\n".join(lines)
