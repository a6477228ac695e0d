"""Differential tests over the model zoo (tests/zoo.py), with eager and torch.jit.trace as oracles.

For each zoo case: the result type, outputs against eager at three batch sizes and against
``torch.jit.trace`` at the example batch, parameter / state_dict names against torch.jit,
storage sharing with the original parameters, save/load round trips (in-process through
BytesIO; in a plain-python subprocess that never imports fxtrace), no DeprecationWarning from
fxtrace's own torch.jit calls, and ``fxtrace.capture``'s graph and source metadata.

Traces are taken once per case (``_traced``) and reused by the tests that only read them.
"""
from __future__ import annotations

import functools
import io
import os
import subprocess
import sys
import textwrap
import warnings
from typing import Any, Dict, List, Tuple

import pytest
import torch
import torch.fx as fx
import torch.nn as nn

import fxtrace
from fxtrace.capture.meta import SOURCE, SourceLoc

sys.path.insert(0, os.path.dirname(__file__))
from models.harness import leaves  # noqa: E402  (one nested-output walker for the suites)
from zoo import CASES, ZooCase  # noqa: E402

# The user-side torch.jit.save / torch.jit.load below warn (deprecated in torch 2.13); those
# warnings are torch's, not fxtrace's (test_no_deprecation_warning checks fxtrace's own).
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.save` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning"),
]

OTHER_BATCHES = (1, 5, 3)  # two of these that differ from the example batch are checked
FXTRACE_DIR = os.path.dirname(os.path.abspath(fxtrace.__file__))
TORCH_JIT_DIR = os.path.dirname(os.path.abspath(torch.jit.__file__))

# (test name, case name) -> reason. Core bugs are marked xfail(strict=True) here, never skipped.
XFAIL: Dict[Tuple[str, str], str] = {}


def cases(test: str, module_only: bool = False) -> List[Any]:
    """The zoo as pytest params for ``test``, with its known core failures marked xfail."""
    params = []
    for c in CASES:
        if module_only and c.is_function:
            continue
        marks = []
        if (test, c.name) in XFAIL:
            marks.append(pytest.mark.xfail(strict=True, reason=XFAIL[(test, c.name)]))
        params.append(pytest.param(c, id=c.name, marks=marks))
    return params


# ------------------------------------------------------------------------------------ helpers

def assert_same_outputs(actual: Any, expected: Any, what: str) -> None:
    """Same nesting, and every leaf equal (``assert_close``) — compared leaf by leaf."""
    a, e = list(leaves(actual)), list(leaves(expected))
    assert [p for p, _ in a] == [p for p, _ in e], f"{what}: output structure differs"
    for (path, x), (_, y) in zip(a, e):
        torch.testing.assert_close(x, y, msg=lambda m, path=path: f"{what}: {path}: {m}")


def jit_trace(model: Any, example: Tuple[Any, ...]) -> Any:
    """The torch.jit.trace oracle. check_trace=False: torch.jit's own check rejects some zoo
    models (TransformerEncoder: its two traces differ in mangled type names), not ours to test."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        return torch.jit.trace(model, example, check_trace=False)


def other_batches(c: ZooCase) -> List[int]:
    return [b for b in OTHER_BATCHES if b != c.batch][:2]


@functools.lru_cache(maxsize=None)
def _traced(name: str) -> Tuple[Any, Any, Any]:
    """(model, fxtrace trace, torch.jit trace) of one case, built once per session."""
    c = next(c for c in CASES if c.name == name)
    model = c.make()
    example = c.example(c.batch)
    traced = fxtrace.trace(model, example)
    return model, traced, jit_trace(model, example)


def traced_case(c: ZooCase) -> Tuple[Any, Any, Any]:
    return _traced(c.name)


def eager(model: Any, inputs: Tuple[Any, ...]) -> Any:
    with torch.no_grad():
        return model(*inputs)


def unique_tensors(model: nn.Module) -> List[Tuple[str, torch.Tensor]]:
    """Parameters and floating buffers of ``model``, each tensor object once."""
    seen, out = set(), []
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if id(t) not in seen and t.is_floating_point():
            seen.add(id(t))
            out.append((name, t))
    return out


# -------------------------------------------------------------------------------------- tests

@pytest.mark.parametrize("c", cases("test_result_type"))
def test_result_type(c: ZooCase) -> None:
    _, traced, _ = traced_case(c)
    if c.is_function:
        assert isinstance(traced, torch.jit.ScriptFunction), type(traced)
    else:
        assert isinstance(traced, torch.jit.ScriptModule), type(traced)
        assert not isinstance(traced, torch.jit.ScriptFunction)


@pytest.mark.parametrize("c", cases("test_matches_eager"))
def test_matches_eager(c: ZooCase) -> None:
    model, traced, _ = traced_case(c)
    for batch in [c.batch] + other_batches(c):
        inputs = c.example(batch)
        assert_same_outputs(traced(*inputs), eager(model, inputs), f"{c.name} batch={batch}")


@pytest.mark.parametrize("c", cases("test_matches_jit"))
def test_matches_jit(c: ZooCase) -> None:
    _, traced, jitted = traced_case(c)
    inputs = c.example(c.batch)
    assert_same_outputs(traced(*inputs), jitted(*inputs), f"{c.name} vs torch.jit.trace")


@pytest.mark.parametrize("c", cases("test_parameter_names", module_only=True))
def test_parameter_names(c: ZooCase) -> None:
    _, traced, jitted = traced_case(c)
    assert [n for n, _ in traced.named_parameters()] == [n for n, _ in jitted.named_parameters()]
    assert list(traced.state_dict().keys()) == list(jitted.state_dict().keys())
    assert [n for n, _ in traced.named_buffers()] == [n for n, _ in jitted.named_buffers()]


@pytest.mark.parametrize("c", cases("test_shares_storage", module_only=True))
def test_shares_storage(c: ZooCase) -> None:
    model, traced, _ = traced_case(c)
    original = dict(model.named_parameters(remove_duplicate=False))
    for name, p in traced.named_parameters():
        assert p.data_ptr() == original[name].data_ptr(), f"{c.name}: {name} was copied"
    original_sd = model.state_dict(keep_vars=True)
    for name, t in traced.state_dict(keep_vars=True).items():
        assert t.data_ptr() == original_sd[name].data_ptr(), f"{c.name}: {name} was copied"


@pytest.mark.parametrize("c", cases("test_inplace_edit_visible", module_only=True))
def test_inplace_edit_visible(c: ZooCase) -> None:
    """Editing any original parameter (or floating buffer) in place changes the trace's output
    exactly as it changes eager's."""
    model, traced, _ = traced_case(c)
    inputs = c.example(c.batch)
    for name, t in unique_tensors(model):
        saved = t.detach().clone()
        try:
            with torch.no_grad():
                t.add_(1)
            assert_same_outputs(traced(*inputs), eager(model, inputs),
                                f"{c.name}: after {name}.add_(1)")
        finally:
            with torch.no_grad():
                t.copy_(saved)
    assert_same_outputs(traced(*inputs), eager(model, inputs), f"{c.name}: after restoring")


@pytest.mark.parametrize("c", cases("test_bytesio_roundtrip"))
def test_bytesio_roundtrip(c: ZooCase) -> None:
    model, traced, _ = traced_case(c)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    for batch in [c.batch] + other_batches(c)[:1]:
        inputs = c.example(batch)
        assert_same_outputs(loaded(*inputs), eager(model, inputs), f"{c.name} loaded, b={batch}")


_SUBPROCESS = textwrap.dedent("""
    import os, sys
    import torch
    assert 'fxtrace' not in sys.modules, 'fxtrace imported before loading'
    root, names = sys.argv[1], sys.argv[2].split(',')
    for name in names:
        loaded = torch.jit.load(os.path.join(root, name + '.pt'))
        for inputs_file in sorted(f for f in os.listdir(root) if f.startswith(name + '.in.')):
            inputs = torch.load(os.path.join(root, inputs_file))
            out = loaded(*inputs)
            torch.save(out, os.path.join(root, inputs_file.replace('.in.', '.out.')))
    assert 'fxtrace' not in sys.modules, 'loading a trace imported fxtrace'
    print('ok', len(names))
""")


def test_save_load_in_plain_python(tmp_path) -> None:
    """Every zoo trace, saved with torch.jit.save, loads and runs in a python without fxtrace
    (one subprocess for all files)."""
    expected = {}
    for c in CASES:
        model, traced, _ = traced_case(c)
        torch.jit.save(traced, str(tmp_path / f"{c.name}.pt"))
        for batch in [c.batch] + other_batches(c)[:1]:
            inputs = c.example(batch)
            torch.save(inputs, str(tmp_path / f"{c.name}.in.{batch}.pt"))
            expected[(c.name, batch)] = eager(model, inputs)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", _SUBPROCESS, str(tmp_path),
                           ",".join(c.name for c in CASES)],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.strip() == f"ok {len(CASES)}", proc.stdout
    for (name, batch), want in expected.items():
        got = torch.load(str(tmp_path / f"{name}.out.{batch}.pt"))
        assert_same_outputs(got, want, f"{name} loaded in a subprocess, batch={batch}")


@pytest.mark.parametrize("c", cases("test_no_deprecation_warning"))
def test_no_deprecation_warning(c: ZooCase) -> None:
    """fxtrace's own torch.jit calls emit no DeprecationWarning (a fresh trace, all warnings
    recorded)."""
    model = c.make()
    example = c.example(c.batch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fxtrace.trace(model, example)
    ours = [f"{w.filename}:{w.lineno}: {w.message}" for w in caught
            if issubclass(w.category, DeprecationWarning)
            and os.path.abspath(w.filename).startswith((FXTRACE_DIR, TORCH_JIT_DIR))]
    assert ours == [], "\n".join(ours)


@pytest.mark.parametrize("c", cases("test_capture"))
def test_capture(c: ZooCase) -> None:
    model = c.make()
    example = c.example(c.batch)
    gm = fxtrace.capture(model, example)
    assert isinstance(gm, fx.GraphModule), type(gm)
    assert_same_outputs(gm(*example), eager(model, example), f"{c.name} capture")
    missing, checked = [], 0
    for path, sub in gm.named_modules():
        if not isinstance(sub, fx.GraphModule):
            continue
        for node in sub.graph.nodes:
            if node.op in ("placeholder", "output", "get_attr"):
                continue
            checked += 1
            if not isinstance(node.meta.get(SOURCE), SourceLoc):
                missing.append(f"{path or '<root>'}: {node.format_node()}")
    assert checked > 0, f"{c.name}: capture recorded no operations"
    assert missing == [], "nodes without fxtrace_source:\n" + "\n".join(missing)


@pytest.mark.parametrize("c", cases("test_gradients_match_eager"))
def test_gradients_match_eager(c: ZooCase) -> None:
    """Backward through the trace gives eager's gradients for float inputs and parameters."""
    model, traced, _ = traced_case(c)
    example = c.example(c.batch)
    params = list(model.parameters()) if isinstance(model, nn.Module) else []

    def grads(fn: Any) -> List[torch.Tensor]:
        inputs = tuple(e.clone().requires_grad_(e.is_floating_point()) for e in example)
        total = sum(leaf.float().sum() for _, leaf in leaves(fn(*inputs)))
        for p in params:
            p.grad = None
        total.backward()
        out = [i.grad for i in inputs if i.requires_grad] + [p.grad.clone() for p in params]
        for p in params:
            p.grad = None
        return out

    want, got = grads(model), grads(traced)
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        torch.testing.assert_close(g, w, msg=lambda m, i=i: f"{c.name}: gradient {i}: {m}")
