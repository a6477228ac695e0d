"""torchvision's detection models traced by fxtrace (issue 11): right, or a guard naming the line.

Each detector (random weights, ``weights=None, weights_backbone=None``, eval, small images and
small proposal counts so that a CPU run takes seconds per call) is traced with the default
check and ``strict=False`` (the outputs are dicts). Outcomes asserted:

* the default check raises nothing and warns no mismatch;
* the trace equals eager on the example (every box, score, label, mask, keypoint);
* on other image sizes the trace equals eager, or refuses with an fxtrace guard whose message
  names the file and line of the Python decision that froze (never a silently wrong result,
  which is what torch.jit.trace returns for Faster R-CNN: boxes far from eager's);
* the image-size decisions the guards name are the ones of torchvision's ``transform.py``;
* a model traced before its first call is refused where it writes its lazy Python state.

torchvision is not in the default test environment (its PyPI build does not load beside the
CPU torch there): these tests run in a side venv, ``make test-torch TORCH=2.14.1
TORCHVISION=0.29.1``. The ResNet-50 detectors are ``slow``. The first two tests need no
torchvision: they pin the two capture fixes the detectors needed.
"""
from __future__ import annotations

import io
import re
import warnings
from typing import Any, Callable, Dict, List, Tuple

import pytest
import torch

import fxtrace

try:
    import torchvision
    from torchvision.models import detection
except Exception:  # noqa: BLE001 - not installed, or a build that does not load beside this torch
    torchvision = None

needs_torchvision = pytest.mark.skipif(torchvision is None, reason="torchvision not importable")

GUARD = re.compile(r"fxtrace guard failed at (\w+\.py):(\d+)")


# ------------------------------------------------------------------ capture fixes, no torchvision

@torch.jit._script_if_tracing
def _scripted_when_tracing(x: torch.Tensor, k: int) -> torch.Tensor:
    # data-dependent control flow that only TorchScript keeps
    out = x
    for _ in range(k):
        if bool(out.sum() > 0):
            out = out - 1
    return out


def test_script_if_tracing_function_is_one_target_across_captures() -> None:
    """``@torch.jit._script_if_tracing`` compiles anew on each call while tracing (torchvision's
    ``batched_nms``): the trace check's second capture must see the same target."""
    def f(x: torch.Tensor) -> torch.Tensor:
        return _scripted_when_tracing(x * 2, 3)

    with warnings.catch_warnings():
        # torch's own wrapper calls torch.jit.script here, as under torch.jit.trace
        for category in (DeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=category)
        traced = fxtrace.trace(f, (torch.ones(4),))  # the default check captures twice
    for x in (torch.ones(4), -torch.ones(4), torch.full((6,), 0.25)):
        torch.testing.assert_close(traced(x), f(x))


def test_autograd_apply_patch_keeps_a_custom_backward_and_restores_apply() -> None:
    class Double(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            return x * 2

        @staticmethod
        def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
            return g * 100

    before = torch.autograd.Function.__dict__["apply"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fxtrace.trace(lambda x: Double.apply(x) + 1, (torch.ones(3),))
    assert torch.autograd.Function.__dict__["apply"] is before
    assert any("custom torch.autograd.Function" in str(w.message) for w in caught)
    x = torch.ones(3, requires_grad=True)
    Double.apply(x).sum().backward()  # the class's own apply works after the patch is gone
    assert x.grad is not None and torch.equal(x.grad, torch.full((3,), 100.0))


# ------------------------------------------------------------------------------ the detectors

_RCNN = dict(rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=50, box_detections_per_img=10,
             box_score_thresh=0.0)
_SMALL = dict(min_size=128, max_size=160)


def _builders() -> Dict[str, Tuple[Callable[..., torch.nn.Module], Dict[str, Any]]]:
    return {
        "fasterrcnn_mobilenet_v3_large_320_fpn":
            (detection.fasterrcnn_mobilenet_v3_large_320_fpn, dict(_RCNN)),
        "ssdlite320_mobilenet_v3_large":
            (detection.ssdlite320_mobilenet_v3_large,
             dict(score_thresh=0.0, topk_candidates=50, detections_per_img=10)),
        "retinanet_resnet50_fpn":
            (detection.retinanet_resnet50_fpn,
             dict(_SMALL, score_thresh=0.0, topk_candidates=50, detections_per_img=10)),
        "fcos_resnet50_fpn":
            (detection.fcos_resnet50_fpn,
             dict(_SMALL, score_thresh=0.0, topk_candidates=50, detections_per_img=10)),
        "ssd300_vgg16":
            (detection.ssd300_vgg16, dict(score_thresh=0.0, topk_candidates=50,
                                          detections_per_img=10)),
        "maskrcnn_resnet50_fpn": (detection.maskrcnn_resnet50_fpn, dict(_SMALL, **_RCNN)),
        "keypointrcnn_resnet50_fpn": (detection.keypointrcnn_resnet50_fpn, dict(_SMALL, **_RCNN)),
    }


EXAMPLE = (120, 150)
# the example's aspect ratio (the same resized and padded size), another one, the other
# orientation
OTHERS = [(96, 120), (100, 130), (150, 120)]


def _images(size: Tuple[int, int], seed: int) -> List[torch.Tensor]:
    return [torch.rand(3, *size, generator=torch.Generator().manual_seed(seed))]


def _same(got: Any, want: Any, what: str) -> None:
    assert len(got) == len(want) == 1, what
    assert sorted(got[0]) == sorted(want[0]), what
    for key in want[0]:
        torch.testing.assert_close(got[0][key], want[0][key], atol=1e-4, rtol=1e-4,
                                   msg=lambda m, key=key: f"{what}: {key}: {m}")


def _trace_and_compare(name: str) -> Dict[Tuple[int, int], str]:
    """Trace ``name``; assert the example matches; the outcome at each other size."""
    builder, kwargs = _builders()[name]
    torch.manual_seed(0)
    model = builder(weights=None, weights_backbone=None, **kwargs).eval()
    example = _images(EXAMPLE, 0)
    with torch.no_grad():
        model(example)  # a warm-up call: see test_a_fresh_rcnn_is_refused_at_its_lazy_state
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = fxtrace.trace(model, (example,), strict=False)  # grad on, as the run
    mismatches = [str(w.message) for w in caught if "does not match" in str(w.message)]
    assert not mismatches, mismatches[0]
    loaded = _reloaded(traced)
    with torch.no_grad():
        want = model(example)
        assert want[0]["boxes"].shape[0] > 0, "no detection: the comparison would be vacuous"
        _same(traced(example), want, f"{name} at the example {EXAMPLE}")
        _same(loaded(example), want, f"{name} saved and reloaded, at the example {EXAMPLE}")
    outcomes: Dict[Tuple[int, int], str] = {}
    for i, size in enumerate(OTHERS, start=1):
        images = _images(size, i)
        with torch.no_grad():
            want = model(images)
            outcomes[size] = _outcome(traced, images, want, f"{name} at {size}")
            again = _outcome(loaded, images, want, f"{name} reloaded, at {size}")
        assert again == outcomes[size], (size, again, outcomes[size])
    return outcomes


def _reloaded(traced: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """``traced`` through ``torch.jit.save``/``load``."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.save/load deprecated
        torch.jit.save(traced, buf)
        buf.seek(0)
        return torch.jit.load(buf)


def _outcome(fn: Callable[..., Any], images: List[torch.Tensor], want: Any, what: str) -> str:
    """``"match"`` (equal to eager), or ``"guard file.py:line"`` naming the frozen decision;
    anything else fails (never silently wrong, never another error)."""
    try:
        got = fn(images)
    except torch.jit.Error as e:
        # the last one: TorchScript's excerpt above the error quotes neighbouring guards too
        found = list(GUARD.finditer(str(e)))
        assert found, f"{what}: not an fxtrace guard: {e}"
        return f"guard {found[-1].group(1)}:{found[-1].group(2)}"
    _same(got, want, what)
    return "match"


@needs_torchvision
def test_fasterrcnn_mobilenet_matches_eager_or_guards_the_resize() -> None:
    outcomes = _trace_and_compare("fasterrcnn_mobilenet_v3_large_320_fpn")
    # GeneralizedRCNNTransform reads image sizes in Python: resize compares height and width
    # (transform.py:59), batch_images pads to a multiple of 32 (transform.py:247). An image
    # resized and padded to the example's size runs the trace; the others are refused there.
    assert outcomes == {(96, 120): "match", (100, 130): "guard transform.py:247",
                        (150, 120): "guard transform.py:59"}


@needs_torchvision
def test_a_fresh_rcnn_is_refused_at_its_lazy_state() -> None:
    """MultiScaleRoIAlign computes its scales on its first call and keeps them in Python state
    (``self.scales``): traced before any call, the trace would freeze the first call's path.
    fxtrace refuses with the lines that write the state, and leaves the model untouched."""
    builder, kwargs = _builders()["fasterrcnn_mobilenet_v3_large_320_fpn"]
    model = builder(weights=None, weights_backbone=None, **kwargs).eval()
    with pytest.raises(fxtrace.TraceError, match=r"self\.scales .*poolers\.py:\d+"):
        fxtrace.trace(model, (_images(EXAMPLE, 0),), strict=False)
    assert model.roi_heads.box_roi_pool.scales is None


@needs_torchvision
@pytest.mark.slow
@pytest.mark.parametrize("name", ["ssdlite320_mobilenet_v3_large", "retinanet_resnet50_fpn",
                                  "fcos_resnet50_fpn", "ssd300_vgg16",
                                  "maskrcnn_resnet50_fpn", "keypointrcnn_resnet50_fpn"])
def test_other_detectors_match_eager_or_guard(name: str) -> None:
    outcomes = _trace_and_compare(name)
    assert set(outcomes) == set(OTHERS)
