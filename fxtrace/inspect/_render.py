"""How every table is rendered: its documented columns, tabulate, the fit to a width and the
legend of class names (see NOTE [Table width] in ``_fit.py``)."""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from ._fit import fit_rows, fits_width, legend, short_names

__all__ = ["COLUMNS", "render_table", "short_types", "with_legend"]

#: The documented column set of each table, in display order.
COLUMNS: Dict[str, Tuple[str, ...]] = {
    "nodes": ("#", "opcode", "name", "target", "args", "kwargs", "shape", "dtype", "device",
              "location", "module"),
    "modules": ("module", "type", "own params", "own bytes", "total params", "total bytes",
                "nodes", "calls"),
    "specialisations": ("#", "kind", "value", "count", "location", "code", "guarded",
                        "module", "detail"),
    "ops": ("op", "count", "share"),
    "diff": ("", "mark", "#a", "a", "location a", "#b", "b", "location b"),
    "check": ("output", "status", "max abs", "max rel", "expected", "actual",
              "first divergence"),
    "passes": ("#", "pass", "nodes before", "nodes after", "delta", "ms", "modified"),
}


def _tabulate(rows: Sequence[Sequence[Any]], headers: Sequence[str], fmt: str,
              colalign: Optional[Sequence[str]] = None) -> str:
    try:
        from tabulate import tabulate
    except ImportError as e:  # pragma: no cover - exercised only without tabulate
        raise ImportError("fxtrace.inspect needs tabulate: pip install tabulate") from e
    kw: Dict[str, Any] = {}
    if colalign is not None and rows:
        kw["colalign"] = tuple(colalign)
    return tabulate([list(r) for r in rows], headers=list(headers), tablefmt=fmt,
                    disable_numparse=True, **kw)


def _align(table: str, right: Iterable[str]) -> List[str]:
    right = set(right)
    return ["right" if c in right else "left" for c in COLUMNS[table]]


def render_table(name: str, body: Sequence[Sequence[Any]], fmt: str, max_width: Optional[int],
           width: Optional[int], right: Iterable[str] = (), drop_empty: bool = True) -> str:
    """``body`` under ``COLUMNS[name]``, cells cut to ``max_width`` and the whole to ``width``
    characters (see NOTE [Table width] in ``_fit.py``). When fitting a width, a column that
    is empty in every row is left out (``kwargs`` of a graph without keyword arguments)."""
    headers = list(COLUMNS[name])
    colalign = _align(name, right)
    if width and drop_empty and body and fits_width(fmt):
        keep = [i for i in range(len(headers)) if any(str(r[i]) != "" for r in body)]
        headers = [headers[i] for i in keep]
        colalign = [colalign[i] for i in keep]
        body = [[r[i] for i in keep] for r in body]

    def render(rows: Sequence[Sequence[Any]]) -> str:
        return _tabulate(rows, headers, fmt, colalign)

    return render(fit_rows([list(r) for r in body], headers, fmt, width, max_width, render))


def short_types(types: Iterable[str], fmt: str) -> Dict[str, str]:
    """The names a table prints for these classes: short, with a legend, in a picture
    format; qualified in a data format (tsv, html, ...), which gets no legend line."""
    types = list(types)
    return short_names(types) if fits_width(fmt) else {t: t for t in types}


def with_legend(table: str, types: Iterable[str], fmt: str, width: Optional[int]) -> str:
    text = legend(types, width) if fits_width(fmt) else ""
    return f"{table}\n{text}" if text else table
