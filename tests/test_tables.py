"""Tests of fxtrace.inspect: golden tables on small fixed graphs, numeric columns against
eager, TorchScript modules fxtrace never saw, tablefmt variants, abbreviation.

Golden strings are compared line by line with trailing spaces stripped. To regenerate them
after an intended change run ``FXTRACE_ACCEPT=1 pytest tests/test_tables.py``: each found
text is printed and written back into this file in place of the expected literal.
"""
from __future__ import annotations

import atexit
import dataclasses
import inspect as pyinspect
import io
import operator
import os

import pytest
import torch
import torch.fx

from fxtrace.capture.meta import (
    MODULE,
    SOURCE,
    TENSOR_META,
    VALUE_TYPE,
    CaptureInfo,
    SourceLoc,
    Specialisation,
    tensor_meta_of,
)
from fxtrace.inspect import (
    COLUMNS,
    DEFAULT_TABLES,
    TABLES,
    CheckReport,
    OutputCheck,
    check_table,
    diff_table,
    modules_table,
    nodes_table,
    ops_table,
    show,
    specialisations_table,
)

# torch.jit is used here only as an oracle; its deprecation notices are not under test.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")

ACCEPT = os.environ.get("FXTRACE_ACCEPT") == "1"
_PENDING: list = []


def _norm(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def _rewrite_pending() -> None:
    by_file: dict = {}
    for path, start, end, text in _PENDING:
        by_file.setdefault(path, []).append((start, end, text))
    for path, edits in by_file.items():
        with open(path) as f:
            lines = f.read().split("\n")
        for start, end, text in sorted(edits, reverse=True):
            region = "\n".join(lines[start - 1:end])
            head, sep, rest = region.partition('"""\\\n')
            if not sep:
                continue
            tail = rest[rest.rindex('"""'):]
            body = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
            lines[start - 1:end] = (head + sep + body + "\n" + tail).split("\n")
        with open(path, "w") as f:
            f.write("\n".join(lines))


if ACCEPT:
    atexit.register(_rewrite_pending)


def assert_expected_inline(actual: str, expected: str) -> None:
    """Compare with a golden literal; in accept mode print and rewrite it instead."""
    if _norm(actual) == _norm(expected):
        return
    if ACCEPT:
        caller = pyinspect.stack()[1]
        pos = caller.positions
        print(f"\n--- found ({caller.filename}:{pos.lineno}) ---\n{_norm(actual)}\n---")
        _PENDING.append((caller.filename, pos.lineno, pos.end_lineno, _norm(actual)))
        return
    raise AssertionError(f"table differs from golden text (FXTRACE_ACCEPT=1 regenerates)\n"
                         f"--- expected ---\n{_norm(expected)}\n--- found ---\n{_norm(actual)}")


# --------------------------------------------------------------------------- fixtures

class Annotator(torch.fx.Interpreter):
    """Run a graph eagerly, filling node.meta the way a capture does (fixed fake sources)."""

    def __init__(self, gm: torch.fx.GraphModule, filename: str = "/src/model.py",
                 module_path: str = "") -> None:
        super().__init__(gm)
        self.filename, self.module_path = filename, module_path
        self.index = {n: i for i, n in enumerate(gm.graph.nodes)}
        self.values: dict = {}

    def run_node(self, n: torch.fx.Node):
        out = super().run_node(n)
        self.values[n.name] = out
        n.meta[TENSOR_META] = tensor_meta_of(out)
        n.meta[VALUE_TYPE] = None if isinstance(out, (torch.Tensor, tuple, list, dict)) else type(out)
        n.meta[MODULE] = self.module_path
        if n.op not in ("placeholder", "output"):
            n.meta[SOURCE] = SourceLoc(self.filename, 10 + self.index[n], "forward",
                                       f"code of {n.name}")
        return out


def annotate(gm: torch.fx.GraphModule, *inputs, filename="/src/model.py", module=""):
    a = Annotator(gm, filename, module)
    a.run(*inputs)
    return a.values


class Small(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 4)

    def forward(self, x):
        y = torch.relu(self.lin(x)).view(-1, 2)
        y = y + 1
        return y.sum(dim=1), torch.cat([y, y], 0).to(torch.float64)


def small_gm():
    torch.manual_seed(0)
    gm = torch.fx.symbolic_trace(Small())
    annotate(gm, torch.randn(2, 3))
    return gm


class Sub(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x):
        return torch.tanh(self.lin(x))


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.sub = Sub()
        self.head = torch.nn.Linear(4, 2, bias=False)

    def forward(self, x):
        return self.head(self.sub(self.sub(x)))


class _SubLeaf(torch.fx.Tracer):
    def is_leaf_module(self, m, qualname):
        return isinstance(m, Sub) or super().is_leaf_module(m, qualname)


def tree_gm(with_info=True):
    """A capture-shaped tree: root GraphModule calling a Sub GraphModule twice."""
    torch.manual_seed(0)
    net = Net()
    root = torch.fx.GraphModule(net, _SubLeaf().trace(net), "Net")
    sub = torch.fx.symbolic_trace(net.sub)
    sub.meta["fxtrace_original_type"] = "Sub"
    root.sub = sub
    x = torch.randn(2, 4)
    annotate(root, x)
    annotate(sub, x, filename="/src/sub.py", module="sub")
    if with_info:
        root.meta["fxtrace"] = CaptureInfo(
            mode="concrete", is_function=False, name="Net",
            specialisations=[
                Specialisation("bool", True, SourceLoc("/src/model.py", 21, "forward",
                                                       "    if x.sum() > 0:"), "", True),
                Specialisation("int", 4, SourceLoc("/src/sub.py", 7, "forward",
                                                   "n = x.shape[1]"), "sub", False, "size"),
                Specialisation("item", list(range(40)), None, "", False),
            ],
            module_calls={"": 1, "sub": 2, "sub.lin": 2, "head": 1})
    return root


def columns(text: str) -> list:
    """Rows of a ``fmt="tsv"`` table as dicts keyed by header."""
    lines = text.splitlines()
    header = [h.strip() for h in lines[0].split("\t")]
    return [dict(zip(header, (c.strip() for c in line.split("\t")))) for line in lines[1:]]


# --------------------------------------------------------------------------- golden tables

def test_nodes_table_golden():
    assert_expected_inline(nodes_table(small_gm()), """\
  #  opcode         name    target        args             kwargs    shape     dtype               device    location
---  -------------  ------  ------------  ---------------  --------  --------  ------------------  --------  -----------
  0  placeholder    x       x                                        2x3       float32             cpu
  1  call_module    lin     lin           %x                         2x4       float32             cpu       model.py:11
  2  call_function  relu    torch.relu    %lin                       2x4       float32             cpu       model.py:12
  3  call_method    view    .view         %relu, -1, 2               4x2       float32             cpu       model.py:13
  4  call_function  add     operator.add  %view, 1                   4x2       float32             cpu       model.py:14
  5  call_method    sum_1   .sum          %add             dim=1     4         float32             cpu       model.py:15
  6  call_function  cat     torch.cat     [%add, %add], 0            8x2       float32             cpu       model.py:16
  7  call_method    to      .to           %cat, float64              8x2       float64             cpu       model.py:17
  8  output         output  output        (%sum_1, %to)              (4, 8x2)  (float32, float64)  cpu
""")


def test_nodes_table_recurse_golden():
    assert_expected_inline(nodes_table(tree_gm(), recurse=True, fmt="plain"), """\
  #  opcode         name    target      args    shape    dtype    device    location     module
  0  placeholder    x       x                   2x4      float32  cpu
  1  call_module    sub     sub         %x      2x4      float32  cpu       model.py:11
  2  call_module    sub_1   sub         %sub    2x4      float32  cpu       model.py:12
  3  call_module    head    head        %sub_1  2x2      float32  cpu       model.py:13
  4  output         output  output      %head   2x2      float32  cpu
  5  placeholder    x       x                   2x4      float32  cpu                    sub
  6  call_module    lin     lin         %x      2x4      float32  cpu       sub.py:11    sub
  7  call_function  tanh    torch.tanh  %lin    2x4      float32  cpu       sub.py:12    sub
  8  output         output  output      %tanh   2x4      float32  cpu                    sub
""")


def test_modules_table_golden():
    assert_expected_inline(modules_table(tree_gm()), """\
module    type      own params    own bytes    total params    total bytes    nodes    calls
--------  ------  ------------  -----------  --------------  -------------  -------  -------
(root)    Net                0          0 B              28          112 B        5        1
sub       Sub                0          0 B              20           80 B        4        2
sub.lin   Linear            20         80 B              20           80 B        -        2
head      Linear             8         32 B               8           32 B        -        1
classes: torch.nn.modules.linear.Linear
""")


def test_modules_table_counts_call_sites_without_capture_info():
    rows = columns(modules_table(tree_gm(with_info=False), fmt="tsv"))
    calls = {r["module"]: r["calls"] for r in rows}
    assert calls == {"(root)": "-", "sub": "2", "sub.lin": "1", "head": "1"}


def test_specialisations_table_golden():
    assert_expected_inline(specialisations_table(tree_gm()), """\
  #  kind    value                                    count  location     code             guarded    module    detail
---  ------  -------------------------------------  -------  -----------  ---------------  ---------  --------  --------
  0  bool    True                                         1  model.py:21  if x.sum() > 0:  yes
  1  int     4                                            1  sub.py:7     n = x.shape[1]   no         sub       size
  2  item    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1…        1                                no
""")


def test_specialisations_table_empty():
    assert_expected_inline(specialisations_table(small_gm()), """\
  #  kind    value      count  location    code    guarded    module    detail
---  ------  -------  -------  ----------  ------  ---------  --------  --------
     (none)
""")


def test_ops_table_golden():
    assert_expected_inline(ops_table(tree_gm()), """\
op                          count    share
------------------------  -------  -------
call_module:Linear              2    66.7%
call_function:torch.tanh        1    33.3%
classes: torch.nn.modules.linear.Linear
""")


def _edited(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """relu -> sigmoid, and an extra neg after add (new node names everywhere)."""
    g = torch.fx.Graph()
    env = {}
    for n in gm.graph.nodes:
        new = g.node_copy(n, lambda a: env[a])
        if n.target is torch.relu:
            new.target = torch.sigmoid
        if n.target is operator.add:
            new = g.call_function(torch.neg, (new,))
        env[n] = new
    out = torch.fx.GraphModule(gm, g)
    return out


def test_diff_table_golden():
    a = small_gm()
    b = _edited(a)
    annotate(b, torch.randn(2, 3), filename="/src/other.py")
    assert_expected_inline(diff_table(a, b), """\
    mark      #a  a                                 location a      #b  b                                 location b
--  ------  ----  --------------------------------  ------------  ----  --------------------------------  ------------
    =          0  x: input                                           0  x: input
    =          1  lin = lin(%x)                     model.py:11      1  lin = lin(%x)                     other.py:11
>>  ~          2  relu = torch.relu(%lin)           model.py:12      2  relu = torch.sigmoid(%lin)        other.py:12
    =          3  view = .view(%relu, -1, 2)        model.py:13      3  view = .view(%relu, -1, 2)        other.py:13
    =          4  add = operator.add(%view, 1)      model.py:14      4  add = operator.add(%view, 1)      other.py:14
    +                                                                5  neg = torch.neg(%add)             other.py:15
    =          5  sum_1 = .sum(%add, dim=1)         model.py:15      6  sum_1 = .sum(%neg, dim=1)         other.py:16
    =          6  cat = torch.cat([%add, %add], 0)  model.py:16      7  cat = torch.cat([%neg, %neg], 0)  other.py:17
    =          7  to = .to(%cat, float64)           model.py:17      8  to = .to(%cat, float64)           other.py:18
    =          8  return (%sum_1, %to)                               9  return (%sum_1, %to)
first divergence at row 2 (changed): a: #2 relu = torch.relu(%lin) (model.py:12); b: #2 relu = torch.sigmoid(%lin) (other.py:12)
""")


def test_diff_table_identical():
    a, b = small_gm(), torch.fx.symbolic_trace(Small())  # b has no metadata at all
    text = diff_table(a, b)
    assert ">>" not in text
    assert text.splitlines()[-1] == "no divergence: 9 nodes match"
    assert all(line.split()[0] == "=" for line in text.splitlines()[2:-1])


def test_diff_table_shape_change_is_marked():
    a, b = small_gm(), small_gm()
    view = next(n for n in b.graph.nodes if n.name == "view")
    view.meta[TENSOR_META] = dataclasses.replace(view.meta[TENSOR_META], shape=(2, 4))
    text = diff_table(a, b, context=1)
    lines = text.splitlines()
    assert lines[-1].startswith("first divergence at row 3 (changed): a: #3 view")
    marked = [row for row in lines if row.startswith(">>")]
    assert len(marked) == 1 and marked[0].split()[1] == "~"
    assert sum(1 for row in lines if row.split()[:1] == ["..."]) == 2   # rows 0-1 and 5-8 elided


def test_check_table_golden():
    report = CheckReport(
        title="check_trace: 2 inputs",
        outputs=[
            OutputCheck("out[0]", "ok", 0.0, 0.0, "Tensor(4, float32)", "Tensor(4, float32)"),
            OutputCheck("out[1]", "mismatch", 0.125, 3.5e-2, "Tensor(8x2, float64)",
                        "Tensor(8x2, float64)", "%cat (model.py:16)"),
            OutputCheck("out[2]", "error", None, None, "Tensor(3, int64)", "int"),
        ],
        notes=["inputs re-drawn with seed 0"])
    assert not report.ok
    assert_expected_inline(check_table(report), """\
check_trace: 2 inputs
output    status      max abs    max rel  expected              actual                first divergence
--------  --------  ---------  ---------  --------------------  --------------------  ------------------
out[0]    ok                0          0  Tensor(4, float32)    Tensor(4, float32)    -
out[1]    mismatch      0.125      0.035  Tensor(8x2, float64)  Tensor(8x2, float64)  %cat (model.py:16)
out[2]    error             -          -  Tensor(3, int64)      int                   -
note: inputs re-drawn with seed 0
""")


# --------------------------------------------------------------------------- numeric columns

class Types(torch.nn.Module):
    def forward(self, x, idx):
        a = x.to(torch.float64) * 2
        b = x.argmax(dim=-1)
        c = torch.cat([x, x], dim=1).transpose(0, 1)
        n = x.size(0)
        d = idx.bool() & (idx > 0)
        return a, b, c.half(), d, x[:, :n].reshape(-1)


def test_shape_dtype_columns_match_eager():
    gm = torch.fx.symbolic_trace(Types())
    x, idx = torch.randn(3, 5), torch.tensor([0, 2, 1])
    values = annotate(gm, x, idx)
    rows = columns(nodes_table(gm, fmt="tsv", max_width=None))
    assert len(rows) == len(gm.graph.nodes)
    for row in rows:
        v = values[row["name"]]
        if isinstance(v, torch.Tensor):
            expect_shape = "x".join(map(str, v.shape)) or "()"
            assert (row["shape"], row["dtype"], row["device"]) == (
                expect_shape, str(v.dtype).replace("torch.", ""), str(v.device)), row
        elif isinstance(v, tuple):
            shapes = ", ".join("x".join(map(str, t.shape)) for t in v)
            assert row["shape"] == f"({shapes})"
        else:
            assert row["shape"] == "" and row["dtype"] == type(v).__name__, row
    by_name = {r["name"]: r for r in rows}
    assert by_name["argmax"]["dtype"] == "int64"
    assert by_name["size"]["dtype"] == "int"


def test_shape_prop_metadata_is_understood():
    from torch.fx.passes.shape_prop import ShapeProp

    gm = torch.fx.symbolic_trace(Small())
    ShapeProp(gm).propagate(torch.randn(2, 3))
    rows = {r["name"]: r for r in columns(nodes_table(gm, fmt="tsv"))}
    assert (rows["view"]["shape"], rows["view"]["dtype"]) == ("4x2", "float32")
    assert rows["to"]["dtype"] == "float64"


# --------------------------------------------------------------------------- TorchScript

def _reload(m):
    buf = io.BytesIO()
    torch.jit.save(m, buf)
    buf.seek(0)
    return torch.jit.load(buf)


class Scriptable(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.sub = Sub()
        self.w = torch.nn.Parameter(torch.ones(4))

    def forward(self, x):
        if bool(x.sum() > 0):
            x = x * 2
        return self.sub(x) + self.w


def test_script_module_loaded_from_file():
    loaded = _reload(torch.jit.script(Scriptable()))
    assert getattr(loaded, "_fxtrace_capture", None) is None
    rows = columns(nodes_table(loaded, fmt="tsv", max_width=None))
    ops = {r["target"] for r in rows}
    assert {"aten::sum", "aten::gt", "prim::If", "| aten::mul", "sub", "aten::add"} <= ops
    assert rows[0]["opcode"] == "placeholder" and rows[-1]["opcode"] == "output"
    call = next(r for r in rows if r["opcode"] == "call_module")
    assert call["target"] == "sub"
    w = next(r for r in rows if r["opcode"] == "get_attr" and r["target"] == "w")
    assert (w["shape"], w["dtype"]) == ("4", "float32")
    # source lines survive serialisation: the user line of aten::sum is in this file
    assert next(r for r in rows if r["target"] == "aten::sum")["location"].startswith(
        "test_tables.py:")

    mods = columns(modules_table(loaded, fmt="tsv"))
    assert [(r["module"], r["type"], r["own params"], r["total params"], r["calls"])
            for r in mods] == [("(root)", "Scriptable", "4", "24", "-"),
                               ("sub", "Sub", "0", "20", "1"),
                               ("sub.lin", "Linear", "20", "20", "1")]
    assert all(r["nodes"].isdigit() for r in mods)

    inlined = columns(nodes_table(loaded, fmt="tsv", recurse=True, max_width=None))
    lin = next(r for r in inlined if r["target"] == "aten::linear")
    assert lin["module"] == "sub.lin"
    assert "call_function:aten::linear" in ops_table(loaded)


def test_traced_script_module_has_shapes():
    traced = _reload(torch.jit.trace(Sub(), torch.randn(2, 4)))
    rows = columns(nodes_table(traced, fmt="tsv", recurse=True))
    tanh = next(r for r in rows if r["target"] == "aten::tanh")
    assert tanh["location"].startswith("test_tables.py:")
    live = torch.jit.trace(Sub(), torch.randn(2, 4))
    rows = columns(nodes_table(live, fmt="tsv", recurse=True))
    tanh = next(r for r in rows if r["target"] == "aten::tanh")
    assert (tanh["shape"], tanh["dtype"], tanh["device"]) == ("2x4", "float32", "cpu")


def test_script_function():
    @torch.jit.script
    def f(x: torch.Tensor, n: int) -> torch.Tensor:
        return x.relu() + n

    rows = columns(nodes_table(f, fmt="tsv"))
    assert [r["opcode"] for r in rows] == ["placeholder", "placeholder", "call_function",
                                           "call_function", "output"]
    with pytest.raises(TypeError, match="ScriptFunction"):
        modules_table(f)
    text = diff_table(f, f)
    assert text.endswith("no divergence: 5 nodes match")


# --------------------------------------------------------------------------- inputs, formats

def test_fxtrace_result_resolves_to_capture():
    class Result:  # stands in for the ScriptModule fxtrace returns
        pass

    r = Result()
    r._fxtrace_capture = tree_gm()
    assert nodes_table(r) == nodes_table(r._fxtrace_capture)
    assert "bool" in specialisations_table(r)


def test_unknown_type_is_rejected():
    with pytest.raises(TypeError) as e:
        nodes_table(object())
    assert "builtins.object" in str(e.value) and "torch.fx.GraphModule" in str(e.value)
    with pytest.raises(TypeError, match="needs an fxtrace capture"):
        specialisations_table(torch.jit.script(Sub()))


@pytest.mark.parametrize("name", ["nodes", "modules", "specialisations", "ops"])
def test_headers_are_the_documented_columns(name):
    header = TABLES[name](tree_gm(), fmt="tsv").splitlines()[0]
    assert tuple(h.strip() for h in header.split("\t")) == COLUMNS[name]


def test_headers_of_diff_and_check():
    gm = small_gm()
    assert tuple(h.strip() for h in diff_table(gm, gm, fmt="tsv").splitlines()[0].split("\t")) \
        == COLUMNS["diff"]
    text = check_table(CheckReport([OutputCheck("out", "ok")]), fmt="tsv")
    assert tuple(h.strip() for h in text.splitlines()[0].split("\t")) == COLUMNS["check"]


def test_tablefmt_variants():
    gm = small_gm()
    github = nodes_table(gm, fmt="github")
    assert github.splitlines()[0].startswith("|") and github.splitlines()[1].startswith("|--")
    grid = modules_table(tree_gm(), fmt="grid")
    assert grid.splitlines()[0].startswith("+--") and "| sub.lin" in grid
    html = nodes_table(gm, fmt="html")
    assert html.startswith("<table>") and html.rstrip().endswith("</table>")
    assert "<th>opcode" in html and "<td>call_module" in html
    plain = ops_table(gm, fmt="plain")
    assert "---" not in plain and plain.splitlines()[0].split()[:2] == ["op", "count"]


def test_html_escapes_cells():
    g = torch.fx.Graph()
    x = g.placeholder("x")
    g.output(g.call_function(operator.getitem, (x, "<b>")))
    html = nodes_table(torch.fx.GraphModule(torch.nn.Module(), g), fmt="html")
    assert "<b>" not in html and "&lt;b&gt;" in html


def test_long_values_are_abbreviated():
    g = torch.fx.Graph()
    x = g.placeholder("x")
    y = g.call_function(torch.add, (x, torch.ones(2, 3)))
    z = g.call_method("view", (y, *range(30)))
    g.output(z)
    gm = torch.fx.GraphModule(torch.nn.Module(), g)
    rows = columns(nodes_table(gm, fmt="tsv", max_width=20))
    assert rows[1]["args"] == "%x, Tensor(2x3, flo…"
    assert rows[2]["args"].endswith("…") and len(rows[2]["args"]) == 20
    whole = columns(nodes_table(gm, fmt="tsv", max_width=None))
    assert whole[1]["args"] == "%x, Tensor(2x3, float32)"
    assert whole[2]["args"] == "%add, " + ", ".join(map(str, range(30)))
    spec = columns(specialisations_table(tree_gm(), fmt="tsv", max_width=12))
    assert spec[2]["value"] == "[0, 1, 2, 3…"


def test_show_prints_default_tables():
    out = io.StringIO()
    show(tree_gm(), file=out)
    text = out.getvalue()
    assert [row for row in text.splitlines() if row.startswith("== ")] == \
        [f"== {n} ==" for n in DEFAULT_TABLES]
    out = io.StringIO()
    show(torch.jit.script(Sub()), file=out, fmt="github")
    assert "(not available: specialisations_table needs an fxtrace capture" in out.getvalue()
    with pytest.raises(ValueError, match="diff_table"):
        show(tree_gm(), tables=("diff",))


def test_public_api():
    import fxtrace.inspect as fi

    assert set(fi.__all__) >= {"nodes_table", "modules_table", "specialisations_table",
                               "ops_table", "diff_table", "check_table", "show", "TABLES",
                               "COLUMNS"}
    assert set(TABLES) == set(COLUMNS)


# --------------------------------------------------------------------------- passes

def test_passes_table():
    from fxtrace.inspect import passes_table
    from fxtrace.passes import PassRecord

    gm = tree_gm()
    gm.meta["fxtrace"].passes = [PassRecord("eliminate_dead_code", 12, 10, 0.5, True),
                                 PassRecord("eliminate_common_subexpressions", 10, 10, 1.25, False)]
    assert_expected_inline(passes_table(gm), """\
capture mode: concrete
  #  pass                               nodes before    nodes after    delta    ms  modified
---  -------------------------------  --------------  -------------  -------  ----  ----------
  0  eliminate_dead_code                          12             10       -2  0.50  yes
  1  eliminate_common_subexpressions              10             10       +0  1.25  no
""")
    header = passes_table(gm, fmt="tsv").splitlines()[1]
    assert tuple(h.strip() for h in header.split("\t")) == COLUMNS["passes"]
    assert TABLES["passes"] is passes_table

    class Result:  # stands in for the ScriptModule fxtrace returns
        pass

    r = Result()
    r._fxtrace_capture = gm
    assert passes_table(r) == passes_table(gm)
    assert passes_table(small_gm()).splitlines()[0] == "capture mode: unknown"
    with pytest.raises(TypeError, match="needs an fxtrace capture"):
        passes_table(torch.jit.script(Sub()))
    out = io.StringIO()
    show(gm, file=out, tables=("modules",))
    assert out.getvalue().splitlines()[:2] == ["capture mode: concrete", "== modules =="]


def test_passes_table_of_a_real_capture():
    import fxtrace
    from fxtrace.inspect import passes_table

    traced = fxtrace.trace(Sub(), torch.randn(2, 4))
    rows = columns(passes_table(traced, fmt="tsv").split("\n", 1)[1])
    assert [r["pass"] for r in rows] == ["eliminate_dead_code", "eliminate_common_subexpressions",
                                         "call_ops_directly", "merge_guards",
                                         "eliminate_dead_code"]
    assert all(r["modified"] in ("yes", "no") for r in rows)


# --------------------------------------------------------------------------- DOT (to_dot)

_QUOTED = __import__("re").compile(r'"(?:[^"\\]|\\.)*"')


def _dot_structure(text: str) -> dict:
    """Check DOT text is well formed (quotes and braces balance) and count its parts."""
    import re

    bare = _QUOTED.sub('""', text)
    assert '"' not in bare.replace('""', ""), "unbalanced quotes"
    depth = 0
    for ch in bare:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0, "a } closes nothing"
    assert depth == 0, "unclosed {"
    assert bare.startswith("digraph ") and bare.rstrip().endswith("}")
    edges = re.findall(r"^\s*n(\d+) -> n(\d+)(.*);$", bare, re.M)
    return {
        "nodes": re.findall(r"^\s*n(\d+) \[", bare, re.M),
        "clusters": re.findall(r"subgraph cluster_(\d+) \{", bare),
        "data_edges": [(int(a), int(b)) for a, b, rest in edges if "dashed" not in rest],
        "call_edges": [(int(a), int(b)) for a, b, rest in edges if "dashed" in rest],
    }


def test_to_dot_golden():
    from fxtrace.inspect import to_dot

    assert_expected_inline(to_dot(tree_gm()), """\
digraph "Net" {
  graph [label="Net", labelloc=t, fontname="Helvetica", compound=true, rankdir=TB];
  node [fontname="Helvetica", fontsize=10, shape=box];
  edge [fontname="Helvetica", fontsize=9];
  n0 [label="x\\n2x4 float32", shape=ellipse, style=filled, fillcolor="#dbe9f6", tooltip="%x"];
  n1 [label="sub\\n2x4 float32", shape=box3d, tooltip="%sub at model.py:11"];
  n2 [label="sub\\n2x4 float32", shape=box3d, tooltip="%sub_1 at model.py:12"];
  n3 [label="head\\n2x2 float32", shape=box3d, tooltip="%head at model.py:13"];
  n4 [label="output", shape=ellipse, peripheries=2, tooltip="%output"];
  subgraph cluster_0 {
    label="sub\\nSub"; style=rounded; color="#888888";
    n5 [label="x\\n2x4 float32", shape=ellipse, style=filled, fillcolor="#dbe9f6", tooltip="%x"];
    n6 [label="lin\\n2x4 float32", shape=box3d, tooltip="%lin at sub.py:11"];
    n7 [label="torch.tanh\\n2x4 float32", shape=box, tooltip="%tanh at sub.py:12"];
    n8 [label="output", shape=ellipse, peripheries=2, tooltip="%output"];
  }
  n0 -> n1 [label="2x4 float32"];
  n1 -> n2 [label="2x4 float32"];
  n2 -> n3 [label="2x4 float32"];
  n3 -> n4 [label="2x2 float32"];
  n5 -> n6 [label="2x4 float32"];
  n6 -> n7 [label="2x4 float32"];
  n7 -> n8 [label="2x4 float32"];
  n1 -> n5 [style=dashed, lhead=cluster_0, label="calls"];
  n2 -> n5 [style=dashed, lhead=cluster_0, label="calls"];
}
""")


def _fx_dependencies(gm: torch.fx.GraphModule, recurse: bool) -> int:
    graphs = [m for p, m in gm.named_modules() if isinstance(m, torch.fx.GraphModule)
              and (recurse or not p)]
    return sum(len(n.all_input_nodes) for g in graphs for n in g.graph.nodes)


@pytest.mark.parametrize("recurse", [True, False])
def test_to_dot_structure_of_a_real_capture(recurse):
    import fxtrace
    from fxtrace.inspect import to_dot

    torch.manual_seed(0)
    traced = fxtrace.trace(Net(), torch.randn(2, 4))
    gm = traced._fxtrace_capture
    s = _dot_structure(to_dot(traced, recurse=recurse))
    graphs = [p for p, m in gm.named_modules() if isinstance(m, torch.fx.GraphModule)
              and (recurse or not p)]
    assert len(s["nodes"]) == len(set(s["nodes"])) == sum(
        len(gm.get_submodule(p).graph.nodes) for p in graphs)
    assert len(s["clusters"]) == len(graphs) - 1          # one per submodule with a graph
    assert len(s["data_edges"]) == _fx_dependencies(gm, recurse)
    assert len(s["call_edges"]) == (sum(n.op == "call_module" for p in graphs
                                        for n in gm.get_submodule(p).graph.nodes)
                                    if recurse else 0)
    assert all(a < b for a, b in s["data_edges"])         # producers come first
    if recurse:  # nesting follows the module tree: sub.lin's cluster is inside sub's
        labels = {line.split('"')[1].split("\\n")[0]: len(line) - len(line.lstrip())
                  for line in to_dot(traced).splitlines() if line.lstrip().startswith("label=")}
        assert labels == {"sub": 4, "sub.lin": 6, "head": 4}


def test_to_dot_of_torchscript_loaded_from_file():
    from fxtrace.inspect import to_dot
    from fxtrace.inspect._rows import rows_of

    loaded = _reload(torch.jit.script(Scriptable()))
    for recurse in (False, True):
        rows = rows_of(loaded, recurse)
        s = _dot_structure(to_dot(loaded, recurse=recurse))
        assert sorted(map(int, s["nodes"])) == [r.index for r in rows]
        assert len(s["data_edges"]) == sum(len(r.inputs) for r in rows) > 0
        assert not s["call_edges"]
    text = to_dot(loaded)  # inlined graph: clusters from the module hierarchy
    assert 'label="sub\\nSub"' in text and 'label="sub.lin\\nLinear"' in text
    assert "aten::linear" in text and "prim::If" in text
    flat = to_dot(loaded, recurse=False)
    assert "cluster_" not in flat and "aten::linear" not in flat

    @torch.jit.script
    def f(x: torch.Tensor, n: int) -> torch.Tensor:
        return x.relu() + n

    s = _dot_structure(to_dot(f))
    assert len(s["nodes"]) == 5 and sorted(s["data_edges"]) == [(0, 2), (1, 3), (2, 3), (3, 4)]
    assert to_dot(f).startswith('digraph "f" {')


def _odd_gm() -> torch.fx.GraphModule:
    """A graph whose input's target holds a quote and a Graphviz escape (``\\G``)."""
    g = torch.fx.Graph()
    x = g.placeholder("x")
    g.output(g.call_function(operator.getitem, (x, "<b>")))
    gm = torch.fx.GraphModule(torch.nn.Module(), g)
    x.target = 'weird"name\\G'  # after codegen: only the label has to survive it
    return gm


def test_to_dot_escapes_labels():
    from fxtrace.inspect import to_dot
    from fxtrace.inspect.dot import quote

    assert quote('a"b\\N\nc') == '"a\\"b\\\\N\\nc"'
    gm = _odd_gm()
    text = to_dot(gm, name='my "graph"')
    s = _dot_structure(text)
    assert len(s["nodes"]) == 3 and len(s["data_edges"]) == 2
    assert 'label="weird\\"name\\\\G"' in text and text.startswith('digraph "my \\"graph\\"" {')
    with pytest.raises(TypeError, match="torch.fx.GraphModule"):
        to_dot(object())


@pytest.mark.skipif(__import__("shutil").which("dot") is None,
                    reason="graphviz's `dot` program is not installed (apt-get install "
                           "graphviz): rendering cannot be checked here")
def test_render_dot_with_graphviz(tmp_path):
    import subprocess

    from fxtrace.inspect import render_dot, to_dot

    text = to_dot(tree_gm())
    render_dot(text, str(tmp_path / "g.svg"), "svg")
    render_dot(text, str(tmp_path / "g.png"), "png")
    assert "<svg" in (tmp_path / "g.svg").read_text()
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # dot reads every graph back as we wrote it: same nodes and clusters, no warnings
    odd = to_dot(_odd_gm())
    for src in (text, odd):
        p = subprocess.run(["dot", "-Tcanon"], input=src, capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 0 and not p.stderr, p.stderr
    assert "weird\\\"name" in p.stdout
    with pytest.raises(RuntimeError, match="dot -Tsvg failed"):
        render_dot("digraph {", str(tmp_path / "bad.svg"))
