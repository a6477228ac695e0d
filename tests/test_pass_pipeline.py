"""The passes inside the pipeline: the zoo through ``fxtrace.trace`` under ``FXTRACE_VERIFY=1``,
a broken capture pass is caught and named, and ``fold_batchnorm=True`` end to end."""
from __future__ import annotations

import copy
import io
import os
import sys

import pytest
import torch
import torch.fx as fx
from torch import nn

import fxtrace
import fxtrace.api
from fxtrace.capture.meta import SOURCE
from fxtrace.errors import InvalidArgument, LoweringError, PassError, VerifyError
from fxtrace.passes import (
    VERIFY_ENV,
    PassResult,
    eliminate_common_subexpressions,
    eliminate_dead_code,
    verify,
)
from fxtrace.passes.fold_batchnorm import FOLDED_META

sys.path.insert(0, os.path.dirname(__file__))
from test_symbolic import NEEDS_CONCRETE  # noqa: E402
from zoo import BY_NAME, CASES, ZooCase  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

BN_CASES = ("conv_bn_relu", "residual_block")


def _leaves(out):
    if isinstance(out, (tuple, list)):
        for v in out:
            yield from _leaves(v)
    else:
        yield out


def assert_same(actual, expected, what, atol=None):
    a, e = list(_leaves(actual)), list(_leaves(expected))
    assert len(a) == len(e), what
    for x, y in zip(a, e):
        torch.testing.assert_close(x, y, atol=atol, rtol=atol, msg=lambda m: f"{what}: {m}")


def _eager(model, inputs):
    with torch.no_grad():
        return model(*inputs)


def _graph_modules(gm):
    return [(p, m) for p, m in gm.named_modules() if isinstance(m, fx.GraphModule)]


# --------------------------------------------------------------------------------------------
# The zoo under FXTRACE_VERIFY=1, in both capture modes
# --------------------------------------------------------------------------------------------

def _zoo_params():
    for c in CASES:
        yield pytest.param(c.name, "concrete", id=f"{c.name}-concrete")
        marks = [] if c.name not in NEEDS_CONCRETE else [pytest.mark.skip(
            reason=f"needs concrete: {NEEDS_CONCRETE[c.name]}")]
        yield pytest.param(c.name, "symbolic", id=f"{c.name}-symbolic", marks=marks)


@pytest.mark.parametrize("name,mode", list(_zoo_params()))
def test_zoo_verifies_after_every_pass(name, mode, monkeypatch):
    monkeypatch.setenv(VERIFY_ENV, "1")
    c: ZooCase = BY_NAME[name]
    model = c.make()
    traced = fxtrace.trace(model, c.example(c.batch), mode=mode)
    gm = traced._fxtrace_capture
    info = gm.meta["fxtrace"]
    assert info.mode == mode
    assert [r.name for r in info.passes] == [
        "eliminate_dead_code", "eliminate_common_subexpressions", "call_ops_directly",
        "merge_guards", "eliminate_dead_code"]
    # Every node but placeholders, outputs and get_attrs has a user line; targets lower.
    verify(gm, require_source=True)
    for batch in (c.batch, 3):
        inputs = c.example(batch)
        assert_same(traced(*inputs), _eager(model, inputs), f"{name} ({mode}) batch={batch}")


# --------------------------------------------------------------------------------------------
# A broken pass is caught and named
# --------------------------------------------------------------------------------------------

def lambda_pass(gm: fx.GraphModule) -> PassResult:
    """Broken: routes the output through a lambda, which cannot be lowered."""
    out = gm.graph.output_node()
    if not isinstance(out.args[0], fx.Node):
        return PassResult(gm, False)
    with gm.graph.inserting_before(out):
        node = gm.graph.call_function(lambda t: t, (out.args[0],))
    node.meta[SOURCE] = out.args[0].meta.get(SOURCE)
    out.args = (node,)
    return PassResult(gm, True)


def forget_sources(gm: fx.GraphModule) -> PassResult:
    """Broken: drops the user line of every computation (lowerable, but untraceable back)."""
    for node in gm.graph.nodes:
        if node.op in ("call_function", "call_method", "call_module"):
            node.meta.pop(SOURCE, None)
    return PassResult(gm, True)


def test_broken_pass_is_caught_under_verify(monkeypatch):
    monkeypatch.setenv(VERIFY_ENV, "1")
    monkeypatch.setattr(fxtrace.api, "CAPTURE_PASSES",
                        [eliminate_dead_code, lambda_pass, eliminate_common_subexpressions])
    c = BY_NAME["mlp"]
    with pytest.raises(PassError) as info:
        fxtrace.trace(c.make(), c.example(c.batch))
    assert str(info.value).startswith(
        "error in pass 'lambda_pass' after passes ['eliminate_dead_code']: VerifyError: ")
    assert "<lambda>" in str(info.value)
    assert isinstance(info.value.__cause__, VerifyError)


def test_broken_pass_without_verify_fails_later(monkeypatch):
    """Without FXTRACE_VERIFY the same pass gets past the runner and fails in lowering,
    far from its cause: that is what verification is for."""
    monkeypatch.delenv(VERIFY_ENV, raising=False)
    monkeypatch.setattr(fxtrace.api, "CAPTURE_PASSES", [lambda_pass])
    c = BY_NAME["mlp"]
    with pytest.raises(LoweringError, match="could not compile"):
        fxtrace.trace(c.make(), c.example(c.batch))


def test_pass_dropping_source_locations_is_caught(monkeypatch):
    monkeypatch.setattr(fxtrace.api, "CAPTURE_PASSES", [eliminate_dead_code, forget_sources])
    c = BY_NAME["conv_bn_relu"]
    traced = fxtrace.trace(c.make(), c.example(c.batch), check_trace=False)
    verify(traced._fxtrace_capture)                      # still a valid, lowerable graph
    with pytest.raises(VerifyError, match="has no source location"):
        verify(traced._fxtrace_capture, require_source=True)


# --------------------------------------------------------------------------------------------
# fold_batchnorm=True
# --------------------------------------------------------------------------------------------

def _bn_call_targets(gm):
    """``(path, target)`` of every call of a BatchNorm anywhere in the capture tree."""
    found = []
    for path, sub in _graph_modules(gm):
        for node in sub.graph.nodes:
            if node.op != "call_module":
                continue
            called = sub.get_submodule(node.target)
            original = called.meta.get("fxtrace_original") if isinstance(
                called, fx.GraphModule) else called
            if isinstance(original, nn.modules.batchnorm._BatchNorm):
                found.append((path, node.target))
    return found


@pytest.mark.parametrize("name", BN_CASES)
@pytest.mark.parametrize("mode", ["concrete", "auto"])
def test_fold_batchnorm_equals_eager(name, mode, monkeypatch):
    monkeypatch.setenv(VERIFY_ENV, "1")
    c = BY_NAME[name]
    model = c.make()
    assert not model.training
    snapshot = copy.deepcopy(model)
    plain = fxtrace.trace(c.make(), c.example(c.batch))
    folded = fxtrace.trace(model, c.example(c.batch), mode=mode, fold_batchnorm=True)
    gm = folded._fxtrace_capture
    # BatchNorm is a leaf of symbolic capture (captured concretely inside): auto keeps symbolic
    assert gm.meta["fxtrace"].mode == ("concrete" if mode == "concrete" else "symbolic")
    assert gm.meta["fxtrace"].options["fold_batchnorm"] is True
    assert [r.name for r in gm.meta["fxtrace"].passes][-2:] == [
        "fold_batchnorm", "eliminate_dead_code"]
    verify(gm, require_source=True)

    # The BatchNorm is gone from the call path; each fold is a GraphModule holding new weights.
    assert _bn_call_targets(plain._fxtrace_capture)
    assert _bn_call_targets(gm) == []
    fused = [m for _, m in _graph_modules(gm) if FOLDED_META in m.meta]
    assert len(fused) == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    user_tensors = {t.data_ptr() for t in list(model.parameters()) + list(model.buffers())}
    for m in fused:
        assert isinstance(m.weight, nn.Parameter) and isinstance(m.bias, nn.Parameter)
        assert m.weight.data_ptr() not in user_tensors and m.bias.data_ptr() not in user_tensors

    # state_dict keys differ from torch.jit's (documented in docs/passes.md).
    keys = set(folded.state_dict())
    assert keys != set(plain.state_dict())
    assert any("_bn_fused." in k for k in keys)
    assert not any("running_mean" in k for k in keys)

    for batch in (c.batch, 5):
        inputs = c.example(batch)
        assert_same(folded(*inputs), _eager(model, inputs), f"{name} batch={batch}", atol=1e-5)

    # The user's module is untouched: same modules, same parameter and buffer values.
    assert [type(m) for m in model.modules()] == [type(m) for m in snapshot.modules()]
    for (k, v), (k2, v2) in zip(model.state_dict().items(), snapshot.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k
    assert not any(m.training for m in model.modules())


@pytest.mark.parametrize("name", BN_CASES)
def test_fold_batchnorm_refused_in_training_mode(name):
    c = BY_NAME[name]
    model = c.make().train()
    snapshot = copy.deepcopy(model.state_dict())
    with pytest.raises(InvalidArgument, match=r"fold_batchnorm.*\.eval\(\)"):
        fxtrace.trace(model, c.example(c.batch), fold_batchnorm=True)
    with pytest.raises(InvalidArgument, match=r"fold_batchnorm"):
        fxtrace.capture(model, c.example(c.batch), fold_batchnorm=True)
    assert model.training
    for k, v in model.state_dict().items():             # not even BatchNorm statistics moved
        assert torch.equal(v, snapshot[k]), k


def test_fold_batchnorm_refused_when_a_submodule_trains():
    c = BY_NAME["conv_bn_relu"]
    model = c.make()
    model.bn.train()
    with pytest.raises(InvalidArgument, match=r"'bn' \(BatchNorm2d\).*\.eval\(\)"):
        fxtrace.trace(model, c.example(c.batch), fold_batchnorm=True)


def test_folded_module_refuses_training_mode_and_survives_save_load():
    c = BY_NAME["residual_block"]
    model = c.make()
    folded = fxtrace.trace(model, c.example(c.batch), fold_batchnorm=True)
    buffer = io.BytesIO()
    torch.jit.save(folded, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    inputs = c.example(3)
    assert_same(loaded(*inputs), _eager(model, inputs), "loaded", atol=1e-5)
    folded.train()                                        # BatchNorm's eval-mode guard stays
    with pytest.raises(Exception, match="eval mode"):
        folded(*inputs)


def test_fold_batchnorm_capture_and_no_op_cases():
    c = BY_NAME["conv_bn_relu"]
    model = c.make()
    gm = fxtrace.capture(model, c.example(c.batch), fold_batchnorm=True)
    assert _bn_call_targets(gm) == []
    inputs = c.example(4)
    assert_same(gm(*inputs), _eager(model, inputs), "capture", atol=1e-5)
    # Nothing to fold: a model without BatchNorm and a function are unchanged.
    for name in ("mlp", "foo"):
        c = BY_NAME[name]
        model = c.make()
        traced = fxtrace.trace(model, c.example(c.batch), fold_batchnorm=True)
        record = traced._fxtrace_capture.meta["fxtrace"].passes[-2]
        assert record.name == "fold_batchnorm" and record.modified is False
        inputs = c.example(3)
        assert_same(traced(*inputs), _eager(model, inputs), name)


def test_fold_batchnorm_linear_in_pipeline():
    class LinBN(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(6, 5)
            self.bn = nn.BatchNorm1d(5)
            with torch.no_grad():
                self.bn.running_mean.uniform_(-1, 1)
                self.bn.running_var.uniform_(0.5, 2)

        def forward(self, x):
            return torch.tanh(self.bn(self.lin(x)))

    torch.manual_seed(0)
    model = LinBN().eval()
    x = torch.randn(4, 6)
    folded = fxtrace.trace(model, x, fold_batchnorm=True)
    assert _bn_call_targets(folded._fxtrace_capture) == []
    assert set(folded.state_dict()) == {"lin_bn_fused.weight", "lin_bn_fused.bias"}
    for batch in (4, 7):
        xs = torch.randn(batch, 6)
        assert_same(folded(xs), _eager(model, (xs,)), f"batch={batch}", atol=1e-5)
