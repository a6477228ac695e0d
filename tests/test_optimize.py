"""The opt-in optimisation set (``fxtrace.optimize``, NOTE [Optimisation set]) and the fused
kernels a no-grad capture records (NOTE [Fast paths]): differential against eager."""
from __future__ import annotations

import warnings
from typing import Any, Tuple

import pytest
import torch
import torch.fx as fx
from models import vision
from zoo import CASES, ZooCase

import fxtrace
from fxtrace.errors import InvalidArgument
from fxtrace.passes import count_nodes


def _leaves(value: Any) -> Tuple[torch.Tensor, ...]:
    if isinstance(value, torch.Tensor):
        return (value,)
    if isinstance(value, dict):
        return tuple(t for v in value.values() for t in _leaves(v))
    if isinstance(value, (tuple, list)):
        return tuple(t for v in value for t in _leaves(v))
    return ()


def _assert_matches(got: Any, want: Any) -> None:
    got_t, want_t = _leaves(got), _leaves(want)
    assert len(got_t) == len(want_t) > 0
    for g, w in zip(got_t, want_t):
        # the BatchNorm fold reassociates float arithmetic: rounding, not exactness
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("no_grad", [True, False], ids=["no_grad", "grad"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_optimized_zoo_trace_matches_eager(case: ZooCase, no_grad: bool) -> None:
    model = case.make()
    example = case.example(case.batch)
    other = case.example(case.batch + 3)
    ctx = torch.no_grad() if no_grad else torch.enable_grad()
    with ctx, warnings.catch_warnings():
        warnings.simplefilter("ignore", fxtrace.TracerWarning)
        traced = fxtrace.trace(model, example)
        before = traced.code if isinstance(traced, torch.jit.ScriptModule) else None
        fast = fxtrace.optimize(traced)
        for inputs in (example, other):
            _assert_matches(fast(*inputs), model(*inputs))
    if before is not None:  # the trace optimize was given is unchanged
        assert traced.code == before


@pytest.mark.parametrize("name", ["resnet", pytest.param("mobilenet", marks=pytest.mark.slow),
                                  pytest.param("vit", marks=pytest.mark.slow)])
def test_optimized_vision_trace_matches_eager_and_folds(name: str) -> None:
    case = vision.BY_NAME[name]
    model = case.make().eval()
    example = case.example(case.batch)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", fxtrace.TracerWarning)
        traced = fxtrace.trace(model, example)
        fast = fxtrace.optimize(traced)
        for batch, hw in ((case.batch, case.hw), *case.probes):
            inputs = case.example(batch, hw)
            _assert_matches(fast(*inputs), model(*inputs))
    plain, optimized = traced._fxtrace_capture, fast._fxtrace_capture
    assert count_nodes(optimized) < count_nodes(plain)
    names = [r.name for r in optimized.meta["fxtrace"].passes]
    assert "fold_batchnorm" in names and "drop_inactive_dropout" in names
    has_bn = any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    if has_bn:
        assert "batch_norm" not in "".join(m.code for m in fast.modules() if hasattr(m, "code"))
        assert "batch_norm" in "".join(m.code for m in traced.modules() if hasattr(m, "code"))


class DropoutNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)
        self.drop = torch.nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc(x)) + torch.nn.functional.dropout(x, 0.2, self.training)


def _dropouts(gm: fx.GraphModule) -> int:
    return sum(1 for m in gm.modules() if isinstance(m, fx.GraphModule)
               for n in m.graph.nodes if "dropout" in str(n.target))


def test_inactive_dropout_is_dropped_and_training_dropout_kept() -> None:
    x = torch.randn(3, 4)
    model = DropoutNet().eval()
    gm = fxtrace.capture(model, (x,))
    fast = fxtrace.optimize(gm)
    assert _dropouts(gm) == 2 and _dropouts(fast) == 0
    torch.testing.assert_close(fast(x), model(x))
    train = fxtrace.capture(DropoutNet().train(), (x,))
    assert _dropouts(fxtrace.optimize(train)) == 2


def test_optimize_shares_the_model_parameters() -> None:
    model = DropoutNet().eval()
    traced = fxtrace.trace(model, (torch.randn(3, 4),))
    fast = fxtrace.optimize(traced)
    assert fast.fc.weight is model.fc.weight
    with torch.no_grad():
        model.fc.weight.mul_(2)
    x = torch.randn(3, 4)
    torch.testing.assert_close(fast(x), model(x))


def test_optimize_refuses_what_fxtrace_did_not_trace() -> None:
    with pytest.raises(InvalidArgument, match="fxtrace.optimize takes"):
        fxtrace.optimize(torch.nn.Linear(2, 2))


def test_optimize_argument_of_trace_still_warns() -> None:
    with pytest.warns(FutureWarning, match="deprecated"):
        fxtrace.trace(torch.nn.Linear(2, 2), (torch.randn(1, 2),), optimize=True)


def _targets(gm: fx.GraphModule) -> str:
    return " ".join(str(n.target) for m in gm.modules() if isinstance(m, fx.GraphModule)
                    for n in m.graph.nodes)


def test_no_grad_transformer_records_the_fused_kernel_eager_takes() -> None:
    case = next(c for c in CASES if c.name == "transformer_encoder")
    model, example = case.make(), case.example(case.batch)
    with torch.no_grad():
        gm = fxtrace.capture(model, example)
        traced = fxtrace.trace(model, example)  # the check re-traces: same path
        _assert_matches(traced(*example), model(*example))
    assert "_transformer_encoder_layer_fwd" in _targets(gm)
    with_grad = fxtrace.capture(model, example)  # eager takes the slow path with grad
    assert "_transformer_encoder_layer_fwd" not in _targets(with_grad)
    assert count_nodes(gm) * 2 < count_nodes(with_grad)
    traced = fxtrace.trace(model, example)  # traced with grad, checked under no_grad
    _assert_matches(traced(*example), model(*example))


def test_no_grad_attention_records_native_multi_head_attention() -> None:
    mha = torch.nn.MultiheadAttention(8, 2, batch_first=True).eval()

    class Attend(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mha = mha

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.mha(x, x, x, need_weights=False)[0]

    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        gm = fxtrace.capture(Attend(), (x,))
        traced = fxtrace.trace(Attend(), (x,))
        torch.testing.assert_close(traced(x), Attend()(x))
    assert "_native_multi_head_attention" in _targets(gm)


class Functional(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bn = torch.nn.BatchNorm1d(4).eval()
        self.norm = torch.nn.LayerNorm(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.nn.functional.hardswish(self.bn(x)) + torch.nn.functional.hardsigmoid(x)
        z = torch.nn.functional.relu(self.norm(y))
        return torch.nn.functional.relu(z * 2, inplace=True)


def test_functional_wrappers_become_their_aten_ops_bitwise(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from fxtrace.passes import eliminate_dead_code
    from fxtrace.passes.direct_ops import call_ops_directly
    from fxtrace.passes.manager import run_passes

    model = Functional().eval()
    model.bn.running_mean.uniform_(-0.5, 0.5)
    x = torch.randn(3, 4)
    with monkeypatch.context() as m:  # the capture as recorded, before the capture passes
        m.setattr(fxtrace.api, "CAPTURE_PASSES", [eliminate_dead_code])
        gm = fxtrace.capture(model, (x,))
    def calls(gm: fx.GraphModule) -> set:
        return {(getattr(n.target, "__module__", None) or "torch", n.target.__name__)
                for m in gm.modules() if isinstance(m, fx.GraphModule)
                for n in m.graph.nodes if n.op == "call_function"}

    wrappers = {("torch.nn.functional", f) for f in ("batch_norm", "relu", "hardswish",
                                                      "hardsigmoid", "layer_norm")}
    assert wrappers <= calls(gm)
    names = {n.name for m in gm.modules() if isinstance(m, fx.GraphModule)
             for n in m.graph.nodes}
    gm, records = run_passes(gm, [call_ops_directly])
    after = calls(gm)
    assert records[0].modified
    assert not wrappers & after
    assert {"relu", "relu_", "hardswish", "hardsigmoid", "batch_norm", "layer_norm"} <= {
        name for _, name in after}
    assert names == {n.name for m in gm.modules() if isinstance(m, fx.GraphModule)
                     for n in m.graph.nodes}  # rewritten in place: the locals keep their names
    y = torch.randn(3, 4)
    assert torch.equal(gm(y), model(y))  # bitwise: the op the wrapper would call
    # the default pipeline runs it: no wrapper is left in a plain trace either
    assert not wrappers & calls(fxtrace.capture(model, (x,)))
    traced = fxtrace.trace(model, (x,))
    assert "__torch__.torch.nn.functional" not in traced.bn.code
    assert "torch.batch_norm(" in traced.bn.code
    assert torch.equal(traced(y), model(y))
    traced = fxtrace.optimize(fxtrace.trace(model, (x,)))
    assert torch.equal(traced(y), model(y))


class Pools(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.square = torch.nn.AdaptiveAvgPool2d(1)
        self.pair = torch.nn.AdaptiveAvgPool2d((2, 3))
        self.open = torch.nn.AdaptiveAvgPool2d((2, None))  # None: the wrapper reads x's size
        self.cube = torch.nn.AdaptiveAvgPool3d(2)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return self.square(x), self.pair(x), self.open(x), self.cube(x.unsqueeze(1))


def test_adaptive_average_pools_with_literal_sizes_call_the_op_bitwise() -> None:
    model = Pools()
    x = torch.randn(2, 3, 7, 5)
    traced = fxtrace.trace(model, (x,))
    gm = traced._fxtrace_capture
    targets = {path: [n.target for n in m.graph.nodes if n.op == "call_function"]
               for path, m in gm.named_modules() if isinstance(m, fx.GraphModule)}
    assert targets["square"] == targets["pair"] == [torch._C._nn.adaptive_avg_pool2d]
    assert targets["open"] == [torch.nn.functional.adaptive_avg_pool2d]
    assert targets["cube"] == [torch._C._nn.adaptive_avg_pool3d]
    for y in (x, torch.randn(1, 3, 9, 11)):
        for got, want in zip(traced(y), model(y)):
            assert torch.equal(got, want)
