"""fxtrace's traces of the vision models (tests/models/vision.py, eval mode) with the rest of
torch.jit: ``torch.jit.freeze``, ``torch.jit.optimize_for_inference``, ``torch.jit.script`` of
a module that calls a trace as a submodule, and ``torch.jit.load(map_location=...)``.

Traces come from ``tests/models/harness.py`` (built once per process, checked by default).
Outputs are compared with eager under ``torch.no_grad()`` at a batch size other than the
example's.
"""
from __future__ import annotations

import io
import os
import sys
from typing import Any, Dict

import pytest
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(__file__))
from models.harness import fx_traced, jit_traced, leaves, run, same_outputs  # noqa: E402
from models.vision import CASES  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.save` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:torch.jit.*"),
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
]

NAMES = [c.name for c in CASES]
MODE = "eval"  # traced in eval mode with grad enabled; run under no_grad below


def _traced(name: str) -> Any:
    return fx_traced(name, MODE)


def _check(name: str, module: Any, what: str, **tol: float) -> None:
    t = _traced(name)
    x = t.case.example(3)
    same_outputs(run(module, x, "eval_no_grad"), run(t.model, x, "eval_no_grad"),
                 f"{name}: {what}", **tol)


def _roundtrip(module: Any, **load_kwargs: Any) -> Any:
    buffer = io.BytesIO()
    torch.jit.save(module, buffer)
    buffer.seek(0)
    return torch.jit.load(buffer, **load_kwargs)


@pytest.mark.parametrize("name", NAMES)
def test_freeze(name: str) -> None:
    """torch.jit.freeze inlines the parameters (none left) and keeps eager's results, also
    after a save/load round trip; the original trace still shares the model's parameters."""
    traced = _traced(name).traced
    assert not traced.training
    frozen = torch.jit.freeze(traced)
    assert list(frozen.parameters()) == []
    _check(name, frozen, "frozen")
    _check(name, _roundtrip(frozen), "frozen, saved and loaded")
    assert len(list(traced.parameters())) > 0


@pytest.mark.parametrize("name", NAMES)
def test_optimize_for_inference(name: str) -> None:
    """torch.jit.optimize_for_inference (freeze + conv/bn folding and CPU fusions) keeps
    eager's results within 1e-4 (folding reorders float arithmetic)."""
    optimized = torch.jit.optimize_for_inference(_traced(name).traced)
    _check(name, optimized, "optimize_for_inference", rtol=1e-4, atol=1e-4)


class Classify(nn.Module):
    """Scripted around a traced backbone: softmax over its logits plus the top class."""

    def __init__(self, backbone: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor):
        logits = self.backbone(x)
        probs = torch.softmax(logits.flatten(1), dim=1)
        return probs, probs.argmax(dim=1)


class CountDetections(nn.Module):
    """Scripted around the traced detector: reads its Dict[str, Tensor] output."""

    def __init__(self, detector: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        out = self.detector(images)
        counts = torch.bincount(out["batch_idx"], minlength=images.size(0))
        return {"counts": counts, "best": out["scores"].max() if out["scores"].numel() > 0
                else torch.zeros([])}


@pytest.mark.parametrize("name", NAMES)
def test_script_calls_trace(name: str) -> None:
    """torch.jit.script of a module holding a trace as a submodule compiles, runs as eager
    does, and survives save/load."""
    t = _traced(name)
    wrapper_cls = CountDetections if name == "detector" else Classify
    scripted = torch.jit.script(wrapper_cls(t.traced).eval())
    eager = wrapper_cls(t.model).eval()
    x = t.case.example(3)
    for module, what in ((scripted, "scripted"), (_roundtrip(scripted), "scripted, reloaded")):
        same_outputs(run(module, x, "eval_no_grad"), run(eager, x, "eval_no_grad"),
                     f"{name}: {what}")


@pytest.mark.parametrize("location", ["cpu", torch.device("cpu")], ids=["str", "device"])
def test_load_map_location_cpu(location: Any) -> None:
    """(torch.jit.load takes a string or a torch.device; unlike torch.load, not a dict.)"""
    for name in NAMES:
        loaded = _roundtrip(_traced(name).traced, map_location=location)
        assert {p.device.type for p in loaded.parameters()} == {"cpu"}
        _check(name, loaded, f"loaded with map_location={location!r}")


@pytest.mark.parametrize("name", NAMES)
def test_load_map_location_meta(name: str) -> None:
    """Loaded onto the meta device, a trace does shape inference without data: outputs have
    eager's shapes. The detector's nonzero has no data-independent meta kernel and raises."""
    t = _traced(name)
    loaded = _roundtrip(t.traced, map_location=torch.device("meta"))
    assert {p.device.type for p in loaded.parameters()} == {"meta"}
    x = t.case.example(3)
    meta_x = tuple(v.to("meta") for v in x)
    if name == "detector":
        with pytest.raises(RuntimeError, match="nonzero"):
            run(loaded, meta_x, "eval_no_grad")
        return
    got, want = run(loaded, meta_x, "eval_no_grad"), run(t.model, x, "eval_no_grad")
    for (path, g), (_, w) in zip(leaves(got), leaves(want)):
        assert g.device.type == "meta" and g.shape == w.shape and g.dtype == w.dtype, path


def test_device_stays_live_unlike_jit() -> None:
    """``torch.arange(..., device=images.device)``: fxtrace reads the device from the input at
    run time; torch.jit.trace bakes ``torch.device("cpu")`` into the graph (a fact of torch)."""
    ours = _traced("detector").traced.code
    theirs = jit_traced("detector", "eval_no_grad").traced.code
    assert 'device=torch.device("cpu")' not in ours
    assert 'device=torch.device("cpu")' in theirs
