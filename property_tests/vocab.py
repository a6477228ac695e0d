"""The vocabulary of generated programs: source templates grouped in op families.

Every entry is Python source with placeholders: ``{o}`` names the value the entry defines,
``{a}`` and ``{b}`` its operands. Invariant of the pool the entries work on: every operand and
every result is a floating tensor of the inputs' shape ``(B, N)`` (float32, float64 or float16;
an entry may change the dtype, never the shape), so any entry can follow any other. Entries of
the ``int_entry`` family are the exception: their operand is an integer input and their result
a floating pool value. ``module`` entries read ``self`` (buffers ``count``, ``steps``,
``running``, parameter ``scale``) and only appear in module programs. Templates are written the
way users write them; the source is what the tracer sees, so a finding's repro is the program.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Tuple

__all__ = ["Entry", "FAMILIES", "INT_ENTRY", "MODULE_ONLY", "entry_named"]


@dataclasses.dataclass(frozen=True)
class Entry:
    """One vocabulary entry: ``arity`` operands, a source ``template``; see the module doc."""

    family: str
    name: str
    arity: int
    template: str

    @property
    def key(self) -> str:
        return f"{self.family}.{self.name}"


def _fam(family: str, rows: List[Tuple[str, str]]) -> List[Entry]:
    return [Entry(family, n, 2 if "{b}" in t else 1, t) for n, t in rows]


_ELEMENTWISE = _fam("elementwise", [
    ("relu", "{o} = torch.relu({a})"), ("sigmoid", "{o} = torch.sigmoid({a})"),
    ("tanh", "{o} = {a}.tanh()"), ("neg", "{o} = -{a}"), ("mul2", "{o} = {a} * 2"),
    ("add1", "{o} = {a} + 1"), ("rsub", "{o} = 1 - {a}"), ("div3", "{o} = {a} / 3"),
    ("exp", "{o} = torch.exp({a}.clamp(-5, 5))"), ("sin", "{o} = torch.sin({a})"),
    ("clamp", "{o} = torch.clamp({a}, -1, 1)"), ("gelu", "{o} = F.gelu({a})"),
    ("silu", "{o} = F.silu({a})"), ("softplus", "{o} = F.softplus({a})"),
    ("sqrt", "{o} = torch.sqrt({a}.abs() + 1)"), ("log1p", "{o} = torch.log1p({a}.abs())"),
    ("floor", "{o} = torch.floor({a})"), ("round", "{o} = torch.round({a})"),
    ("sign", "{o} = torch.sign({a})"), ("erf", "{o} = torch.erf({a})"),
    ("leaky_relu", "{o} = F.leaky_relu({a})"), ("hardtanh", "{o} = F.hardtanh({a})"),
    ("reciprocal", "{o} = torch.reciprocal({a}.abs() + 1)"),
    ("softmax", "{o} = torch.softmax({a}, -1)"), ("log_softmax", "{o} = F.log_softmax({a}, -1)"),
    ("normalize", "{o} = F.normalize({a}, dim=-1)"), ("cumsum", "{o} = {a}.cumsum(-1)"),
    ("flip", "{o} = {a}.flip(-1)"), ("roll", "{o} = torch.roll({a}, 1, -1)"),
    ("mean_expand", "{o} = {a}.mean(-1, keepdim=True).expand_as({a})"),
    ("sub_max", "{o} = {a} - {a}.max(-1, keepdim=True).values"),
    ("sort", "{o} = {a}.sort(-1).values"), ("where", "{o} = torch.where({a} > 0, {a}, {a} * 0.1)"),
    ("masked_fill", "{o} = {a}.masked_fill({a} < 0, 0.0)"),
    ("add", "{o} = {a} + {b}"), ("sub", "{o} = torch.sub({a}, {b})"), ("mul", "{o} = {a} * {b}"),
    ("maximum", "{o} = torch.maximum({a}, {b})"),
    ("where_gt", "{o} = torch.where({a} > {b}, {a}, {b})"),
    ("atan2", "{o} = torch.atan2({a}, {b})"), ("lerp", "{o} = torch.lerp({a}, {b}.to({a}.dtype), 0.3)"),
    ("stack_sum", "{o} = torch.stack([{a}, {b}.to({a}.dtype)]).sum(0)"),
    ("gate", "{o} = {a} * {b}.sigmoid()"),
])

_VIEWS = _fam("views", [
    ("t_t", "{o} = {a}.t().contiguous().t()"), ("view_size", "{o} = {a}.view({a}.size(0), -1)"),
    ("reshape_flat", "{o} = {a}.reshape(-1).view({a}.size(0), {a}.size(1))"),
    ("unsqueeze", "{o} = {a}.unsqueeze(0).squeeze(0)"),
    ("cat_slice", "{o} = torch.cat([{a}, {a}], -1)[:, : {a}.size(1)]"),
    ("split_cat", "{o} = torch.cat([{a}[:, : {a}.size(1) // 2], {a}[:, {a}.size(1) // 2:]], 1)"),
    ("transpose2", "{o} = {a}.transpose(0, 1).transpose(0, 1)"),
    ("flatten_view_as", "{o} = {a}.flatten().view_as({a})"),
    ("expand_sum", "{o} = {a}.expand(2, {a}.size(0), {a}.size(1)).sum(0)"),
    ("matmul", "{o} = torch.matmul({a}, torch.ones({a}.size(1), {a}.size(1), dtype={a}.dtype)) / {a}.size(1)"),
    ("inplace_row", "{o} = {a}.clone()\n{o}[0].mul_(2)"),
    ("inplace_flat", "{o} = {a}.clone()\n{o}.view(-1).add_(1)"),
    ("inplace_t_fill", "{o} = {a}.clone()\n{o}.t()[0].fill_(0)"),
    ("iadd_slice", "{o} = {a}.clone()\n{o}[:, :1] += 1"),
    ("diag_zero", "{o} = {a}.clone()\n{o}.diagonal().zero_()"),
    ("narrow_copy", "{o} = {a}.clone()\n{o}.narrow(1, 0, 1).copy_({b}[:, :1])"),
    ("unsq_relu_", "{o} = {a}.clone()\n{o}.unsqueeze(0).squeeze(0).relu_()"),
    ("view_then_base", "t = {a}.clone()\n{o} = t.view(t.size(0), -1)\nt.mul_(3)"),
    ("select_neg_", "{o} = {a}.clone()\n{o}.select(1, 0).neg_()"),
    ("step_setitem", "{o} = {a}.clone()\n{o}[::2] = 0"),
    ("rows_mul_", "{o} = {a}.clone()\nfor r in {o}:\n    r.mul_(2)"),
    ("transpose_mul_", "{o} = {a}.clone()\n{o}.transpose(0, 1).mul_(2)"),
    ("masked_fill_", "{o} = {a}.clone()\n{o}.masked_fill_({o} > 1, 1.0)"),
    ("clamp_", "{o} = {a}.clone()\n{o}.clamp_(-1, 1)"),
    ("index_fill_", "{o} = {a}.clone()\n{o}.index_fill_(1, torch.tensor([0]), -1.0)"),
    ("setitem_col", "{o} = {a}.clone()\n{o}[:, 0] = 0.5"),
    ("operand_mul_", "{o} = {a}.mul_(1.5)"),
    ("operand_add_", "{a}.add_({b})\n{o} = {a}"),
])

_FACTORIES = _fam("factories", [
    ("zeros_args", "{o} = torch.zeros({a}.size(0), {a}.size(1)) + {a}"),
    ("zeros_list", "{o} = torch.zeros([{a}.size(0), {a}.size(1)]) + {a}"),
    ("zeros_shape", "{o} = torch.zeros({a}.shape, dtype={a}.dtype) + {a}"),
    ("ones_star", "{o} = torch.ones(*{a}.shape) * {a}"),
    ("ones_size", "{o} = torch.ones({a}.size()) * {a}"),
    ("zeros_b3", "{o} = torch.cat([{a}, torch.zeros({a}.size(0), 3)], 1)[:, :{a}.size(1)]"),
    ("new_zeros_args", "{o} = {a}.new_zeros({a}.size(0), {a}.size(1)) + {a}"),
    ("new_ones_tuple", "{o} = {a}.new_ones(({a}.size(0), {a}.size(1))) * {a}"),
    ("new_full", "{o} = {a}.new_full({a}.shape, 0.5) + {a}"),
    ("new_tensor", "{o} = {a} + {a}.new_tensor([1.0])"),
    ("full_tuple", "{o} = torch.full(({a}.size(0), {a}.size(1)), 2.5) * {a}"),
    ("full_list_dtype", "{o} = torch.full([{a}.size(0), {a}.size(1)], 2, dtype={a}.dtype) + {a}"),
    ("full_like", "{o} = torch.full_like({a}, 3.0) - {a}"),
    ("empty_fill", "{o} = torch.empty({a}.size(0), {a}.size(1)).fill_(1.5) + {a}"),
    ("empty_like_fill", "{o} = torch.empty_like({a}).fill_(-2) * {a}"),
    ("new_empty_zero", "{o} = {a}.new_empty({a}.shape).zero_() + {a}"),
    ("arange_n", "{o} = torch.arange({a}.size(1), dtype={a}.dtype) * {a}"),
    ("arange_b", "{o} = {a} + torch.arange({a}.size(0)).unsqueeze(1)"),
    ("eye", "{o} = {a} @ torch.eye({a}.size(1), dtype={a}.dtype)"),
    ("linspace", "{o} = {a} * torch.linspace(0, 1, {a}.size(1))"),
    ("tensor_sizes", "{o} = {a} * torch.tensor([{a}.size(0), {a}.size(1)]).sum()"),
    ("ones_tail", "{o} = torch.ones({a}.size()[1:]) + {a}"),
])

_DTYPES = _fam("dtypes", [
    ("double", "{o} = {a}.double()"), ("float", "{o} = {a}.float()"),
    ("half", "{o} = {a}.half()"), ("half_float", "{o} = {a}.half().float()"),
    ("to_f64", "{o} = {a}.to(torch.float64)"), ("to_f32", "{o} = {a}.to(torch.float32)"),
    ("type_f64", "{o} = {a}.type(torch.float64)"),
    ("type_str", "{o} = {a}.type('torch.DoubleTensor')"),
    ("int_float", "{o} = ({a} * 4).int().float()"),
    ("int_to", "{o} = ({a} * 4).int().to({a}.dtype)"),
    ("long_floordiv", "{o} = ({a} * 3).long() // 2 + {a}"),
    ("bool_float", "{o} = ({a} > 0).float() * {a}"),
    ("bool_method", "{o} = {a}.bool().to({a}.dtype)"), ("bool_mul", "{o} = {a} * {a}.gt(0)"),
    ("to_other_dtype", "{o} = {a}.to({b}.dtype) + {b}"), ("type_as", "{o} = {a}.type_as({b})"),
    ("to_other", "{o} = {a}.to({b})"),
    ("dtype_branch", "{o} = {a}.float() if {a}.dtype == torch.float64 else {a} * 2"),
    ("is_fp", "{o} = {a} * 2 if {a}.is_floating_point() else {a}"),
    ("finfo_eps", "{o} = {a} + torch.finfo({a}.dtype).eps"),
])

_RANDOM = _fam("random", [
    ("normal_", "{o} = torch.empty_like({a}).normal_() * 0.1 + {a}"),
    ("uniform_", "{o} = torch.empty({a}.size(0), {a}.size(1)).uniform_(-1, 1) + {a}"),
    ("bernoulli_", "{o} = {a}.new_empty({a}.shape).bernoulli_(0.5) * {a}"),
    ("exponential_", "{o} = torch.zeros_like({a}).exponential_() + {a}"),
    ("random_", "{o} = torch.zeros_like({a}).random_(0, 3) + {a}"),
    ("cauchy_", "{o} = torch.empty_like({a}).cauchy_().clamp(-2, 2) + {a}"),
    ("log_normal_", "{o} = {a}.new_empty({a}.shape).log_normal_().clamp(max=3) * {a}"),
    ("geometric_", "{o} = torch.empty({a}.size(0), {a}.size(1)).geometric_(0.5) + {a}"),
    ("randn_sizes", "{o} = {a} + torch.randn({a}.size(0), {a}.size(1))"),
    ("rand_like", "{o} = torch.rand_like({a}) * {a}"),
    ("dropout", "{o} = F.dropout({a}, 0.5, training=True)"),
    ("randperm", "{o} = {a}[:, torch.randperm({a}.size(1))]"),
    ("dropout_item", "{o} = {a} * F.dropout({a}, 0.5, training=True).abs().sum().item()"),
    ("rand_item", "{o} = {a} + torch.rand(()).item()"),
    ("rand_branch", "{o} = {a} * 2 if torch.rand(()) > 0.5 else {a}"),
    ("randint_int", "{o} = {a} * int(torch.randint(1, 4, ()))"),
])

_INDEXING = _fam("indexing", [
    ("ell_argsort", "{o} = {a}[..., torch.argsort({a}[0])]"),
    ("ell_arange_rev", "{o} = {a}[..., torch.arange({a}.size(-1) - 1, -1, -1)]"),
    ("ell_slice_expand", "{o} = {a}[..., 0:1].expand_as({a})"),
    ("ell_none", "{o} = {a}[..., None].squeeze(-1)"),
    ("ell_rotate", "{o} = torch.cat([{a}[..., 1:], {a}[..., :1]], -1)"),
    ("none_ell", "{o} = {a}[None, ...][0]"),
    ("ell_last", "{o} = {a}[..., -1:] + {a}"),
    ("ell_nonzero", "{o} = {a}[..., ({a}[0] > 0).nonzero()[:, 0]].sum(-1, keepdim=True) + {a}"),
    ("ell_setitem", "{o} = {a}.clone()\n{o}[..., 0] = 1.0"),
    ("mask_setitem", "{o} = {a}.clone()\n{o}[{o} < 0] = 0.0"),
    ("ell_idx_setitem", "{o} = {a}.clone()\n{o}[..., torch.tensor([0])] = 2.0"),
    ("ell_mid", "{o} = {a}[..., {a}.size(-1) // 2:{a}.size(-1) // 2 + 1] * {a}"),
    ("ell_idx_other", "{o} = {a}[..., torch.argsort({b}[-1])]"),
])

_POW = _fam("pow", [
    ("sq", "{o} = {a} ** 2"), ("cube", "{o} = {a} ** 3 * 0.1"),
    ("sqrt_pow", "{o} = ({a}.abs() + 0.5) ** 0.5"), ("rpow", "{o} = 2 ** {a}.clamp(-3, 3)"),
    ("pow_size", "{o} = {a} ** ({a}.size(0) % 3)"), ("torch_pow", "{o} = torch.pow({a}, 2)"),
    ("pow_tensor", "{o} = ({a}.abs() + 0.5) ** {b}.clamp(-2, 2)"),
    ("int_pow", "{o} = (({a} * 2).int() ** 2).to({a}.dtype)"),
    ("neg_pow", "{o} = 1 / ({a}.abs() + 1) ** 2"),
    ("pow_rounded", "{o} = {a}.abs() ** {b}.abs().round().clamp(0, 3)"),
])

_BRANCHES = _fam("branches", [
    ("sum_pos", "if {a}.sum() > 0:\n    {o} = {a} * 2\nelse:\n    {o} = {a} - 1"),
    ("max_gt", "if {a}.max() > 1:\n    {o} = {a} / 2\nelse:\n    {o} = {a}"),
    ("any_pos", "{o} = {a} if ({a} > 0).any() else -{a}"),
    ("elem_pos", "if {a}[0, 0] > 0:\n    {o} = {a} + 1\nelse:\n    {o} = {a} * 3"),
    ("while_big", "{o} = {a}\nn = 0\nwhile {o}.abs().max() > 2 and n < 5:\n    {o} = {o} / 2\n    n += 1"),
    ("cmp_two", "{o} = {a} - {b} if {a}.mean() > {b}.mean() else {b} - {a}"),
])

_SIZES = _fam("sizes", [
    ("loop_size", "{o} = {a}\nfor _ in range({a}.size(0) % 3):\n    {o} = {o} + 1"),
    ("row_loop", "{o} = {a}.clone()\nfor i in range({o}.size(0)):\n    {o}[i] = {o}[i] * (i + 1)"),
    ("sum_rows", "{o} = sum({a}[i] for i in range({a}.size(0))).expand_as({a})"),
    ("len_mul", "{o} = {a} * len({a})"), ("sqrt_size", "{o} = {a} / math.sqrt({a}.size(-1))"),
    ("float_size", "{o} = {a} * float({a}.size(1))"),
    ("int_cmp", "{o} = {a} + int({a}.size(0) > 2)"),
    ("stack_rows", "{o} = torch.stack([{a}[i] for i in range({a}.size(0))])"),
    ("stack_iter", "{o} = torch.stack(list({a}))"),
    ("split_cat", "{o} = torch.cat({a}.split(1, 1), 1)"),
    ("chunk_cat", "{o} = torch.cat({a}.chunk(2, 1), 1)"),
    ("unbind_stack", "{o} = torch.stack({a}.unbind(0))"),
    ("unpack_shape", "b, n = {a}.shape\n{o} = {a}.reshape(b * n).view(b, n)"),
    ("view_last", "{o} = {a}.view(-1, {a}.shape[-1])"), ("dim_mul", "{o} = {a} * {a}.dim()"),
    ("parity", "{o} = {a} if {a}.size(1) % 2 == 0 else {a} + 1"),
    ("stride_slice", "{o} = {a}.new_zeros({a}.size(0), {a}.size(1) * 2)[:, ::2] + {a}"),
    ("max_slice", "{o} = {a}[:, :max(1, {a}.size(1) - 1)].sum(1, keepdim=True) + {a}"),
    ("numel_div", "{o} = {a} / {a}.numel()"), ("mul_size", "{o} = {a} * {a}.size(0)"),
    ("pad_slice", "{o} = F.pad({a}, (0, 1))[:, :{a}.size(1)]"),
    ("unflatten", "{o} = {a}.unflatten(1, ({a}.size(1), 1)).squeeze(-1)"),
    ("expand_star", "{o} = {a}.expand(2, *{a}.shape).sum(0)"),
    ("repeat_slice", "{o} = {a}.repeat(1, 2)[:, :{a}.size(1)]"),
    ("branch_size", "{o} = {a} + 1 if {a}.size(0) > 2 else {a}"),
])

_VALUES = _fam("values", [
    ("mean_item", "{o} = {a} + {a}.mean().item()"),
    ("max_item", "{o} = {a} / ({a}.abs().max().item() + 1)"),
    ("tolist_sum", "{o} = {a} - sum({a}[0].tolist()) / {a}.size(1)"),
    ("len_tolist", "{o} = {a} * len({a}.tolist())"), ("float_sum", "{o} = {a} + float({a}.sum())"),
    ("mean_tolist", "{o} = {a} - {a}.mean().tolist()"),
    ("argmax_roll", "{o} = {a}.roll(int({a}[0].argmax()), 1)"),
    ("count_slice", "{o} = {a}[:, :int(({a}[0] > 0).sum()) + 1].sum(1, keepdim=True) + {a}"),
    ("max_tolist", "{o} = {a} * max({a}.flatten().tolist())"),
    ("full_item", "{o} = torch.full_like({a}, {a}.sum().item())"),
    ("clamp_item", "{o} = {a}.clamp(max={a}.median().item())"),
])

_NUMPY = _fam("numpy", [
    ("np_mul", "{o} = torch.from_numpy({a}.detach().numpy() * 2)"),
    ("np_cumsum", "{o} = torch.as_tensor(np.cumsum({a}.detach().numpy(), axis=-1))"),
    ("np_ones", "{o} = {a} + torch.from_numpy(np.ones({a}.shape, dtype=np.float32))"),
    ("np_mean", "{o} = {a} * float(np.mean({a}.detach().numpy()))"),
    ("np_tolist", "{o} = torch.tensor({a}.detach().numpy().tolist())"),
    ("np_arange", "{o} = {a} + torch.from_numpy(np.arange({a}.size(1))).to({a}.dtype)"),
    ("np_new_tensor", "{o} = {a}.new_tensor(np.ones(({a}.size(0), {a}.size(1)))) + {a}"),
    ("np_size_sum", "{o} = {a} * float(np.ones({a}.shape).sum())"),
    ("np_inplace", "{o} = {a}.clone()\n{o}.detach().numpy()[...] *= 2\n{o} = {o} + 1"),
])

_MODULE = _fam("module", [
    ("count_iadd", "self.count += 1\n{o} = {a} + self.count"),
    ("count_add_", "self.count.add_(1)\n{o} = {a} * self.count"),
    ("count_rebind", "self.count = self.count + 1\n{o} = {a} - self.count"),
    ("steps_iadd", "self.steps += 1\n{o} = {a} * self.steps"),
    ("running_rebind", "self.running = 0.9 * self.running + 0.1 * {a}.mean()\n{o} = {a} - self.running"),
    ("running_inplace", "self.running.mul_(0.9).add_(0.1 * {a}.detach().mean())\n{o} = {a} - self.running"),
    ("running_copy_", "self.running.copy_({a}.mean())\n{o} = {a} * self.running"),
    ("running_no_grad",
     "with torch.no_grad():\n    self.running.lerp_({a}.mean().float(), 0.5)\n{o} = {a} + self.running"),
    ("count_branch", "{o} = {a} * 2 if self.count > 1 else {a}"),
    ("count_item", "{o} = {a} + self.count.item()"),
    ("count_fill_item", "self.count.fill_(self.count.item() + 1)\n{o} = {a} * self.count"),
    ("scale", "{o} = {a} * self.scale"),
    ("dropout_mode", "{o} = F.dropout({a}, 0.5, self.training)"),
    ("dropout_mode_branch",
     "{o} = {a} * 2 if F.dropout({a}, 0.5, self.training).sum().item() > 0 else {a}"),
])

#: Integer inputs enter the float pool through one of these (operand: an int64/int32 tensor).
INT_ENTRY: List[Entry] = _fam("int_entry", [
    ("float", "{o} = {a}.float()"), ("to_f32_div", "{o} = {a}.to(torch.float32) / 2"),
    ("affine_double", "{o} = ({a} * 2 + 1).double()"), ("type_f32", "{o} = {a}.type(torch.float32)"),
    ("abs_where", "{o} = torch.where({a} > 0, {a}, -{a}).float()"),
    ("floordiv", "{o} = ({a} // 2).float()"), ("mod", "{o} = ({a} % 3).float()"),
    ("float_sq", "{o} = {a}.float() ** 2"), ("sqrt", "{o} = {a}.abs().float().sqrt()"),
    ("int_pow", "{o} = ({a} ** 2).float()"), ("bool_float", "{o} = {a}.bool().float()"),
    ("true_div", "{o} = {a} / 2"), ("mul_half", "{o} = {a} * 0.5"),
    ("rowsum", "{o} = ({a} + {a}.sum(1, keepdim=True)).float()"),
    ("argsort_index", "{o} = {a}.float()[..., torch.argsort({a}[0])]"),
    ("max_item", "{o} = {a}.float() + {a}.max().item()"),
])

#: Family name -> entries; the order is the shrink order (Hypothesis shrinks towards the first).
FAMILIES: Dict[str, List[Entry]] = {
    "elementwise": _ELEMENTWISE, "views": _VIEWS, "factories": _FACTORIES, "dtypes": _DTYPES,
    "indexing": _INDEXING, "pow": _POW, "sizes": _SIZES, "values": _VALUES,
    "branches": _BRANCHES, "random": _RANDOM, "numpy": _NUMPY, "module": _MODULE,
}

MODULE_ONLY = frozenset(["module"])

_BY_KEY = {e.key: e for fam in list(FAMILIES.values()) + [INT_ENTRY] for e in fam}


def entry_named(key: str) -> Entry:
    """The entry ``family.name``."""
    return _BY_KEY[key]
