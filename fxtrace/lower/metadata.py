"""What a saved trace remembers: its specialisations and guards, readable after ``torch.jit.load``.

NOTE [Saved metadata]
A trace saved with ``torch.jit.save`` must still load with plain ``torch.jit.load`` and in C++,
so the metadata travels as things TorchScript itself saves, in two places:

* a string attribute ``_fxtrace_metadata`` (JSON) on a traced ScriptModule: an attribute is
  part of the module's state, so it survives save/load wherever the module goes (C++
  ``torch::jit::load`` ignores it);
* the same JSON as the last line of the root method's generated source, a comment
  (``# fxtrace-metadata: {...}``). TorchScript saves the source text of every method with its
  debug information (``code/*.debug_pkl``), so it is in the archive even for a
  ``ScriptFunction``, which ``torch.jit.save`` wraps in a ``PlaceholderModule`` that has no
  attribute of ours; :func:`read_archive` finds it there. A comment after the last line moves
  no line of the generated code, so the line map (NOTE [Line map]) is unchanged.

User locations need nothing extra: each generated line ends in ``# file.py:12``, and the
source ranges a loaded graph keeps quote that line (``fxtrace.inspect`` reads it back).
"""
from __future__ import annotations

import dataclasses
import json
import re
import zipfile
from typing import Any, Dict, List, Optional

import torch
import torch.fx as fx

from ..capture.meta import INFO, CaptureInfo, SourceLoc, Specialisation

__all__ = ["ATTRIBUTE", "COMMENT", "SavedMetadata", "metadata_json", "with_metadata",
           "attach", "saved_metadata", "read_archive", "remember"]

#: The ScriptModule attribute holding the JSON.
ATTRIBUTE = "_fxtrace_metadata"
#: The comment that starts the metadata line of a generated method's source.
COMMENT = "# fxtrace-metadata: "
_VERSION = 1
_IN_ARCHIVE = re.compile(re.escape(COMMENT).encode() + rb"(\{[^\n]*\})\n")


class Text(str):
    """A saved value, kept as the text it printed as (``True``, ``4``, ``float32``)."""

    def __repr__(self) -> str:
        return str(self)


@dataclasses.dataclass
class SavedMetadata:
    """What a saved trace carries: the capture's name and mode and its specialisations (their
    values as :class:`Text`, their locations with the user's full file names)."""

    name: str
    mode: str
    specialisations: List[Specialisation]


def _value_text(value: Any) -> str:
    if isinstance(value, (bool, int, float)) or value is None:
        return repr(value)
    return str(value).replace("torch.", "")


def _spec_dict(s: Specialisation) -> Dict[str, Any]:
    src = s.source
    return {"kind": s.kind, "value": _value_text(s.value), "module": s.module,
            "guarded": bool(s.guarded), "detail": s.detail,
            "source": None if src is None else [src.filename, src.lineno, src.function, src.code]}


def metadata_json(gm: fx.GraphModule) -> Optional[str]:
    """The JSON of ``gm``'s capture (one line, ASCII), or None for a graph fxtrace did not
    capture."""
    info = gm.meta.get(INFO) if hasattr(gm, "meta") else None
    if not isinstance(info, CaptureInfo):
        return None
    data = {"fxtrace": _VERSION, "name": info.name, "mode": info.mode,
            "specialisations": [_spec_dict(s) for s in info.specialisations]}
    return json.dumps(data, ensure_ascii=True, separators=(",", ":"), default=str)


def with_metadata(src: str, gm: fx.GraphModule) -> str:
    """``src`` (a generated method of ``gm``) with the metadata comment as its last line."""
    text = metadata_json(gm)
    return src if text is None else f"{src.rstrip()}\n{COMMENT}{text}\n"


def attach(script: Any, gm: fx.GraphModule) -> None:
    """Register the metadata of ``gm``'s capture on ``script`` (a ScriptModule) as the string
    attribute :data:`ATTRIBUTE`, saved and loaded with it."""
    text = metadata_json(gm)
    if text is not None and not script._c.hasattr(ATTRIBUTE):
        script._c._register_attribute(ATTRIBUTE, torch._C.StringType.get(), text)


def _parse(text: str) -> Optional[SavedMetadata]:
    try:
        data = json.loads(text)
        specs = []
        for d in data["specialisations"]:
            src = d.get("source")
            loc = None if src is None else SourceLoc(str(src[0]), int(src[1]), str(src[2]),
                                                     str(src[3]))
            specs.append(Specialisation(str(d["kind"]), Text(d["value"]), loc,
                                        str(d.get("module", "")), bool(d.get("guarded")),
                                        str(d.get("detail", ""))))
        return SavedMetadata(str(data.get("name", "")), str(data.get("mode", "")), specs)
    except (ValueError, KeyError, TypeError, IndexError):
        return None  # not ours, or from a format this version does not read


def saved_metadata(x: Any) -> Optional[SavedMetadata]:
    """The metadata a (loaded) ScriptModule carries in :data:`ATTRIBUTE`, or None."""
    c = getattr(x, "_c", None)
    if c is None or not hasattr(c, "hasattr") or not c.hasattr(ATTRIBUTE):
        return None
    text = c.getattr(ATTRIBUTE)
    return _parse(text) if isinstance(text, str) else None


def read_archive(path: str) -> Optional[str]:
    """The metadata JSON in a file written by ``torch.jit.save`` (from the saved source text of
    its methods, see NOTE [Saved metadata]), or None."""
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if name.endswith(".debug_pkl"):
                    m = _IN_ARCHIVE.search(archive.read(name))
                    if m is not None:
                        return m.group(1).decode("ascii")
    except (OSError, zipfile.BadZipFile):
        return None
    return None


def remember(loaded: Any, path: str) -> None:
    """Give ``loaded`` (``torch.jit.load(path)``) the metadata its archive holds when the
    module itself carries none (a saved ``ScriptFunction``), so that tables of the loaded
    object find it (:func:`saved_metadata`)."""
    if saved_metadata(loaded) is not None or not hasattr(getattr(loaded, "_c", None), "hasattr"):
        return
    text = read_archive(path)
    if text is not None and _parse(text) is not None:
        loaded._c._register_attribute(ATTRIBUTE, torch._C.StringType.get(), text)
