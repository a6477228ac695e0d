"""Finding the first fx node whose value diverges from eager, for a failing input.

Approach (documented in ``docs/checking.md``):

1. **Re-trace alignment** (preferred). Capture the original again *on the failing input*: that
   capture records what eager does on this input, node by node. Run both captures in Python
   with a recording :class:`torch.fx.Interpreter` that descends into every submodule
   ``GraphModule`` (so every node of the tree has a value, in execution order), align the two
   node sequences with ``difflib.SequenceMatcher`` over the canonical node text (opcode,
   target, arguments with relative node references, module path) and walk them in execution
   order: the first aligned pair whose values differ, or the first node that exists in only
   one of the two sequences, is the first divergence.
2. **Module boundaries** (fallback, when the re-trace fails). Run eager with forward hooks on
   every submodule (outputs keyed by module path and call number) and the capture through
   the recording interpreter; the first ``call_module`` node (execution order) whose value
   differs from the eager output of the same module call is reported.

If neither finds a difference, the captured fx graph agrees with eager and the TorchScript
lowering is where the results part: that is said instead.
"""
from __future__ import annotations

import difflib
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.fx as fx

from ..capture.meta import MODULE, SOURCE, SourceLoc
from ..capture.structure import short_args, target_name
from .graphs import canonical, retrace
from .trace_check import clone_inputs, compare_outputs, isolated_state

__all__ = ["first_divergence", "record", "record_raising", "positional"]

Entry = Tuple[str, fx.Node, Any, str]  # (module path, node, value, canonical key)


class _Recorder(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule, prefix: str, log: List[Entry]) -> None:
        super().__init__(gm, garbage_collect_values=False)
        # a node that raises is expected here (the trace's path may not fit the input): no
        # "While executing" appended to its message at every nesting level, and no
        # structured-trace record (torch logs one per raise to the ``torch.__trace`` logger,
        # which a test run's log capture prints as empty DEBUG lines)
        self.extra_traceback = False
        self.prefix = prefix
        self.log = log
        self.canon = dict(zip(gm.graph.nodes, canonical(gm)))

    def run_node(self, n: fx.Node) -> Any:
        value = super().run_node(n)
        self.log.append((self.prefix, n, value, f"{self.prefix}|{self.canon[n]}"))
        return value

    def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:
        sub = self.fetch_attr(target)
        if isinstance(sub, fx.GraphModule) and not kwargs and not sub._forward_hooks \
                and not sub._forward_pre_hooks:
            path = f"{self.prefix}.{target}" if self.prefix else str(target)
            return _Recorder(sub, path, self.log).run(*args)
        return super().call_module(target, args, kwargs)


def positional(gm: fx.GraphModule, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> List[Any]:
    out: List[Any] = []
    rest = list(args)
    for node in gm.graph.nodes:
        if node.op != "placeholder":
            continue
        if node.target in kwargs:
            out.append(kwargs[node.target])
        elif rest:
            out.append(rest.pop(0))
        elif node.args:
            out.append(node.args[0])  # the default value
    return out


def record_raising(gm: fx.GraphModule, args: Tuple[Any, ...], kwargs: Dict[str, Any]
                   ) -> List[Entry]:
    """:func:`record` that lets the error of a raising node through (the inputs are used as
    given, not cloned)."""
    log: List[Entry] = []
    _Recorder(gm, "", log).run(*positional(gm, args, kwargs))
    return log


def record(gm: fx.GraphModule, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> List[Entry]:
    """Every node value of ``gm``'s tree on the inputs, in execution order (see module doc)."""
    log: List[Entry] = []
    try:
        _Recorder(gm, "", log).run(*positional(gm, clone_inputs(args), clone_inputs(kwargs)))
    except Exception:  # noqa: BLE001 - what ran so far is still worth comparing
        pass
    return log


def _where(path: str, node: fx.Node) -> str:
    src = node.meta.get(SOURCE)
    loc = src.short if isinstance(src, SourceLoc) else ""
    mod = node.meta.get(MODULE, path)
    inside = f"{mod}." if mod else ""
    return f"%{inside}{node.name}" + (f" ({loc})" if loc else "")


def _differs(a: Any, b: Any, tolerance: float) -> Optional[str]:
    problems = compare_outputs(a, b, tolerance)
    if not problems:
        return None
    return problems[0][1].splitlines()[0]


def first_divergence(gm: fx.GraphModule, original: Any, root: Optional[torch.nn.Module],
                     method: str, args: Tuple[Any, ...], kwargs: Dict[str, Any],
                     tolerance: float) -> Tuple[Optional[str], str]:
    """``(short name of the first diverging node or None, explanation)`` for one input."""
    with torch.no_grad():
        try:
            again = retrace(gm, root, original, method, clone_inputs(args), clone_inputs(kwargs))
        except Exception as e:  # noqa: BLE001 - fall back to module boundaries
            return _by_module_boundaries(gm, original, root, args, kwargs, tolerance,
                                         f"re-trace failed ({type(e).__name__}: {e}); ")
        assert again is not None  # retrace returns None only when given same_as=
        stateful = [root] if root is not None else []
        # the re-capture on the failing input may write what the first capture never saw
        # (NOTE [Writes on later calls]): both runs put it back
        with isolated_state(stateful):
            a = record(gm, args, kwargs)
        with isolated_state(stateful):
            b = record(again, args, kwargs)
    sm = difflib.SequenceMatcher(None, [e[3] for e in a], [e[3] for e in b], autojunk=False)
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag == "equal":
            for k in range(i2 - i1):
                pa, na, va, _ = a[i1 + k]
                _, nb, vb, _ = b[j1 + k]
                why = _differs(va, vb, tolerance)
                if why is not None:
                    name = _where(pa, na)
                    return name, (f"first divergence: {name} = {_call(na)}: its value differs "
                                  f"from a re-trace on this input ({why})")
        else:
            ea = a[i1] if i1 < i2 else None
            eb = b[j1] if j1 < j2 else None
            if ea is not None:
                name = _where(ea[0], ea[1])
                other = (f"the re-trace on this input has {_where(eb[0], eb[1])} = {_call(eb[1])}"
                         if eb is not None else "the re-trace on this input has no such node")
                return name, (f"first divergence: {name} = {_call(ea[1])} is where the graph "
                              f"taken at the example inputs leaves the path of this input; "
                              f"{other}")
            assert eb is not None
            return (_where(eb[0], eb[1]) + " (re-trace only)",
                    f"first divergence: the re-trace on this input runs {_where(eb[0], eb[1])} = "
                    f"{_call(eb[1])}, which the trace does not have")
    if len(a) < len(gm.graph.nodes):
        return None, "the captured fx graph raised while running on this input"
    return None, ("no fx node diverges: the captured fx graph agrees with eager on this input, "
                  "so the difference comes from the TorchScript lowering")


def _call(node: fx.Node) -> str:
    return f"{target_name(node)}{short_args(node)}"


def _by_module_boundaries(gm: fx.GraphModule, original: Any, root: Optional[torch.nn.Module],
                          args: Tuple[Any, ...], kwargs: Dict[str, Any], tolerance: float,
                          prefix: str) -> Tuple[Optional[str], str]:
    if root is None:
        return None, prefix + "no module boundaries to compare (a function)"
    eager: Dict[Tuple[str, int], Any] = {}
    counts: Dict[str, int] = {}
    handles = []
    for path, mod in root.named_modules():
        if not path:
            continue

        def hook(_m: Any, _i: Any, out: Any, _p: str = path) -> None:
            k = counts.get(_p, 0)
            counts[_p] = k + 1
            eager[(_p, k)] = out
        handles.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad(), isolated_state([root]):  # NOTE [Writes on later calls]
            original(*clone_inputs(args), **clone_inputs(kwargs))
    except Exception:  # noqa: BLE001
        pass
    finally:
        for h in handles:
            h.remove()
    with torch.no_grad(), isolated_state([root]):
        log = record(gm, args, kwargs)
    seen: Dict[str, int] = {}
    for path, node, value, _ in log:
        if node.op != "call_module":
            continue
        full = f"{path}.{node.target}" if path else str(node.target)
        k = seen.get(full, 0)
        seen[full] = k + 1
        if (full, k) in eager:
            why = _differs(value, eager[(full, k)], tolerance)
            if why is not None:
                name = _where(path, node)
                return name, (prefix + f"first divergence at a module boundary: {name}, call "
                              f"{k} of module {full!r}, differs from eager ({why})")
    return None, prefix + "no module output differs from eager"
