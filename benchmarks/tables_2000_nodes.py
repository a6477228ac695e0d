"""Time ``fxtrace.inspect.nodes_table`` on a 2,000-node graph (target: under a second).

Run from the repository root::

    python benchmarks/tables_2000_nodes.py [--nodes N] [--fmt simple]
"""
from __future__ import annotations

import argparse
import operator
import time

import torch
import torch.fx

from fxtrace.capture.meta import MODULE, SOURCE, TENSOR_META, SourceLoc, TensorMeta
from fxtrace.inspect import diff_table, nodes_table, ops_table


def build(n_nodes: int) -> torch.fx.GraphModule:
    """A chain ``x = x + 1; x = relu(x); ...`` of ``n_nodes`` nodes with full metadata."""
    graph = torch.fx.Graph()
    meta = TensorMeta.of(torch.empty(8, 16))
    x = graph.placeholder("x")
    x.meta[TENSOR_META] = meta
    x.meta[MODULE] = ""
    for i in range(n_nodes - 2):  # placeholder and output are two of the nodes
        if i % 2 == 0:
            x = graph.call_function(operator.add, (x, 1))
        else:
            x = graph.call_function(torch.relu, (x,))
        x.meta[TENSOR_META] = meta
        x.meta[SOURCE] = SourceLoc("/home/user/project/model_with_long_name.py", 100 + i,
                                   "forward", "x = torch.relu(x + 1)")
        x.meta[MODULE] = f"blocks.{i // 100}.layer"
    graph.output(x)
    return torch.fx.GraphModule(torch.nn.Module(), graph)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--fmt", default="simple")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    gm = build(args.nodes)
    assert len(gm.graph.nodes) == args.nodes
    other = build(args.nodes)
    relus = [n for n in other.graph.nodes if n.target is torch.relu]
    relus[len(relus) // 2].target = torch.sigmoid  # one divergence in the middle
    tables = (("nodes_table", nodes_table), ("ops_table", ops_table),
              ("diff_table", lambda g, fmt: diff_table(g, other, fmt=fmt)))
    for name, fn in tables:
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            text = fn(gm, fmt=args.fmt)
            best = min(best, time.perf_counter() - t0)
        print(f"{name}({args.nodes} nodes, fmt={args.fmt!r}): best of {args.repeat}: "
              f"{best:.3f} s ({len(text.splitlines())} lines)  target < 1 s")


if __name__ == "__main__":
    main()
