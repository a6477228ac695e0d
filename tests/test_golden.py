"""Golden files: the TorchScript fxtrace generates and the tables it prints, for a few zoo cases.

A change to codegen, capture or the tables shows up here as a readable diff of the generated
program instead of only as a numerical difference (or none) in the differential tests. When the
change is intended, rewrite the files and review them in the commit:

    FXTRACE_ACCEPT=1 pytest tests/test_golden.py

Every text is normalised before it is compared, so a golden file holds no machine detail: paths
are relative to the repository (or ``<torch>/``), memory addresses read ``0x?``. Nothing timed
is printed.
"""
from __future__ import annotations

import difflib
import functools
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
import torch

import fxtrace
import fxtrace.inspect as fi

sys.path.insert(0, os.path.dirname(__file__))
from zoo import BY_NAME  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
ACCEPT = os.environ.get("FXTRACE_ACCEPT") == "1"

# An MLP, a conv-bn-relu net (mode and rank guards in BatchNorm), an LSTM (shape and dtype
# guards), a function with size arithmetic and slicing, a plain function.
CODE_CASES = ["mlp", "conv_bn_relu", "lstm", "size_view_cat_index", "foo"]
TABLE_CASES = ["conv_bn_relu", "lstm"]
TABLES: Dict[str, Callable[[Any], str]] = {
    "nodes": lambda t: fi.nodes_table(t, recurse=True),
    "specialisations": fi.specialisations_table,
    "modules": fi.modules_table,
}

_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]+\b")


def normalise(text: str) -> str:
    """``text`` without what differs between machines and runs: absolute paths, addresses,
    trailing spaces; it ends with one newline."""
    for prefix, name in ((Path(torch.__file__).resolve().parent, "<torch>"), (ROOT, "")):
        for spelling in {str(prefix), os.path.realpath(prefix)}:
            text = text.replace(spelling + os.sep, f"{name}/" if name else "")
    text = _ADDRESS.sub("0x?", text)
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


@functools.lru_cache(maxsize=None)  # one trace per case for all its files; tables only read it
def _trace(name: str) -> Any:
    case = BY_NAME[name]
    with warnings.catch_warnings():
        # TracerWarnings for the guards are expected; the goldens are about the output.
        warnings.simplefilter("ignore", fxtrace.TracerWarning)
        return fxtrace.trace(case.make(), case.example(case.batch))


def _method_names(module: torch.jit.ScriptModule) -> List[str]:
    names = sorted(module._c._method_names())
    return sorted(names, key=lambda n: n != "forward")  # forward first, then by name


def script_code(traced: Any) -> str:
    """The TorchScript source of every method of every module of ``traced`` (a ScriptFunction:
    its code), each under a ``# <module path>.<method>`` header, in ``named_modules`` order."""
    if not isinstance(traced, torch.jit.ScriptModule):
        return f"# {traced.name}\n{traced.code}"
    parts = []
    for path, module in traced.named_modules():
        for method in _method_names(module):
            header = f"{path}.{method}" if path else method
            parts.append(f"# {header}\n{module._c._get_method(method).code}")
    return "\n".join(parts)


def check_golden(file_name: str, actual: str) -> None:
    """``actual`` (normalised) equals ``tests/golden/<file_name>``, or the test fails with a
    unified diff; with FXTRACE_ACCEPT=1 the file is rewritten instead."""
    path = GOLDEN / file_name
    actual = normalise(actual)
    if ACCEPT:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(actual)
        return
    if not path.exists():
        pytest.fail(f"no golden file {path.relative_to(ROOT)}; write it with FXTRACE_ACCEPT=1 "
                    "pytest tests/test_golden.py and review it")
    expected = path.read_text()
    if actual != expected:
        diff = difflib.unified_diff(expected.splitlines(keepends=True),
                                    actual.splitlines(keepends=True),
                                    f"golden/{file_name}", "actual")
        pytest.fail(f"output differs from golden/{file_name} (FXTRACE_ACCEPT=1 rewrites it):\n"
                    + "".join(diff), pytrace=False)


@pytest.mark.parametrize("name", CODE_CASES)
def test_generated_torchscript(name: str) -> None:
    check_golden(f"{name}.code.txt", script_code(_trace(name)))


@pytest.mark.parametrize("table", sorted(TABLES))
@pytest.mark.parametrize("name", TABLE_CASES)
def test_inspect_table(name: str, table: str) -> None:
    check_golden(f"{name}.{table}.txt", TABLES[table](_trace(name)))


def test_normalise_removes_machine_detail() -> None:
    text = f"at {ROOT / 'tests' / 'zoo.py'}:3 in <object at 0x7f3a9c>   \n{torch.__file__}"
    assert normalise(text) == "at tests/zoo.py:3 in <object at 0x?>\n<torch>/__init__.py\n"


def test_a_difference_fails_with_a_diff(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "GOLDEN", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "ACCEPT", False)
    (tmp_path / "x.txt").write_text("a\nb\n")
    check_golden("x.txt", "a\nb")  # equal after normalisation: passes
    with pytest.raises(pytest.fail.Exception, match=r"(?s)-b\n\+c"):
        check_golden("x.txt", "a\nc\n")


def test_accept_writes_the_normalised_text(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "GOLDEN", tmp_path / "golden")
    monkeypatch.setattr(sys.modules[__name__], "ACCEPT", True)
    check_golden("y.txt", f"{ROOT / 'fxtrace' / 'api.py'}:1  ")
    assert (tmp_path / "golden" / "y.txt").read_text() == "fxtrace/api.py:1\n"
