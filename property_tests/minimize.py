"""Greedy minimisation of a failing generated program (for findings' repros).

Hypothesis shrinks failures found under ``@given``; programs found by the fuzzer's seeded
runs are shrunk here instead, on their :class:`~programs.Plan`: drop a step (its readers read
its first operand), use the single-value output, plain float32 non-aliased inputs, smaller
sizes, a function instead of a module. A candidate is kept when the differential run still
gives the same finding group (:func:`differential.group_key`), so the result shows the same
failure in as few steps as the search could reach.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, Iterator, Optional

from differential import group_key, run_program
from programs import Plan, Program

__all__ = ["minimize", "candidates"]


def _remove_step(plan: Plan, k: int, allow_int: bool = False) -> Optional[Plan]:
    key, operands = plan.steps[k]
    if key.startswith("int_entry.") and not allow_int:
        return None
    r, repl = 2 + k, operands[0]

    def remap(i: int) -> int:
        return repl if i == r else (i - 1 if i > r else i)

    steps = tuple((kk, tuple(remap(i) for i in ops))
                  for j, (kk, ops) in enumerate(plan.steps) if j != k)
    return dataclasses.replace(plan, steps=steps, slots=tuple(remap(i) for i in plan.slots))


def _floatify(plan: Plan) -> Optional[Plan]:
    if all(d == "float32" for d in plan.inputs.dtypes):
        return None
    for k in reversed(range(len(plan.steps))):
        if plan.steps[k][0].startswith("int_entry."):
            plan = _remove_step(plan, k, allow_int=True)
    return dataclasses.replace(plan, inputs=dataclasses.replace(plan.inputs, dtypes=("float32",) * 2))


def candidates(plan: Plan) -> Iterator[Plan]:
    """Simpler plans, most reducing first."""
    for k in reversed(range(len(plan.steps))):
        p = _remove_step(plan, k)
        if p is not None:
            yield p
    if plan.output != 0:
        yield dataclasses.replace(plan, output=0)
    if plan.is_module and not any(k.startswith("module.") for k, _ in plan.steps):
        yield dataclasses.replace(plan, is_module=False)
    if plan.inputs.aliased:
        yield dataclasses.replace(plan, inputs=dataclasses.replace(plan.inputs, aliased=False))
    p = _floatify(plan)
    if p is not None:
        yield p
    b, n = plan.inputs.shape
    for shape in ((b - 1, n), (b, n - 1)):
        if min(shape) >= 1:
            yield dataclasses.replace(plan, inputs=dataclasses.replace(plan.inputs, shape=shape))
    for k, (key, ops) in enumerate(plan.steps):  # read an input instead of a value
        for j, i in enumerate(ops):
            if i > 1 and plan.inputs.dtypes[0] == "float32":
                new = ops[:j] + (0,) + ops[j + 1:]
                steps = plan.steps[:k] + ((key, new),) + plan.steps[k + 1:]
                yield dataclasses.replace(plan, steps=steps)


def minimize(program: Program, seed: int = 0, budget_s: float = 120,
             same: Optional[Callable[[dict], bool]] = None) -> Program:
    """The smallest program reached that keeps ``program``'s finding group."""
    want = group_key(run_program(program, seed=seed))
    same = same or (lambda rec: group_key(rec) == want)
    deadline = time.time() + budget_s
    current = program.plan
    progress = True
    while progress and time.time() < deadline:
        progress = False
        for cand in candidates(current):
            if time.time() > deadline:
                break
            if same(run_program(Program(cand), seed=seed)):
                current, progress = cand, True
                break
    return Program(current)
