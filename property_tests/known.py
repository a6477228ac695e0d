"""Known findings of the fuzzer (FINDINGS.md), as data the tests use.

``KNOWN`` maps each vocabulary entry that triggers a filed finding to the finding's id; the
default-run property test draws programs from the other entries, so it guards everything the
fuzzer has not (yet) shown broken. ``REPROS`` holds each finding's minimal program as a plan
and the fxtrace class it gives today (``test_known_finding_still_reproduces``).
"""
from __future__ import annotations

from typing import Dict, FrozenSet, Tuple

from programs import InputSpec, Plan, Program
from vocab import FAMILIES, INT_ENTRY

__all__ = ["CLASSES", "KNOWN", "KNOWN_FAMILIES", "REPROS", "allowed_entries"]

_F32 = InputSpec(("float32", "float32"), False, (3, 4))
_F64 = InputSpec(("float64", "float64"), False, (3, 4))


def _one(key: str, inputs: InputSpec = _F32, module: bool = False) -> Program:
    """The program ``return <entry>(x)`` (a module when the entry reads ``self``)."""
    return Program(Plan(inputs, module, ((key, (0,)),), 0, (2,)))


#: finding id -> the entries that trigger it
_BY_FINDING: Dict[str, Tuple[str, ...]] = {
    "F3-tolist": ("values.tolist_sum", "values.len_tolist", "values.mean_tolist",
                  "values.max_tolist"),
    "F6-type-string": ("dtypes.type_str",),
    "F8-numpy-baked": tuple(e.key for e in FAMILIES["numpy"]),
    "F9-buffer-item-unguarded": ("module.count_fill_item", "module.count_item"),
    "F10-buffer-rebind-dtype": ("module.running_rebind",),
    "F12-buffer-rebound-twice": ("module.count_rebind",),
}

_WRONG = ("fx-wrong", "fx-wrong-example")

#: finding id -> the fxtrace classes it gives (attribution of fuzzer outcomes to findings)
CLASSES: Dict[str, Tuple[str, ...]] = {
    "F3-tolist": ("fx-refused",), "F6-type-string": ("fx-run-error",),
    "F8-numpy-baked": _WRONG + ("fx-run-error",),
    "F9-buffer-item-unguarded": _WRONG, "F10-buffer-rebind-dtype": _WRONG,
    "F11-dead-random-op-dropped": _WRONG, "F12-buffer-rebound-twice": _WRONG,
}

KNOWN: Dict[str, str] = {key: f for f, keys in _BY_FINDING.items() for key in keys}

REPROS: Dict[str, Tuple[Program, str]] = {
    "F3-tolist": (_one("values.mean_tolist"), "fx-guarded"),  # guards compile now (coverage)
    "F6-type-string": (_one("dtypes.type_str"), "fx-run-error"),
    "F8-numpy-baked": (_one("numpy.np_mul"), "fx-wrong"),
    "F9-buffer-item-unguarded": (_one("module.count_fill_item", module=True), "fx-wrong"),
    "F10-buffer-rebind-dtype": (_one("module.running_rebind", _F64, module=True),
                                "fx-wrong-example"),
    "F12-buffer-rebound-twice": (Program(Plan(_F32, True, (
        ("module.count_rebind", (0,)), ("module.count_rebind", (2,))), 0, (3,))),
        "fx-wrong-example"),
    "F11-dead-random-op-dropped": (Program(Plan(_F32, False, (
        ("random.randperm", (0,)), ("random.rand_like", (0,))), 0, (3,))), "fx-wrong-example"),
}


#: Fixed since filed (FINDINGS.md says how): F1 ``x ** 2``, F2 ``x[..., idx]``, F4
#: ``x.bool()``, F5 ``uniform_(-1, 1)`` (lowering normalises against TorchScript's schemas)
#: F13 aliased example inputs (each input position gets its own tensor object) and F7 no-op
#: conversions (the operand's dtype and device are guarded).
FIXED = ("F1-pow-crash", "F2-ellipsis-tensor-index", "F4-bool-method", "F5-uniform-int-args",
         "F7-noop-conversion", "F13-aliased-example-inputs")

#: Families left out of the default-run test because of a finding no entry list captures:
#: F11, a random op whose result is unused is dropped by the trace, so every later random
#: value differs from eager's under the same seed (any random entry can be the dead one).
KNOWN_FAMILIES: Dict[str, str] = {"random": "F11-dead-random-op-dropped"}


def allowed_entries() -> FrozenSet[str]:
    """Every vocabulary key that no known finding names (nor its family)."""
    every = [e.key for fam, es in FAMILIES.items() if fam not in KNOWN_FAMILIES for e in es]
    every += [e.key for e in INT_ENTRY]
    return frozenset(k for k in every if k not in KNOWN)
