"""Vision families (tests/models/vision.py) traced by fxtrace in training mode, eval mode and
eval mode under ``torch.no_grad()``, with eager and torch.jit.trace as oracles.

For each model x mode: fxtrace's default ``check_trace=True`` passes (no exception, no
"does not match" warning); the trace equals eager at the example input and at the case's
probes (other batch sizes and image sizes) — except the detector at 12px, where the
data-dependent ``k = min(topk, #locations)`` changes and fxtrace's guard raises
``torch.jit.Error("... fxtrace guard failed ...")``; it equals torch.jit.trace's result at the
example input. torch.jit.trace's own behaviour on the same models is asserted as facts, so a
change in torch shows up here:

* its check reports a mismatch for every model with dropout in training mode (its re-run does
  not reseed the RNG); fxtrace's check runs both sides from the same RNG state;
* its check raises ``TracingCheckError`` ("Graphs differed across invocations") for the ViT in
  eval mode with grad enabled: the check re-traces under ``no_grad``, where
  ``nn.MultiheadAttention`` takes the fused ``_native_multi_head_attention`` path;
* on the detector it raises a plain RuntimeError at 12px (no guard), and a trace taken at 12px
  returns silently wrong detections at 24px, where fxtrace's guard refuses.

Dropout in training mode is compared with ``torch.manual_seed`` before each call.
Traces are built once per (model, mode) by ``tests/models/harness.py``.
"""
from __future__ import annotations

import os
import sys
import warnings
from typing import Dict, Tuple

import pytest
import torch
import torch.nn as nn

import fxtrace

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
from models import harness  # noqa: E402
from models.harness import GUARD_TEXT, MISMATCH_TEXT, fx_traced, jit_traced, run, same_outputs  # noqa: E402
from models.vision import BY_NAME, CASES, MODES, set_mode  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.save` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
]

NAMES = [c.name for c in CASES]
PAIRS = [pytest.param(n, m, id=f"{n}-{m}") for n in NAMES for m in MODES]

# (model, mode) -> torch.jit.trace's default check outcome; every other pair: "pass".
JIT_CHECK: Dict[Tuple[str, str], str] = {
    ("resnet", "train"): "mismatch",      # dropout: its check does not reseed the RNG
    ("mobilenet", "train"): "mismatch",
    ("vit", "train"): "mismatch",
    ("vit", "eval"): "TracingCheckError",  # re-trace under no_grad takes the fused MHA path
}
# (model, probe label) -> outcome for fxtrace and torch.jit; every other probe: "match".
FX_PROBES: Dict[Tuple[str, str], str] = {("detector", "b1@12px"): "guard"}
JIT_PROBES: Dict[Tuple[str, str], str] = {("detector", "b1@12px"): "error"}


# ------------------------------------------------------------------------ fxtrace on each mode

def _expected_probes(case_name: str, table: Dict[Tuple[str, str], str]) -> Dict[str, str]:
    return {harness.probe_label(b, hw): table.get((case_name, harness.probe_label(b, hw)), "match")
            for b, hw in BY_NAME[case_name].probes}


@pytest.mark.parametrize("name,mode", PAIRS)
def test_fxtrace(name: str, mode: str) -> None:
    """One test per (model, mode), so that each trace is built once per xdist worker:
    the default check passes, the trace equals eager at the example input (two dropout seeds)
    and at every probe (or the detector's guard refuses), and docs/models.md's fxtrace cells
    for this row agree."""
    t = fx_traced(name, mode)
    assert t.check == "pass", f"{name}/{mode}: fxtrace's check: {t.check}: {t.check_detail[:2000]}"
    assert not [w for w in t.warnings if MISMATCH_TEXT in w]
    assert isinstance(t.traced, torch.jit.ScriptModule)
    inputs = t.case.example(t.case.batch)
    for seed in (0, 1):
        same_outputs(run(t.traced, inputs, mode, seed), run(t.model, inputs, mode, seed),
                     f"{name}/{mode} seed={seed}")
    found = harness.probes(t)
    assert found == _expected_probes(name, FX_PROBES)
    import models_table
    row = models_table.parse(models_table.DOC.read_text()).get((name, mode))
    assert row is not None, f"docs/models.md has no row {name}/{mode}: rerun scripts/models_table.py"
    fresh = {"check": t.check, "probes": models_table.format_probes(found)}
    assert {k: row[k] for k in fresh} == fresh, "rerun scripts/models_table.py"


@pytest.mark.parametrize("name", [c.name for c in CASES if c.has_dropout])
def test_dropout_is_live_in_training(name: str) -> None:
    """The seeded comparison above is meaningful: in training mode the trace's dropout draws
    fresh masks (different seeds, different outputs), exactly as eager does."""
    t = fx_traced(name, "train")
    inputs = t.case.example(t.case.batch)
    a, b = run(t.traced, inputs, "train", 0), run(t.traced, inputs, "train", 1)
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("mode", MODES)
def test_detector_guard_error(mode: str) -> None:
    t = fx_traced("detector", mode)
    small = t.case.example(1, 12)
    with pytest.raises(torch.jit.Error, match=GUARD_TEXT) as info:
        run(t.traced, small, mode)
    assert "k = min(self.topk, scores.shape[1])" in str(info.value)
    run(t.model, small, mode)  # eager handles it


@pytest.mark.parametrize("name", [c.name for c in CASES
                                  if any(isinstance(m, nn.BatchNorm2d) for m in c.make().modules())])
def test_training_updates_buffers_like_eager(name: str) -> None:
    """In training mode the trace updates BatchNorm's running statistics and
    num_batches_tracked in the model's own buffers, exactly as eager does."""
    t = fx_traced(name, "train")
    inputs = t.case.example(t.case.batch)
    start = {k: v.clone() for k, v in t.model.state_dict().items()}
    try:
        run(t.model, inputs, "train")
        want = {k: v.clone() for k, v in t.model.state_dict().items()}
        t.model.load_state_dict(start)
        run(t.traced, inputs, "train")
        got = t.model.state_dict()
        changed = [k for k in want if not torch.equal(want[k], start[k])]
        assert changed, "eager changed no buffer"
        for k in want:
            torch.testing.assert_close(got[k], want[k], msg=lambda m, k=k: f"{name}: {k}: {m}")
    finally:
        t.model.load_state_dict(start)


def test_detector_guard_site_warns() -> None:
    c = BY_NAME["detector"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fxtrace.trace(set_mode(c.make(), "eval"), c.example(c.batch), strict=False)
    lines = [w.lineno for w in caught if issubclass(w.category, fxtrace.TracerWarning)
             and w.filename.endswith("vision.py")]
    assert lines, "no TracerWarning at the detector's frozen k = min(topk, #locations)"


def test_strict_dict_output_refused_as_by_jit() -> None:
    c = BY_NAME["detector"]
    model, example = set_mode(c.make(), "eval"), c.example(c.batch)
    with pytest.raises(RuntimeError) as ours:
        fxtrace.trace(model, example)
    with pytest.raises(RuntimeError) as theirs:
        torch.jit.trace(model, example)
    assert "strict=False" in str(ours.value) and "dict" in str(ours.value)
    assert str(ours.value).strip() == str(theirs.value).strip()


# ---------------------------------------------------------------------- against torch.jit.trace

# torch.jit traces with their check cost as much as fxtrace's: the default run covers the pairs
# where torch.jit fails plus eval_no_grad; the rest, and torch.jit's probes, run with -m slow.
_JIT_DEFAULT = set(JIT_CHECK) | {(n, "eval_no_grad") for n in NAMES}
JIT_PAIRS = [pytest.param(n, m, id=f"{n}-{m}",
                          marks=[] if (n, m) in _JIT_DEFAULT else [pytest.mark.slow])
             for n in NAMES for m in MODES]


@pytest.mark.parametrize("name,mode", JIT_PAIRS)
def test_jit(name: str, mode: str) -> None:
    """torch.jit.trace's own default check on the same model (a fact about torch 2.13), and
    fxtrace's trace equals torch.jit's at the example input (torch.jit retraced without its
    check where the check raised)."""
    f, j = fx_traced(name, mode), jit_traced(name, mode)
    assert j.check == JIT_CHECK.get((name, mode), "pass"), j.check_detail[:2000]
    if j.check == "TracingCheckError":
        assert "Graphs differed across invocations" in j.check_detail
    inputs = f.case.example(f.case.batch)
    same_outputs(run(f.traced, inputs, mode), run(j.traced, inputs, mode),
                 f"{name}/{mode}: fxtrace vs torch.jit.trace")


@pytest.mark.slow
@pytest.mark.parametrize("name,mode", PAIRS)
def test_jit_probes(name: str, mode: str) -> None:
    """torch.jit's trace on the probes (slow: each new shape re-optimises its graph)."""
    assert harness.probes(jit_traced(name, mode)) == _expected_probes(name, JIT_PROBES)


def test_detector_traced_small_jit_silently_wrong() -> None:
    """Traced at 12px (k = 9 candidates), run at 24px (36 locations): torch.jit returns
    silently different detections, fxtrace's guard refuses."""
    c, mode = BY_NAME["detector"], "eval_no_grad"
    model = set_mode(c.make(), "eval")
    small, big = c.example(2, 12), c.example(2, 24)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.no_grad():
            ours = fxtrace.trace(model, small, strict=False)
            theirs = torch.jit.trace(model, small, strict=False)
    want = run(model, big, mode)
    with pytest.raises(torch.jit.Error, match=GUARD_TEXT):
        run(ours, big, mode)
    got = run(theirs, big, mode)
    assert got["scores"].shape != want["scores"].shape


def test_vit_fused_attention_paths() -> None:
    """Eager ``nn.MultiheadAttention`` takes the fused kernel in eval mode under no_grad and
    not otherwise; torch.jit's no_grad trace records it. fxtrace records the composite
    ``multi_head_attention_forward`` (its TorchFunctionMode disables the fast path) in every
    mode and still matches the fused eager result (see test_matches_eager_at_example)."""
    c = BY_NAME["vit"]
    model, x = set_mode(c.make(), "eval"), c.example(c.batch)

    def ops(mode: str) -> set:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            run(model, x, mode)
        return {e.name for e in prof.events()}

    assert "aten::_native_multi_head_attention" in ops("eval_no_grad")
    assert "aten::_native_multi_head_attention" not in ops("eval")
    jit_graph = str(jit_traced("vit", "eval_no_grad").traced.inlined_graph)
    assert "aten::_native_multi_head_attention" in jit_graph
    fx_graph = str(fx_traced("vit", "eval_no_grad").traced.inlined_graph)
    assert "_native_multi_head_attention" not in fx_graph


# --------------------------------------------------------------------------- docs/models.md

@pytest.mark.slow
def test_models_doc_matches_fresh_run() -> None:
    """docs/models.md (written by scripts/models_table.py) agrees with a fresh run on every
    pass/fail cell, torch.jit's included; timing and size cells are not compared. (The default
    run compares fxtrace's cells row by row in test_fxtrace.)"""
    import models_table
    doc = models_table.parse(models_table.DOC.read_text())
    fresh = {(r["model"], r["mode"]): r for r in models_table.rows(timing=False)}
    assert set(doc) == set(fresh), "models or modes differ: rerun scripts/models_table.py"
    diffs = [f"{key} {col}: doc says {doc[key][col]!r}, fresh run {fresh[key][col]!r}"
             for key in fresh for col in models_table.PASS_FAIL
             if doc[key][col] != fresh[key][col]]
    assert diffs == [], "rerun scripts/models_table.py:\n" + "\n".join(diffs)
