"""Random programs for property tests: a Hypothesis strategy for small torch functions.

A program is a list of steps over a pool of values that all have the shape of the inputs,
``(B, N)``. Each step applies one entry of :data:`VOCAB` to one or two values of the pool and
appends the result; the program returns the last value. The vocabulary (>= 40 entries) covers
elementwise ops, reductions broadcast back, views and reshapes written with size arithmetic
(``x.view(x.size(0), -1)``), in-place ops on clones, indexing and setitem, size-derived
scalars, and data- and size-dependent branches and loops (which fxtrace must guard).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, List, Tuple

import torch
import torch.nn.functional as F
from hypothesis import strategies as st


def _setitem(x):
    y = x.clone()
    y[:, 0] = 0.5
    return y


def _loop(x):
    for _ in range(x.size(0) % 3):
        x = x + 1
    return x


UNARY: List[Tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = [
    ("relu", torch.relu), ("sigmoid", torch.sigmoid), ("tanh", torch.tanh), ("abs", torch.abs),
    ("neg", torch.neg), ("exp", lambda x: torch.exp(x.clamp(-5, 5))), ("sin", torch.sin),
    ("cos", torch.cos), ("mul2", lambda x: x * 2), ("add1", lambda x: x + 1),
    ("sub", lambda x: x - 0.5), ("div3", lambda x: x / 3),
    ("clamp", lambda x: torch.clamp(x, -1, 1)), ("gelu", F.gelu), ("silu", F.silu),
    ("softplus", F.softplus), ("square", torch.square),
    ("sqrt", lambda x: torch.sqrt(x.abs() + 1)), ("log1p", lambda x: torch.log1p(x.abs())),
    ("floor", torch.floor), ("round", torch.round), ("sign", torch.sign), ("erf", torch.erf),
    ("atan", torch.atan), ("pow3", lambda x: x.pow(3) * 0.1), ("leaky_relu", F.leaky_relu),
    ("elu", F.elu), ("hardtanh", F.hardtanh),
    ("reciprocal", lambda x: torch.reciprocal(x.abs() + 1)),
    ("softmax", lambda x: torch.softmax(x, -1)), ("log_softmax", lambda x: F.log_softmax(x, -1)),
    ("normalize", lambda x: F.normalize(x, dim=-1)), ("cumsum", lambda x: x.cumsum(-1)),
    ("flip", lambda x: x.flip(-1)), ("roll", lambda x: torch.roll(x, 1, -1)),
    ("mean_expand", lambda x: x.mean(-1, keepdim=True).expand_as(x)),
    ("sub_max", lambda x: x - x.max(-1, keepdim=True).values),
    ("t_t", lambda x: x.t().contiguous().t()),
    ("view_size", lambda x: x.view(x.size(0), -1)),
    ("reshape_flat", lambda x: x.reshape(-1).view(x.size(0), x.size(1))),
    ("unsqueeze", lambda x: x.unsqueeze(0).squeeze(0)),
    ("cat_slice", lambda x: torch.cat([x, x], -1)[:, : x.size(1)]),
    ("split_cat", lambda x: torch.cat([x[:, : x.size(1) // 2], x[:, x.size(1) // 2:]], 1)),
    ("mul_", lambda x: x.clone().mul_(2)), ("add_", lambda x: x.clone().add_(1)),
    ("relu_", lambda x: x.clone().relu_()), ("setitem", _setitem),
    ("zeros_size", lambda x: torch.zeros(x.size(0), x.size(1)) + x),
    ("ones_like", lambda x: torch.ones_like(x) * x), ("sort", lambda x: x.sort(-1).values),
    ("matmul", lambda x: torch.matmul(x, torch.ones(x.size(1), x.size(1))) / x.size(1)),
    ("mul_size", lambda x: x * x.size(0)), ("div_numel", lambda x: x / x.numel()),
    ("transpose2", lambda x: x.transpose(0, 1).transpose(0, 1)),
    ("flatten_view_as", lambda x: x.flatten().view_as(x)),
    ("expand_sum", lambda x: x.expand(2, x.size(0), x.size(1)).sum(0)),
    ("where", lambda x: torch.where(x > 0, x, x * 0.1)),
    ("masked_fill", lambda x: x.masked_fill(x < 0, 0.0)),
    # specialisations fxtrace must guard
    ("branch_sum", lambda x: x * 2 if x.sum() > 0 else x - 1),
    ("branch_size", lambda x: x + 1 if x.size(0) > 2 else x),
    ("loop_size", _loop),
    ("item", lambda x: x + x.mean().item()),
]

BINARY: List[Tuple[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]] = [
    ("add", torch.add), ("sub", torch.sub), ("mul", torch.mul), ("maximum", torch.maximum),
    ("minimum", torch.minimum), ("where_gt", lambda a, b: torch.where(a > b, a, b)),
    ("atan2", torch.atan2), ("lerp", lambda a, b: torch.lerp(a, b, 0.3)),
    ("addcmul", lambda a, b: torch.addcmul(a, a, b, value=0.5)),
    ("stack_sum", lambda a, b: torch.stack([a, b]).sum(0)),
    ("gate", lambda a, b: a * b.sigmoid()),
]

VOCAB = [n for n, _ in UNARY] + [f"{n}/2" for n, _ in BINARY]


@dataclasses.dataclass(frozen=True)
class Step:
    name: str
    fn: Callable[..., torch.Tensor]
    operands: Tuple[int, ...]

    def __repr__(self) -> str:
        return f"{self.name}{self.operands}"


@dataclasses.dataclass(frozen=True)
class Program:
    steps: Tuple[Step, ...]

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        vals = [x, y]
        for step in self.steps:
            vals.append(step.fn(*[vals[i] for i in step.operands]))
        return vals[-1]

    def __repr__(self) -> str:
        return "Program(" + ", ".join(map(repr, self.steps)) + ")"


@st.composite
def programs(draw, min_steps: int = 1, max_steps: int = 6) -> Program:
    """A random :class:`Program` of ``min_steps``..``max_steps`` steps over two inputs."""
    n = draw(st.integers(min_steps, max_steps))
    steps: List[Step] = []
    for k in range(n):
        pool = 2 + k
        if draw(st.integers(0, 4)) == 0:
            name, fn = draw(st.sampled_from(BINARY))
            ops = (draw(st.integers(0, pool - 1)), draw(st.integers(0, pool - 1)))
        else:
            name, fn = draw(st.sampled_from(UNARY))
            ops = (pool - 1 if draw(st.booleans()) else draw(st.integers(0, pool - 1)),)
        steps.append(Step(name, fn, ops))
    return Program(tuple(steps))


def example_inputs(b: int = 3, n: int = 4, seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n, generator=g), torch.randn(b, n, generator=g)


def random_program(seed: int, steps: int = 4) -> Program:
    """A program chosen with ``random.Random(seed)`` (for tests that cannot nest ``@given``)."""
    import random

    rng = random.Random(seed)
    out: List[Step] = []
    for k in range(steps):
        pool = 2 + k
        if rng.random() < 0.2:
            name, fn = rng.choice(BINARY)
            ops: Tuple[int, ...] = (rng.randrange(pool), rng.randrange(pool))
        else:
            name, fn = rng.choice(UNARY)
            ops = (pool - 1,)
        out.append(Step(name, fn, ops))
    return Program(tuple(out))
