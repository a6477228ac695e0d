"""fxtrace traces run from C++: ``tests/cpp/load_and_run.cpp`` is built with CMake against the
libtorch shipped inside the installed torch wheel (``torch.utils.cmake_prefix_path``), loads a
trace saved by ``torch.jit.save`` with ``torch::jit::load``, runs it on inputs written here with
``torch.save`` (read there with ``torch::pickle_load``) and writes the output with
``torch::pickle_save``, read back here with ``torch.load``. See docs/deploy.md.

The build (~35 s on two cores) is cached under ``/tmp/fxtrace-cpp-<torch version>-<hash of
tests/cpp>``; the tests are marked slow (``make test-slow``).
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Tuple

import pytest
import torch
import torch.jit._pickle  # noqa: F401 - restore_type_tag, for dict outputs (see _load_output)
import torch.utils

sys.path.insert(0, os.path.dirname(__file__))
from models.harness import GUARD_TEXT, fx_traced, run, same_outputs  # noqa: E402
from models.vision import CASES  # noqa: E402
from zoo import BY_NAME as ZOO  # noqa: E402

import fxtrace  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:`torch.jit.save` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
]

CPP_DIR = pathlib.Path(__file__).resolve().parent / "cpp"


def _build_dir() -> pathlib.Path:
    digest = hashlib.sha256()
    for name in sorted(os.listdir(CPP_DIR)):
        digest.update(name.encode() + (CPP_DIR / name).read_bytes())
    return pathlib.Path(tempfile.gettempdir()) / (
        f"fxtrace-cpp-{torch.__version__}-{digest.hexdigest()[:12]}")


@pytest.fixture(scope="session")
def loader() -> pathlib.Path:
    """The built ``load_and_run`` binary (built once per torch version and source hash; built
    in a scratch directory then renamed into place, so concurrent workers never see half a
    build)."""
    if shutil.which("cmake") is None:
        pytest.fail("cmake is not installed (needed to build tests/cpp)")
    final = _build_dir()
    binary = final / "load_and_run"
    if binary.exists():
        return binary
    scratch = pathlib.Path(tempfile.mkdtemp(prefix=final.name + ".", dir=final.parent))
    configure = ["cmake", "-S", str(CPP_DIR), "-B", str(scratch), "-DCMAKE_BUILD_TYPE=Release",
                 f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}"]
    if shutil.which("ninja"):
        configure += ["-G", "Ninja"]
    for cmd in (configure, ["cmake", "--build", str(scratch)]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    try:
        os.rename(scratch, final)  # the build tree is relocatable: the RPATH is absolute
    except OSError:  # another worker won the race
        shutil.rmtree(scratch, ignore_errors=True)
    assert binary.exists()
    return binary


def _load_output(path: pathlib.Path) -> Any:
    """``torch::pickle_save`` tags typed containers (Dict[str, Tensor]) with
    ``torch.jit._pickle.restore_type_tag``, which weights_only loading must be allowed."""
    with torch.serialization.safe_globals([torch.jit._pickle.restore_type_tag]):
        return torch.load(path)


def _run_cpp(loader: pathlib.Path, traced: Any, inputs: Tuple[Any, ...], tmp: pathlib.Path,
             name: str) -> Tuple[subprocess.CompletedProcess, pathlib.Path]:
    model, inp, out = tmp / f"{name}.pt", tmp / f"{name}.in.pt", tmp / f"{name}.out.pt"
    torch.jit.save(traced, str(model))
    torch.save(tuple(inputs), inp)
    proc = subprocess.run([str(loader), str(model), str(inp), str(out)], capture_output=True,
                          text=True, timeout=300)
    return proc, out


@pytest.mark.parametrize("name,mode", [pytest.param(c.name, m, id=f"{c.name}-{m}")
                                       for c in CASES for m in ("eval", "train")])
def test_vision_trace_runs_in_cpp(loader: pathlib.Path, tmp_path: pathlib.Path, name: str,
                                  mode: str) -> None:
    """Eval-mode traces equal eager at another batch; training-mode traces (dropout, batch
    statistics) are compared with eager's no_grad output for models without dropout, and by
    shape for the others (C++ has its own RNG stream)."""
    t = fx_traced(name, mode)
    x = t.case.example(3)
    start = {k: v.clone() for k, v in t.model.state_dict().items()}
    want = run(t.model, x, "eval_no_grad")
    t.model.load_state_dict(start)
    proc, out = _run_cpp(loader, t.traced, x, tmp_path, name)
    assert proc.returncode == 0, proc.stderr[-4000:]
    got = _load_output(out)
    if mode == "train" and t.case.has_dropout:
        assert got.shape == want.shape
    else:
        same_outputs(got, want, f"{name}/{mode} from C++")


def test_detector_guard_fires_in_cpp(loader: pathlib.Path, tmp_path: pathlib.Path) -> None:
    t = fx_traced("detector", "eval")
    proc, _ = _run_cpp(loader, t.traced, t.case.example(1, 12), tmp_path, "detector_small")
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert GUARD_TEXT in proc.stderr


@pytest.mark.parametrize("zoo_name", ["lstm", "transformer_encoder", "foo"])
def test_zoo_nested_outputs_in_cpp(loader: pathlib.Path, tmp_path: pathlib.Path,
                                   zoo_name: str) -> None:
    """Nested tuple outputs (LSTM), a transformer, and a traced function (saved as a
    ScriptFunction; torch::jit::load reads it as a module whose forward is the function)."""
    c = ZOO[zoo_name]
    model = c.make()
    traced = fxtrace.trace(model, c.example(c.batch))
    x = c.example(3)
    with torch.no_grad():
        want = model(*x)
    proc, out = _run_cpp(loader, traced, x, tmp_path, zoo_name)
    assert proc.returncode == 0, proc.stderr[-4000:]
    same_outputs(_load_output(out), want, f"{zoo_name} from C++")
