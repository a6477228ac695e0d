"""Tables on real-sized models (issue 18, item 6): a ResNet-style CNN and a small BERT.

The tables fit 120 columns by default, name classes once in a legend, group repeated
specialisations with a count, call rank checks rank checks, place the root's training guard at
the user's code (not at the ``fxtrace.trace`` call) and count each op once. Golden files in
``tests/golden/`` (``FXTRACE_ACCEPT=1 pytest tests/test_real_tables.py`` rewrites them).
"""
from __future__ import annotations

import functools
import os
import sys
import warnings
from typing import Any

import pytest

import fxtrace
import fxtrace.inspect as fi

sys.path.insert(0, os.path.dirname(__file__))
from models.vision import BY_NAME  # noqa: E402
from test_golden import check_golden  # noqa: E402

WIDTH = 120
TABLES = ("nodes", "modules", "specialisations", "ops")


@functools.lru_cache(maxsize=None)
def resnet() -> Any:
    case = BY_NAME["resnet"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fxtrace.TracerWarning)
        return fxtrace.trace(case.make().eval(), case.example(2))


@functools.lru_cache(maxsize=None)
def bert() -> Any:
    pytest.importorskip("transformers")
    from hf_models import bert as make
    from hf_models import text_inputs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings of transformers' own code
        return fxtrace.trace(make(), example_kwarg_inputs=text_inputs(2, 7), strict=False)


MODELS = {"resnet": resnet, "bert": bert}


def _widest(text: str) -> int:
    return max(len(line) for line in text.splitlines())


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("model", sorted(MODELS))
def test_tables_fit_120_columns_by_default(model: str, table: str) -> None:
    text = fi.TABLES[table](MODELS[model]())
    assert _widest(text) <= WIDTH
    if table != "nodes":  # (the nodes table of a whole model is long; its width is the point)
        check_golden(f"{model}_real.{table}.txt", text)


def test_resnet_specialisations_grouped_and_rank_checks_named() -> None:
    text = fi.specialisations_table(resnet(), fmt="plain")
    rows = [line.split() for line in text.splitlines()[1:]]
    # 20 BatchNorms and a dropout frozen in eval mode, the BatchNorms rank-checked: 2 rows, not 41
    assert len(rows) == 2
    assert {(r[1], r[3]) for r in rows} == {("training", "21"), ("rank", "20")}
    text = fi.specialisations_table(resnet(), width=None, max_width=None)
    assert "rank of input is 4 (4 != 4 is False)" in text
    assert "compare" not in text
    ungrouped = fi.specialisations_table(resnet(), group=False, fmt="plain")
    assert len(ungrouped.splitlines()) == 1 + 41


def test_ops_table_counts_a_module_call_or_its_inside_not_both() -> None:
    counts = {}
    for line in fi.ops_table(resnet(), fmt="plain").splitlines()[1:]:
        if line.startswith("classes:") or line.startswith(" "):
            continue
        op, n, _ = line.split()
        counts[op] = int(n)
    assert counts["call_function:torch.conv2d"] == 20
    assert not any(op.startswith("call_module:") for op in counts)   # all calls are traced
    flat = fi.ops_table(resnet(), recurse=False, fmt="plain")        # only the root's graph
    assert "call_module:Conv2d" in flat and "torch.conv2d" not in flat


def test_class_names_are_short_and_qualified_once_in_a_legend() -> None:
    text = fi.modules_table(bert())
    assert "transformers.models.bert.modeling_bert.Bert" not in "\n".join(
        line for line in text.splitlines() if not line.startswith(("classes:", " ")))
    legend = text[text.index("classes:"):]
    assert legend.count("transformers.models.bert.modeling_bert") == 1
    assert "BertSelfAttention" in legend
    tsv = fi.modules_table(bert(), fmt="tsv")     # data formats: qualified names, no legend
    assert "transformers.models.bert.modeling_bert.BertModel" in tsv and "classes:" not in tsv


def test_root_training_guard_is_located_in_the_models_code_not_the_trace_call() -> None:
    specs = bert()._fxtrace_capture.meta["fxtrace"].specialisations
    (root,) = [s for s in specs if s.kind == "training" and s.module == ""]
    assert root.source is not None
    assert os.path.basename(root.source.filename) != os.path.basename(__file__)
    assert "training" in root.source.code


def test_width_none_keeps_cells_whole() -> None:
    text = fi.specialisations_table(bert(), width=None, max_width=None)
    assert "encoder.layer.0.attention.self (+1)" in text
    assert _widest(text) > WIDTH
