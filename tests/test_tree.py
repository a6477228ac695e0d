"""The value tree (fxtrace/tree.py): flatten/unflatten round trips, paths, types kept."""
import collections
from typing import NamedTuple

import pytest
import torch

from fxtrace import tree


class Pair(NamedTuple):
    a: torch.Tensor
    b: tuple


Point = collections.namedtuple("Point", "x y")

T = [torch.full((2,), float(i)) for i in range(8)]

VALUES = [
    T[0],
    (T[0], (T[1], T[2], (T[3],)), T[4]),                    # nested tuples
    {"a": T[0], "b": (T[1], [T[2], T[3]])},                  # dict of tuple of list
    collections.OrderedDict([("z", T[0]), ("a", {"k": T[1]})]),
    Pair(T[0], (T[1], None)),                                 # NamedTuple nested
    {"out": Point(T[0], T[1]), "n": 3},
    [torch.Size([2, 3]), T[5]],                              # torch.Size is a leaf
    (),
    {},
    {0: T[6], 1: T[7]},                                      # int keys
]


def _same(x, y):
    if isinstance(x, torch.Tensor):
        return isinstance(y, torch.Tensor) and x is y
    if tree.is_container(x):
        return type(x) is type(y) and len(tree.children(x)) == len(tree.children(y)) and all(
            kx == ky and _same(vx, vy)
            for (kx, vx), (ky, vy) in zip(tree.children(x), tree.children(y)))
    return x == y


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_flatten_unflatten_round_trip(value):
    leaves, spec = tree.flatten(value)
    assert leaves == list(tree.leaves(value)) or all(a is b for a, b in zip(leaves, tree.leaves(value)))
    assert spec.num_leaves == len(leaves)
    assert _same(tree.unflatten(leaves, spec), value)


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_map_leaves_keeps_types(value):
    mapped = tree.map_leaves(lambda v: v * 2 if isinstance(v, torch.Tensor) else v, value)
    assert type(mapped) is type(value)
    got = [v for v in tree.leaves(mapped) if isinstance(v, torch.Tensor)]
    want = [v * 2 for v in tree.leaves(value) if isinstance(v, torch.Tensor)]
    assert len(got) == len(want) and all(torch.equal(a, b) for a, b in zip(got, want))


def test_paths_name_every_leaf():
    value = {"a": (T[0], [T[1]]), "b": Pair(T[2], (T[3],))}
    paths = [p for p, _ in tree.leaves_with_paths(value)]
    assert paths == ["output['a'][0]", "output['a'][1][0]", "output['b'][0]", "output['b'][1][0]"]


def test_size_and_strings_are_leaves():
    assert not tree.is_container(torch.Size([1, 2]))
    assert not tree.is_container("ab")
    assert list(tree.leaves((torch.Size([1, 2]), "ab"))) == [torch.Size([1, 2]), "ab"]


def test_plain_drops_namedtuples_and_dict_subclasses():
    value = collections.OrderedDict(p=Pair(T[0], (T[1],)))
    out = tree.plain(value)
    assert type(out) is dict and type(out["p"]) is tuple and out["p"][0] is T[0]


def test_spec_text():
    assert str(tree.flatten((T[0], [T[1]], {"k": T[2]}))[1]) == "(*, [*], {'k': *})"
    assert str(tree.flatten((T[0],))[1]) == "(*,)"
    assert str(tree.flatten(Pair(T[0], (T[1],)))[1]) == "Pair(*, (*,))"


def test_unflatten_rejects_extra_leaves():
    _, spec = tree.flatten((T[0],))
    with pytest.raises(ValueError):
        tree.unflatten([T[0], T[1]], spec)
