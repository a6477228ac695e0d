"""Small vision models with the structure of the real families, written here (no torchvision).

Every model is seeded and narrow, so that tracing and checking all of them in three modes stays
fast on two CPU cores:

* ``resnet``     — ResNet-50-style: stem, bottleneck blocks (1x1 → 3x3 → 1x1, expansion 4),
  projection shortcuts with stride, BatchNorm, adaptive average pool, dropout, linear head;
* ``mobilenet``  — MobileNetV3-style: inverted residuals with depthwise convolutions,
  squeeze-and-excitation (hardsigmoid gate), hardswish, dropout in the classifier;
* ``vit``        — ViT-style: patch embedding by strided conv, class token, learned position
  embedding, pre-norm encoder blocks built on ``nn.MultiheadAttention`` (whose fused
  ``_native_multi_head_attention`` fast path is taken in eval mode under ``torch.no_grad()``),
  GELU MLP, dropout;
* ``unet``       — U-Net-style: encoder/decoder, max-pool down, ``F.interpolate`` up, ``cat`` of
  skip connections, output sized from the input (``size=skip.shape[-2:]``);
* ``detector``   — detection-style: conv backbone, per-location box/objectness heads, and
  post-processing with data-dependent ``topk`` (k = ``min(K, #anchors)``) and ``nonzero`` over
  a score threshold, returning a dict ``{"boxes", "scores", "labels"}`` (needs
  ``strict=False``, as with torch.jit).

Every case is a :class:`VisionCase` (the same shape as ``tests/zoo.py``'s ``ZooCase``):
``make()`` builds a fresh model in training mode, ``example(batch)`` builds seeded inputs.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["VisionCase", "CASES", "BY_NAME", "MODES", "set_mode",
           "ResNetStyle", "MobileNetV3Style", "ViTStyle", "UNetStyle", "DetectorStyle"]


# ------------------------------------------------------------------------------------ ResNet

class Bottleneck(nn.Module):
    """torchvision's ``Bottleneck``: 1x1 reduce, 3x3 (stride here, as in v1.5), 1x1 expand."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        width = planes
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != planes * self.expansion:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * self.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * self.expansion))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNetStyle(nn.Module):
    """ResNet-50's layout ([3, 4, 6, 3] bottlenecks) cut to [1, 2, 1, 1] at widths 4..32."""

    def __init__(self, layers: Tuple[int, ...] = (1, 2, 1, 1), base: int = 4,
                 num_classes: int = 10) -> None:
        super().__init__()
        self.inplanes = base * 2
        self.conv1 = nn.Conv2d(3, self.inplanes, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(base, layers[0])
        self.layer2 = self._make_layer(base * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(base * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(base * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(base * 8 * Bottleneck.expansion, num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        layers = [Bottleneck(self.inplanes, planes, stride)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(self.dropout(x))


# --------------------------------------------------------------------------------- MobileNet

def _make_divisible(v: float, divisor: int = 4) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class SqueezeExcitation(nn.Module):
    """torchvision's ``SqueezeExcitation`` with MobileNetV3's hardsigmoid gate."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return x * self.scale_activation(scale)


class ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: Callable[[], nn.Module] = nn.Hardswish) -> None:
        super().__init__(nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups,
                                   bias=False),
                         nn.BatchNorm2d(cout, eps=0.001, momentum=0.01), act())


class InvertedResidual(nn.Module):
    """MobileNetV3 block: expand 1x1, depthwise kxk, optional SE, project 1x1, residual."""

    def __init__(self, cin: int, exp: int, cout: int, kernel: int, se: bool, hs: bool,
                 stride: int) -> None:
        super().__init__()
        self.use_res = stride == 1 and cin == cout
        act = nn.Hardswish if hs else nn.ReLU
        layers: List[nn.Module] = []
        if exp != cin:
            layers.append(ConvBNAct(cin, exp, 1, act=act))
        layers.append(ConvBNAct(exp, exp, kernel, stride, groups=exp, act=act))
        if se:
            layers.append(SqueezeExcitation(exp, _make_divisible(exp // 4)))
        layers.append(ConvBNAct(exp, cout, 1, act=nn.Identity))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.use_res else out


class MobileNetV3Style(nn.Module):
    """MobileNetV3-Small's pattern of blocks at a quarter of the widths."""

    # (in, expanded, out, kernel, SE, hardswish, stride)
    CONFIG = [(8, 8, 8, 3, True, False, 2),
              (8, 20, 12, 3, False, False, 2),
              (12, 24, 12, 3, False, False, 1),
              (12, 24, 16, 5, True, True, 2),
              (16, 48, 16, 5, True, True, 1)]

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        layers: List[nn.Module] = [ConvBNAct(3, 8, 3, stride=2)]
        layers += [InvertedResidual(*cfg) for cfg in self.CONFIG]
        last = self.CONFIG[-1][2]
        layers.append(ConvBNAct(last, last * 6, 1))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(last * 6, 64), nn.Hardswish(inplace=True),
                                        nn.Dropout(0.2, inplace=True), nn.Linear(64, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


# ---------------------------------------------------------------------------------------- ViT

class EncoderBlock(nn.Module):
    """torchvision's ViT ``EncoderBlock``: pre-norm self-attention and MLP, both residual."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(dim, heads, dropout=dropout,
                                                    batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(mlp_dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        y, _ = self.self_attention(y, y, y, need_weights=False)
        x = x + self.dropout(y)
        return x + self.mlp(self.ln_2(x))


class ViTStyle(nn.Module):
    """ViT-B/16's structure at image 16, patch 4, width 16, 2 heads, 2 layers."""

    def __init__(self, image_size: int = 16, patch: int = 4, dim: int = 16, heads: int = 2,
                 layers: int = 2, mlp_dim: int = 32, dropout: float = 0.1,
                 num_classes: int = 10) -> None:
        super().__init__()
        self.patch = patch
        self.conv_proj = nn.Conv2d(3, dim, patch, stride=patch)
        seq = (image_size // patch) ** 2 + 1
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.empty(1, seq, dim).normal_(std=0.02))
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.Sequential(*[EncoderBlock(dim, heads, mlp_dim, dropout)
                                      for _ in range(layers)])
        self.ln = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        x = self.conv_proj(x)                       # (n, dim, h/p, w/p)
        x = x.reshape(n, x.shape[1], -1).permute(0, 2, 1)
        cls = self.class_token.expand(n, -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embedding
        x = self.ln(self.layers(self.dropout(x)))
        return self.head(x[:, 0])


# --------------------------------------------------------------------------------------- UNet

class DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Up(nn.Module):
    """Upsample to the skip's size with ``F.interpolate``, concatenate, double conv."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = DoubleConv(cin, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([skip, x], dim=1))


class UNetStyle(nn.Module):
    """U-Net with three levels at widths 4/8/16; odd input sizes work (size-driven upsampling)."""

    def __init__(self, cin: int = 3, classes: int = 2, base: int = 4) -> None:
        super().__init__()
        self.inc = DoubleConv(cin, base)
        self.down1 = nn.Sequential(nn.MaxPool2d(2), DoubleConv(base, base * 2))
        self.down2 = nn.Sequential(nn.MaxPool2d(2), DoubleConv(base * 2, base * 4))
        self.up1 = Up(base * 4 + base * 2, base * 2)
        self.up2 = Up(base * 2 + base, base)
        self.outc = nn.Conv2d(base, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        y = self.up1(x3, x2)
        y = self.up2(y, x1)
        return self.outc(y)


# ---------------------------------------------------------------------------------- detector

class DetectorStyle(nn.Module):
    """A one-stage detection head (FCOS/RetinaNet-like, one anchor per location, one class
    per box) with torchvision-style post-processing:

    1. per image, keep the ``min(topk, #locations)`` best objectness scores (``topk``);
    2. drop those below ``score_thresh`` with a mask → ``nonzero`` (data-dependent count);
    3. decode boxes (centre + size from the regression head) and clip to the image.

    Returns ``{"boxes": (N, 4), "scores": (N,), "labels": (N,), "batch_idx": (N,)}`` for all
    images together. The number of kept detections ``N`` depends on the data: a trace freezes it
    (fxtrace guards it).
    """

    def __init__(self, classes: int = 3, width: int = 8, topk: int = 16,
                 score_thresh: float = 0.5) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.cls_head = nn.Conv2d(width, classes, 3, padding=1)
        self.box_head = nn.Conv2d(width, 4, 3, padding=1)
        self.stride = 4
        self.topk = topk
        self.score_thresh = score_thresh

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        n, _, h, w = images.shape
        feat = self.backbone(images)
        logits = self.cls_head(feat)                    # (n, C, fh, fw)
        deltas = self.box_head(feat)                    # (n, 4, fh, fw)
        fh, fw = feat.shape[-2:]
        scores, labels = logits.sigmoid().flatten(2).max(dim=1)    # (n, fh*fw)
        deltas = deltas.flatten(2).permute(0, 2, 1)                # (n, fh*fw, 4)
        ys = (torch.arange(fh, dtype=images.dtype, device=images.device) + 0.5) * self.stride
        xs = (torch.arange(fw, dtype=images.dtype, device=images.device) + 0.5) * self.stride
        cy, cx = torch.meshgrid(ys, xs, indexing="ij")
        centres = torch.stack([cx.flatten(), cy.flatten()], dim=-1)  # (fh*fw, 2)

        k = min(self.topk, scores.shape[1])
        top_scores, top_idx = scores.topk(k, dim=1)                  # (n, k)
        top_labels = labels.gather(1, top_idx)
        top_deltas = deltas.gather(1, top_idx.unsqueeze(-1).expand(-1, -1, 4))
        ctr = centres[top_idx] + top_deltas[..., :2] * self.stride
        size = top_deltas[..., 2:].exp() * self.stride
        boxes = torch.cat([ctr - size / 2, ctr + size / 2], dim=-1)  # (n, k, 4)
        boxes = torch.stack([boxes[..., 0].clamp(0, w), boxes[..., 1].clamp(0, h),
                             boxes[..., 2].clamp(0, w), boxes[..., 3].clamp(0, h)], dim=-1)

        keep = (top_scores > self.score_thresh).nonzero()           # (N, 2): (image, slot)
        b, s = keep[:, 0], keep[:, 1]
        return {"boxes": boxes[b, s], "scores": top_scores[b, s], "labels": top_labels[b, s],
                "batch_idx": b}


# ------------------------------------------------------------------------------------ registry

@dataclasses.dataclass(frozen=True)
class VisionCase:
    """One vision model.

    ``make()`` builds it (seeded, training mode); ``example(batch, hw)`` builds seeded images
    (``hw`` defaults to ``self.hw``). The trace is taken at ``(batch, hw)``; ``probes`` are the
    other ``(batch, hw)`` inputs every trace is run on. ``strict`` is the ``strict=`` to trace
    with (False for dict outputs)."""

    name: str
    make: Callable[[], nn.Module]
    seed: int
    hw: int
    batch: int = 2
    probes: Tuple[Tuple[int, int], ...] = ()
    strict: bool = True
    has_dropout: bool = False

    def example(self, batch: int, hw: int = 0) -> Tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(self.seed * 1000 + batch * 37 + (hw or self.hw))
        return (torch.randn(batch, 3, hw or self.hw, hw or self.hw, generator=g),)

    def __repr__(self) -> str:
        return f"VisionCase({self.name})"


def _build(cls: Callable[[], nn.Module], seed: int) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        torch.manual_seed(seed)
        m = cls()
        with torch.no_grad():  # non-trivial running statistics for eval mode
            for bn in m.modules():
                if isinstance(bn, nn.BatchNorm2d):
                    bn.running_mean.uniform_(-0.2, 0.2)
                    bn.running_var.uniform_(0.5, 1.5)
        return m.train()
    return make


CASES: List[VisionCase] = [
    VisionCase("resnet", _build(ResNetStyle, 1), 1, hw=32, probes=((5, 32), (1, 48)),
               has_dropout=True),
    VisionCase("mobilenet", _build(MobileNetV3Style, 2), 2, hw=32, probes=((5, 32), (1, 48)),
               has_dropout=True),
    # ViT's position embedding fixes the image size: only the batch varies.
    VisionCase("vit", _build(ViTStyle, 3), 3, hw=16, probes=((5, 16),), has_dropout=True),
    VisionCase("unet", _build(UNetStyle, 4), 4, hw=20, probes=((5, 20), (1, 27))),
    # 24px → 6x6 = 36 locations ≥ topk 16; at 12px (9 locations) k = min(16, 9) changes: guard.
    VisionCase("detector", _build(DetectorStyle, 5), 5, hw=24, probes=((5, 24), (1, 32), (1, 12)),
               strict=False),
]

BY_NAME: Dict[str, VisionCase] = {c.name: c for c in CASES}

#: The three modes every model is traced in: training, eval, eval under ``torch.no_grad()``.
MODES = ("train", "eval", "eval_no_grad")


def set_mode(model: nn.Module, mode: str) -> nn.Module:
    """Put ``model`` in ``mode``'s training flag (``no_grad`` is the caller's context)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
    return model.train(mode == "train")
