"""``fxtrace check --trace SAVED.pt MODULE:ATTR``: audit a trace already saved (fxtrace's or
torch.jit's) against the code it was traced from."""
from __future__ import annotations

import textwrap
import warnings

import pytest
import torch

pytestmark = [pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")]

MODELS = textwrap.dedent("""\
    import torch


    def last(x):
        return x[..., 0]


    def scaled(x):
        return (x * 2).relu()
""")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    (tmp_path / "audited.py").write_text(MODELS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _user_module(workdir):
    """The user's file as its own module (``models`` is taken: tests/models is a package)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("_audited_user_file", workdir / "audited.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _save(fn, example, path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(fn, example, check_trace=False), str(path))


def test_a_saved_torch_jit_trace_is_checked_against_the_code(workdir, capsys):
    audited = _user_module(workdir)

    from fxtrace.cli import main
    _save(audited.last, torch.randn(2, 3, 4), workdir / "last.pt")
    status = main(["check", "--trace", "last.pt", "audited.py:last", "--input", "randn(2,3,4)",
                   "--examples", "30"])
    out = capsys.readouterr().out
    assert status == 1, out
    # x[..., 0] recorded as select(dim=2): wrong or raising at another rank
    assert out.rstrip().splitlines()[-1].startswith("FAILED: trace"), out
    _save(audited.scaled, torch.randn(3), workdir / "scaled.pt")
    assert main(["check", "--trace", "scaled.pt", "audited.py:scaled", "--input", "randn(3)",
                 "--examples", "20"]) == 0
    assert capsys.readouterr().out.rstrip().splitlines()[-1].startswith("PASSED: ")


def test_a_saved_fxtrace_trace_is_checked(workdir, capsys):
    audited = _user_module(workdir)

    import fxtrace
    from fxtrace.cli import main
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(fxtrace.trace(audited.last, torch.randn(2, 3, 4)), str(workdir / "fx.pt"))
    assert main(["check", "--trace", "fx.pt", "audited.py:last", "--input", "randn(2,3,4)",
                 "--examples", "20"]) == 0, capsys.readouterr().out


def test_a_missing_or_unreadable_trace_is_one_error_line(workdir, capsys):
    from fxtrace.cli import main

    (workdir / "bad.pt").write_text("not a zip")
    for name, words in (("nothing.pt", "no such file"), ("bad.pt", "torch.jit.load cannot")):
        assert main(["check", "--trace", name, "audited.py:last", "--input",
                     "randn(2,3,4)"]) == 2
        err = capsys.readouterr().err
        assert f"--trace {name}: {words}" in err
