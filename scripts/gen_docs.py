"""Regenerate the example outputs in docs/inspection.md and docs/cli.md from real runs.

    python scripts/gen_docs.py --check    # exit 1 listing the blocks that drifted (with diffs)
    python scripts/gen_docs.py --write    # rewrite the drifted blocks in place
    python scripts/gen_docs.py --print NAME   # print one generated block

A generated block sits between ``<!-- gen:NAME -->`` and ``<!-- /gen:NAME -->`` in a doc;
everything between the markers belongs to this script. The examples are fixed: the example
modules (``EXAMPLE`` / ``MODELS`` below) are written into a fresh temporary directory as
``example.py`` / ``models.py``, inputs are seeded, and the directory is removed from every
path in the output, so a run prints ``models.py:13`` wherever it happens. Command lines run
in process (``fxtrace.cli.main``) with stdout and stderr interleaved as a terminal shows
them and the warning filters Python starts with. What depends on the clock is normalised:
the ``ms`` column of a passes table prints as ``…``. ``tests/test_doc_outputs.py`` runs
:func:`check`, so a doc that drifts from what fxtrace prints fails the test suite.
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import io
import os
import pathlib
import re
import shlex
import shutil
import sys
import tempfile
import textwrap
import warnings
from typing import Dict, Iterator, List, Optional, Tuple

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DOCS = {"inspection": ROOT / "docs" / "inspection.md", "cli": ROOT / "docs" / "cli.md"}
BEGIN = "<!-- gen:{} -->"
END = "<!-- /gen:{} -->"
MARKER = re.compile(r"<!-- gen:(?P<name>[\w.-]+) -->\n(?P<body>.*?)<!-- /gen:(?P=name) -->",
                    re.S)

# --------------------------------------------------------------------------- example code

#: The module the inspection.md examples trace (written as example.py).
EXAMPLE = textwrap.dedent("""\
    import torch
    from torch import nn


    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            return torch.relu(self.lin(x))


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = Block()
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            h = self.block(x)
            if h.sum() > 0:
                h = h * 2
            return self.head(h.view(x.size(0), -1))
""")

#: The module the cli.md examples trace (written as models.py).
MODELS = textwrap.dedent("""\
    import numpy as np
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.fc = nn.Linear(8, 10)

        def forward(self, x):
            x = torch.relu(self.bn(self.conv(x)))
            x = x.mean((2, 3))
            return self.fc(x)


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


    def rescale(x):
        # only large inputs are scaled down: a trace taken on one keeps this side, guarded
        if x.abs().max() > 50:
            return x / 100
        return x
""")

BROKEN = "import torch\n\nSCALE = 1 / 0\n"
FILES = {"example.py": EXAMPLE, "models.py": MODELS, "broken.py": BROKEN}
#: Module names the examples import (cleared before each run, restored afterwards).
USER_MODULES = ("example", "models", "broken", "_fxtrace_user_example", "_fxtrace_user_models",
                "_fxtrace_user_broken")


# --------------------------------------------------------------------------- running

class Workdir:
    """A temporary directory holding :data:`FILES`, the cwd while examples run."""

    def __init__(self) -> None:
        self.path = tempfile.mkdtemp(prefix="fxtrace_docs_")
        for name, text in FILES.items():
            with open(os.path.join(self.path, name), "w") as f:
                f.write(text)
        self._saved_modules = {n: sys.modules.pop(n) for n in USER_MODULES if n in sys.modules}
        self._cwd = os.getcwd()
        os.chdir(self.path)
        sys.path.insert(0, self.path)
        importlib.invalidate_caches()

    def fresh_imports(self) -> None:
        """Forget the example modules, as a new process would."""
        for n in USER_MODULES:
            sys.modules.pop(n, None)
        importlib.invalidate_caches()

    def normalise(self, text: str) -> str:
        for base in {self.path, os.path.realpath(self.path)}:
            text = text.replace(base + os.sep, "")
        # A saved file's size depends on how many traces the process made before (TorchScript
        # numbers its types), so it is not part of what the docs pin down.
        text = re.sub(r"\((\d+) bytes\)", "(N bytes)", text)
        return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")

    def close(self) -> None:
        os.chdir(self._cwd)
        with contextlib.suppress(ValueError):
            sys.path.remove(self.path)
        self.fresh_imports()
        sys.modules.update(self._saved_modules)
        shutil.rmtree(self.path, ignore_errors=True)


@contextlib.contextmanager
def python_warnings(out: io.StringIO) -> Iterator[None]:
    """The warning filters a fresh ``python`` starts with; warnings printed to ``out``."""
    with warnings.catch_warnings():
        warnings.resetwarnings()
        warnings.simplefilter("default")
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                         ResourceWarning):
            warnings.filterwarnings("ignore", category=category)

        def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
            out.write(warnings.formatwarning(message, category, filename, lineno, line))

        warnings.showwarning = show
        yield


@contextlib.contextmanager
def without_local_constants() -> Iterator[None]:
    """Hypothesis draws some integers from the literal constants of the "local" modules loaded
    in the process (``hypothesis.internal.conjecture.providers._get_local_constants``), so
    ``fxtrace check`` would draw other inputs in the test suite (conftest, scripts loaded)
    than in a script. The examples run with that pool empty, the same in every process; the
    constants Hypothesis always uses stay. (A private Hypothesis name: if it moves, nothing is
    patched and the blocks may drift.)"""
    try:
        from hypothesis.internal.conjecture import providers
    except ImportError:  # pragma: no cover
        yield
        return
    original = getattr(providers, "_get_local_constants", None)
    if original is None or not hasattr(providers, "Constants"):
        yield
        return
    providers._get_local_constants = providers.Constants
    providers.CONSTANTS_CACHE.cache.clear()
    try:
        yield
    finally:
        providers._get_local_constants = original
        providers.CONSTANTS_CACHE.cache.clear()


def run_cli(work: Workdir, command: str) -> str:
    """``$ fxtrace ...``, its output (stdout and stderr as a terminal interleaves them) and
    ``[exit N]``, as one console transcript."""
    import torch

    from fxtrace.cli import main

    work.fresh_imports()
    buf = io.StringIO()
    argv = shlex.split(command.split(" | ")[0])[1:]  # a "| head" is applied afterwards
    torch.manual_seed(0)
    with python_warnings(buf), contextlib.redirect_stdout(buf), \
            contextlib.redirect_stderr(buf), without_local_constants():
        try:
            status = main(argv)
        except SystemExit as e:  # argparse
            status = e.code if isinstance(e.code, int) else 2
    text = normalise_ms(work.normalise(buf.getvalue()))
    m = re.search(r" \| head -(\d+)$", command)
    if m:  # what `| head -N` would leave
        text = "\n".join(text.split("\n")[:int(m.group(1))])
    return f"$ {command}\n{text}\n[exit {status}]"


def console(*transcripts: str) -> str:
    return "```console\n" + "\n\n".join(transcripts) + "\n```"


def text_block(text: str, lang: str = "text") -> str:
    return f"```{lang}\n{text}\n```"


_SIMPLE_RULE = re.compile(r"^-+(  -+)*$")


def normalise_ms(text: str) -> str:
    """Replace the cells of every ``ms`` column of the simple-format tables in ``text``
    with ``…`` (wall time differs per run), keeping the table aligned."""
    lines = text.split("\n")
    for i in range(1, len(lines)):
        if not _SIMPLE_RULE.match(lines[i]):
            continue
        spans = [m.span() for m in re.finditer(r"-+", lines[i])]
        header = lines[i - 1]
        col = next((k for k, (a, b) in enumerate(spans) if header[a:b].strip() == "ms"), None)
        if col is None:
            continue
        a, b = spans[col]
        rows = []
        j = i + 1
        while j < len(lines) and lines[j].strip():
            rows.append(j)
            j += 1
        for k in [i - 1, i] + rows:  # the column becomes 2 wide; what follows moves left
            cell = {i - 1: "ms", i: "--"}.get(k, "…")
            lines[k] = (lines[k].ljust(b)[:a] + cell.rjust(2) + lines[k].ljust(b)[b:]).rstrip()
    return "\n".join(lines)


# --------------------------------------------------------------------------- the blocks

def inspection_blocks(work: Workdir) -> Dict[str, str]:
    import torch

    import fxtrace
    import fxtrace.inspect as fi

    work.fresh_imports()
    example = importlib.import_module("example")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the branch's TracerWarning: shown in cli.md
        torch.manual_seed(0)
        net = example.Net()
        pos = fxtrace.trace(net, torch.ones(2, 4))     # h.sum() > 0: takes the branch
        with torch.no_grad():                          # a net whose block outputs only 0
            for p in net.block.parameters():
                p.fill_(-1.0)
        neg = fxtrace.trace(net, torch.ones(2, 4))     # skips it: another graph
    out = {
        "inspection.example": text_block(EXAMPLE.rstrip("\n"), "python"),
        "inspection.nodes": text_block(work.normalise(fi.nodes_table(pos))),
        "inspection.nodes-recurse": text_block(work.normalise(
            fi.nodes_table(pos, recurse=True, fmt="github"))),
        "inspection.modules": text_block(work.normalise(fi.modules_table(pos))),
        "inspection.specialisations": text_block(work.normalise(
            fi.specialisations_table(pos))),
        "inspection.ops": text_block(work.normalise(fi.ops_table(pos))),
        "inspection.passes": text_block(normalise_ms(work.normalise(fi.passes_table(pos)))),
        "inspection.diff": text_block(work.normalise(fi.diff_table(pos, neg))),
        "inspection.dot": text_block(work.normalise(fi.to_dot(pos)), "dot"),
    }
    return out


def cli_blocks(work: Workdir) -> Dict[str, str]:
    def run(*commands: str) -> str:
        return console(*(run_cli(work, c) for c in commands))

    return {
        "cli.models": text_block(MODELS.rstrip("\n")),
        "cli.trace-net": run("fxtrace trace models.py:Net --input 'randn(2,3,32,32)' --eval "
                             "--table nodes,modules,specialisations --save net.pt"),
        "cli.trace-foo": run("fxtrace trace models:foo --input 'rand(3)' --input 'rand(3)' "
                             "--format github"),
        "cli.trace-passes": run("fxtrace trace models.py:Net --input 'randn(2,3,32,32)' --eval "
                                "--table passes --mode auto"),
        "cli.inspect": run("fxtrace inspect net.pt --table nodes,ops"),
        "cli.dot": run("fxtrace trace models.py:Net --input 'randn(2,3,32,32)' --eval "
                       "--table none --dot net.dot",
                       "fxtrace inspect net.pt --dot | head -3"),
        "cli.check-net": run("fxtrace check models.py:Net --eval --input 'randn(2,3,32,32)' "
                             "--dynamic 0:0 --dynamic 0:2 --dynamic 0:3 --examples 50"),
        "cli.check-branchy": run("fxtrace check models.py:branchy --input 'randn(8)' "
                                 "--examples 100"),
        "cli.check-escapes": run("fxtrace check models.py:escapes --input 'randn(4)' "
                                 "--examples 20"),
        "cli.check-refused": run("fxtrace check models.py:rescale "
                                 "--input 'randint(60,100,(8,),dtype=float32)' --examples 20"),
        "cli.errors": run(*(
            "fxtrace trace models.py:Nett --input 'randn(2)'",
            "fxtrace trace broken.py:f --input 'randn(2)'",
            "fxtrace trace models:foo --input '__import__(\"os\").system(\"ls\")'",
            "fxtrace trace models:foo --input 'randn(2, x)'",
            "fxtrace trace no_such_module:Net --input 'randn(2)'",
            "fxtrace inspect missing.pt",
            "fxtrace trace models.py:Net --input 'randn(2,5,32,32)'",
        )),
    }


def generate() -> Dict[str, str]:
    """Every generated block, by name (``inspection.*`` and ``cli.*``)."""
    work = Workdir()
    try:
        blocks = inspection_blocks(work)
        blocks.update(cli_blocks(work))
        return blocks
    finally:
        work.close()


# --------------------------------------------------------------------------- docs

def _doc_of(name: str) -> pathlib.Path:
    return DOCS[name.split(".", 1)[0]]


def _shown(path: pathlib.Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def drift(blocks: Optional[Dict[str, str]] = None) -> List[Tuple[str, str, str]]:
    """``(block name, doc text, generated text)`` for each block that differs, plus
    problems with the markers (a generated block missing from its doc, a marker in a doc
    that nothing generates)."""
    blocks = generate() if blocks is None else blocks
    found: Dict[str, str] = {}
    for doc in DOCS.values():
        for m in MARKER.finditer(doc.read_text()):
            found[m.group("name")] = m.group("body").rstrip("\n")
    out = []
    for name, text in blocks.items():
        if name not in found:
            out.append((name, f"(no {BEGIN.format(name)} block in {_doc_of(name).name})", text))
        elif found[name] != text:
            out.append((name, found[name], text))
    for name in found:
        if name not in blocks:
            out.append((name, found[name], "(nothing generates this block)"))
    return out


def diff_text(name: str, doc: str, generated: str) -> str:
    return "".join(difflib.unified_diff(
        (doc + "\n").splitlines(True), (generated + "\n").splitlines(True),
        f"{_shown(_doc_of(name))} [{name}]", f"generated [{name}]"))


def write(blocks: Dict[str, str]) -> List[str]:
    """Rewrite the blocks that exist in the docs; returns the names rewritten."""
    done = []
    for path in set(DOCS.values()):
        text = path.read_text()

        def sub(m: "re.Match[str]") -> str:
            name = m.group("name")
            if name not in blocks or m.group("body").rstrip("\n") == blocks[name]:
                return m.group(0)
            done.append(name)
            return f"{BEGIN.format(name)}\n{blocks[name]}\n{END.format(name)}"

        new = MARKER.sub(sub, text)
        if new != text:
            path.write_text(new)
    return done


def check() -> List[str]:
    """Diffs of the drifted blocks (empty when every doc matches the real output)."""
    return [diff_text(*d) for d in drift()]


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--check", action="store_true", help="exit 1 listing drifted blocks")
    g.add_argument("--write", action="store_true", help="rewrite drifted blocks in place")
    g.add_argument("--print", metavar="NAME", help="print one generated block")
    args = p.parse_args(argv)
    blocks = generate()
    if args.print:
        if args.print not in blocks:
            print(f"unknown block {args.print!r}; known: {', '.join(blocks)}", file=sys.stderr)
            return 2
        print(blocks[args.print])
        return 0
    drifted = drift(blocks)
    if args.write:
        names = write(blocks)
        print(f"rewrote {len(names)} block(s): {', '.join(names) or '-'}")
        missing = [n for n, d, _ in drifted if d.startswith("(no <!--") or
                   _ == "(nothing generates this block)"]
        for n in missing:
            print(f"warning: {n}: markers missing or unknown; add them by hand", file=sys.stderr)
        return 1 if missing else 0
    for name, doc, generated in drifted:
        print(f"drifted: {name} ({_shown(_doc_of(name))})")
        print(diff_text(name, doc, generated))
    if drifted:
        print(f"{len(drifted)} block(s) drifted; run python scripts/gen_docs.py --write")
        return 1
    print(f"all {len(blocks)} generated blocks match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
