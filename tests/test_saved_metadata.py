"""A saved trace remembers (issue 18, item 8): ``fxtrace inspect saved.pt`` shows the user's
file:line and the specialisations, while a process without fxtrace still loads and runs it."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

import fxtrace
import fxtrace.inspect as fi
from fxtrace.lower.metadata import ATTRIBUTE, read_archive, saved_metadata

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*deprecated:DeprecationWarning")

HERE = os.path.basename(__file__)


def gate(x):
    if x.sum() > 0:          # line 26: frozen, guarded
        return x * 2
    return x - 1


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(3, 3)
        with torch.no_grad():  # the identity: positive inputs take the `if` (line 26)
            self.lin.weight.copy_(torch.eye(3))
            self.lin.bias.zero_()

    def forward(self, x):
        return gate(self.lin(x))   # line 40


def _saved(tmp_path: Path) -> Any:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fxtrace.TracerWarning)
        module = fxtrace.trace(Net(), (torch.ones(2, 3),))
        function = fxtrace.trace(gate, (torch.ones(3),))
    torch.jit.save(module, str(tmp_path / "net.pt"))
    torch.jit.save(function, str(tmp_path / "gate.pt"))
    return module


def test_plain_torch_loads_and_runs_the_files(tmp_path: Path) -> None:
    module = _saved(tmp_path)
    x = torch.ones(2, 3)
    torch.save(x, str(tmp_path / "x.pt"))
    script = textwrap.dedent(f"""\
        import sys
        sys.modules["fxtrace"] = None          # fxtrace cannot be imported, even by accident
        import torch
        x = torch.load({str(tmp_path / 'x.pt')!r})
        net = torch.jit.load({str(tmp_path / 'net.pt')!r})
        gate = torch.jit.load({str(tmp_path / 'gate.pt')!r})
        torch.save((net(x), gate(x[0])), {str(tmp_path / 'out.pt')!r})
        print(type(net.{ATTRIBUTE}).__name__)
    """)
    proc = subprocess.run([sys.executable, "-I", "-W", "ignore", "-c", script],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "str"      # the metadata is an ordinary string attribute
    net_out, gate_out = torch.load(str(tmp_path / "out.pt"))
    assert torch.equal(net_out, module(x))
    assert torch.equal(gate_out, x[0] * 2)


def test_loaded_module_carries_its_specialisations(tmp_path: Path) -> None:
    _saved(tmp_path)
    loaded = torch.jit.load(str(tmp_path / "net.pt"))
    meta = saved_metadata(loaded)
    assert meta is not None and meta.name == "Net"
    (spec,) = meta.specialisations
    assert (spec.kind, str(spec.value), spec.guarded) == ("bool", "True", True)
    assert spec.source is not None and spec.source.filename == __file__
    assert spec.source.lineno == 26 and spec.source.code == "if x.sum() > 0:          # line 26: frozen, guarded"
    table = fi.specialisations_table(loaded)
    assert f"{HERE}:26" in table and "bool gave True" in table


def test_fxtrace_inspect_shows_user_lines_and_specialisations(tmp_path: Path, capsys) -> None:
    from fxtrace.cli import main

    _saved(tmp_path)
    assert read_archive(str(tmp_path / "gate.pt")) is not None  # in the saved source text
    for name in ("net.pt", "gate.pt"):
        assert main(["inspect", str(tmp_path / name), "--table", "nodes,specialisations"]) == 0
        out = capsys.readouterr().out
        nodes, specs = out.split("== specialisations ==")
        assert f"{HERE}:26" in nodes and "<string>" not in nodes   # the user's lines
        assert "bool" in specs and f"{HERE}:26" in specs and "yes" in specs
    assert f"{HERE}:40" in fi.nodes_table(torch.jit.load(str(tmp_path / "net.pt")))


def test_a_file_fxtrace_did_not_write_has_no_specialisations(tmp_path: Path) -> None:
    scripted = torch.jit.script(torch.nn.Linear(2, 2))
    torch.jit.save(scripted, str(tmp_path / "lin.pt"))
    assert read_archive(str(tmp_path / "lin.pt")) is None
    with pytest.raises(TypeError, match="carries none"):
        fi.specialisations_table(torch.jit.load(str(tmp_path / "lin.pt")))
