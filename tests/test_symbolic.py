"""Symbolic and auto capture (fxtrace/capture/symbolic.py), differential over the model zoo.

One generic test class runs every zoo case in each mode (``concrete``, ``symbolic``, ``auto``),
subclassed per mode as fx's test_proxy_tensor does. Cases symbolic capture cannot follow are
listed, with the reason, in :data:`NEEDS_CONCRETE`; the list itself is tested both ways.
"""
from __future__ import annotations

import functools
import os
import re
import sys
import warnings
from typing import Any, Tuple

import pytest
import torch
import torch.fx as fx
import torch.nn as nn

import fxtrace
from fxtrace.capture.meta import MODULE, SOURCE, TENSOR_META, SourceLoc, TensorMeta
from fxtrace.capture.source import is_internal_file
from fxtrace.capture.symbolic import SymbolicTraceError, symbolic_options

sys.path.insert(0, os.path.dirname(__file__))
from zoo import CASES, ZooCase  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

#: Zoo cases symbolic capture cannot capture, with the reason. Each must fail in
#: mode="symbolic" with an error naming mode="concrete", and fall back in mode="auto" — and
#: torch.fx.symbolic_trace must fail on it too (torch.nn modules *inside* a model are leaves,
#: as in fx: BatchNorm, LSTM, ... are captured; a torch.nn *root* is traced, as in fx).
NEEDS_CONCRETE = {
    "transformer_encoder": "the root TransformerEncoder is traced (as by torch.fx): its "
                           "forward branches on src.dim() / fast-path checks",
}

BY_NAME = {c.name: c for c in CASES}


def test_needs_concrete_names_zoo_cases() -> None:
    assert set(NEEDS_CONCRETE) <= set(BY_NAME)


def _leaves(out: Any):
    if isinstance(out, (tuple, list)):
        for v in out:
            yield from _leaves(v)
    else:
        yield out


def assert_same(actual: Any, expected: Any, what: str) -> None:
    a, e = list(_leaves(actual)), list(_leaves(expected))
    assert len(a) == len(e), what
    for x, y in zip(a, e):
        torch.testing.assert_close(x, y, msg=lambda m: f"{what}: {m}")


@functools.lru_cache(maxsize=None)
def _traced(name: str, mode: str) -> Tuple[Any, Any]:
    c = BY_NAME[name]
    model = c.make()
    return model, fxtrace.trace(model, c.example(c.batch), mode=mode)


@functools.lru_cache(maxsize=None)
def _jit_names(name: str) -> Tuple[str, ...]:
    c = BY_NAME[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        jitted = torch.jit.trace(c.make(), c.example(c.batch), check_trace=False)
    return tuple(n for n, _ in jitted.named_parameters())


class ModeTests:
    """Generic tests; subclasses set ``mode``."""

    mode = "concrete"

    def cases(self):
        return CASES

    @pytest.fixture(params=[c.name for c in CASES])
    def case(self, request) -> ZooCase:
        c = BY_NAME[request.param]
        if self.mode == "symbolic" and c.name in NEEDS_CONCRETE:
            pytest.skip(f"needs concrete: {NEEDS_CONCRETE[c.name]} (tested below)")
        return c

    def test_result_type(self, case: ZooCase) -> None:
        _, traced = _traced(case.name, self.mode)
        want = torch.jit.ScriptFunction if case.is_function else torch.jit.ScriptModule
        assert isinstance(traced, want), type(traced)

    def test_matches_eager(self, case: ZooCase) -> None:
        model, traced = _traced(case.name, self.mode)
        for batch in (case.batch, 3):
            inputs = case.example(batch)
            with torch.no_grad():
                want = model(*inputs)
            assert_same(traced(*inputs), want, f"{case.name} ({self.mode}) batch={batch}")

    def test_parameter_names(self, case: ZooCase) -> None:
        if case.is_function:
            pytest.skip("functions have no parameters")
        _, traced = _traced(case.name, self.mode)
        assert tuple(n for n, _ in traced.named_parameters()) == _jit_names(case.name)

    def test_recorded_mode(self, case: ZooCase) -> None:
        _, traced = _traced(case.name, self.mode)
        used = traced._fxtrace_capture.meta["fxtrace"].mode
        if self.mode == "auto":
            assert used == ("concrete" if case.name in NEEDS_CONCRETE else "symbolic")
        else:
            assert used == self.mode


class TestConcrete(ModeTests):
    mode = "concrete"


class TestSymbolic(ModeTests):
    mode = "symbolic"

    def test_metadata_contract(self, case: ZooCase) -> None:
        model = case.make()
        gm = fxtrace.capture(model, case.example(case.batch), mode="symbolic")
        assert gm.meta["fxtrace"].mode == "symbolic"
        for path, sub in gm.named_modules():
            if not isinstance(sub, fx.GraphModule):
                continue
            for node in sub.graph.nodes:
                assert node.meta[MODULE] == path, node.format_node()
                if node.op == "placeholder":
                    assert node.type is not None
                    assert isinstance(node.meta[TENSOR_META], TensorMeta)
                # a leaf is captured concretely, and concrete capture gives get_attr no source
                if node.op not in ("placeholder", "output", "get_attr"):
                    assert isinstance(node.meta[SOURCE], SourceLoc), node.format_node()
                    assert not is_internal_file(node.meta[SOURCE].filename)  # a user line
        if not case.is_function:  # same Parameter objects at the same names
            original = dict(model.named_parameters())
            assert all(p is original[n] for n, p in gm.named_parameters())


class TestAuto(ModeTests):
    mode = "auto"


# ------------------------------------------------------------------------ needs concrete

@pytest.mark.parametrize("name", sorted(NEEDS_CONCRETE))
def test_symbolic_failure_names_line_and_concrete(name: str) -> None:
    c = BY_NAME[name]
    with pytest.raises(SymbolicTraceError) as info:
        fxtrace.trace(c.make(), c.example(c.batch), mode="symbolic")
    message = str(info.value)
    assert 'mode="concrete"' in message
    src = info.value.source
    assert isinstance(src, SourceLoc)
    assert os.path.basename(src.filename) in ("zoo.py", "test_symbolic.py")
    assert f"{src.filename}:{src.lineno}" in message and src.code and src.code in message


@pytest.mark.parametrize("name", sorted(NEEDS_CONCRETE))
def test_auto_falls_back(name: str) -> None:
    c = BY_NAME[name]
    gm = fxtrace.capture(c.make(), c.example(c.batch), mode="auto")
    assert gm.meta["fxtrace"].mode == "concrete"


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_user_control_flow_error_points_at_user_line() -> None:
    def f(x):
        if x.sum() > 0:  # the line the error names
            return x + 1
        return x - 1

    with pytest.raises(SymbolicTraceError) as info:
        fxtrace.capture(f, torch.ones(3), mode="symbolic")
    line = f.__code__.co_firstlineno + 1
    assert f"test_symbolic.py:{line}" in str(info.value)
    assert "if x.sum() > 0:" in str(info.value)
    gm = fxtrace.capture(f, torch.ones(3), mode="auto")
    assert gm.meta["fxtrace"].mode == "concrete"


# ------------------------------------------------------------------------ auto and options

def test_auto_picks_symbolic_for_mlp() -> None:
    c = BY_NAME["mlp"]
    traced = fxtrace.trace(c.make(), c.example(2), mode="auto")
    assert traced._fxtrace_capture.meta["fxtrace"].mode == "symbolic"
    from fxtrace.inspect import passes_table, show
    text = passes_table(traced)
    assert text.splitlines()[0] == "capture mode: symbolic"
    assert "eliminate_dead_code" in text
    import io
    out = io.StringIO()
    show(traced, file=out)
    assert out.getvalue().splitlines()[0] == 'capture mode: symbolic'


def test_leaf_modules_option() -> None:
    c = BY_NAME["conv_bn_relu"]
    model = c.make()
    x = c.example(2)
    with symbolic_options(leaf_modules=[nn.BatchNorm2d]):
        traced = fxtrace.trace(model, x, mode="symbolic")
    gm = traced._fxtrace_capture
    assert gm.meta["fxtrace"].mode == "symbolic"
    assert isinstance(gm.bn, fx.GraphModule)  # captured concretely, at its own name
    assert all(n.meta[MODULE] == "bn" for n in gm.bn.graph.nodes)
    for batch in (2, 5):
        e = c.example(batch)
        with torch.no_grad():
            assert_same(traced(*e), model(*e), f"leaf batch={batch}")
    # the keyword form, by qualified name
    from fxtrace.capture.symbolic import capture_symbolic
    gm2 = capture_symbolic(model, [("forward", model, x, {})], "ConvBnRelu", leaf_modules=["bn"])
    assert gm2.meta["fxtrace"].module_calls["bn"] == 1


@torch.fx.wrap
def scaled_clip(x: torch.Tensor, limit: float) -> torch.Tensor:
    if x.dim() > 1:  # data-independent control flow fx cannot follow, TorchScript can
        return torch.clamp(x, -limit, limit) * 2.0
    return x


def unscriptable(x):
    return x * len({"a": 1}.keys().__class__.__name__)


def test_fx_wrap() -> None:
    def f(x):
        return scaled_clip(x + 1, 0.5).relu()

    traced = fxtrace.trace(f, torch.randn(3, 4), mode="symbolic")
    gm = traced._fxtrace_capture
    assert any(n.target is scaled_clip for n in gm.graph.nodes)
    x = torch.randn(5, 4)
    torch.testing.assert_close(traced(x), f(x))


def test_unscriptable_wrapped_function_fails_and_auto_falls_back() -> None:
    def f(x):
        return unscriptable(x) + 1

    with symbolic_options(autowrap_functions=[unscriptable]):
        with pytest.raises(SymbolicTraceError, match='mode="concrete"'):
            fxtrace.capture(f, torch.ones(3), mode="symbolic")
        assert fxtrace.capture(f, torch.ones(3), mode="auto").meta["fxtrace"].mode == "concrete"


class ShapeUser(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x, n: int):
        y = self.lin(x)
        y += 1
        return y.view(x.shape[0], -1) * n, x.dtype == torch.float32


def test_non_tensor_argument_is_specialised_and_guarded() -> None:
    m = ShapeUser()
    x = torch.randn(2, 4)
    traced = fxtrace.trace(m, (x, 3), mode="symbolic")
    torch.testing.assert_close(traced(torch.ones(5, 4), 3)[0], m(torch.ones(5, 4), 3)[0])
    info = traced._fxtrace_capture.meta["fxtrace"]
    assert [(s.kind, s.value, s.guarded) for s in info.specialisations] == [("input", 3, True)]
    with pytest.raises(Exception, match="specialised to 3"):
        traced(x, 4)


def test_state_is_preserved() -> None:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5)).train()
    x = torch.randn(2, 3)
    rng = torch.random.get_rng_state()
    fxtrace.capture(m, x, mode="symbolic")
    assert torch.equal(rng, torch.random.get_rng_state())
    assert m.training


def test_invalid_mode() -> None:
    with pytest.raises(fxtrace.InvalidArgument, match="mode"):
        fxtrace.capture(lambda x: x, torch.ones(1), mode="magic")
    assert re.search(r"concrete.*symbolic.*auto", str(fxtrace.api.MODES))


# ------------------------------------------------------------------------ torch.fx's leaf policy

def _fx_traces(make: Any) -> bool:
    try:
        fx.symbolic_trace(make())
        return True
    except Exception:  # noqa: BLE001 - any failure of the oracle
        return False


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_symbolic_succeeds_exactly_where_fx_does(name: str) -> None:
    c = BY_NAME[name]
    assert _fx_traces(c.make) == (name not in NEEDS_CONCRETE), \
        "NEEDS_CONCRETE must list exactly the zoo cases torch.fx.symbolic_trace fails on"


def test_torch_nn_modules_are_leaves_captured_concretely() -> None:
    c = BY_NAME["conv_bn_relu"]
    model = c.make()
    traced = fxtrace.trace(model, c.example(2), mode="symbolic")
    gm = traced._fxtrace_capture
    assert gm.meta["fxtrace"].mode == "symbolic"
    assert [n.op for n in gm.graph.nodes if n.target == "bn"] == ["call_module"]
    assert isinstance(gm.bn, fx.GraphModule)  # captured (concretely) at its own name
    assert any(n.target is torch.batch_norm or getattr(n.target, "__name__", "") == "batch_norm"
               for n in gm.bn.graph.nodes)
    # the ScriptModule keeps the model's hierarchy
    assert [n for n, _ in traced.named_modules()] == [n for n, _ in model.named_modules()]
    # the leaf's specialisations are reported, at the user line calling the leaf, and guarded
    line = "x = self.relu(self.bn(self.conv(x)))"
    specs = [s for s in gm.meta["fxtrace"].specialisations if s.module == "bn"]
    assert specs and all(s.guarded and s.source.code == line for s in specs)
    messages = [n.args[1] for n in gm.bn.graph.nodes if n.target is torch._assert]
    assert messages and all(f"({line})" in m for m in messages)
    with pytest.raises(Exception, match="zoo.py"):  # the guard, inside the leaf: a 3-d input
        traced(torch.randn(3, 6, 6))


def test_torch_leaves_off_traces_into_torch_nn() -> None:
    c = BY_NAME["conv_bn_relu"]
    with symbolic_options(torch_leaves=False):
        with pytest.raises(SymbolicTraceError, match="'bn' \\(BatchNorm2d\\)") as info:
            fxtrace.trace(c.make(), c.example(2), mode="symbolic")
    assert 'mode="concrete"' in str(info.value)
    assert "x = self.relu(self.bn(self.conv(x)))" in str(info.value)


def test_user_subclass_of_torch_nn_is_not_a_leaf() -> None:
    from fxtrace.capture.symbolic_tracer import is_torch_leaf

    class MyLinear(nn.Linear):
        pass

    assert is_torch_leaf(nn.Linear(2, 2)) and is_torch_leaf(nn.LSTM(2, 2))
    assert not is_torch_leaf(nn.Sequential()) and not is_torch_leaf(MyLinear(2, 2))
    fx_tracer = fx.Tracer()
    for m in (nn.Linear(2, 2), nn.Sequential(), MyLinear(2, 2), nn.BatchNorm1d(2)):
        assert is_torch_leaf(m) == fx_tracer.is_leaf_module(m, "m"), type(m)


@pytest.mark.parametrize("name", ["conv_bn_relu", "lstm"])
def test_symbolic_saves_and_reloads(name: str) -> None:
    import io
    c = BY_NAME[name]
    model, traced = _traced(name, "symbolic")
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    for batch in (1, 4):
        inputs = c.example(batch)
        with torch.no_grad():
            assert_same(loaded(*inputs), model(*inputs), f"{name} reloaded, batch={batch}")


def test_symbolic_reloads_without_fxtrace(tmp_path) -> None:
    import subprocess
    c = BY_NAME["conv_bn_relu"]
    model, traced = _traced("conv_bn_relu", "symbolic")
    x = c.example(5)[0]
    with torch.no_grad():
        want = model(x)
    torch.jit.save(traced, str(tmp_path / "m.pt"))
    torch.save({"x": x, "want": want}, str(tmp_path / "io.pt"))
    script = (
        "import sys, torch\n"
        f"m = torch.jit.load({str(tmp_path / 'm.pt')!r})\n"
        f"d = torch.load({str(tmp_path / 'io.pt')!r})\n"
        "torch.testing.assert_close(m(d['x']), d['want'])\n"
        "assert not any(k.startswith('fxtrace') for k in sys.modules), 'fxtrace was imported'\n"
        "print('ok', [n for n, _ in m.named_modules()])\n")
    out = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True,
                         cwd=str(tmp_path), timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok ['', 'conv', 'bn', 'relu', 'fc']")


# ------------------------------------------------------------------------ auto: the reason

@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_fallback_reason_names_the_user_line() -> None:
    from fxtrace.capture.symbolic import AUTO_SYMBOLIC, fallback_reason
    from fxtrace.inspect import passes_table

    def f(x):
        if x.sum() > 0:  # the line the reason names
            return x + 1
        return x - 1

    with pytest.raises(SymbolicTraceError) as info:
        fxtrace.capture(f, torch.ones(3), mode="symbolic")
    reason = fallback_reason(info.value)
    line = f.__code__.co_firstlineno + 1
    assert reason.startswith("auto: concrete (symbolic capture failed: SymbolicTraceError")
    assert f"test_symbolic.py:{line}" in reason and "\n" not in reason
    gm = fxtrace.capture(f, torch.ones(3), mode="auto")
    assert gm.meta["fxtrace"].mode == "concrete"
    gm.meta["fxtrace"].mode_reason = reason  # what fxtrace.api records (see below)
    assert passes_table(gm).splitlines()[:2] == ["capture mode: concrete", f"mode choice: {reason}"]
    import io
    out = io.StringIO()
    fxtrace.inspect.show(gm, tables=("passes",), file=out)
    assert out.getvalue().splitlines()[:3] == ["capture mode: concrete", f"mode choice: {reason}",
                                               "== passes =="]
    assert AUTO_SYMBOLIC.startswith("auto: symbolic")


@pytest.mark.parametrize("name", ["mlp", "conv_bn_relu", "transformer_encoder"])
def test_auto_records_its_choice(name: str) -> None:
    c = BY_NAME[name]
    info = fxtrace.capture(c.make(), c.example(c.batch), mode="auto").meta["fxtrace"]
    assert info.mode == ("concrete" if name in NEEDS_CONCRETE else "symbolic")
    if not info.mode_reason:
        pytest.skip("fxtrace.api does not set CaptureInfo.mode_reason yet (change requested)")
    if name in NEEDS_CONCRETE:
        assert info.mode_reason.startswith("auto: concrete (symbolic capture failed")
        assert "test_symbolic.py:" in info.mode_reason  # the user line: the trace call here
    else:
        assert info.mode_reason.startswith("auto: symbolic")


# ------------------------------------------------------------------------ the full sweep (slow)

def _vision_cases():
    from models import vision
    return vision.CASES


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet", "mobilenet", "vit", "unet", "detector"])
def test_vision_symbolic_where_fx_succeeds(name: str) -> None:
    import io
    v = {c.name: c for c in _vision_cases()}[name]
    fx_ok = _fx_traces(lambda: v.make().eval())
    model = v.make().eval()
    example = v.example(v.batch)
    if not fx_ok:
        with pytest.raises(SymbolicTraceError, match='mode="concrete"'):
            fxtrace.trace(model, example, mode="symbolic", strict=v.strict)
        gm = fxtrace.capture(v.make().eval(), example, mode="auto")
        assert gm.meta["fxtrace"].mode == "concrete"
        return
    with torch.no_grad():
        traced = fxtrace.trace(model, example, mode="symbolic", strict=v.strict)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    for batch in (1, 5):
        inputs = v.example(batch)
        with torch.no_grad():
            want = model(*inputs)
            assert_same(traced(*inputs), want, f"{name} batch={batch}")
            assert_same(loaded(*inputs), want, f"{name} reloaded batch={batch}")
    with torch.no_grad():
        gm = fxtrace.capture(v.make().eval(), example, mode="auto")
    assert gm.meta["fxtrace"].mode == "symbolic"


@pytest.mark.slow
def test_modes_table_has_not_drifted() -> None:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
    import modes_table
    fresh = modes_table.table()
    assert modes_table.block_of(modes_table.DOC.read_text()) == fresh, \
        "docs/modes.md drifted: run python scripts/modes_table.py"
