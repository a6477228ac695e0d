"""A generated block of a doc page: the text between two HTML-comment markers.

The table scripts (``modes_table.py``, ``export_table.py``) write a fresh table between their
markers, print it, or report whether the page has drifted from a fresh run; this is that
shared part, so each script only says how its table is made.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

__all__ = ["DocBlock"]


@dataclasses.dataclass(frozen=True)
class DocBlock:
    """The block of ``path`` between ``begin`` and ``end`` (both markers kept on rewrite)."""

    path: Path
    begin: str
    end: str

    def of(self, text: str) -> str:
        """The block of ``text``, without the blank lines around it (ValueError when a
        marker is missing)."""
        start, end = text.index(self.begin) + len(self.begin), text.index(self.end)
        return text[start:end].strip("\n")

    def replaced(self, text: str, fresh: str) -> str:
        """``text`` with the block replaced by ``fresh``; everything else as it was."""
        start, end = text.index(self.begin) + len(self.begin), text.index(self.end)
        return f"{text[:start]}\n{fresh}\n{text[end:]}"

    def check_or_write(self, fresh: str, check: bool) -> int:
        """With ``check``, 0 when the page's block equals ``fresh`` and 1 when it has
        drifted; otherwise write ``fresh`` into the page. Says which on stdout."""
        text = self.path.read_text()
        name = f"docs/{self.path.name}"
        if check:
            same = self.of(text) == fresh
            print(f"{name} is up to date" if same else f"{name} has drifted")
            return 0 if same else 1
        self.path.write_text(self.replaced(text, fresh))
        print(f"wrote {name}")
        return 0
