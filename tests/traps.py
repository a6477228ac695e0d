"""Trap programs: small programs that ``torch.jit.trace`` gets *silently* wrong.

A plain importable module (no pytest): ``tests/test_traps.py`` runs every trap through eager,
``torch.jit.trace`` and ``fxtrace.trace`` and classifies each outcome; ``python
tests/test_traps.py`` prints the table, ``--markdown`` prints the table for
``docs/soundness.md``.

Every :class:`Trap` holds

* ``make()`` -> a fresh function or ``nn.Module`` (seeded, so two calls build equal models);
* ``example_inputs`` -> the tuple the trace is taken with;
* ``probe_inputs`` -> a list of input tuples or :class:`Probe` objects that take *another path*
  through the program than the example (another branch, size, rank, dtype, device, mode, or a
  later call of a stateful model). Probes of one trap run in order on one model, so state
  carries from one probe to the next exactly as it would in eager;
* ``note`` -> what torch.jit.trace freezes.

The programs are deliberately written the way users write them; none of them is exotic.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn

__all__ = ["Trap", "Probe", "TRAPS", "BY_NAME", "CATEGORIES"]

Model = Union[nn.Module, Callable[..., Any]]


@dataclasses.dataclass
class Probe:
    """One call of the traced program: positional inputs, and an optional action on the model
    before the call (``setup(model)``, e.g. ``m.eval()``), applied to eager and traced alike."""

    args: Tuple[Any, ...]
    setup: Optional[Callable[[Any], Any]] = None
    label: str = ""


@dataclasses.dataclass
class Trap:
    name: str
    category: str
    make: Callable[[], Model]
    example_inputs: Tuple[Any, ...]
    probe_inputs: List[Union[Tuple[Any, ...], Probe]]
    note: str
    #: "trap": torch.jit.trace is silently wrong on a probe (the point of the suite).
    #: "control": torch.jit.trace *raises* on a probe; kept because fxtrace must not be worse.
    kind: str = "trap"

    def probes(self) -> List[Probe]:
        return [p if isinstance(p, Probe) else Probe(tuple(p)) for p in self.probe_inputs]

    def __repr__(self) -> str:  # readable pytest ids
        return f"Trap({self.name})"


TRAPS: List[Trap] = []


def trap(category: str, example: Tuple[Any, ...], probes: List[Any], note: str,
         name: Optional[str] = None, kind: str = "trap"
         ) -> Callable[[Callable[[], Model]], Callable[[], Model]]:
    """Register ``make`` (the decorated factory) as a trap."""
    def register(make: Callable[[], Model]) -> Callable[[], Model]:
        TRAPS.append(Trap(name or make.__name__, category, make, tuple(example), list(probes), note,
                          kind))
        return make
    return register


def _r(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def _pos(*shape: int, seed: int = 0) -> torch.Tensor:
    return _r(*shape, seed=seed).abs() + 0.5


def _module(cls: Callable[[], nn.Module], train: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return cls().train(train)


def _fn(f: Callable[..., Any]) -> Callable[[], Callable[..., Any]]:
    return lambda: f


# =============================================================================== data-dependent
def _branch_sum(x):
    if x.sum() > 0:
        return x * 2
    return x - 1


trap("data-dependent branch", (_pos(3),), [(-_pos(3),)],
     "`if x.sum() > 0` frozen to the example's branch", "branch_on_sum")(_fn(_branch_sum))


def _branch_any(x):
    if (x < 0).any():
        return x.abs()
    return x + 1


trap("data-dependent branch", (_pos(4),), [(_r(4, seed=1) - 1,)],
     "`if (x < 0).any()` frozen", "branch_on_any")(_fn(_branch_any))


def _branch_item(x):
    if x.max().item() > 1.0:
        return x / x.max()
    return x


trap("data-dependent branch", (_pos(4) + 1,), [(_pos(4) * 0.1,)],
     "`if x.max().item() > 1` frozen", "branch_on_item")(_fn(_branch_item))


def _while_norm(x):
    while x.norm() > 1:
        x = x / 2
    return x


trap("data-dependent branch", (_pos(3) * 2,), [(_pos(3) * 20,), (_pos(3) * 0.1,)],
     "a `while` on a tensor value unrolled to the example's trip count",
     "while_on_norm")(_fn(_while_norm))


def _python_max(x, y):
    return max(x.sum(), y.sum()) * x


trap("data-dependent branch", (_pos(3), -_pos(3)), [(-_pos(3), _pos(3))],
     "builtin `max` of two tensors picks one operand by value", "python_max_of_tensors")(
    _fn(_python_max))


# ================================================================================ loops, len, int
def _loop_range(x):
    acc = torch.zeros_like(x[0])
    for i in range(x.size(0)):
        acc = acc + x[i] * (i + 1)
    return acc


trap("loop over size", (_r(3, 4),), [(_r(5, 4, seed=1),)],
     "`for i in range(x.size(0))` unrolled to the example's size", "loop_range_size")(
    _fn(_loop_range))


def _loop_iter(x):
    out = x[0] * 0
    for row in x:
        out = out + row.relu()
    return out


trap("loop over size", (_r(3, 4),), [(_r(6, 4, seed=1),)],
     "`for row in x` unrolled (iterating a tensor); torch.jit's unpack raises",
     "loop_iter_rows", kind="control")(_fn(_loop_iter))


def _while_size(x):
    i, out = 0, x[0] * 0
    while i < x.size(0):
        out = out + x[i] * i
        i += 1
    return out


trap("loop over size", (_r(2, 3),), [(_r(4, 3, seed=1),)],
     "`while i < x.size(0)` unrolled to the example's size", "while_over_size")(_fn(_while_size))


def _loop_shape(x):
    n = 1
    for d in x.shape[1:]:
        n = n * d
    return x.flatten(1).sum(1) / n


trap("loop over size", (_r(2, 3, 4),), [(_r(2, 3, 4, 5, seed=1),)],
     "iterating `x.shape[1:]` unrolled to the example's rank", "loop_over_shape")(_fn(_loop_shape))


def _zeros_shape(x):
    return torch.zeros(x.shape) + x.sum()


trap("rank", (_r(2, 3),), [(_r(2, 3, 4, seed=1),)],
     "`torch.zeros(x.shape)`: the size tuple has the example's rank", "factory_of_full_shape")(
    _fn(_zeros_shape))


def _transpose_last(x):
    return x.transpose(0, x.dim() - 1)


trap("rank", (_r(2, 3),), [(_r(2, 3, 4, seed=1),)],
     "`x.transpose(0, x.dim() - 1)`: dim() frozen by torch.jit (live in fxtrace)",
     "transpose_last_dim")(_fn(_transpose_last))


def _len(x):
    return x * len(x)


trap("len", (_r(3, 2),), [(_r(5, 2, seed=1),)], "`len(x)` frozen to a constant", "len_times")(
    _fn(_len))


def _len_view(x):
    return x.view(len(x), -1).sum(1)


trap("len", (_r(2, 6),), [(_r(3, 4, seed=1),)], "`x.view(len(x), -1)`: len frozen",
     "len_view")(_fn(_len_view))


def _len_list(xs):
    return torch.stack(xs).sum(0) / len(xs)


trap("len", ([_r(3), _r(3, seed=1)],), [([_r(3), _r(3, seed=1), _r(3, seed=2)],)],
     "`len(list_of_tensors)` frozen; torch.jit refuses a longer list input",
     "len_of_list_input", kind="control")(_fn(_len_list))


def _int_size_view(x):
    return x.view(int(x.size(0)), -1).sum(1)


trap("int(size)", (_r(2, 6),), [(_r(3, 4, seed=1),)], "`int(x.size(0))` frozen",
     "int_size_view")(_fn(_int_size_view))


def _int_size_scale(x):
    return x / int(x.shape[-1])


trap("int(size)", (_r(2, 4),), [(_r(2, 8, seed=1),)], "`x / int(x.shape[-1])` frozen",
     "int_size_divide")(_fn(_int_size_scale))


def _math_sqrt(q, k):
    return q @ k.transpose(-1, -2) / math.sqrt(q.size(-1))


trap("int(size)", (_r(2, 4), _r(2, 4, seed=1)), [(_r(2, 16, seed=2), _r(2, 16, seed=3))],
     "`math.sqrt(q.size(-1))` (attention scaling) frozen", "math_sqrt_size")(_fn(_math_sqrt))


def _float_numel(x):
    return x.sum() / float(x.numel())


trap("int(size)", (_r(2, 3),), [(_r(4, 5, seed=1),)], "`float(x.numel())` frozen",
     "float_numel")(_fn(_float_numel))


def _dim_sum(x):
    return x.sum(dim=x.dim() - 1)


trap("rank", (_r(3, 4),), [(_r(3, 4, 5, seed=1),)],
     "`x.dim()` is a Python int in torch.jit: the reduced dim is frozen (fxtrace keeps it live)",
     "dim_expression")(_fn(_dim_sum))


# ================================================================================ Ellipsis / rank
def _ellipsis_last(x):
    return x[..., 0]


trap("Ellipsis at another rank", (_r(3, 4),), [(_r(3, 4, 5, seed=1),)],
     "`x[..., 0]` recorded as select(dim=1): another rank selects the wrong dim",
     "ellipsis_select")(_fn(_ellipsis_last))


def _ellipsis_slice(x):
    return x[..., 1:] - x[..., :-1]


trap("Ellipsis at another rank", (_r(4, 5),), [(_r(4, 3, 5, seed=1),)],
     "`x[..., 1:]` recorded as a slice of dim 1", "ellipsis_slice")(_fn(_ellipsis_slice))


def _ellipsis_none(x):
    return x[..., None] * x[..., None, :]


trap("Ellipsis at another rank", (_r(2, 3),), [(_r(2, 2, 3, seed=1),)],
     "`x[..., None]` unsqueezes at a frozen dim", "ellipsis_newaxis")(_fn(_ellipsis_none))


# ============================================================================ dtypes and devices
def _zeros_dtype(x):
    return torch.ones(3, dtype=x.dtype) / 3 + x.sum()


trap("dtype/device", (_r(2),), [(_r(2, dtype=torch.float64),)],
     "`dtype=x.dtype` frozen to float32", "factory_dtype_of_input")(_fn(_zeros_dtype))


def _to_dtype(x, y):
    return x.to(y.dtype) / 3


trap("dtype/device", (_r(3), _r(3)), [(_r(3, seed=1, dtype=torch.float64), _r(3, dtype=torch.float64))],
     "`x.to(y.dtype)` frozen to float32", "to_dtype_of_other")(_fn(_to_dtype))


def _new_zeros(x):
    return x.new_tensor([1.0, 2.0]) / 3 + x.sum()


trap("dtype/device", (_r(2),), [(_r(2, seed=1, dtype=torch.float64),)],
     "`x.new_tensor(...)` dtype frozen", "new_tensor_dtype")(_fn(_new_zeros))


def _eye_dtype(x):
    return torch.eye(x.size(-1), dtype=x.dtype) / 3 + x.sum()


trap("dtype/device", (_r(2, 3),), [(_r(2, 3, seed=1, dtype=torch.float64),)],
     "`torch.eye(n, dtype=x.dtype)` dtype frozen", "eye_dtype_of_input")(_fn(_eye_dtype))


def _arange_device(x):
    return torch.arange(x.size(0), device=x.device, dtype=x.dtype)


trap("dtype/device", (_r(3),), [(torch.empty(5, device="meta"),), (_r(4, dtype=torch.float64),)],
     "`device=x.device` / `dtype=x.dtype` frozen (meta stands in for a second device)",
     "arange_device_of_input")(_fn(_arange_device))


def _dtype_branch(x):
    if x.dtype == torch.float64:
        return x * 2
    return x.float() + 1


trap("dtype/device", (_r(3),), [(_r(3, dtype=torch.float64),)],
     "`if x.dtype == torch.float64` frozen", "branch_on_dtype")(_fn(_dtype_branch))


def _is_floating(x):
    if x.is_floating_point():
        return x / 2
    return x // 2


trap("dtype/device", (_r(4),), [(torch.arange(4),)],
     "`if x.is_floating_point()` frozen", "branch_on_is_floating_point")(_fn(_is_floating))


# ============================================================================ optional arguments
def _dict_optional(d):
    out = d["x"] * 2
    if "mask" in d:
        out = out * d["mask"]
    return out


trap("optional argument", ({"x": _r(3)},), [({"x": _r(3), "mask": torch.zeros(3)},)],
     "an optional entry of a dict input: traced without it, silently ignored when present",
     "dict_optional_key")(_fn(_dict_optional))


def _dict_get(d):
    scale = d.get("scale")
    return d["x"] if scale is None else d["x"] * scale


trap("optional argument", ({"x": _r(3)},), [({"x": _r(3), "scale": torch.full((3,), 5.0)},)],
     "`d.get('scale')` is None while tracing, so the scale is silently dropped",
     "dict_get_default")(_fn(_dict_get))


def _list_optional(xs):
    out = xs[0]
    for extra in xs[1:]:
        out = out + extra
    return out


trap("optional argument", ([_r(3), _r(3, seed=1)],), [([_r(3), _r(3, seed=1), _r(3, seed=2)],)],
     "extra tensors in a list input; torch.jit refuses the longer list", "list_extra_items",
     kind="control")(_fn(_list_optional))


class _Batch(nn.Module):
    """A detection-style model taking a dict batch whose ``boxes`` entry is optional."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, batch: Dict[str, torch.Tensor]):
        out = self.fc(batch["image"])
        if "boxes" in batch:
            out = out + batch["boxes"].sum(-1, keepdim=True)
        return out


trap("optional argument", ({"image": _r(2, 4)},),
     [({"image": _r(2, 4), "boxes": _pos(2, 4)},)],
     "a module's optional dict entry, absent while tracing, is silently ignored",
     "module_dict_optional")(lambda: _module(_Batch))


# ==================================================================================== state
class _RebindCounter(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("count", torch.zeros(()))

    def forward(self, x):
        self.count = self.count + 1
        return x * self.count


trap("state mutation", (_r(3),), [(_r(3),), (_r(3),)],
     "buffer rebound (`self.count = self.count + 1`): the update is not written back",
     "buffer_counter_rebind")(lambda: _module(_RebindCounter))


class _PyCounter(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x * self.calls


trap("state mutation", (_r(3),), [(_r(3),), (_r(3),)],
     "a Python int attribute incremented in forward is frozen", "python_counter")(
    lambda: _module(_PyCounter))


class _Hidden(nn.Module):
    def __init__(self):
        super().__init__()
        self.h = torch.zeros(3)

    def forward(self, x):
        out = torch.tanh(x + self.h)
        self.h = out.detach()
        return out


trap("state mutation", (_r(3),), [(_r(3, seed=1),), (_r(3, seed=2),)],
     "`self.h = f(x)` rebinding a plain tensor attribute: the first value is a constant",
     "hidden_state_rebind")(lambda: _module(_Hidden))


class _Cache(nn.Module):
    def __init__(self):
        super().__init__()
        self.cache: List[torch.Tensor] = []

    def forward(self, x):
        self.cache.append(x.detach())
        return torch.stack(self.cache).mean(0)


trap("state mutation", (_r(3),), [(_r(3, seed=1),), (_r(3, seed=2),)],
     "a Python list of past inputs: the trace sees a fixed list", "python_list_cache")(
    lambda: _module(_Cache))


# ================================================================================== train / eval
class _Dropout(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.fc(x))


trap("train/eval", (_r(2, 4),), [Probe((_r(2, 4, seed=1),), lambda m: m.eval(), "after .eval()")],
     "traced in train mode: `.eval()` on the traced module still drops", "dropout_traced_train")(
    lambda: _module(_Dropout, train=True))


class _BN(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(4)
        with torch.no_grad():
            self.bn.running_mean.fill_(0.5)
            self.bn.running_var.fill_(2.0)

    def forward(self, x):
        return self.bn(x)


trap("train/eval", (_r(2, 4),), [Probe((_r(2, 4, seed=1),), lambda m: m.train(), "after .train()")],
     "traced in eval mode: `.train()` on the traced module still does not drop",
     "dropout_traced_eval")(lambda: _module(_Dropout, train=False))


trap("train/eval", (_r(3, 4),), [Probe((_r(5, 4, seed=1),), lambda m: m.train(), "after .train()")],
     "BatchNorm traced in eval mode: `.train()` keeps using the running stats", "batchnorm_traced_eval")(
    lambda: _module(_BN, train=False))


trap("train/eval", (_r(3, 4),), [Probe((_r(5, 4, seed=1),), lambda m: m.eval(), "after .eval()")],
     "BatchNorm traced in train mode: `.eval()` keeps using batch statistics",
     "batchnorm_traced_train")(lambda: _module(_BN, train=True))


class _TrainingBranch(nn.Module):
    def forward(self, x):
        if self.training:
            return x + torch.ones_like(x)
        return x


trap("train/eval", (_r(3),), [Probe((_r(3, seed=1),), lambda m: m.eval(), "after .eval()")],
     "`if self.training` frozen", "training_flag_branch")(lambda: _module(_TrainingBranch, True))


# ============================================================================== .item() arithmetic
def _item_scale(x):
    return x * x.abs().max().item()


trap(".item() arithmetic", (_r(3),), [(_r(3, seed=1),)], "`x.max().item()` frozen as a constant",
     "item_scale")(_fn(_item_scale))


def _item_full(x):
    return torch.full_like(x, x.mean().item())


trap(".item() arithmetic", (_r(4),), [(_r(4, seed=1),)], "`torch.full_like(x, x.mean().item())`",
     "item_fill")(_fn(_item_full))


def _float_tensor(x):
    return x - float(x.sum())


trap(".item() arithmetic", (_r(3),), [(_r(3, seed=1),)], "`float(x.sum())` frozen",
     "float_of_tensor")(_fn(_float_tensor))


def _tolist(x):
    a, b = x.tolist()[:2]
    return x * (a + b)


trap(".item() arithmetic", (_r(3),), [(_r(3, seed=1),)], "`x.tolist()` frozen", "tolist_values")(
    _fn(_tolist))


def _int_tensor_index(x, i):
    return x[int(i)]


trap(".item() arithmetic", (_r(4, 2), torch.tensor(1)), [(_r(4, 2), torch.tensor(3))],
     "`x[int(i)]` with a tensor index: the index is frozen", "int_of_index_tensor")(
    _fn(_int_tensor_index))


# ========================================================================= torch.tensor from sizes
def _tensor_of_shape(x):
    return torch.tensor(x.shape)


trap("torch.tensor from sizes", (_r(2, 3),), [(_r(4, 5, seed=1),)],
     "`torch.tensor(x.shape)` frozen as a constant", "tensor_of_shape")(_fn(_tensor_of_shape))


def _tensor_of_size_list(x):
    return x / torch.tensor([x.size(0), x.size(1)]).prod()


trap("torch.tensor from sizes", (_r(2, 3),), [(_r(5, 4, seed=1),)],
     "`torch.tensor([x.size(0), x.size(1)])` frozen", "tensor_of_size_list")(
    _fn(_tensor_of_size_list))


def _tensor_of_size_expr(x):
    return x.sum() / torch.tensor([x.shape[0] * 2.0])


trap("torch.tensor from sizes", (_r(2, 3),), [(_r(5, 3, seed=1),)],
     "`torch.tensor([x.shape[0] * 2.0])` frozen", "tensor_of_size_expr")(
    _fn(_tensor_of_size_expr))


def _tensor_from_values(x):
    return torch.tensor([x.sum(), x.max()]) * 2


trap("torch.tensor from sizes", (_r(3),), [(_r(3, seed=1),)],
     "`torch.tensor([x.sum(), x.max()])` from traced data is a constant", "tensor_from_values")(
    _fn(_tensor_from_values))


# ========================================================================= size-dependent split
def _split_count(x):
    return x.sum() * len(x.split(2))


trap("size-dependent split/chunk", (_r(4),), [(_r(6, seed=1),)],
     "the number of `split` chunks is a Python constant", "split_count")(_fn(_split_count))


def _chunk_count(x):
    return x / len(x.chunk(4))


trap("size-dependent split/chunk", (_r(8),), [(_r(3, seed=1),)],
     "`len(x.chunk(4))` (fewer chunks for a short input) frozen", "chunk_count")(
    _fn(_chunk_count))


def _split_sum(x):
    parts = x.split(2)
    return sum(p.sum() for p in parts)


trap("size-dependent split/chunk", (_r(4),), [(_r(6, seed=1),)],
     "summing all `split` chunks: unrolled; torch.jit's unpack raises", "split_sum_all",
     kind="control")(
    _fn(_split_sum))


def _unbind_sum(x):
    return sum(x.unbind(0))


trap("size-dependent split/chunk", (_r(2, 3),), [(_r(4, 3, seed=1),)],
     "summing `unbind` results: unrolled; torch.jit's unpack raises", "unbind_sum",
     kind="control")(_fn(_unbind_sum))


# ======================================================================================= nonzero
def _nonzero_len(x):
    return x * len(x.nonzero())


_SPARSE = torch.tensor([0.0, 1.5, 0.0, 2.0, 3.0])
_SPARSER = torch.tensor([0.0, 0.0, 0.0, 4.0, 0.0])


trap("nonzero", (_SPARSE,), [(_SPARSER,)], "`len(x.nonzero())` frozen", "nonzero_len")(
    _fn(_nonzero_len))


def _nonzero_int(x):
    n = int(x.nonzero().size(0))
    return x[:n] if n > 0 else x


trap("nonzero", (_SPARSE,), [(_SPARSER,)], "`int(x.nonzero().size(0))` frozen",
     "nonzero_int_size")(
    _fn(_nonzero_int))


def _nonzero_first(x):
    idx = x.nonzero()
    if idx.numel() == 0:
        return x.new_zeros(())
    return x[idx[0, 0]]


trap("nonzero", (torch.tensor([0.0, 0.0, 0.0]),), [(torch.tensor([0.0, 3.0, 1.0]),)],
     "`if x.nonzero().numel() == 0` frozen", "nonzero_empty_branch")(_fn(_nonzero_first))


def _nonzero_log(x):
    return x * math.log(x.nonzero().size(0) + 1)


trap("nonzero", (_SPARSE,), [(_SPARSER,)],
     "`math.log(x.nonzero().size(0) + 1)` frozen", "nonzero_count_math")(_fn(_nonzero_log))


BY_NAME: Dict[str, Trap] = {t.name: t for t in TRAPS}
assert len(BY_NAME) == len(TRAPS), "trap names must be unique"
CATEGORIES = sorted({t.category for t in TRAPS})
