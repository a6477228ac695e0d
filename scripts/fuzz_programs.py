"""Differential fuzzer: random programs (property_tests/programs.py) through eager,
torch.jit.trace and fxtrace.trace, compared on probe inputs (property_tests/differential.py).

    python scripts/fuzz_programs.py --count 10000 --seed 0 --seconds 3600 --out report.json

Program ``i`` is ``random_program(seed + i)``, so any record can be rebuilt from its seed.
Prints a summary table (fxtrace and torch.jit.trace outcome classes, side by side; trace
errors grouped by type, raising fxtrace frame and first message line; silent wrong results
grouped by probe) and writes every non-ok record in full to ``--out``.
"""
from __future__ import annotations

import argparse
import collections
import json
import multiprocessing
import os
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "property_tests"))
sys.path.insert(0, ROOT)

__all__ = ["fuzz", "summarise", "main"]


def _worker(job: Tuple[List[int], float, int, Optional[List[str]], bool]
            ) -> List[Dict[str, Any]]:
    seeds, deadline, check_every, families, unknown_only = job
    from differential import classify, run_program
    from known import allowed_entries
    from programs import random_program

    entries = allowed_entries() if unknown_only else None

    out = []
    for s in seeds:
        if time.time() > deadline:
            break
        program = random_program(s, families, entries=entries)
        record = run_program(program, seed=s, check_sample=check_every > 0 and s % check_every == 0)
        record["seed"] = s
        record["fx_class"], record["jit_class"] = classify(record)
        out.append(record)
    return out


def fuzz(count: int, seed: int = 0, seconds: float = 1e9, jobs: int = 1, check_every: int = 5,
         families: Optional[List[str]] = None, chunk: int = 25,
         unknown_only: bool = False) -> List[Dict[str, Any]]:
    """Run programs ``seed .. seed+count-1`` (stopping at the deadline); the records.
    ``unknown_only``: leave out the vocabulary entries of known findings (known.py).

    Each chunk runs in a fresh worker process (torch.jit keeps every compiled trace alive)."""
    deadline = time.time() + seconds
    jobs_ = [(list(range(s, min(s + chunk, seed + count))), deadline, check_every, families,
              unknown_only) for s in range(seed, seed + count, chunk)]
    # Not "fork": a parent that has run torch's intra-op thread pool (a test session) leaves
    # its locks held in a forked child, which then hangs in its first parallel kernel. The
    # fork server is a fresh process with torch imported, forking each worker from there.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch"])
    records: List[Dict[str, Any]] = []
    with ctx.Pool(jobs, maxtasksperchild=1) as pool:
        for part in pool.imap_unordered(_worker, jobs_):
            records.extend(part)
            if time.time() > deadline:
                break
    records.sort(key=lambda r: r["seed"])
    return records


BAD = ("fx-wrong-example", "fx-wrong", "fx-crash", "fx-refused", "fx-run-error", "timeout")


def _attribute(valid: List[Dict[str, Any]]) -> Tuple[Dict[str, Dict[str, int]], Dict[str, int]]:
    """Bad fxtrace outcomes per known finding (programs holding one of its entries, with an
    outcome of a class the finding gives; a program may count for two) and the groups of
    the outcomes no finding explains."""
    from differential import group_key
    from known import CLASSES, KNOWN, KNOWN_FAMILIES

    by: Dict[str, Dict[str, int]] = collections.defaultdict(lambda: collections.defaultdict(int))
    other: Dict[str, int] = collections.Counter()
    for r in valid:
        if r["fx_class"] not in BAD:
            continue
        found = {KNOWN[e] for e in r["entries"] if e in KNOWN}
        found |= {KNOWN_FAMILIES[e.split(".")[0]] for e in r["entries"]
                  if e.split(".")[0] in KNOWN_FAMILIES}
        found = {f for f in found if r["fx_class"] in CLASSES[f]}
        for f in found:
            by[f][r["fx_class"]] += 1
        if not found:
            other[group_key(r) or r["fx_class"]] += 1
    return {f: dict(c) for f, c in sorted(by.items())}, dict(other.most_common())


def summarise(records: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Counts per class, the cross table, and groups with their smallest example seed."""
    valid = [r for r in records if r["fx_class"] is not None]
    fx = collections.Counter(r["fx_class"] for r in valid)
    jit = collections.Counter(r["jit_class"] for r in valid)
    cross = collections.Counter((r["fx_class"], r["jit_class"]) for r in valid)
    groups: Dict[str, Dict[str, Any]] = {}

    def add(kind: str, key: str, r: Dict[str, Any]) -> None:
        g = groups.setdefault(f"{kind} | {key}", {"count": 0, "seed": r["seed"], "size": 1e9})
        g["count"] += 1
        if len(r["source"]) < g["size"]:
            g["seed"], g["size"] = r["seed"], len(r["source"])

    from differential import error_key, group_key
    for r in valid:
        key = group_key(r) if "fx" in r else None
        if key is not None:
            kind, _, rest = key.partition(" | ")
            add(kind, rest, r)
        if r["jit_class"] == "jit-trace-error":
            add("jit-trace-error", error_key(r["jit"]["error"]), r)
        if r.get("fx_check") not in (None, "ok"):
            add("fx-check-error", error_key(r["fx_check"]), r)
    by_finding, unattributed = _attribute(valid)
    checks = collections.Counter("ok" if r.get("fx_check") == "ok" else "error"
                                 for r in valid if "fx_check" in r)
    return {"programs": len(records), "valid": len(valid),
            "eager_errors": len(records) - len(valid), "fx": dict(fx), "jit": dict(jit),
            "cross": {f"{a} / {b}": n for (a, b), n in cross.most_common()},
            "fx_check": dict(checks), "by_finding": by_finding,
            "unattributed": unattributed,
            "groups": dict(sorted(groups.items(), key=lambda kv: -kv[1]["count"]))}


def _table(summary: Dict[str, Any]) -> str:
    lines = [f"programs {summary['programs']}, valid {summary['valid']} "
             f"(eager rejects {summary['eager_errors']})", "",
             f"{'fxtrace class':24} {'n':>6}   {'torch.jit.trace class':24} {'n':>6}"]
    fx, jit = list(summary["fx"].items()), list(summary["jit"].items())
    for i in range(max(len(fx), len(jit))):
        a = f"{fx[i][0]:24} {fx[i][1]:6}" if i < len(fx) else " " * 31
        b = f"{jit[i][0]:24} {jit[i][1]:6}" if i < len(jit) else ""
        lines.append(f"{a}   {b}")
    cross = summary.get("cross", {})
    fx_err = sum(n for k, n in cross.items() if k.split(" / ")[0] in ("fx-refused", "fx-crash"))
    jit_err = sum(n for k, n in cross.items() if k.split(" / ")[1] == "jit-trace-error")
    only_fx = sum(n for k, n in cross.items() if k.split(" / ")[0] in ("fx-refused", "fx-crash")
                  and k.split(" / ")[1] != "jit-trace-error")
    lines += ["", f"trace errors: fxtrace {fx_err}, torch.jit.trace {jit_err}; "
                  f"fxtrace refuses {only_fx} that torch.jit.trace traces"]
    lines += ["", "bad fxtrace outcomes per known finding (programs holding its entries):"]
    for f, c in summary["by_finding"].items():
        lines.append(f"  {f:34} {sum(c.values()):6}  {c}")
    lines += ["bad fxtrace outcomes no known finding explains:"]
    for key, n in summary["unattributed"].items():
        lines.append(f"  {n:6}  {key}")
    lines += ["", f"fx check_trace on the sample: {summary['fx_check']}", "",
              "groups (count, smallest seed):"]
    for key, g in summary["groups"].items():
        lines.append(f"{g['count']:6}  seed {g['seed']:<7} {key}")
    return "\n".join(lines)


def _minimize(seed: int, families: Optional[List[str]]) -> int:
    from differential import group_key, run_program
    from minimize import minimize
    from programs import random_program

    small = minimize(random_program(seed, families), seed=seed)
    record = run_program(small, seed=seed)
    print(small.source)
    print("inputs:", small.inputs, " group:", group_key(record))
    for side in ("jit", "fx"):
        res = record.get(side, {})
        print(f"{side}:", res.get("error") or {k: v for k, v in res.get("probes", {}).items()
                                                if v[0] != "ok"})
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seconds", type=float, default=1e9, help="stop after this long")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--check-every", type=int, default=5,
                   help="also trace with check_trace=True every k-th program (0: never)")
    p.add_argument("--families", nargs="*", default=None)
    p.add_argument("--unknown-only", action="store_true",
                   help="leave out the entries of known findings (property_tests/known.py)")
    p.add_argument("--out", default=None, help="JSON report")
    p.add_argument("--resummarise", default=None, metavar="REPORT", nargs="+",
                   help="reclassify the records of earlier --out reports (merged: disjoint "
                        "seeds, e.g. runs of two machines or two seed ranges) and print the table")
    p.add_argument("--show", type=int, default=None, help="print program SEED and its record")
    p.add_argument("--minimize", type=int, default=None,
                   help="shrink program SEED to a small one with the same finding group")
    args = p.parse_args(argv)
    if args.minimize is not None:
        return _minimize(args.minimize, args.families)
    if args.resummarise:
        from differential import classify
        records = []
        for path in args.resummarise:
            with open(path) as f:
                records.extend(json.load(f)["records"])
        for r in records:
            if "source" in r:  # full record (stubs are fx-ok / jit-ok)
                r["fx_class"], r["jit_class"] = classify(r)
        print(_table(summarise(records)))
        return 0
    if args.show is not None:
        rec = _worker(([args.show], time.time() + 600, 1, args.families, args.unknown_only))[0]
        print(rec["source"])
        print(json.dumps({k: v for k, v in rec.items() if k != "source"}, indent=1, default=str))
        return 0
    t0 = time.time()
    records = fuzz(args.count, args.seed, args.seconds, args.jobs, args.check_every, args.families,
                   unknown_only=args.unknown_only)
    summary = summarise(records)
    summary["seconds"] = round(time.time() - t0, 1)
    print(_table(summary))
    print(f"\n{summary['seconds']} s")
    if args.out:
        keep = [r if (r["fx_class"], r["jit_class"]) != ("fx-ok", "jit-ok") else
                {"seed": r["seed"], "fx_class": "fx-ok", "jit_class": "jit-ok"} for r in records]
        with open(args.out, "w") as f:
            json.dump({"summary": summary, "records": keep}, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
