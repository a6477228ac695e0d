"""Buffers rebound by forward (NOTE [Rebinding state] in fxtrace/capture/rebinding.py), each
a differential test against eager, with torch.jit.trace's result where it differs.

Invariant: a trace's state after each call equals eager's (values and dtypes), also after
``torch.jit.save``/``load`` in a process without fxtrace; tracing leaves the model's own
buffers bitwise as they were; the default check passes."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings

import pytest
import torch

import fxtrace
from fxtrace.capture.rebinding import set_state
from fxtrace.inspect import nodes_table, specialisations_table

pytestmark = [
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.save` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning"),
]


class Running(torch.nn.Module):  # fuzz F10: float32 buffer, float64 input
    def __init__(self):
        super().__init__()
        self.register_buffer("running", torch.zeros(()))

    def forward(self, x):
        self.running = 0.9 * self.running + 0.1 * x.mean()
        return x - self.running


class AddThenRebind(torch.nn.Module):  # fuzz F17
    def __init__(self):
        super().__init__()
        self.register_buffer("count", torch.zeros(()))

    def forward(self, x):
        self.count.add_(1)
        self.count = self.count + 1
        return x + self.count


class Mixed(torch.nn.Module):  # F12's double rebinding mixed with in-place ops and a dtype change
    def __init__(self):
        super().__init__()
        self.register_buffer("count", torch.zeros(()))

    def forward(self, x):
        self.count = self.count + 1
        self.count.mul_(2)
        self.count = self.count + x.sum()
        self.count.add_(1)
        self.count = self.count * 0.5
        return x + self.count


class Child(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("running", torch.zeros(2))

    def forward(self, x):
        return x * 2


class Parent(torch.nn.Module):  # a submodule's buffer rebound from the parent
    def __init__(self):
        super().__init__()
        self.child = Child()

    def forward(self, x):
        y = self.child(x)
        self.child.running = 0.5 * self.child.running + y.mean(0)
        return y + self.child.running


class Grow(torch.nn.Module):  # the buffer's shape changes on every call
    def __init__(self):
        super().__init__()
        self.register_buffer("hist", torch.zeros(1))

    def forward(self, x):
        self.hist = torch.cat([self.hist, x.sum().reshape(1)])
        return x * self.hist.mean()


class KeepsOld(torch.nn.Module):  # the old tensor is read after the rebinding
    def __init__(self):
        super().__init__()
        self.register_buffer("count", torch.zeros(()))

    def forward(self, x):
        old = self.count
        self.count = self.count + 1
        return x + old


class Counter(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("n", torch.zeros(()))

    def forward(self, x):
        self.n = self.n + x.mean()
        return x + self.n


class CalledTwice(torch.nn.Module):  # the second call reads what the first one rebound
    def __init__(self):
        super().__init__()
        self.c = Counter()

    def forward(self, x):
        return self.c(self.c(x)) + self.c.n


class RebindThenAdd(torch.nn.Module):  # fuzz F18: F17's mirror
    def __init__(self):
        super().__init__()
        self.register_buffer("count", torch.zeros(()))

    def forward(self, x):
        self.count = self.count + 1
        self.count += 1  # in place on the rebound tensor, which *is* the buffer now
        return x + self.count


class RebindScaleViewRebind(RebindThenAdd):  # a view of the rebound tensor outlives it
    def forward(self, x):
        self.count = self.count + 1
        self.count.mul_(3)
        v = self.count.view(1)
        self.count = self.count + x.sum()
        return x * v


class KeepsOldThenAdd(RebindThenAdd):
    def forward(self, x):
        old = self.count
        self.count = self.count + 1
        self.count += 1
        return x + old + self.count


F64 = torch.ones(3, 2, dtype=torch.float64)
F32 = torch.ones(3, 2)
CASES = [(Running, F64), (Running, F32), (AddThenRebind, F32), (Mixed, F64), (Mixed, F32),
         (Parent, F64), (Grow, F32), (KeepsOld, F32), (CalledTwice, F32), (CalledTwice, F64),
         (RebindThenAdd, F32), (RebindThenAdd, F64), (RebindScaleViewRebind, F32),
         (KeepsOldThenAdd, F32)]
IDS = [f"{cls.__name__}-{str(x.dtype)[6:]}" for cls, x in CASES]


def _state(m: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and torch.allclose(a[k], b[k])
        for k in a)


def _inputs(x: torch.Tensor) -> list:
    return [x * (i + 1) for i in range(3)]


@pytest.mark.parametrize("cls,x", CASES, ids=IDS)
def test_trace_state_follows_eager_call_by_call(cls, x):
    model = cls()
    before = model.state_dict(keep_vars=True)
    copies = _state(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)  # the default check passes
        t = fxtrace.trace(model, x)
    # a trace is an observation: the model's own buffer objects, bitwise as they were
    after = model.state_dict(keep_vars=True)
    assert all(after[k] is before[k] and torch.equal(after[k], copies[k]) and
               after[k].dtype == copies[k].dtype for k in copies)
    assert _same_state(_state(t), copies)  # and the check left the trace at the start
    eager = cls()
    for xi in _inputs(x):
        assert torch.allclose(t(xi), eager(xi))
        assert _same_state(_state(t), _state(eager))


@pytest.mark.parametrize("cls,x", [CASES[0], CASES[3], CASES[5], CASES[6]],
                         ids=[IDS[0], IDS[3], IDS[5], IDS[6]])
def test_saved_trace_keeps_rebinding_without_fxtrace(cls, x, tmp_path):
    t = fxtrace.trace(cls(), x)
    path = tmp_path / "t.pt"
    torch.jit.save(t, str(path))
    eager = cls()
    want = [eager(xi) for xi in _inputs(x)]
    torch.save({"x": _inputs(x), "want": want, "state": _state(eager)}, str(tmp_path / "io.pt"))
    script = (
        "import sys, torch\n"
        "m = torch.jit.load(sys.argv[1]); d = torch.load(sys.argv[2])\n"
        "for xi, w in zip(d['x'], d['want']):\n"
        "    assert torch.allclose(m(xi), w)\n"
        "s = {k: v for k, v in m.state_dict().items()}\n"
        "assert s.keys() == d['state'].keys()\n"
        "for k, v in d['state'].items():\n"
        "    assert s[k].dtype == v.dtype and torch.allclose(s[k], v), (k, s[k], v)\n"
        "assert 'fxtrace' not in sys.modules\n"
        "print('ok')\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "io.pt")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_torch_jit_trace_drops_the_rebinding():
    """The oracle's wrong result on F10: its trace never writes the buffer."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        j = torch.jit.trace(Running(), F64, check_trace=False)
    eager = Running()
    for xi in _inputs(F64):
        eager(xi), j(xi)
    assert float(j.running) == 0.0 and float(eager.running) != 0.0


def test_rebinding_to_another_dtype_is_an_assignment_in_the_code():
    t = fxtrace.trace(Running(), F64)
    assert "\n  self.running = add\n" in t.code and "copy_" not in t.code
    same = fxtrace.trace(Running(), F32)  # fits: written in place, sharing the model's buffer
    assert "copy_(running, add)" in same.code and "\n  self.running = " not in same.code


def test_copy_guard_compares_with_the_buffer_at_run_time():
    """Traced with float32, called with float64: the copy no longer fits and eager would
    rebind; the trace raises its guard rather than write a float32 buffer."""
    t = fxtrace.trace(Running(), F32)
    with pytest.raises(Exception, match="fxtrace guard failed"):
        t(F64)


def test_keeps_old_reads_the_old_tensor():
    t = fxtrace.trace(KeepsOld(), F32)
    assert "\n  self.count = add\n" in t.code  # a copy_ would overwrite the tensor `old` still reads
    assert torch.equal(t(F32), F32) and torch.equal(t(F32), F32 + 1)


def test_tables_show_the_assignment():
    gm = fxtrace.capture(Running(), F64)
    nodes = nodes_table(gm, fmt="tsv")
    assert "set_state" in nodes and "running" in nodes
    specialisations_table(gm)  # does not crash
    assert any(n.target is set_state for n in gm.graph.nodes)


def test_fx_capture_runs_the_assignment_in_python():
    gm = fxtrace.capture(Running(), F64)
    eager = Running()
    for xi in _inputs(F64):
        assert torch.allclose(gm(xi), eager(xi))
    assert gm.running.dtype == torch.float64 and torch.allclose(gm.running, eager.running)


def test_submodule_rebinding_writes_the_child():
    t = fxtrace.trace(Parent(), F64)
    assert ".running = add\n" in t.code
    buf = io.BytesIO()
    torch.jit.save(t, buf)
    buf.seek(0)
    loaded, eager = torch.jit.load(buf), Parent()
    for xi in _inputs(F64):
        assert torch.allclose(loaded(xi), eager(xi))
    assert torch.allclose(loaded.child.running, eager.child.running)
