"""Every ``python`` code block in the user guide runs, in order, in one namespace per page."""
import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
PAGES = ["index.md", "strategies.md", "checking.md", "soundness.md"]


def _blocks(text: str) -> list:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.parametrize("page", PAGES)
def test_doc_examples_run(page: str) -> None:
    """The examples of the page execute without error (they assert their own results)."""
    blocks = _blocks((DOCS / page).read_text())
    assert blocks, f"{page} has no python examples"
    for i, block in enumerate(blocks):
        namespace: dict = {"__name__": f"docs_{page}_{i}"}
        exec(compile(block, f"{page}[block {i}]", "exec"), namespace)
