"""The rows of the specialisations table: what a capture froze, grouped where it repeats.

A specialisation list comes from a capture (``gm.meta["fxtrace"]``), a ``CaptureInfo``, a list
of ``Specialisation``, or a file fxtrace saved (``fxtrace.lower.metadata``: the list travels
in the TorchScript archive, so ``torch.jit.load`` gives it back).
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

from fxtrace.capture.meta import CaptureInfo, SourceLoc, Specialisation
from fxtrace.lower.metadata import saved_metadata

from ._format import fmt_value
from ._rows import _as_graph_module, _is_script, _type_error

__all__ = ["specialisations_of", "specialisation_rows"]


def specialisations_of(x: Any) -> List[Specialisation]:
    """The specialisations ``x`` carries (see the module docstring); TypeError for a
    TorchScript module fxtrace did not save, or any other type."""
    if isinstance(x, (list, tuple)) and all(isinstance(s, Specialisation) for s in x):
        return list(x)
    if isinstance(x, CaptureInfo):
        return list(x.specialisations)
    gm = _as_graph_module(x)
    if gm is None:
        if _is_script(x):
            saved = saved_metadata(x)
            if saved is not None:
                return list(saved.specialisations)
            raise TypeError(
                f"specialisations_table needs an fxtrace capture; this "
                f"{type(x).__qualname__} carries none (a ScriptModule fxtrace never saw "
                "records no specialisations). Accepted: fxtrace result, torch.fx.GraphModule, "
                "CaptureInfo, list of Specialisation, a file saved from an fxtrace result")
        raise _type_error(x)
    info = gm.meta.get("fxtrace") if hasattr(gm, "meta") else None
    return list(info.specialisations) if isinstance(info, CaptureInfo) else []


def _more(first: str, others: int) -> str:
    return f"{first} (+{others})" if others else first


def specialisation_rows(x: Any, group: bool = True) -> List[Tuple[Any, ...]]:
    """``(#, kind, value, count, location, code, guarded, module, detail)`` per row; with
    ``group``, one row per set of specialisations equal up to their module and location."""
    groups: Dict[Tuple[Any, ...], List[Specialisation]] = {}
    for i, s in enumerate(specialisations_of(x)):
        key: Tuple[Any, ...] = (s.kind, fmt_value(s.value), s.guarded, s.detail) if group else (i,)
        groups.setdefault(key, []).append(s)
    rows: List[Tuple[Any, ...]] = []
    for i, members in enumerate(groups.values()):
        s = members[0]
        src = s.source if isinstance(s.source, SourceLoc) else None
        places = {(m.source.filename, m.source.lineno) for m in members
                  if isinstance(m.source, SourceLoc)}
        modules = {m.module for m in members}
        rows.append((i, s.kind, fmt_value(s.value), len(members),
                     _more(src.short, len(places) - 1) if src is not None else "",
                     src.code.strip() if src is not None else "",
                     "yes" if s.guarded else "no",
                     _more(s.module or ("(root)" if len(modules) > 1 else ""), len(modules) - 1),
                     s.detail))
    return rows
