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
_BY_FINDING: Dict[str, Tuple[str, ...]] = {}

_WRONG = ("fx-wrong", "fx-wrong-example")

#: finding id -> the fxtrace classes it gives (attribution of fuzzer outcomes to findings)
CLASSES: Dict[str, Tuple[str, ...]] = {}

KNOWN: Dict[str, str] = {key: f for f, keys in _BY_FINDING.items() for key in keys}

REPROS: Dict[str, Tuple[Program, str]] = {}


#: Fixed since filed (FINDINGS.md says how): F1 ``x ** 2``, F2 ``x[..., idx]``, F4
#: ``x.bool()``, F5 ``uniform_(-1, 1)`` (lowering normalises against TorchScript's schemas),
#: F13 aliased example inputs (each input position gets its own tensor object), F7 no-op
#: conversions (the operand's dtype and device are guarded); F3 ``tolist``, F6 ``type(str)``,
#: F8 NumPy round trips, F9 buffer ``item``, F10/F12 buffer rebinding, F11 dead random ops,
#: F14 the check's re-capture RNG, F15 sizes NumPy reads, F16 in-place writes into a NumPy
#: constant (tests/test_fuzz_findings.py, one differential test each).
FIXED = ("F1-pow-crash", "F2-ellipsis-tensor-index", "F3-tolist", "F4-bool-method",
         "F5-uniform-int-args", "F6-type-string", "F7-noop-conversion", "F8-numpy-baked",
         "F9-buffer-item-unguarded", "F10-buffer-rebind-dtype", "F11-dead-random-op-dropped",
         "F12-buffer-rebound-twice", "F13-aliased-example-inputs", "F14-check-rng-false-alarm",
         "F15-numpy-reads-sizes", "F16-inplace-numpy-constant")

#: Families left out of the default-run test because of a finding no entry list captures
#: (none open).
KNOWN_FAMILIES: Dict[str, str] = {}


def allowed_entries() -> FrozenSet[str]:
    """Every vocabulary key that no known finding names (nor its family)."""
    every = [e.key for fam, es in FAMILIES.items() if fam not in KNOWN_FAMILIES for e in es]
    every += [e.key for e in INT_ENTRY]
    return frozenset(k for k in every if k not in KNOWN)
