"""Random programs for property tests and the differential fuzzer (``scripts/fuzz_programs.py``).

A program is real Python source: a function ``program(x, y)`` or, when it keeps state, an
``nn.Module`` class ``Program`` whose ``forward(x, y)`` updates buffers. Its body is a list of
steps, each one entry of :mod:`vocab` applied to values of a pool; every pool value has the
inputs' shape ``(B, N)`` (see the invariant in :mod:`vocab`), so any step can follow any other.
The program returns a structure (a value, nested tuples, a dict, a list) of pool values, the
last step's value first. Inputs are float32, float64 or int64, and ``y`` may be the very
tensor ``x`` (aliased inputs).

The same builder runs on two sources of choices: a Hypothesis ``draw`` (:func:`programs`, so
failures shrink: to fewer steps, earlier families, earlier entries, plainer inputs) and a
seeded ``random.Random`` (:func:`random_program`, for the fuzzer and for tests that cannot nest
``@given``). A program's source is registered in ``linecache`` under its own file name, so
warnings, guards and tracebacks point at its lines, as they would for a user's file.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import linecache
import math
import random
from typing import Any, Callable, Collection, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from vocab import FAMILIES, INT_ENTRY, MODULE_ONLY, Entry, entry_named

__all__ = ["Program", "Plan", "InputSpec", "render", "programs", "random_program", "build_program",
           "make_inputs", "example_inputs", "FAMILY_NAMES"]

FAMILY_NAMES: Tuple[str, ...] = tuple(FAMILIES)

#: Output structures: slot 0 is the last step's value (no step is dead by construction
#: unless the program overwrites it); the others are drawn from the pool.
OUTPUTS: Tuple[str, ...] = ("{0}", "({0}, {1})", "({0}, ({1}, {2}, ({3},)), {4})",
                            '{{"a": {0}, "b": ({1}, {2})}}', "[{0}, {1}]", '({0}, {{"c": {1}}})',
                            "({0},)")

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "int64": torch.int64,
           "int32": torch.int32, "float16": torch.float16}


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """The inputs ``(x, y)``: their dtypes, whether ``y`` is ``x``, and the example shape."""

    dtypes: Tuple[str, str]
    aliased: bool
    shape: Tuple[int, int]


@dataclasses.dataclass(frozen=True)
class Plan:
    """A program as choices: ``steps`` are ``(entry key, operand indices)`` over the pool
    ``[x, y, v0, v1, ...]``; the output is ``OUTPUTS[output]`` filled with pool ``slots``."""

    inputs: InputSpec
    is_module: bool
    steps: Tuple[Tuple[str, Tuple[int, ...]], ...]
    output: int
    slots: Tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Program:
    """A generated program: its plan, its source and how to call it (see the module doc)."""

    plan: Plan

    @property
    def inputs(self) -> InputSpec:
        return self.plan.inputs

    @property
    def is_module(self) -> bool:
        return self.plan.is_module

    @property
    def entries(self) -> Tuple[str, ...]:
        """The vocabulary keys used, in order (for grouping findings)."""
        return tuple(k for k, _ in self.plan.steps)

    @functools.cached_property
    def source(self) -> str:
        return render(self.plan)

    @property
    def filename(self) -> str:
        digest = hashlib.sha1(self.source.encode()).hexdigest()[:10]
        return f"<fuzz-program-{digest}>"

    def make(self) -> Callable[..., Any]:
        """A fresh callable: the function, or a new instance of the module (fresh state)."""
        namespace = _compile(self.source, self.filename)
        return namespace["Program"]() if self.is_module else namespace["program"]

    def __call__(self, *args: Any) -> Any:
        return self.make()(*args)

    def __repr__(self) -> str:
        return f"Program(inputs={self.inputs}, source=\n{self.source})"


_COMPILED: Dict[str, Dict[str, Any]] = {}


def _compile(source: str, filename: str) -> Dict[str, Any]:
    if filename not in _COMPILED:
        # linecache entries with mtime None are never invalidated by checkcache()
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        namespace: Dict[str, Any] = {"torch": torch, "F": F, "np": np, "math": math,
                                     "__name__": filename}
        exec(compile(source, filename, "exec"), namespace)
        if len(_COMPILED) > 2000:  # the fuzzer compiles thousands: keep memory bounded
            _COMPILED.clear()
        _COMPILED[filename] = namespace
    return _COMPILED[filename]


class _Chooser:
    """The choices the builder needs; two implementations below."""

    def integer(self, lo: int, hi: int) -> int:
        raise NotImplementedError

    def choice(self, seq: Sequence[Any]) -> Any:
        return seq[self.integer(0, len(seq) - 1)]

    def rare(self, percent: int) -> bool:
        """True with about ``percent``% probability; shrinks to False."""
        return self.integer(0, 99) >= 100 - percent


class _DrawChooser(_Chooser):
    def __init__(self, draw: Callable[..., Any]):
        self.draw = draw

    def integer(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, hi))


class _RandomChooser(_Chooser):
    def __init__(self, rng: random.Random):
        self.rng = rng

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)


def _indent(text: str, spaces: int) -> List[str]:
    return [" " * spaces + line for line in text.splitlines()]


def _draw_inputs(c: _Chooser) -> InputSpec:
    kinds = ("float32", "float64", "int64")

    def dtype() -> str:
        return kinds[0] if not c.rare(40) else kinds[c.integer(1, 2)]

    dx = dtype()
    aliased = c.rare(15)
    dy = dx if aliased else dtype()
    return InputSpec((dx, dy), aliased, (c.integer(1, 4), c.integer(1, 5)))


def build_program(c: _Chooser, families: Optional[Sequence[str]] = None,
                  min_steps: int = 1, max_steps: int = 6,
                  entries: Optional[Collection[str]] = None) -> Program:
    """Build one program from choices ``c``; ``families`` and ``entries`` (vocabulary keys)
    restrict the vocabulary."""
    vocab = {f: [e for e in FAMILIES[f] if entries is None or e.key in entries]
             for f in (families or FAMILY_NAMES)}
    fams = [f for f, es in vocab.items() if es]
    int_entry = [e for e in INT_ENTRY if entries is None or e.key in entries] or INT_ENTRY
    spec = _draw_inputs(c)
    is_module = "module" in fams and c.rare(25)
    usable = [f for f in fams if is_module or f not in MODULE_ONLY]
    steps: List[Tuple[str, Tuple[int, ...]]] = []
    pool: List[int] = []   # indices of floating values (raw int inputs are not operands)
    for i, dtype in enumerate(spec.dtypes):  # aliased: two names, one tensor
        if dtype.startswith("int"):
            steps.append((c.choice(int_entry).key, (i,)))
            pool.append(1 + len(steps))
        else:
            pool.append(i)

    def add(entry: Entry) -> None:
        a = pool[-1] if c.integer(0, 2) else c.choice(pool)
        steps.append((entry.key, (a,) + ((c.choice(pool),) if entry.arity == 2 else ())))
        pool.append(1 + len(steps))

    for _ in range(c.integer(min_steps, max_steps)):
        add(c.choice(vocab[c.choice(usable)]))
    if is_module and not any(k.startswith("module.") for k, _ in steps):
        add(c.choice(vocab["module"]))
    output = c.integer(0, len(OUTPUTS) - 1)
    slots = (pool[-1],) + tuple(c.choice(pool) for _ in range(4))
    return Program(Plan(spec, is_module, tuple(steps), output, slots))


def render(plan: Plan) -> str:
    """The source of ``plan``: ``def program(x, y)`` or ``class Program`` (module doc)."""
    names = ["x", "y"] + [f"v{k}" for k in range(len(plan.steps))]
    body: List[str] = []
    for k, (key, operands) in enumerate(plan.steps):
        ops = dict(zip("ab", (names[i] for i in operands)))
        body.extend(entry_named(key).template.format(o=names[2 + k], **ops).splitlines())
    body.append("return " + OUTPUTS[plan.output].format(*(names[i] for i in plan.slots)))
    if plan.is_module:
        return _MODULE_HEAD + "\n".join(_indent("\n".join(body), 8)) + "\n"
    return "def program(x, y):\n" + "\n".join(_indent("\n".join(body), 4)) + "\n"


_MODULE_HEAD = '''class Program(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("count", torch.zeros(()))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("running", torch.zeros(()))
        self.scale = torch.nn.Parameter(torch.tensor(1.5))

    def forward(self, x, y):
'''


@st.composite
def programs(draw: Callable[..., Any], families: Optional[Sequence[str]] = None,
             min_steps: int = 1, max_steps: int = 6,
             entries: Optional[Collection[str]] = None) -> Program:
    """A random :class:`Program` (Hypothesis: shrinks to fewer, plainer steps)."""
    return build_program(_DrawChooser(draw), families, min_steps, max_steps, entries)


def random_program(seed: int, families: Optional[Sequence[str]] = None,
                   max_steps: int = 6, entries: Optional[Collection[str]] = None) -> Program:
    """The program chosen by ``random.Random(seed)`` (same builder as :func:`programs`)."""
    return build_program(_RandomChooser(random.Random(seed)), families, 1, max_steps, entries)


def make_inputs(spec: InputSpec, shape: Optional[Tuple[int, int]] = None, seed: int = 0,
                dtypes: Optional[Tuple[str, str]] = None, negate: bool = False
                ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Fresh inputs for ``spec`` (another ``shape``, ``dtypes`` or sign on request); aliasing
    is kept: with ``spec.aliased`` the result is ``(x, x)``."""
    g = torch.Generator().manual_seed(seed)
    b, n = shape or spec.shape
    out = []
    for name in (dtypes or spec.dtypes):
        dtype = _DTYPES[name]
        if dtype.is_floating_point:
            t = torch.randn(b, n, generator=g, dtype=torch.float64).to(dtype)
        else:
            t = torch.randint(-4, 5, (b, n), generator=g, dtype=dtype)
        out.append(-t if negate else t)
    return (out[0], out[0]) if spec.aliased else (out[0], out[1])


def example_inputs(b: int = 3, n: int = 4, seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Two float32 ``(b, n)`` inputs."""
    return make_inputs(InputSpec(("float32", "float32"), False, (b, n)), seed=seed)
