"""Tests of fxtrace.passes: every pass case goes through ``check_pass``."""
from __future__ import annotations

import copy
import math
import operator

import pytest
import torch
import torch.fx as fx
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from fxtrace.capture.meta import SOURCE, SourceLoc
from fxtrace.errors import PassError, VerifyError
from fxtrace.passes import (
    DEFAULT_PASSES,
    PassRecord,
    PassResult,
    eliminate_common_subexpressions,
    eliminate_dead_code,
    fold_batchnorm,
    fold_constants,
    is_impure,
    run_passes,
    verify,
)
from fxtrace.passes.cse import node_key
from fxtrace.passes.fold_batchnorm import FOLDED_META, ORIGINAL_META
from fxtrace.passes.fold_constants import FOLD_NUMEL_LIMIT
from fxtrace.passes.purity import may_write, possibly_mutated

# --------------------------------------------------------------------------------------------
# The helper every pass case goes through
# --------------------------------------------------------------------------------------------

def _clone(inputs):
    return tuple(t.clone() if isinstance(t, torch.Tensor) else t for t in inputs)


def _run(fn, inputs):
    torch.manual_seed(0)  # random ops draw the same numbers in reference and result
    with torch.no_grad():
        return fn(*_clone(inputs))


def _assert_same(reference, gm, inputs, atol):
    expected, actual = _run(reference, inputs), _run(gm, inputs)
    torch.testing.assert_close(actual, expected, atol=atol, rtol=atol, equal_nan=True)


@st.composite
def _tensor_inputs(draw, shape_sets):
    shapes = draw(st.sampled_from(shape_sets))
    tensors = []
    for shape in shapes:
        n = math.prod(shape)
        values = draw(st.lists(st.floats(-4, 4, width=32, allow_subnormal=False),
                               min_size=n, max_size=n))
        tensors.append(torch.tensor(values, dtype=torch.float32).reshape(shape))
    return tuple(tensors)


def check_pass(pass_fn, gm, inputs, *, modified, pre=None, post=None, reference=None,
               shapes=None, atol=1e-6, examples=4, idempotent=True):
    """Precondition, pass, truthful ``modified``, postcondition, verify, outputs == eager.

    ``reference`` defaults to a deep copy of ``gm`` taken before the pass (the pre-pass graph
    is the eager program); outputs are compared on ``inputs`` and on Hypothesis-drawn float
    tensors of the shapes in ``shapes`` (a list of shape tuples, default: those of ``inputs``).
    """
    verify(gm)
    if pre is not None:
        pre(gm)
    if reference is None:
        reference = copy.deepcopy(gm)
    code_before = gm.code
    result = pass_fn(gm)
    assert isinstance(result, PassResult)
    out = result.graph_module
    assert isinstance(out, fx.GraphModule)
    assert result.modified is modified, f"{pass_fn.__name__} reported modified={result.modified}"
    out.recompile()
    if not modified:
        assert out.code == code_before, "pass said unmodified but changed the code"
    if post is not None:
        post(out)
    verify(out)
    if idempotent:
        again = pass_fn(copy.deepcopy(out))
        assert again.modified is False, "a second run still found work: modified is not truthful"
    _assert_same(reference, out, inputs, atol)

    shape_sets = shapes or [tuple(tuple(t.shape) for t in inputs)]

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(_tensor_inputs(shape_sets))
    def same_on_drawn_inputs(drawn):
        _assert_same(reference, out, drawn, atol)

    same_on_drawn_inputs()
    return out


def targets(gm, op=None):
    return [n.target for n in gm.graph.nodes if op is None or n.op == op]


def method_count(gm, name):
    return sum(1 for n in gm.graph.nodes if n.op == "call_method" and n.target == name)


def func_count(gm, fn):
    return sum(1 for n in gm.graph.nodes if n.op == "call_function" and n.target is fn)


def hand_graph(build, root=None):
    """A GraphModule from ``build(graph, x)`` returning the output value."""
    root = root if root is not None else nn.Module()
    g = fx.Graph()
    x = g.placeholder("x")
    g.output(build(g, x))
    return fx.GraphModule(root, g)


def with_constant(tensor):
    root = nn.Module()
    root.register_buffer("_tensor_constant0", tensor)  # as fx.symbolic_trace stores closures
    return root


X3 = (torch.randn(3),)


# --------------------------------------------------------------------------------------------
# purity
# --------------------------------------------------------------------------------------------

def _user_function(x):
    return x


@pytest.mark.parametrize("target,args,kwargs,impure", [
    (torch.add, (1,), {}, False),
    (torch.relu, (), {}, False),
    (F.normalize, (), {}, False),
    (operator.add, (1,), {}, False),
    (operator.getitem, (0,), {}, False),
    (math.sqrt, (), {}, False),
    (torch.relu_, (), {}, True),
    (torch.Tensor.add_, (1,), {}, True),
    (F.relu, (), {"inplace": True}, True),
    (F.relu, (True,), {}, True),
    (F.relu, (False,), {}, False),
    (torch.add, (1,), {"out": "SELF"}, True),
    (operator.setitem, (0, 1.0), {}, True),
    (operator.iadd, (1,), {}, True),
    (torch._assert, ("msg",), {}, True),
    (torch.rand_like, (), {}, True),
    (torch.bernoulli, (), {}, True),
    (F.dropout, (), {}, True),
    (F.rrelu, (), {}, True),
    (torch.multinomial, (2,), {}, True),
    (torch.normal, (1.0,), {}, True),
    (torch.empty_like, (), {}, True),
    (torch.ops.aten.add_.Tensor, (1,), {}, True),
    (torch.ops.aten.add.Tensor, (1,), {}, False),
    (torch.ops.aten.rand_like.default, (), {}, True),
    (_user_function, (), {}, True),
    (print, (), {}, True),
])
def test_is_impure_call_function(target, args, kwargs, impure):
    g = fx.Graph()
    x = g.placeholder("x")
    kwargs = {k: (x if v == "SELF" else v) for k, v in kwargs.items()}
    node = g.call_function(target, (x,) + args, kwargs)
    assert is_impure(node) is impure


@pytest.mark.parametrize("name,impure", [
    ("view", False), ("size", False), ("__getitem__", False), ("relu", False),
    ("add_", True), ("copy_", True), ("index_put_", True), ("uniform_", True),
    ("random_", True), ("exponential_", True), ("__iadd__", True), ("__setitem__", True),
    ("bernoulli", True), ("backward", True), ("new_empty", True),
])
def test_is_impure_call_method(name, impure):
    g = fx.Graph()
    x = g.placeholder("x")
    assert is_impure(g.call_method(name, (x,))) is impure


def test_is_impure_signature_modules_guards():
    gm = fx.symbolic_trace(nn.Sequential(nn.ReLU()))
    kinds = {n.op: is_impure(n) for n in gm.graph.nodes}
    assert kinds == {"placeholder": True, "call_module": True, "output": True}
    g = fx.Graph()
    x = g.placeholder("x")
    size = g.call_method("size", (x,))
    assert not is_impure(size)
    size.meta["fxtrace_guard"] = True
    assert is_impure(size)


def test_may_write_and_possibly_mutated():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)
            self.inplace = nn.ReLU(inplace=True)

        def forward(self, x):
            a = x.relu()
            v = a.view(-1)
            v.add_(1)
            b = self.lin(x)
            return self.inplace(b) + a.sin()

    gm = fx.symbolic_trace(M().eval())
    nodes = {n.name: n for n in gm.graph.nodes}
    assert may_write(nodes["add_"]) and not may_write(nodes["lin"])
    assert may_write(nodes["inplace"])  # ReLU(inplace=True) writes its input
    assert not may_write(nodes["relu"]) and not may_write(nodes["sin"])
    mutated = possibly_mutated(gm.graph)
    assert {"view", "relu", "x", "lin"} <= {n.name for n in mutated}
    assert nodes["sin"] not in mutated


# --------------------------------------------------------------------------------------------
# dead code elimination
# --------------------------------------------------------------------------------------------

def test_dce_removes_unused_pure_nodes():
    class M(nn.Module):
        def forward(self, x):
            a = x.sin()
            a.cos()
            return x * 2

    check_pass(eliminate_dead_code, fx.symbolic_trace(M()), X3, modified=True,
               pre=lambda gm: assert_has(gm, "sin", "cos"),
               post=lambda gm: assert_lacks(gm, "sin", "cos"))


def assert_has(gm, *methods):
    for m in methods:
        assert method_count(gm, m) >= 1, (m, gm.code)


def assert_lacks(gm, *methods):
    for m in methods:
        assert method_count(gm, m) == 0, (m, gm.code)


def test_dce_nothing_to_do():
    gm = fx.symbolic_trace(lambda x: x.relu() * 2)
    check_pass(eliminate_dead_code, gm, X3, modified=False)


def test_dce_keeps_inplace_on_input_and_removes_the_rest():
    def build(g, x):
        g.call_method("add_", (x, 1))        # unused, writes the input
        g.call_method("sin", (x,))           # unused, pure
        return g.call_function(operator.mul, (x, 2))

    check_pass(eliminate_dead_code, hand_graph(build), X3, modified=True,
               pre=lambda gm: assert_has(gm, "add_", "sin"),
               post=lambda gm: (assert_has(gm, "add_"), assert_lacks(gm, "sin")))


def test_dce_keeps_assert_rand_guards_and_inplace_functionals():
    def build(g, x):
        total = g.call_method("sum", (x,))
        cond = g.call_function(operator.gt, (total, -1e9))
        g.call_function(torch._assert, (cond, "too small"))
        g.call_function(torch.rand, (3,))
        g.call_function(F.relu, (x,), {"inplace": True})
        g.call_function(operator.setitem, (x, 0, 1.0))
        guard = g.call_method("size", (x, 0))
        guard.meta["fxtrace_guard"] = True
        g.call_method("cos", (x,))           # the only dead node
        return g.call_function(operator.add, (x, 1))

    def post(gm):
        assert_lacks(gm, "cos")
        assert_has(gm, "sum", "size")
        for fn in (torch._assert, torch.rand, F.relu, operator.setitem, operator.gt):
            assert func_count(gm, fn) == 1, fn

    check_pass(eliminate_dead_code, hand_graph(build), X3, modified=True, post=post)


def test_dce_keeps_module_calls():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm1d(3)

        def forward(self, x):
            self.bn(x)                     # unused, but updates running stats in training
            return x + 1

    gm = fx.symbolic_trace(M().train())
    check_pass(eliminate_dead_code, gm, (torch.randn(4, 3),), modified=False,
               post=lambda gm: assert_has_module(gm, "bn"))


def assert_has_module(gm, target):
    assert target in targets(gm, "call_module"), gm.code


# --------------------------------------------------------------------------------------------
# common subexpression elimination
# --------------------------------------------------------------------------------------------

def test_cse_merges_identical_pure_nodes():
    class M(nn.Module):
        def forward(self, x):
            a, b = x.relu(), x.relu()
            return (a + 1) * (b + 1)

    check_pass(eliminate_common_subexpressions, fx.symbolic_trace(M()), X3, modified=True,
               pre=lambda gm: assert_count(gm, "relu", 2),
               post=lambda gm: (assert_count(gm, "relu", 1),
                                assert_count_fn(gm, operator.add, 1)))


def assert_count(gm, method, n):
    assert method_count(gm, method) == n, gm.code


def assert_count_fn(gm, fn, n):
    assert func_count(gm, fn) == n, gm.code


def test_cse_does_not_merge_random_ops():
    def build(g, x):
        r1 = g.call_function(torch.rand, (3,))
        r2 = g.call_function(torch.rand, (3,))
        return g.call_function(operator.add, (g.call_function(operator.sub, (x, r1)), r2))

    check_pass(eliminate_common_subexpressions, hand_graph(build), X3, modified=False,
               post=lambda gm: assert_count_fn(gm, torch.rand, 2))


def test_cse_nothing_to_do():
    gm = fx.symbolic_trace(lambda x: x.relu() + x.sin())
    check_pass(eliminate_common_subexpressions, gm, X3, modified=False)


def test_cse_does_not_merge_across_a_write():
    def f(x):
        a = x.relu()
        x.add_(1)
        b = x.relu()
        return a + b

    check_pass(eliminate_common_subexpressions, fx.symbolic_trace(f), X3, modified=False,
               post=lambda gm: assert_count(gm, "relu", 2))


def test_cse_does_not_merge_a_value_mutated_later():
    def f(x):
        a = x.relu()
        b = x.relu()
        a.view(-1).add_(1)          # writes a through a view
        c = x.sin()
        d = x.sin()                 # still merged: nothing writes c or d
        return a, b, c + d

    check_pass(eliminate_common_subexpressions, fx.symbolic_trace(f), X3, modified=True,
               post=lambda gm: (assert_count(gm, "relu", 2), assert_count(gm, "sin", 1)))


def test_cse_merges_across_eval_module_calls():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, x):
            a = x.abs()
            y = self.lin(x)
            return y + x.abs() + a

    check_pass(eliminate_common_subexpressions, fx.symbolic_trace(M().eval()), X3,
               modified=True, post=lambda gm: assert_count(gm, "abs", 1))


def test_cse_compares_constants_by_type_and_bits():
    def f(x):
        return (x + 0.0, x + -0.0, x + float("nan"), x + float("nan"),
                torch.full(x.shape, 1), torch.full(x.shape, 1.0), torch.full(x.shape, True))

    gm = fx.symbolic_trace(f)
    # -0.0 vs 0.0, and 1 vs 1.0 vs True, must stay apart; the two NaN adds merge.
    out = check_pass(eliminate_common_subexpressions, gm, (torch.tensor([-0.0, 1.0, 2.0]),),
                     modified=True, post=lambda gm: (assert_count_fn(gm, operator.add, 3),
                                                     assert_count_fn(gm, torch.full, 3)))
    res = out(torch.tensor([-0.0]))
    assert math.copysign(1, res[1].item()) == -1 and [r.dtype for r in res[4:]] == [
        torch.int64, torch.float32, torch.bool]


def test_cse_key_compares_tensors_by_identity():
    g = fx.Graph()
    x = g.placeholder("x")
    t1, t2 = torch.ones(3), torch.ones(3)
    a = g.call_function(torch.add, (x, t1))
    b = g.call_function(torch.add, (x, t2))
    c = g.call_function(torch.add, (x, t1))
    d = g.call_function(torch.add, (x, [1, 2]))
    e = g.call_function(torch.add, (x, (1, 2)))
    assert node_key(a) == node_key(c) != node_key(b)
    assert node_key(d) != node_key(e)


# --------------------------------------------------------------------------------------------
# constant folding
# --------------------------------------------------------------------------------------------

LOC = SourceLoc("model.py", 7, "forward", "y = x + c * 2")


def test_fold_closure_constant():
    def build(g, x):
        c = g.get_attr("_tensor_constant0")
        mul = g.call_function(operator.mul, (c, 2))
        mul.meta.update({SOURCE: LOC, "fxtrace_module": "", "stack_trace": LOC.stack_trace()})
        return g.call_function(operator.add, (x, mul))

    def post(gm):
        assert func_count(gm, operator.mul) == 0, gm.code
        (const,) = [n for n in gm.graph.nodes if n.op == "get_attr"]
        assert const.meta[SOURCE] == LOC and "stack_trace" in const.meta  # meta carried over
        assert torch.equal(getattr(gm, const.target), torch.full((3,), 2.0))
        assert not hasattr(gm, "_tensor_constant0") or const.target == "_tensor_constant0"

    check_pass(fold_constants, hand_graph(build, with_constant(torch.ones(3))), X3,
               modified=True, post=post)


def test_fold_factory_chain():
    def build(g, x):
        ones = g.call_function(torch.ones, (3,))
        mul = g.call_function(operator.mul, (ones, 2))
        return g.call_function(operator.add, (x, mul))

    check_pass(fold_constants, hand_graph(build), X3, modified=True,
               post=lambda gm: (assert_count_fn(gm, torch.ones, 0),
                                assert_count_fn(gm, operator.mul, 0)))


def test_fold_never_parameters_or_buffers():
    root = nn.Module()
    root.p = nn.Parameter(torch.ones(3))
    root.register_buffer("stat", torch.ones(3))

    def build(g, x):
        p2 = g.call_function(operator.mul, (g.get_attr("p"), 2))
        s3 = g.call_function(operator.mul, (g.get_attr("stat"), 3))
        return g.call_function(operator.add, (g.call_function(operator.add, (x, p2)), s3))

    check_pass(fold_constants, hand_graph(build, root), X3, modified=False,
               post=lambda gm: assert_count_fn(gm, operator.mul, 2))


def test_fold_inlines_python_numbers():
    def build(g, x):
        c = g.get_attr("_tensor_constant0")
        n = g.call_method("size", (c, 0))
        return g.call_function(operator.mul, (x, n))

    check_pass(fold_constants, hand_graph(build, with_constant(torch.ones(3))), X3,
               modified=True, post=lambda gm: (assert_lacks(gm, "size"),
                                               assert_lacks_get_attr(gm)))


def assert_lacks_get_attr(gm):
    assert not targets(gm, "get_attr"), gm.code


def test_fold_keeps_large_results_of_small_inputs():
    n = 400                                   # n * n > FOLD_NUMEL_LIMIT
    assert n * n > FOLD_NUMEL_LIMIT

    def build(g, x):
        big = g.call_function(torch.zeros, (n, n))
        total = g.call_method("sum", (big,))   # folds: a 0-d result
        scaled = g.call_function(operator.mul, (big, g.call_method("sum", (x,))))
        row = g.call_function(operator.getitem, (g.call_method("sum", (scaled, 0)),
                                                 slice(None, 3)))
        return g.call_function(operator.add, (g.call_function(operator.add, (x, total)), row))

    def post(gm):
        assert func_count(gm, torch.zeros) == 1   # stays a call
        assert all(getattr(gm, t).numel() <= FOLD_NUMEL_LIMIT for t in targets(gm, "get_attr"))
        assert method_count(gm, "sum") == 2       # sum(x), sum(scaled, 0); the big sum folded

    check_pass(fold_constants, hand_graph(build), X3, modified=True, post=post)


def test_fold_skips_written_and_escaping_constants():
    def build(g, x):
        c = g.get_attr("_tensor_constant0")
        twice = g.call_function(operator.mul, (c, 2))     # read before the write below
        g.call_method("add_", (c, 1))
        d = g.get_attr("_tensor_constant1")
        d2 = g.call_function(operator.mul, (d, 2))        # returned: the caller could mutate it
        d3 = g.call_function(operator.mul, (d, 3))
        d3_view = g.call_method("view", (d3, -1))         # returned through a view
        return (g.call_function(operator.add, (x, twice)), d2, d3_view)

    root = with_constant(torch.ones(3))
    root.register_buffer("_tensor_constant1", torch.arange(3.0))
    check_pass(fold_constants, hand_graph(build, root), X3, modified=False,
               post=lambda gm: assert_count_fn(gm, operator.mul, 3))


def test_fold_leaves_failing_calls_alone():
    def build(g, x):
        bad = g.call_method("view", (g.get_attr("_tensor_constant0"), 7))
        return g.call_function(operator.add, (x, bad))

    gm = hand_graph(build, with_constant(torch.ones(3)))
    assert fold_constants(gm).modified is False


# --------------------------------------------------------------------------------------------
# BatchNorm folding
# --------------------------------------------------------------------------------------------

class ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        with torch.no_grad():                     # non-trivial running statistics
            self.bn.running_mean.uniform_(-1, 1)
            self.bn.running_var.uniform_(0.5, 2)
            self.bn.weight.uniform_(0.5, 2)
            self.bn.bias.uniform_(-1, 1)

    def forward(self, x):
        return self.bn(self.conv(x)).relu()


IMG = (torch.randn(1, 2, 4, 4),)


def test_fold_batchnorm_conv_eval():
    model = ConvBN().eval()
    snapshot = copy.deepcopy(model.state_dict())
    gm = fx.symbolic_trace(model)

    def post(gm):
        (target,) = [t for t in targets(gm, "call_module")]
        fused = gm.get_submodule(target)
        assert type(fused) is nn.Conv2d and fused is not model.conv
        assert "bn" not in dict(gm.named_children())

    out = check_pass(fold_batchnorm, gm, IMG, modified=True, post=post, reference=model,
                     atol=1e-5)
    for k, v in model.state_dict().items():       # the user's modules are untouched
        assert torch.equal(v, snapshot[k]), k
    assert model.bn.training is False and isinstance(model.bn, nn.BatchNorm2d)
    assert out is gm


def test_fold_batchnorm_refuses_in_training_mode():
    model = ConvBN().train()
    check_pass(fold_batchnorm, fx.symbolic_trace(model), (torch.randn(2, 2, 4, 4),),
               modified=False, post=lambda gm: assert_has_module(gm, "bn"),
               shapes=[((2, 2, 4, 4),)])


def test_fold_batchnorm_needs_a_single_user():
    class TwoUsers(ConvBN):
        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y

    check_pass(fold_batchnorm, fx.symbolic_trace(TwoUsers().eval()), IMG, modified=False)


def test_fold_batchnorm_linear_needs_2d_meta():
    class LinBN(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 5)
            self.bn = nn.BatchNorm1d(5)
            with torch.no_grad():
                self.bn.running_mean.uniform_(-1, 1)

        def forward(self, x):
            return self.bn(self.lin(x))

    model = LinBN().eval()
    gm = fx.symbolic_trace(model)
    x = (torch.randn(2, 3),)
    assert fold_batchnorm(copy.deepcopy(gm)).modified is False   # rank unknown: refused
    ShapeProp(gm).propagate(*x)
    check_pass(fold_batchnorm, gm, x, modified=True, reference=model, atol=1e-5,
               post=lambda gm: assert_lacks_module_type(gm, nn.BatchNorm1d))


def assert_lacks_module_type(gm, cls):
    assert not any(isinstance(gm.get_submodule(t), cls) for t in targets(gm, "call_module"))


def _traced_bn(bn):
    """A GraphModule of an eval BatchNorm2d, as capture would produce it."""
    g = fx.Graph()
    x = g.placeholder("x")
    stats = [g.get_attr(a) for a in ("running_mean", "running_var", "weight", "bias")]
    g.output(g.call_function(F.batch_norm, (x, *stats, False, bn.momentum, bn.eps)))
    return fx.GraphModule(bn, g)


def _traced_children_root(with_original, model=None, tuples=False):
    """Conv and BatchNorm traced into GraphModule children, as capture builds them; with
    ``tuples`` both return a 1-tuple read through ``getitem(call, 0)`` (NOTE [Submodule
    outputs] in capture/concrete.py)."""
    model = (model if model is not None else ConvBN()).eval()
    root = nn.Module()
    root.conv = fx.symbolic_trace(model.conv)
    root.bn = _traced_bn(model.bn)
    if tuples:
        for sub in (root.conv, root.bn):
            out = sub.graph.output_node()
            out.args = ((out.args[0],),)
            sub.recompile()
    if with_original:
        root.conv.meta[ORIGINAL_META] = model.conv
        root.bn.meta[ORIGINAL_META] = model.bn
    g = fx.Graph()
    x = g.placeholder("x")
    conv = g.call_module("conv", (x,))
    if tuples:
        conv = g.call_function(operator.getitem, (conv, 0))
    bn = g.call_module("bn", (conv,))
    if tuples:
        bn = g.call_function(operator.getitem, (bn, 0))
    g.output(bn)
    return model, fx.GraphModule(root, g)


def _assert_folded_graph_module(gm, model):
    (target,) = targets(gm, "call_module")
    fused = gm.get_submodule(target)
    assert isinstance(fused, fx.GraphModule)          # lowering compiles only GraphModules
    assert fused.meta[FOLDED_META] == ("conv", "bn")
    assert isinstance(fused.weight, nn.Parameter) and isinstance(fused.bias, nn.Parameter)
    assert fused.weight is not model.conv.weight and fused.bias is not model.conv.bias
    assert not fused.training
    assert "bn" not in dict(gm.named_children()) and "conv" not in dict(gm.named_children())
    verify(fused)


@pytest.mark.parametrize("tuples", [False, True])
def test_fold_batchnorm_graphmodule_children_with_original(tuples):
    model, gm = _traced_children_root(with_original=True, tuples=tuples)
    snapshot = copy.deepcopy(model.state_dict())
    out = check_pass(fold_batchnorm, gm, IMG, modified=True, atol=1e-5,
                     reference=lambda x: model.bn(model.conv(x)),
                     post=lambda gm: _assert_folded_graph_module(gm, model))
    for k, v in model.state_dict().items():
        assert torch.equal(v, snapshot[k]), k
    # The call site keeps the layer's output convention.
    assert func_count(out, operator.getitem) == (1 if tuples else 0)


def test_fold_batchnorm_graphmodule_adds_a_bias_and_keeps_bn_guards():
    class NoBias(ConvBN):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 4, 3, padding=1, bias=False)

    model, gm = _traced_children_root(with_original=True, model=NoBias())
    with gm.bn.graph.inserting_before(gm.bn.graph.output_node()):
        gm.bn.graph.call_function(torch._assert, (True, "guard"))
    gm.bn.recompile()
    out = check_pass(fold_batchnorm, gm, IMG, modified=True, atol=1e-5,
                     reference=lambda x: model.bn(model.conv(x)),
                     post=lambda gm: _assert_folded_graph_module(gm, model))
    fused = out.conv_bn_fused
    assert func_count(fused, torch._assert) == 1                # the BatchNorm's guard stays
    assert func_count(fused, F.batch_norm) == 0
    assert [n.target for n in fused.graph.nodes if n.op == "get_attr"] == ["weight", "bias"]


def test_fold_batchnorm_graphmodule_skips_unrecognised_graphs():
    model, gm = _traced_children_root(with_original=True)
    conv = gm.conv.graph.find_nodes(op="call_function", target=torch.conv2d)[0]
    with gm.conv.graph.inserting_after(conv):
        doubled = gm.conv.graph.call_function(operator.mul, (conv, 2))
    gm.conv.graph.output_node().args = (doubled,)
    gm.conv.recompile()
    check_pass(fold_batchnorm, gm, IMG, modified=False,
               reference=lambda x: model.bn(model.conv(x) * 2))


def test_fold_batchnorm_keeps_modules_an_extra_method_uses():
    model, gm = _traced_children_root(with_original=True)
    g = fx.Graph()
    g.output(g.call_module("bn", (g.placeholder("x"),)))
    gm.meta["fxtrace_methods"] = {"forward1": fx.GraphModule(gm, g)}
    check_pass(fold_batchnorm, gm, IMG, modified=True, atol=1e-5,
               reference=lambda x: model.bn(model.conv(x)))
    assert "bn" in dict(gm.named_children()) and "conv" not in dict(gm.named_children())


def test_fold_batchnorm_graphmodule_children_without_original():
    _, gm = _traced_children_root(with_original=False)
    check_pass(fold_batchnorm, gm, IMG, modified=False)


# --------------------------------------------------------------------------------------------
# verify
# --------------------------------------------------------------------------------------------

def _simple_gm():
    return fx.symbolic_trace(lambda x: (x.relu() + 1).sin())


def test_verify_accepts_traced_graphs():
    verify(_simple_gm())
    verify(fx.symbolic_trace(ConvBN()))


def test_verify_rejects_user_function_targets():
    gm = _simple_gm()
    relu = next(n for n in gm.graph.nodes if n.target == "relu")
    with gm.graph.inserting_after(relu):
        bad = gm.graph.call_function(lambda t: t * 2, (relu,))
    relu.replace_all_uses_with(bad, delete_user_cb=lambda u: u is not bad)
    with pytest.raises(VerifyError, match=rf"Node {bad.name}: .*<lambda>.* not a torch callable"):
        verify(gm)


def test_verify_rejects_unordered_graphs():
    gm = _simple_gm()
    x, relu = list(gm.graph.nodes)[:2]
    sin = next(n for n in gm.graph.nodes if n.target == "sin")
    relu.prepend(sin)                              # sin now precedes its input
    with pytest.raises(VerifyError, match=r"Node sin: uses add before it is defined"):
        verify(gm)


@pytest.mark.parametrize("breakage,pattern", [
    (lambda gm, n: setattr(n, "name", "class"), r"Node class: name 'class' is not a legal"),
    (lambda gm, n: setattr(n, "target", "frobnicate"), r"not a torch.Tensor method"),
    (lambda gm, n: setattr(n, "args", (n.args[0], torch.ones(1))), r"tensor literal"),
])
def test_verify_rejects_broken_nodes(breakage, pattern):
    gm = _simple_gm()
    node = next(n for n in gm.graph.nodes if n.target == "relu")
    if "tensor" in pattern:
        node = next(n for n in gm.graph.nodes if n.target is operator.add)
    breakage(gm, node)
    with pytest.raises(VerifyError, match=pattern):
        verify(gm)


def test_verify_rejects_dangling_get_attr():
    gm = hand_graph(lambda g, x: g.call_function(
        operator.add, (x, g.get_attr("_tensor_constant0"))), with_constant(torch.ones(3)))
    gm.graph.find_nodes(op="get_attr")[0].target = "missing"
    with pytest.raises(VerifyError, match=r"get_attr target 'missing' does not resolve"):
        verify(gm)


def test_verify_require_source():
    gm = _simple_gm()
    verify(gm)
    with pytest.raises(VerifyError, match=r"Node relu: has no source location"):
        verify(gm, require_source=True)
    for n in gm.graph.nodes:
        n.meta[SOURCE] = LOC
    verify(gm, require_source=True)


def test_verify_skips_untraced_containers():
    gm = _simple_gm()
    holder = fx.GraphModule(nn.Module(), fx.Graph())      # no output node: not a program
    holder.meta["fxtrace_untraced"] = True
    gm.add_submodule("layers", holder)
    verify(gm)
    del holder.meta["fxtrace_untraced"]
    with pytest.raises(VerifyError, match="Graph in 'layers': has 0 output nodes"):
        verify(gm)


def test_verify_require_source_exempts_get_attr():
    gm = hand_graph(lambda g, x: g.call_function(
        operator.add, (x, g.get_attr("_tensor_constant0"))), with_constant(torch.ones(3)))
    for n in gm.graph.nodes:
        if n.op == "call_function":
            n.meta[SOURCE] = LOC
    verify(gm, require_source=True)


def test_verify_recurses_into_submodules():
    _, gm = _traced_children_root(with_original=False)
    verify(gm)
    inner = next(n for n in gm.conv.graph.nodes if n.op == "call_function")
    inner.name = "not valid"
    with pytest.raises(VerifyError, match=r"Node not valid in 'conv':"):
        verify(gm)


# --------------------------------------------------------------------------------------------
# the runner
# --------------------------------------------------------------------------------------------

class Everything(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x):
        x.cos()                                  # dead
        a, b = x.relu(), x.relu()                # common
        return self.lin(a + b)


def test_run_default_passes_records():
    model = Everything().eval()
    gm = fx.symbolic_trace(model)
    before = len(gm.graph.nodes)
    out, records = run_passes(gm, DEFAULT_PASSES, verify_each=True)
    assert [r.name for r in records] == ["eliminate_dead_code", "eliminate_common_subexpressions",
                                         "fold_constants", "eliminate_dead_code"]
    assert all(isinstance(r, PassRecord) and r.ms >= 0 for r in records)
    assert [r.modified for r in records] == [True, True, False, False]
    assert records[0].nodes_before == before and records[-1].nodes_after == before - 2
    assert all(a.nodes_after == b.nodes_before for a, b in zip(records, records[1:]))
    x = torch.randn(2, 3)
    torch.testing.assert_close(out(x), model(x))


def test_run_passes_recurses_into_graphmodule_children():
    sub = fx.symbolic_trace(lambda x: (x.sin(), x.cos())[1])   # sin is dead inside the child
    root = nn.Module()
    root.sub = sub
    g = fx.Graph()
    g.output(g.call_module("sub", (g.placeholder("x"),)))
    gm = fx.GraphModule(root, g)
    out, (record,) = run_passes(gm, [eliminate_dead_code], verify_each=True)
    assert record.modified and record.nodes_after == record.nodes_before - 1
    assert "sin" not in out.sub.code


def insert_lambda(gm):
    """A broken pass: calls a lambda, which cannot be lowered."""
    out = gm.graph.output_node()
    with gm.graph.inserting_before(out):
        node = gm.graph.call_function(lambda t: t, (out.args[0],))
    out.args = (node,)
    return PassResult(gm, True)


def reorder(gm):
    """A broken pass: moves the last computation before the placeholder."""
    nodes = list(gm.graph.nodes)
    nodes[0].prepend(nodes[-2])
    return PassResult(gm, True)


def erase_used(gm):
    """A broken pass: erases a node that still has users."""
    gm.graph.erase_node(next(n for n in gm.graph.nodes if n.target == "relu"))
    return PassResult(gm, True)


@pytest.mark.parametrize("broken,cause", [
    (insert_lambda, VerifyError), (reorder, VerifyError), (erase_used, RuntimeError)])
def test_runner_names_the_failing_pass(monkeypatch, broken, cause):
    monkeypatch.setenv("FXTRACE_VERIFY", "1")
    gm = fx.symbolic_trace(Everything())
    with pytest.raises(PassError) as info:
        run_passes(gm, [eliminate_dead_code, eliminate_common_subexpressions, broken,
                        eliminate_dead_code])
    assert str(info.value).startswith(
        f"error in pass '{broken.__name__}' after passes "
        "['eliminate_dead_code', 'eliminate_common_subexpressions']: ")
    assert isinstance(info.value.__cause__, cause)


def test_runner_without_verification_lets_a_broken_graph_through(monkeypatch):
    monkeypatch.delenv("FXTRACE_VERIFY", raising=False)
    run_passes(fx.symbolic_trace(Everything()), [insert_lambda])   # no error: not verified
    with pytest.raises(PassError, match="error in pass 'insert_lambda' after passes \\[\\]"):
        run_passes(fx.symbolic_trace(Everything()), [insert_lambda], verify_each=True)


def test_runner_rejects_bad_return_and_bad_input():
    with pytest.raises(PassError, match="returned None"):
        run_passes(_simple_gm(), [lambda gm: None])
    gm = _simple_gm()
    next(iter(gm.graph.nodes)).name = "def"
    with pytest.raises(PassError, match="invalid before any pass ran"):
        run_passes(gm, DEFAULT_PASSES, verify_each=True)


def test_functional_batch_norm_in_training_writes_its_running_stats():
    root = nn.Module()
    root.register_buffer("rm", torch.zeros(3))
    root.register_buffer("rv", torch.ones(3))

    def build(training):
        def body(g, x):
            rm, rv = g.get_attr("rm"), g.get_attr("rv")
            a = g.call_function(F.batch_norm, (x, rm, rv), {"training": training})
            b = g.call_function(F.batch_norm, (x, rm, rv), {"training": training})
            return g.call_function(operator.add, (a, b))
        return body

    x = (torch.randn(4, 3),)
    check_pass(eliminate_common_subexpressions, hand_graph(build(True), copy.deepcopy(root)),
               x, modified=False, shapes=[((4, 3),)],
               post=lambda gm: assert_count_fn(gm, F.batch_norm, 2))
    check_pass(eliminate_common_subexpressions, hand_graph(build(False), copy.deepcopy(root)),
               x, modified=True, shapes=[((4, 3),)],
               post=lambda gm: assert_count_fn(gm, F.batch_norm, 1))


# --------------------------------------------------------------------------------------------
# merge_guards
# --------------------------------------------------------------------------------------------

def _guarded_twice(same_condition: bool):
    """``x.dim() == 1`` asserted twice (on one condition node, or on two equal ones), with
    different messages, and a guard on another value in between."""
    from fxtrace.capture.meta import GUARD

    def build(g, x):
        dim = g.call_method("dim", (x,))
        eq = g.call_function(operator.eq, (dim, 1))
        first = g.call_function(torch._assert, (eq, "first"))
        other = g.call_function(torch._assert, (g.call_function(operator.ge, (dim, 0)), "ge"))
        second_cond = eq if same_condition else g.call_function(operator.eq, (dim, 1))
        second = g.call_function(torch._assert, (second_cond, "second"))
        for guard in (first, other, second):
            guard.meta[GUARD] = True
        return g.call_function(torch.relu, (x,))
    return hand_graph(build)


def _messages(gm):
    return [n.args[1] for n in gm.graph.nodes if n.target is torch._assert]


def test_merge_guards_drops_a_repeated_condition_and_keeps_the_first_message():
    from fxtrace.passes.merge_guards import merge_guards

    gm = _guarded_twice(same_condition=True)
    check_pass(merge_guards, gm, X3, modified=True,
               post=lambda out: (_messages(out) == ["first", "ge"]) or pytest.fail(out.code))
    with pytest.raises(AssertionError, match="first"):  # the same input still fails, first
        gm(torch.randn(2, 3))


def test_merge_guards_after_cse_and_not_across_graphs():
    from fxtrace.passes.merge_guards import merge_guards

    gm = _guarded_twice(same_condition=False)  # two equal conditions: CSE makes them one
    check_pass(merge_guards, copy.deepcopy(gm), X3, modified=False)
    gm, _ = run_passes(gm, [eliminate_common_subexpressions, merge_guards], verify_each=True)
    assert _messages(gm) == ["first", "ge"]
    # a submodule's guards stay in its own graph, even where its parent asserts the same
    root = nn.Module()
    root.sub = _guarded_twice(same_condition=False)
    parent = hand_graph(lambda g, x: g.call_module("sub", (x,)), root)
    parent, _ = run_passes(parent, [eliminate_common_subexpressions, merge_guards])
    assert _messages(parent.sub) == ["first", "ge"]


def test_traces_assert_each_condition_once():
    """The capture passes merge guards that read one value: LSTM's batch size, the four
    dtype and three device checks of MultiheadAttention's fast path."""
    import warnings

    import fxtrace

    class Attend(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x):
            return self.attention(x, x, x, need_weights=False)[0]

    cases = [(Attend().eval(), torch.randn(2, 5, 8)),
             (nn.LSTM(4, 6, batch_first=True).eval(), torch.randn(2, 5, 4))]
    for fn, x in cases:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm = fxtrace.capture(fn, (x,))
        guards = 0
        for m in gm.modules():
            if isinstance(m, fx.GraphModule):
                conds = [n.args[0] for n in m.graph.nodes if n.target is torch._assert]
                assert len(conds) == len(set(conds)), m.code
                guards += len(conds)
        assert guards >= 3  # what the trace checks is still checked
        with torch.no_grad():
            torch.testing.assert_close(gm(x), fn(x))
