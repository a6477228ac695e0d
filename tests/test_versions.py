"""torch's TorchScript deprecation warnings never come from fxtrace's own torch.jit calls.

torch 2.13 warns on torch.jit.save/load (DeprecationWarning), 2.14 and later on torch.jit.script
and friends (FutureWarning): fxtrace compiles, saves and loads TorchScript on the user's behalf,
so under ``simplefilter("always")`` a trace, a check or a CLI run must show none of them, leave
the warning filters exactly as they were, and still show the user's own warnings. These tests
run in every torch of the supported range (``make test-torch TORCH=X.Y.Z``).
"""
from __future__ import annotations

import io
import re
import sys
import warnings
from typing import List

import pytest
import torch

import fxtrace
from fxtrace.cli import main as cli_main
from fxtrace.lower.quiet import JIT_DEPRECATION_MESSAGE, quiet_jit


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.lin(x)) * 2


def _jit_deprecations(caught: List[warnings.WarningMessage]) -> List[str]:
    return [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in caught
            if issubclass(w.category, (DeprecationWarning, FutureWarning))
            and re.match(JIT_DEPRECATION_MESSAGE, str(w.message), re.I)]


def test_the_pattern_matches_torchs_wordings() -> None:
    for message in ("`torch.jit.script` is deprecated. Please switch to `torch.compile`.",
                    "`torch.jit.save` is deprecated. Please switch to `torch.export`.",
                    "`torch.jit.load` is not supported in Python 3.14+ and may break.",
                    "TorchScript is deprecated, please use torch.export"):
        assert re.match(JIT_DEPRECATION_MESSAGE, message, re.I), message
    assert not re.match(JIT_DEPRECATION_MESSAGE, "`torch.foo` is deprecated", re.I)


def test_trace_and_check_emit_no_jit_deprecation_and_restore_filters() -> None:
    model = Net().eval()
    x = torch.randn(2, 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        before = list(warnings.filters)
        traced = fxtrace.trace(model, (x,))  # the default check runs the trace too
        fxtrace.trace(lambda a: a.sin() + 1, (x,))
        report = fxtrace.check(traced, model, max_examples=5, seed=0)  # saves and loads
        after = list(warnings.filters)
    assert report.ok
    assert _jit_deprecations(caught) == []
    assert after == before


def test_cli_save_and_inspect_emit_no_jit_deprecation(tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "versions_net.py").write_text(
        "import torch\n\n\nclass Net(torch.nn.Linear):\n"
        "    def __init__(self):\n        super().__init__(4, 3)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert cli_main(["trace", "versions_net.py:Net", "--input", "randn(2,4)",
                             "--table", "none", "--save", "net.pt"]) == 0
            assert cli_main(["inspect", "net.pt", "--table", "none"]) == 0
    finally:
        sys.modules.pop("versions_net", None)
    capsys.readouterr()
    assert _jit_deprecations(caught) == []


def test_quiet_jit_hides_only_torchscript_deprecations_and_restores_on_error() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        before = list(warnings.filters)
        with pytest.raises(KeyError), quiet_jit():
            warnings.warn("`torch.jit.script` is deprecated. Please switch.", FutureWarning, stacklevel=1)
            warnings.warn("`torch.jit.save` is deprecated. Please switch.", DeprecationWarning, stacklevel=1)
            warnings.warn("something else is deprecated", FutureWarning, stacklevel=1)
            warnings.warn("torch.jit.trace: the trace might not generalize",
                          torch.jit.TracerWarning, stacklevel=1)
            raise KeyError("boom")
        assert list(warnings.filters) == before
        warnings.warn("`torch.jit.script` is deprecated. Please switch.", FutureWarning, stacklevel=1)
    shown = [(w.category, str(w.message)) for w in caught]
    assert shown == [(FutureWarning, "something else is deprecated"),
                     (torch.jit.TracerWarning, "torch.jit.trace: the trace might not generalize"),
                     (FutureWarning, "`torch.jit.script` is deprecated. Please switch.")]


def test_users_own_torch_jit_warnings_are_not_silenced() -> None:
    """The user's forward warns like torch.jit does; the user saves the trace: both show."""
    class Warns(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            warnings.warn("`torch.jit.script` is deprecated (the user's own call)", FutureWarning,
                          stacklevel=1)
            return x + 1

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = fxtrace.trace(Warns(), (torch.randn(3),))
        torch.jit.save(traced, io.BytesIO())
    from_forward = [w for w in caught if "the user's own call" in str(w.message)]
    assert from_forward, "the user's forward warned during capture; fxtrace swallowed it"
    # The user's own torch.jit.save keeps whatever torch says about it: compare with torch's
    # own behaviour on the same save outside any trace.
    with warnings.catch_warnings(record=True) as plain:
        warnings.simplefilter("always")
        torch.jit.save(traced, io.BytesIO())
    user_save = [w for w in caught if "torch.jit.save" in str(w.message)]
    assert len(user_save) == len([w for w in plain if "torch.jit.save" in str(w.message)])
