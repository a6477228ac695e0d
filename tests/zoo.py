"""The in-repo model zoo: small, seeded models and functions that fxtrace must trace.

A plain importable module (no pytest): ``tests/test_zoo.py`` runs differential tests over it
and ``benchmarks/trace_vs_jit.py`` times it. Every case is a :class:`ZooCase`:

* ``make()`` builds a fresh model (seeded, in eval mode where it matters) or returns a function;
* ``example(batch)`` builds seeded example inputs at a given batch size, as a tuple.

Sizes are small so that the whole differential suite stays fast on two CPU cores.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Dict, List, Tuple, Union

import torch
import torch.nn as nn

__all__ = ["ZooCase", "CASES", "BY_NAME", "case", "seeded"]

Model = Union[nn.Module, Callable[..., object]]


@dataclasses.dataclass(frozen=True)
class ZooCase:
    """One zoo entry: a model factory and an example-input factory."""

    name: str
    make: Callable[[], Model]
    example: Callable[[int], Tuple[object, ...]]
    batch: int = 2  # the batch size the trace is taken at

    @functools.cached_property
    def is_function(self) -> bool:
        return not isinstance(self.make(), nn.Module)

    def __repr__(self) -> str:  # readable pytest ids
        return f"ZooCase({self.name})"


def seeded(seed: int) -> torch.Generator:
    """A CPU generator with a fixed seed, for reproducible example inputs."""
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=seeded(seed))


def _build(cls: Callable[[], nn.Module], seed: int = 0, eval_mode: bool = True) -> nn.Module:
    torch.manual_seed(seed)
    m = cls()
    return m.eval() if eval_mode else m


# --------------------------------------------------------------------------------- functions

def foo(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 2 * x + y


def size_view_cat_index(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    b = x.size(0)
    flat = x.view(b, -1)                       # (B, 4*6)
    both = torch.cat([flat, flat * 2], dim=1)  # (B, 48)
    mid = x[:, 1:3]                            # (B, 2, 6)
    last = x[..., 0]                           # (B, 4)
    n = x.size(2) // 2
    head = x[:, :, :n]                         # size-derived slice bound
    return both + 1, mid.sum(1) + head.mean(-1).sum(-1, keepdim=True) + last.sum(1, keepdim=True)


# ----------------------------------------------------------------------------------- modules

class SeedConvNet(nn.Module):
    """The seed example of the project: one 3x3 convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(10, 16)
        self.fc2 = nn.Linear(16, 16)
        self.fc3 = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


class ConvBnRelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4 * 6 * 6, 5)
        with torch.no_grad():  # non-trivial running statistics
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 1.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.conv(x)))
        x = x.view(x.size(0), -1)
        return self.fc(x)


class ResidualBlock(nn.Module):
    def __init__(self, c: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        with torch.no_grad():
            for bn in (self.bn1, self.bn2):
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 1.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + x)


def _transformer_encoder() -> nn.Module:
    layer = nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32,
                                       batch_first=True)
    return nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)


class LSTMNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, 16, batch_first=True)

    def forward(self, x: torch.Tensor):
        out, (h, c) = self.lstm(x)
        return out, (h, c)


class EmbeddingPool(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 8)
        self.fc = nn.Linear(8, 3)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.fc(self.emb(idx).mean(dim=1))


def _sequential() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))


class SharedSubmodule(nn.Module):
    """Calls the same submodule twice."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(torch.relu(self.block(x)))


class TiedWeights(nn.Module):
    """Two Linear layers that share one weight Parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(6, 6)
        self.b = nn.Linear(6, 6)
        self.b.weight = self.a.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.sigmoid(self.a(x)))


class WithBuffer(nn.Module):
    """A registered buffer read in forward."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 6)
        self.register_buffer("scale", torch.linspace(0.5, 1.5, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) * self.scale


# ------------------------------------------------------------------------------------ registry

CASES: List[ZooCase] = [
    ZooCase("foo", lambda: foo,
            lambda b: (_randn(b, 3, seed=1), _randn(b, 3, seed=2))),
    ZooCase("seed_conv", lambda: _build(SeedConvNet),
            lambda b: (_randn(b, 1, 3, 3, seed=3),), batch=1),
    ZooCase("mlp", lambda: _build(MLP),
            lambda b: (_randn(b, 10, seed=4),)),
    ZooCase("conv_bn_relu", lambda: _build(ConvBnRelu),
            lambda b: (_randn(b, 3, 6, 6, seed=5),)),
    ZooCase("residual_block", lambda: _build(ResidualBlock),
            lambda b: (_randn(b, 4, 5, 5, seed=6),)),
    ZooCase("transformer_encoder", lambda: _build(_transformer_encoder),
            lambda b: (_randn(b, 5, 16, seed=7),)),
    ZooCase("lstm", lambda: _build(LSTMNet),
            lambda b: (_randn(b, 7, 8, seed=8),)),
    ZooCase("embedding_pool", lambda: _build(EmbeddingPool),
            lambda b: (torch.randint(0, 50, (b, 6), generator=seeded(9)),)),
    ZooCase("size_view_cat_index", lambda: size_view_cat_index,
            lambda b: (_randn(b, 4, 6, seed=10),)),
    ZooCase("sequential", lambda: _build(_sequential),
            lambda b: (_randn(b, 6, seed=11),)),
    ZooCase("shared_submodule", lambda: _build(SharedSubmodule),
            lambda b: (_randn(b, 6, seed=12),)),
    ZooCase("tied_weights", lambda: _build(TiedWeights),
            lambda b: (_randn(b, 6, seed=13),)),
    ZooCase("buffer", lambda: _build(WithBuffer),
            lambda b: (_randn(b, 6, seed=14),)),
]

BY_NAME: Dict[str, ZooCase] = {c.name: c for c in CASES}


def case(name: str) -> ZooCase:
    """The zoo case called ``name`` (KeyError lists the known names)."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"no zoo case {name!r}; known: {', '.join(BY_NAME)}") from None
