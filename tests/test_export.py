"""``fxtrace.export``: the concrete capture as a ``torch.export.ExportedProgram``.

Each exported program is written with ``torch.export.save``, read back with
``torch.export.load`` and run against eager at the example and at other sizes; guards fire
in the reloaded program; a refusal of export names the user's line; the CLI round trip
(``trace --export``, ``inspect FILE.pt2``); and rows of docs/export.md against a fresh run.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import warnings
from typing import Any, Dict

import pytest
import torch

import fxtrace
from fxtrace.exporting.program import ExportRefused, dim_symbols, dynamic_dims

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
import export_table  # noqa: E402
import zoo  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")]


def _reloaded(ep: torch.export.ExportedProgram, tmp_path: Any) -> torch.nn.Module:
    path = str(tmp_path / "program.pt2")
    torch.export.save(ep, path)
    return torch.export.load(path).module()


@pytest.mark.parametrize("name", ["mlp", "transformer_encoder", "lstm", "size_view_cat_index",
                                  "foo", "buffer"])
def test_zoo_exports_and_matches_eager_at_other_batch_sizes(name: str, tmp_path: Any) -> None:
    case = zoo.case(name)
    model = case.make()
    ep = fxtrace.export(model, case.example(case.batch))
    assert "args[0].shape[0]" in dynamic_dims(ep)  # the batch dim stays symbolic
    program = _reloaded(ep, tmp_path)
    for batch in (case.batch, case.batch + 1, case.batch + 3, 1):
        inputs = case.example(batch)
        want = model(*inputs)
        got = program(*inputs)
        assert export_table._same(got, want), (name, batch)


def test_linked_dims_share_one_symbol() -> None:
    case = zoo.case("foo")  # 2 * x + y: x and y must have equal sizes
    ep = fxtrace.export(case.make(), case.example(2))
    symbols: Dict[str, str] = dict(dim_symbols(ep))
    assert symbols["args[0].shape[0]"] == symbols["args[1].shape[0]"]
    assert symbols["args[0].shape[1]"] == symbols["args[1].shape[1]"]


def _branchy(x: torch.Tensor) -> torch.Tensor:
    if x.sum() > 0:  # the guarded line
        return x * 2
    return x - 1


def test_guard_fires_after_reload(tmp_path: Any) -> None:
    ep = fxtrace.export(_branchy, (torch.ones(3, 4),))
    program = _reloaded(ep, tmp_path)
    x = torch.rand(5, 4) + 0.1
    assert torch.equal(program(x), _branchy(x))
    line = _branchy.__code__.co_firstlineno + 1
    with pytest.raises(RuntimeError, match=f"fxtrace guard failed at test_export.py:{line}"):
        program(-x)


def test_guards_false_exports_no_assertion(tmp_path: Any) -> None:
    ep = fxtrace.export(_branchy, (torch.ones(3, 4),), guards=False)
    program = _reloaded(ep, tmp_path)
    assert torch.equal(program(-torch.ones(3, 4)), -torch.ones(3, 4) * 2)  # as torch.jit: frozen


def _sized(x: torch.Tensor) -> torch.Tensor:
    return x + torch.arange(int(x.shape[1]))  # int() freezes dim 1; dim 0 stays live


def test_specialised_dim_is_static_and_refused_after_reload(tmp_path: Any) -> None:
    ep = fxtrace.export(_sized, (torch.rand(3, 4),))
    assert dynamic_dims(ep) == ["args[0].shape[0]"]
    program = _reloaded(ep, tmp_path)
    x = torch.rand(6, 4)
    assert torch.equal(program(x), _sized(x))
    with pytest.raises(Exception, match="4"):
        program(torch.rand(3, 5))


def _nonzero_len(x: torch.Tensor) -> torch.Tensor:
    return x * len(x.nonzero())  # a size read from data: an unbacked symbol under export


def test_data_dependent_size_guard_is_a_runtime_assertion(tmp_path: Any) -> None:
    x = torch.tensor([1.0, 0.0, 2.0, 3.0])
    program = _reloaded(fxtrace.export(_nonzero_len, (x,)), tmp_path)
    assert torch.equal(program(x), _nonzero_len(x))
    with pytest.raises(RuntimeError, match="Runtime assertion failed"):
        program(torch.tensor([1.0, 0.0, 0.0, 3.0]))  # 2 nonzeros: the guard on 3 refuses


def test_dynamic_false_and_true() -> None:
    case = zoo.case("mlp")
    assert dynamic_dims(fxtrace.export(case.make(), case.example(2), dynamic=False)) == []
    every = dynamic_dims(fxtrace.export(case.make(), case.example(2), dynamic=True))
    assert every == ["args[0].shape[0]"]  # dim 1 feeds a Linear: export makes it static


def test_bad_dynamic_option_names_it() -> None:
    with pytest.raises(fxtrace.InvalidOption, match="dynamic must be"):
        fxtrace.export(_branchy, (torch.ones(2),), dynamic="batch")


def _tolist(x: torch.Tensor) -> torch.Tensor:
    values = x[0].tolist()  # export cannot check a list read from data
    return x * len(values)


def test_refusal_names_the_user_line() -> None:
    with pytest.raises(ExportRefused) as info:
        fxtrace.export(_tolist, (torch.rand(2, 3),))
    line = _tolist.__code__.co_firstlineno + 1
    assert isinstance(info.value, RuntimeError)
    assert info.value.source is not None and info.value.source.lineno == line
    assert f"test_export.py:{line}" in str(info.value)


def test_export_is_an_observation() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(5, 4)
    rng = torch.get_rng_state()
    fxtrace.export(model, (x,))
    assert model.training
    assert torch.equal(torch.get_rng_state(), rng)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


class _Counter(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("count", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.count = self.count + 1  # a rebinding: the program writes its own buffer
        return x * self.count


def test_stateful_program_starts_from_the_models_state(tmp_path: Any) -> None:
    model = _Counter()
    ep = fxtrace.export(model, (torch.ones(3),))
    assert model.count.item() == 0  # export (capture, probe) left the model as it was
    program = _reloaded(ep, tmp_path)
    for step in (1, 2, 3):  # the program counts from the model's state, on its own buffer
        assert torch.equal(program(torch.ones(4)), torch.full((4,), float(step)))
    assert model.count.item() == 0


def test_hf_bert_exports_and_matches_at_other_lengths(tmp_path: Any) -> None:
    pytest.importorskip("transformers")
    import hf_models
    case = hf_models.BY_NAME["bert"]
    model = case.fixed()
    ep = fxtrace.export(model, example_kwarg_inputs=case.inputs(*case.traced))
    symbols = dict(dim_symbols(ep))
    # the sequence length is one symbol for both inputs
    assert symbols["kwargs['input_ids'].shape[1]"] == symbols["kwargs['attention_mask'].shape[1]"]
    program = _reloaded(ep, tmp_path)
    for batch, length in [(3, 7), (2, 11), (1, 5)]:
        inputs = case.inputs(batch, length)
        with torch.no_grad():
            assert export_table._same(program(**inputs), model(**inputs)), (batch, length)


def test_cli_trace_export_and_inspect(tmp_path: Any) -> None:
    from fxtrace.cli import main
    source = tmp_path / "cli_model.py"
    source.write_text("import torch\n\n\nclass Net(torch.nn.Module):\n"
                      "    def __init__(self):\n        super().__init__()\n"
                      "        self.fc = torch.nn.Linear(4, 3)\n\n"
                      "    def forward(self, x):\n        y = self.fc(x)\n"
                      "        if x.mean() > -10:\n            y = y.relu()\n"
                      "        return y\n")
    out = tmp_path / "net.pt2"
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        text = io.StringIO()
        with contextlib.redirect_stdout(text), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert main(["trace", "cli_model.py:Net", "--input", "randn(3,4)", "--table",
                         "none", "--export", str(out)]) == 0
            assert main(["inspect", str(out)]) == 0
            assert main(["inspect", str(out), "--table", "nodes", "--max-width", "0"]) == 0
    finally:
        os.chdir(cwd)
        sys.modules.pop("cli_model", None)
    printed = text.getvalue()
    assert f"exported {out}" in printed and "args[0].shape[0]" in printed
    assert "aten.linear.default" in printed and "cli_model.py:10" in printed  # ops table
    assert "_assert_async" in printed and "cli_model.py:11" in printed  # guards table
    assert "fxtrace guard failed at cli_model.py:11" in printed  # nodes, uncut
    program = torch.export.load(str(out)).module()
    with pytest.raises(RuntimeError, match="fxtrace guard failed"):
        program(torch.full((2, 4), -100.0))


def test_doc_example_runs(tmp_path: Any) -> None:
    """The python blocks of docs/export.md run (they assert their own results)."""
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the example saves net.pt2
    try:
        for i, block in enumerate(re.findall(r"```python\n(.*?)```",
                                             export_table.DOC.read_text(), flags=re.S)):
            exec(compile(block, f"export.md[block {i}]", "exec"), {"__name__": f"doc_{i}"})
    finally:
        os.chdir(cwd)
    assert (tmp_path / "net.pt2").exists()


# -- docs/export.md --------------------------------------------------------------------------
FAST_ROWS = ["zoo:mlp", "trap:branch_on_sum", "trap:len_view"]


def _written_rows() -> Dict[str, str]:
    block = export_table.block_of(export_table.DOC.read_text())
    rows = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == len(export_table.COLUMNS) and cells[0] != "family" and \
                not cells[0].startswith("---"):
            rows[f"{cells[0]}:{cells[1]}"] = line
    return rows


def test_export_table_rows_match_a_fresh_run() -> None:
    written = _written_rows()
    fresh = export_table.table(FAST_ROWS).splitlines()[-len(FAST_ROWS):]
    for key, line in zip(FAST_ROWS, fresh):
        assert written[key] == line, f"docs/export.md drifted at {key}: run " \
                                     "scripts/export_table.py"


def test_export_table_lists_every_entry() -> None:
    keys = [e.key for e in export_table.entries()]
    assert sorted(_written_rows()) == sorted(keys)


@pytest.mark.slow
def test_export_table_is_up_to_date() -> None:
    fresh = export_table.table()
    assert export_table.block_of(export_table.DOC.read_text()) == fresh, \
        "docs/export.md drifted: run scripts/export_table.py"
