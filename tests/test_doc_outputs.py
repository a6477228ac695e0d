"""The example outputs in docs/inspection.md and docs/cli.md are what fxtrace prints now.

``scripts/gen_docs.py`` reruns every example (in process) and compares each block between
``<!-- gen:NAME -->`` markers with the fresh output; a drifted block fails here with a diff.
Fix by running ``python scripts/gen_docs.py --write`` (and reading the diff: a change in the
output may be a regression rather than a doc to update).
"""
from __future__ import annotations

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

# torch.jit is used by the examples; its deprecation notices are not under test.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


def _gen_docs():
    spec = importlib.util.spec_from_file_location("_fxtrace_gen_docs",
                                                  ROOT / "scripts" / "gen_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_match_real_output() -> None:
    gen = _gen_docs()
    diffs = gen.check()
    assert not diffs, ("docs drifted from the real output; run python scripts/gen_docs.py "
                       "--write\n\n" + "\n".join(diffs))


def test_drift_is_detected_and_written_back(tmp_path, monkeypatch) -> None:
    """Without running any example: blocks read back from the docs match; a changed block,
    a missing marker and an unknown marker are each reported; --write rewrites a copy."""
    gen = _gen_docs()
    docs = {}
    for key, path in gen.DOCS.items():
        copy = tmp_path / path.name
        copy.write_text(path.read_text())
        docs[key] = copy
    monkeypatch.setattr(gen, "DOCS", docs)
    blocks = {m.group("name"): m.group("body").rstrip("\n")
              for p in docs.values() for m in gen.MARKER.finditer(p.read_text())}
    assert {"cli.trace-net", "cli.dot", "inspection.nodes", "inspection.passes"} <= set(blocks)
    assert gen.drift(blocks) == []
    changed = dict(blocks, **{"cli.errors": blocks["cli.errors"] + "\nextra"})
    changed["cli.new-block"] = "x"
    del changed["inspection.ops"]
    names = [n for n, _, _ in gen.drift(changed)]
    assert sorted(names) == ["cli.errors", "cli.new-block", "inspection.ops"]
    assert "+extra" in gen.diff_text(*gen.drift(changed)[0])
    assert gen.write(changed) == ["cli.errors"]
    assert "\nextra\n<!-- /gen:cli.errors -->" in docs["cli"].read_text()


def test_ms_column_is_normalised() -> None:
    from tabulate import tabulate

    gen = _gen_docs()
    headers = ["#", "pass", "delta", "ms", "modified"]

    def table(ms):
        return tabulate([[0, "dce", "-2", ms[0], "yes"], [1, "cse", "+0", ms[1], "no"]],
                        headers, disable_numparse=True,
                        colalign=("right", "left", "right", "right", "left"))

    slow = gen.normalise_ms(table(["12.50", "0.25"]))
    assert slow == gen.normalise_ms(table(["0.01", "0.02"]))  # the timing no longer shows
    assert [line.split()[3] for line in slow.splitlines()[2:]] == ["…", "…"]
    assert slow.splitlines()[0].split() == headers
