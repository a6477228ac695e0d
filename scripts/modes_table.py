"""Write the modes table of docs/modes.md: benchmarks/modes.py's deterministic columns.

    python scripts/modes_table.py            # rewrite the block between the markers
    python scripts/modes_table.py --print    # print the table only
    python scripts/modes_table.py --check    # exit 1 when docs/modes.md has drifted

The table has no timings (they vary run to run); ``tests/test_symbolic.py`` (slow) fails when
the block differs from a fresh run.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Optional, Sequence

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import modes  # noqa: E402
from doc_block import DocBlock  # noqa: E402

__all__ = ["DOC", "BEGIN", "END", "BLOCK", "table", "block_of", "written"]

DOC = ROOT / "docs" / "modes.md"
BEGIN, END = "<!-- modes-table:begin -->", "<!-- modes-table:end -->"
BLOCK = DocBlock(DOC, BEGIN, END)
block_of, written = BLOCK.of, BLOCK.replaced


def table() -> str:
    """The fresh table (markdown), every family, in benchmarks/modes.py's order."""
    import torch
    rows = modes.run()
    return (f"torch {torch.__version__}\n\n"
            + modes.markdown(modes.COLUMNS, [r.cells() for r in rows]))


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--print", action="store_true", dest="print_only")
    p.add_argument("--check", action="store_true")
    a = p.parse_args(argv)
    fresh = table()
    if a.print_only:
        print(fresh)
        return 0
    return BLOCK.check_or_write(fresh, a.check)


if __name__ == "__main__":
    sys.exit(main())
