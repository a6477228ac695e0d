"""``--input`` / ``--kwarg`` specs: parsed with :func:`ast.parse`, never evaluated.

Only a call to ``randn``, ``rand``, ``zeros``, ``ones`` or ``randint`` with int/float/tuple
literal arguments and a ``dtype=`` keyword naming a torch dtype is accepted.
"""
from __future__ import annotations

import ast
import dataclasses
from typing import Any, Dict, Optional, Sequence, Tuple

from .common import fail as _fail
from .common import first_line as _first_line

__all__ = ["FACTORIES", "InputSpec", "parse_input_spec", "parse_kwarg"]

FACTORIES = ("randn", "rand", "zeros", "ones", "randint")

@dataclasses.dataclass(frozen=True)
class InputSpec:
    """A parsed ``--input`` spec: ``factory(shape, dtype=...)`` or ``randint(low, high, shape)``."""

    text: str
    factory: str
    shape: Tuple[int, ...]
    dtype: Optional[str] = None
    low: int = 0
    high: int = 0

    def make(self, shape: Optional[Sequence[int]] = None) -> Any:
        """A new tensor from the spec (with ``shape`` instead of the spec's, when given)."""
        import torch

        size = tuple(self.shape if shape is None else shape)
        kw: Dict[str, Any] = {}
        if self.dtype is not None:
            kw["dtype"] = getattr(torch, self.dtype)
        if self.factory == "randint":
            return torch.randint(self.low, self.high, size, **kw)
        return getattr(torch, self.factory)(size, **kw)


def _literal(node: ast.AST, spec: str, where: str) -> Any:
    """An int/float literal (with unary minus) or a tuple/list of them; anything else fails."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd))
            and isinstance(node.operand, ast.Constant)):
        value = node.operand.value
        # The parser makes exact ints and floats; bool (an int subclass) is not a number here.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_literal(e, spec, where) for e in node.elts)
    _fail(f"bad input spec {spec!r}: {where} is `{ast.unparse(node)}`; only int/float "
          "literals and tuples of ints are allowed")


def _dtype_name(node: ast.AST, spec: str) -> str:
    import torch

    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
            and node.value.id == "torch":
        name = node.attr
    elif isinstance(node, ast.Name):
        name = node.id
    elif isinstance(node, ast.Constant) and isinstance(node.value, str):
        name = node.value.replace("torch.", "", 1)
    else:
        _fail(f"bad input spec {spec!r}: dtype= must name a torch dtype (e.g. dtype=float64), "
              f"got `{ast.unparse(node)}`")
    if not isinstance(getattr(torch, name, None), torch.dtype):
        _fail(f"bad input spec {spec!r}: {name!r} is not a torch dtype (e.g. float32, float64, "
              "int64, bool)")
    return name


def _shape(values: Sequence[Any], spec: str) -> Tuple[int, ...]:
    if len(values) == 1 and isinstance(values[0], tuple):
        values = values[0]
    for v in values:
        if type(v) is not int or v < 0:
            _fail(f"bad input spec {spec!r}: sizes must be non-negative ints, got {v!r}")
    return tuple(values)


def parse_input_spec(spec: str) -> InputSpec:
    """Parse ``randn(2,3)``, ``randint(0,10,(2,3))``, ``ones(4, dtype=float64)``, ... safely.

    The spec is parsed with ``ast.parse(mode="eval")`` and checked node by node; nothing is
    evaluated. One tensor is made to check that torch accepts the combination.
    """
    text = spec.strip()
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as e:
        _fail(f"bad input spec {spec!r}: not a call expression ({e.msg}); "
              f"expected e.g. 'randn(2,3)'")
    names = ", ".join(FACTORIES)
    if not isinstance(tree, ast.Call) or not isinstance(tree.func, (ast.Name, ast.Attribute)):
        _fail(f"bad input spec {spec!r}: expected a call to one of {names} "
              f"(e.g. 'randn(2,3)')")
    func = tree.func
    if isinstance(func, ast.Attribute):  # torch.randn(...)
        if not (isinstance(func.value, ast.Name) and func.value.id == "torch"):
            _fail(f"bad input spec {spec!r}: expected a call to one of {names}, got "
                  f"`{ast.unparse(func)}`")
        name = func.attr
    else:
        name = func.id
    if name not in FACTORIES:
        _fail(f"bad input spec {spec!r}: expected a call to one of {names}, got `{name}`")
    if any(isinstance(a, ast.Starred) for a in tree.args):
        _fail(f"bad input spec {spec!r}: *arguments are not allowed")
    args = [_literal(a, spec, f"argument {i + 1}") for i, a in enumerate(tree.args)]
    dtype = None
    for kw in tree.keywords:
        if kw.arg != "dtype":
            _fail(f"bad input spec {spec!r}: only the keyword dtype= is allowed, got "
                  f"`{'**' if kw.arg is None else kw.arg + '='}`")
        dtype = _dtype_name(kw.value, spec)
    if name == "randint":
        if len(args) == 2:
            args = [0] + args
        if len(args) != 3 or not isinstance(args[2], tuple):
            _fail(f"bad input spec {spec!r}: randint takes (high, size) or (low, high, size) "
                  "with size a tuple, e.g. 'randint(0,10,(2,3))'")
        low, high = args[0], args[1]
        if type(low) is not int or type(high) is not int or low >= high:
            _fail(f"bad input spec {spec!r}: randint needs int bounds low < high")
        parsed = InputSpec(text, name, _shape([args[2]], spec), dtype, low, high)
    else:
        parsed = InputSpec(text, name, _shape(args, spec), dtype)
    try:
        parsed.make()
    except Exception as e:  # noqa: BLE001 - torch's own complaint, e.g. randn with an int dtype
        _fail(f"bad input spec {spec!r}: torch refused it: {_first_line(e)}")
    return parsed


def parse_kwarg(text: str) -> Tuple[str, InputSpec]:
    name, sep, spec = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        _fail(f"bad --kwarg {text!r}: expected NAME=SPEC, e.g. --kwarg mask='ones(2,8)'")
    return name, parse_input_spec(spec)

