"""The command line, run as a user runs it: ``python -m fxtrace ...`` in a subprocess.

Every process pays torch's import (seconds), so the commands the selected tests need are
started together at the beginning (a few at a time) and each test reads its results.
"""
from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import textwrap
from typing import Any, Callable, Dict, List

import pytest

# A module a user would write, imported from a file given as path/to/file.py:ATTR.
USER_MODELS = textwrap.dedent("""\
    import numpy as np
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            x = torch.relu(self.conv(x)).mean((2, 3))
            return self.fc(x)


    class Gated(nn.Module):
        def __init__(self, width):
            super().__init__()
            self.lin = nn.Linear(width, width)
            self.drop = nn.Dropout(0.5)

        def forward(self, x, mask):
            return self.drop(self.lin(x)) * mask


    def make_gated():
        return Gated(4)


    def foo(x, y):
        return 2 * x + y


    def branchy(x):
        if x.sum() > 0:
            return x * 2
        return x - 1


    def escapes(x):
        # the size leaves the trace as text, which fxtrace does not guard (printing a size must
        # not specialise a trace): the number read back is a constant, with no guard
        return x * float(str(x.size(0)))
""")

BROKEN = textwrap.dedent("""\
    import torch

    SCALE = 1 / 0
""")

# name -> argument lists run one after the other in the same directory.
JOBS: Dict[str, List[List[str]]] = {
    "demo": [["demo"]],
    "trace_save_inspect": [
        ["trace", "usermodels.py:Net", "--input", "randn(2,3,8,8)", "--save", "net.pt",
         "--table", "nodes,modules"],
        ["inspect", "net.pt", "--table", "nodes"],
    ],
    "trace_function_github": [["trace", "usermodels:foo", "--input", "rand(3)",
                               "--input", "rand(3)", "--format", "github"]],
    "trace_factory_kwarg": [["trace", "usermodels.py:make_gated", "--eval",
                             "--input", "randn(2,4)", "--kwarg", "mask=ones(2,4)",
                             "--table", "modules,ops"]],
    "check_pass": [["check", "usermodels.py:Net", "--input", "randn(2,3,8,8)",
                    "--dynamic", "0:0,0:2", "--examples", "30"]],
    "check_wrong": [["check", "usermodels.py:escapes", "--input", "randn(4)",
                     "--examples", "20"]],
    "check_refusals": [["check", "usermodels.py:branchy", "--input", "randn(4)",
                        "--dynamic", "0:0", "--examples", "40"]],
    "err_module": [["trace", "no_such_module_xyz:Net", "--input", "randn(2)"]],
    "err_attr": [["trace", "usermodels.py:Nett", "--input", "randn(2)"]],
    "err_import": [["trace", "broken.py:f", "--input", "randn(2)"]],
    "err_spec_import": [["trace", "usermodels:foo", "--input", '__import__("os")']],
    "err_spec_name": [["trace", "usermodels:foo", "--input", "randn(2, x)"]],
    "err_missing_file": [["inspect", "missing.pt"]],
    "help": [["--help"]],
    "help_trace": [["trace", "--help"]],
    "help_inspect": [["inspect", "--help"]],
    "help_check": [["check", "--help"]],
    "help_demo": [["demo", "--help"]],
}


def uses(*names: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Mark a test with the jobs it reads (only the selected tests' jobs are run)."""
    def mark(fn: Callable[..., None]) -> Callable[..., None]:
        fn.cli_jobs = names  # type: ignore[attr-defined]
        return fn
    return mark


def _run_chain(argvs: List[List[str]], cwd: str) -> List[subprocess.CompletedProcess]:
    env = dict(os.environ)
    env.pop("PYTHONWARNINGS", None)
    out = []
    for argv in argvs:
        # -W default::DeprecationWarning: fxtrace's own torch.jit.save/load must stay quiet.
        out.append(subprocess.run([sys.executable, "-W", "default::DeprecationWarning",
                                   "-m", "fxtrace", *argv],
                                  cwd=cwd, env=env, capture_output=True, text=True, timeout=300))
    return out


class _Jobs:
    """The results of :data:`JOBS`, each run at most once per process.

    Without xdist every job the selected tests need is started at once, three at a time
    (most of each is torch's import, so they overlap well). Under xdist (tests spread over
    workers) each job runs when a test first asks for it, so no worker runs another's jobs
    and the demo runs once.
    """

    def __init__(self, work, wanted) -> None:
        self.dir = work
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=3)
        self._futures: Dict[str, concurrent.futures.Future] = {}
        for name in sorted(wanted, key=lambda n: n != "demo"):  # the longest first
            self._start(name)

    def _start(self, name: str) -> concurrent.futures.Future:
        if name not in self._futures:
            self._futures[name] = self._pool.submit(_run_chain, JOBS[name], str(self.dir))
        return self._futures[name]

    def __getitem__(self, name: str) -> List[subprocess.CompletedProcess]:
        return self._start(name).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


@pytest.fixture(scope="module")
def cli(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("cli")
    (work / "usermodels.py").write_text(USER_MODELS)
    (work / "broken.py").write_text(BROKEN)
    wanted = set()
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        wanted = {name for item in request.session.items
                  for name in getattr(getattr(item, "function", None), "cli_jobs", ())}
    jobs = _Jobs(work, wanted)
    yield jobs
    jobs.close()


def _explain(p: subprocess.CompletedProcess) -> str:
    return f"exit {p.returncode}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}"


def _one_error_line(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 2, _explain(p)
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, _explain(p)
    assert lines[0].startswith("fxtrace: error: "), _explain(p)
    assert "Traceback" not in p.stderr
    return lines[0]


# --------------------------------------------------------------------------- success paths

@uses("trace_save_inspect")
def test_trace_file_module_save_then_inspect(cli) -> None:
    trace, inspect = cli["trace_save_inspect"]
    assert trace.returncode == 0, _explain(trace)
    assert "check_trace: passed" in trace.stdout
    assert "== nodes ==" in trace.stdout and "== modules ==" in trace.stdout
    assert "call_module" in trace.stdout and "usermodels.py:" in trace.stdout
    assert (cli.dir / "net.pt").is_file()
    assert "DeprecationWarning" not in trace.stderr
    assert inspect.returncode == 0, _explain(inspect)
    assert "== nodes ==" in inspect.stdout
    assert "aten::relu" in inspect.stdout and "== modules ==" not in inspect.stdout
    assert "DeprecationWarning" not in inspect.stderr


@uses("trace_function_github")
def test_trace_plain_function_two_inputs_github(cli) -> None:
    (p,) = cli["trace_function_github"]
    assert p.returncode == 0, _explain(p)
    assert "ScriptFunction" in p.stdout
    rows = [line for line in p.stdout.splitlines() if line.startswith("|")]
    assert rows[0].replace(" ", "").startswith("|#|opcode|name|"), p.stdout
    assert set(rows[1].replace("|", "").replace(" ", "")) <= {"-", ":"}
    assert sum("placeholder" in r for r in rows) == 2


@uses("trace_factory_kwarg")
def test_trace_factory_with_kwarg_and_eval(cli) -> None:
    (p,) = cli["trace_factory_kwarg"]
    assert p.returncode == 0, _explain(p)  # check_trace passes only with dropout off (--eval)
    assert "factory" in p.stdout and "mask=Tensor(2x4, float32)" in p.stdout
    assert "== modules ==" in p.stdout and "== ops ==" in p.stdout


@uses("check_pass")
def test_check_passes_on_shape_generic_module(cli) -> None:
    (p,) = cli["check_pass"]
    assert p.returncode == 0, _explain(p)
    assert "output" in p.stdout and "status" in p.stdout  # the check table
    assert "PASSED" in p.stdout


@uses("check_wrong")
def test_check_fails_on_wrong_trace(cli) -> None:
    (p,) = cli["check_wrong"]
    assert p.returncode == 1, _explain(p)
    assert "mismatch" in p.stdout or "FAILED" in p.stdout
    assert "Traceback" not in p.stderr


@uses("check_refusals")
def test_check_counts_guard_refusals_apart(cli) -> None:
    (p,) = cli["check_refusals"]
    assert p.returncode == 0, _explain(p)
    verdict = p.stdout.strip().splitlines()[-1]  # PASSED: A agreed, R refused by a guard (P% ...
    words = verdict.split()
    assert words[0] == "PASSED:", p.stdout
    agreed, refused = int(words[1]), int(words[3])
    assert agreed > 0 and refused > 0 and agreed + refused == 40, p.stdout
    assert f"({100 * agreed / 40:.0f}% accepted)" in verdict
    assert "first refusal: args[0]=Tensor(" in p.stdout


@uses("demo")
def test_demo_exits_0_with_summary(cli) -> None:
    (p,) = cli["demo"]
    assert p.returncode == 0, _explain(p)
    for text in ("summary", "batch-generalises", "save/reload-in-fresh-process",
                 "max abs err", "demo passed", "fxtrace modules imported there: none"):
        assert text in p.stdout, text
    summary = p.stdout.split("summary\n", 1)[1]
    for case in ("foo", "Net via n.forward", "Net via n ", "ConvNet (eval)"):
        assert case in summary
    assert "FAIL" not in summary
    assert "DeprecationWarning" not in p.stderr


# --------------------------------------------------------------------------- user mistakes

@uses("err_module")
def test_bad_module_path(cli) -> None:
    line = _one_error_line(cli["err_module"][0])
    assert "no_such_module_xyz" in line


@uses("err_attr")
def test_missing_attribute(cli) -> None:
    line = _one_error_line(cli["err_attr"][0])
    assert "'Nett'" in line and "Net" in line.split("candidates", 1)[-1]


@uses("err_import")
def test_import_error_shows_user_line(cli) -> None:
    line = _one_error_line(cli["err_import"][0])
    assert "ZeroDivisionError" in line and "broken.py:3" in line and "SCALE = 1 / 0" in line


@uses("err_spec_import")
def test_input_spec_is_not_evaluated(cli) -> None:
    line = _one_error_line(cli["err_spec_import"][0])
    assert "bad input spec" in line and "__import__" in line


@uses("err_spec_name")
def test_input_spec_with_a_name(cli) -> None:
    line = _one_error_line(cli["err_spec_name"][0])
    assert "bad input spec" in line and "`x`" in line


@uses("err_missing_file")
def test_inspect_missing_file(cli) -> None:
    line = _one_error_line(cli["err_missing_file"][0])
    assert "missing.pt" in line


@pytest.mark.parametrize("job, expected", [
    ("help", ["trace", "inspect", "check", "demo"]),
    ("help_trace", ["--input", "--kwarg", "--eval", "--no-check", "--save", "--table",
                    "--format"]),
    ("help_inspect", ["FILE", "--table", "--format"]),
    ("help_check", ["--examples", "--dynamic", "--input", "--tolerance", "fxtrace.check"]),
    ("help_demo", ["--format", "--keep"]),
])
@uses("help", "help_trace", "help_inspect", "help_check", "help_demo")
def test_help(cli, job: str, expected: List[str]) -> None:
    (p,) = cli[job]
    assert p.returncode == 0, _explain(p)
    assert p.stdout.startswith("usage: fxtrace")
    for text in expected:
        assert text in p.stdout, text


# --------------------------------------------------------------------------- in process

@pytest.mark.parametrize("spec, shape, dtype", [
    ("randn(2,3)", (2, 3), "float32"),
    ("rand((4,))", (4,), "float32"),
    ("zeros(1, 2, dtype=float64)", (1, 2), "float64"),
    ("ones(3, dtype=torch.int64)", (3,), "int64"),
    ("randint(0,10,(2,3))", (2, 3), "int64"),
    ("randint(5, (4,), dtype=int32)", (4,), "int32"),
    ("torch.randn(())", (), "float32"),
])
def test_parse_input_spec(spec: str, shape: tuple, dtype: str) -> None:
    from fxtrace.cli import parse_input_spec

    t = parse_input_spec(spec).make()
    assert tuple(t.shape) == shape and str(t.dtype) == f"torch.{dtype}"


@pytest.mark.parametrize("spec", [
    '__import__("os").system("true")', "randn(2, x)", "os.system('x')", "randn(2, dtype=os)",
    "randn(*[2])", "randn(2, device='cuda')", "randn(2)[0]", "lambda: 1", "randn(2,3",
    "randint(0, 10)", "randn(-1)", "randn(2, dtype=int64)", "eval('1')",
])
def test_parse_input_spec_rejects(spec: str) -> None:
    from fxtrace.cli import UserError, parse_input_spec

    with pytest.raises(UserError, match="bad input spec"):
        parse_input_spec(spec)


def test_check_calls_fxtrace_check(tmp_path, monkeypatch, capsys) -> None:
    """``check`` hands ``fxtrace.check`` the trace, the original, the inputs and the options,
    and its verdict is the command's."""
    import fxtrace
    from fxtrace.cli import main
    from fxtrace.inspect import CheckReport, OutputCheck

    (tmp_path / "usermodels.py").write_text(USER_MODELS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    calls = []

    def fake_check(traced, original, inputs=None, **kw):
        calls.append((traced, original, inputs, kw))
        return CheckReport([OutputCheck("out", "mismatch", 1.0, 1.0)], title="fake report")

    monkeypatch.setattr(fxtrace, "check", fake_check)
    status = main(["check", "usermodels.py:foo", "--input", "rand(3)", "--input", "rand(3)",
                   "--dynamic", "0:0,1:0", "--examples", "7", "--seed", "5",
                   "--tolerance", "0.01"])
    assert status == 1 and "fake report" in capsys.readouterr().out
    (traced, original, inputs, kw), = calls
    assert isinstance(traced, torch_jit_script_function()) and original.__name__ == "foo"
    assert [tuple(t.shape) for t in inputs] == [(3,), (3,)]
    assert kw == {"max_examples": 7, "seed": 5, "tolerance": 0.01, "dynamic": [(0, 0), (1, 0)]}


def test_check_fails_when_the_trace_raises_or_refuses_everything(tmp_path, monkeypatch,
                                                                  capsys) -> None:
    """A non-guard error of the trace and a trace that refuses every input both fail."""
    from fxtrace.cli import main

    (tmp_path / "verdicts.py").write_text(textwrap.dedent("""\
        import numpy as np
        import torch

        def frozen(x):
            n = int(str(x.size(0)))  # the size read back from text: unguarded
            return x.reshape(n) * 2

        def far(x):
            if x.sum() > 1000:
                return x * 2
            return x
    """))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["check", "verdicts.py:frozen", "--input", "randn(4)", "--dynamic", "0:0",
                 "--examples", "10"]) == 1
    out = capsys.readouterr().out
    assert out.rstrip().endswith("FAILED: trace raised"), out
    assert main(["check", "verdicts.py:far", "--input", "randint(400,500,(4,),dtype=float32)",
                 "--examples", "10"]) == 1
    out = capsys.readouterr().out
    assert out.rstrip().endswith("FAILED: no input accepted"), out
    assert "every generated input was refused by a guard" in out


def torch_jit_script_function() -> type:
    import torch

    return torch.jit.ScriptFunction


def test_trace_mode_and_passes_table(tmp_path: Any) -> None:
    """--mode symbolic traces through fx.symbolic_trace and the passes table prints."""
    path = tmp_path / "mlp_mode.py"
    path.write_text("import torch\nnet = torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.ReLU())\n")
    proc = subprocess.run([sys.executable, "-m", "fxtrace", "trace", f"{path}:net", "--input",
                           "randn(3,4)", "--mode", "symbolic", "--table", "passes"],
                          capture_output=True, text=True, cwd=str(tmp_path), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "capture mode: symbolic" in proc.stdout and "eliminate_dead_code" in proc.stdout


# --------------------------------------------------------------------------- pictures (in process)

@pytest.fixture
def dot_dir(tmp_path, monkeypatch):
    """A directory with a user module, as cwd; returns it."""
    (tmp_path / "dotmodels.py").write_text(USER_MODELS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("dotmodels", None)


def test_trace_dot_file_then_inspect_dot_stdout(dot_dir, capsys) -> None:
    from fxtrace.cli import main

    assert main(["trace", "dotmodels.py:Net", "--input", "randn(2,3,8,8)", "--table", "none",
                 "--dot", "net.dot", "--save", "net.pt"]) == 0
    out = capsys.readouterr().out
    assert "wrote net.dot (Graphviz DOT: " in out and "module clusters" in out
    text = (dot_dir / "net.dot").read_text()
    assert text.startswith("digraph ") and "subgraph cluster_" in text
    assert "torch.relu" in text and "2x3x8x8 float32" in text
    assert main(["inspect", "net.pt", "--dot"]) == 0   # '-' by default: only DOT on stdout
    out = capsys.readouterr().out
    assert out.startswith("digraph ") and out.rstrip().endswith("}")
    assert "aten::relu" in out and "== nodes ==" not in out


def test_render_without_graphviz_is_one_line_error(dot_dir, capsys, monkeypatch) -> None:
    import shutil

    from fxtrace.cli import main

    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    for argv in (["trace", "dotmodels.py:foo", "--input", "rand(3)", "--input", "rand(3)",
                  "--svg", "g.svg"],
                 ["inspect", "whatever.pt", "--png", "g.png"]):
        assert main(argv) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and err[0].startswith("fxtrace: error: graphviz is not installed")
        assert "apt-get install graphviz" in err[0]
    assert not (dot_dir / "g.svg").exists()


@pytest.mark.skipif(__import__("shutil").which("dot") is None,
                    reason="graphviz's `dot` program is not installed (apt-get install "
                           "graphviz): --svg/--png cannot be rendered here")
def test_trace_renders_svg_and_png(dot_dir, capsys) -> None:
    from fxtrace.cli import main

    assert main(["trace", "dotmodels.py:foo", "--input", "rand(3)", "--input", "rand(3)",
                 "--table", "none", "--svg", "g.svg", "--png", "g.png"]) == 0
    out = capsys.readouterr().out
    assert "rendered g.svg (dot -Tsvg)" in out and "rendered g.png (dot -Tpng)" in out
    assert "<svg" in (dot_dir / "g.svg").read_text()
    assert (dot_dir / "g.png").read_bytes()[:4] == b"\x89PNG"


def test_dot_is_written_when_graphviz_is_missing(dot_dir, capsys, monkeypatch) -> None:
    import shutil

    from fxtrace.cli import main

    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    assert main(["trace", "dotmodels.py:foo", "--input", "rand(3)", "--input", "rand(3)",
                 "--table", "none", "--save", "foo.pt", "--dot", "g.dot", "--svg", "g.svg"]) == 2
    captured = capsys.readouterr()
    assert (dot_dir / "g.dot").read_text().startswith("digraph ")   # the DOT, written
    assert (dot_dir / "foo.pt").exists() and not (dot_dir / "g.svg").exists()
    assert "wrote g.dot" in captured.out
    (err,) = [line for line in captured.err.splitlines() if line.strip()]
    assert err.startswith("fxtrace: error: graphviz is not installed: --svg")
    assert err.endswith("the DOT text is in g.dot")


def test_recurse_lists_the_submodules_graphs(dot_dir, capsys) -> None:
    from fxtrace.cli import main

    argv = ["trace", "dotmodels.py:Net", "--input", "randn(2,3,8,8)", "--no-check"]
    assert main(argv) == 0
    flat = capsys.readouterr().out
    assert main([*argv, "--recurse"]) == 0
    deep = capsys.readouterr().out
    assert "torch.conv2d" not in flat and "torch.conv2d" in deep   # the Conv2d's own graph


def test_default_widths_are_the_tables_own(dot_dir, capsys) -> None:
    import inspect as pyinspect

    import fxtrace.inspect as fi
    from fxtrace.cli import main
    from fxtrace.inspect._fit import DEFAULT_MAX_WIDTH, DEFAULT_WIDTH
    for table in (fi.nodes_table, fi.modules_table, fi.specialisations_table, fi.ops_table):
        params = pyinspect.signature(table).parameters
        assert params["max_width"].default == DEFAULT_MAX_WIDTH
        assert params["width"].default == DEFAULT_WIDTH
    with pytest.raises(SystemExit):
        main(["trace", "--help"])
    assert f"default: {DEFAULT_MAX_WIDTH})" in capsys.readouterr().out


HF_FACTORY = textwrap.dedent("""\
    import sys
    sys.path.insert(0, {tests!r})
    from hf_models import bert


    def make_bert():
        return bert()
""")


def test_trace_hugging_face_model_needs_no_strict(tmp_path, monkeypatch, capsys) -> None:
    pytest.importorskip("transformers")
    from fxtrace.cli import main

    (tmp_path / "hfbert.py").write_text(HF_FACTORY.format(tests=os.path.dirname(__file__)))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    argv = ["trace", "hfbert.py:make_bert", "--kwarg", "input_ids=randint(3,99,(2,7))",
            "--kwarg", "attention_mask=ones(2,7,dtype=int64)", "--table", "none"]
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore")
        assert main(argv) == 2
        (err,) = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert "breaks a rule of strict traces" in err and "pass --no-strict" in err
        assert "running" not in err and "strict=False to trace()" not in err
        assert main([*argv, "--no-strict", "--table", "specialisations", "--save", "b.pt"]) == 0
        out = capsys.readouterr().out
        assert "sdpa_attention.py:148" in out and (tmp_path / "b.pt").exists()
        assert max(len(line) for line in out.splitlines()) <= 120
    sys.modules.pop("hfbert", None)
