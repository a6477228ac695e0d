"""fxtrace.check over the model zoo (tests/zoo.py): trace = eager, save/load = eager,
re-tracing stable, on inputs_like-generated inputs (dims the model accepts at other sizes)."""
from __future__ import annotations

import pytest
from hypothesis import settings
from zoo import CASES

import fxtrace

pytestmark = [
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.save` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning"),
]

SLOW = {"transformer_encoder": 2, "lstm": 3, "residual_block": 3, "conv_bn_relu": 3}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_zoo_case_properties(case):
    model = case.make()
    traced = fxtrace.trace(model, case.example(case.batch))
    n = settings().max_examples
    examples = n if n > 100 else min(SLOW.get(case.name, 5), n)  # thorough: the profile's count
    report = fxtrace.check(traced, model, max_examples=examples)
    assert report.ok, fxtrace.inspect.check_table(report)
