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


def _printing_examples() -> list:
    """``(page, file name, code, printed text)`` of every example shown with its output as
    ``prints (saved as `f.py`)`` followed by a plain code block."""
    found = []
    for page in PAGES:
        text = (DOCS / page).read_text()
        pattern = (r"```python\n((?:(?!```).)*)```\n\nprints \(saved as `([\w.]+)`\)\n\n"
                   r"```\n((?:(?!```).)*)```")
        for code, name, printed in re.findall(pattern, text, flags=re.S):
            found.append(pytest.param(code, name, printed, id=f"{page}:{name}"))
    return found


@pytest.mark.parametrize("code, name, printed", _printing_examples())
def test_doc_outputs_are_what_the_examples_print(tmp_path: pathlib.Path, code: str, name: str,
                                                 printed: str) -> None:
    """An example whose output the page shows prints exactly that, run as its own file (so
    the source lines in the output are that file's)."""
    import subprocess
    import sys

    (tmp_path / name).write_text(code)
    result = subprocess.run([sys.executable, name], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout == printed
