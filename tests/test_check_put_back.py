"""NOTE [Writes on later calls]: ``fxtrace.check`` puts back what the original's forward writes
in place on inputs other than the example, with parameter copies (the eager runs run bare)
or, over the copy budget, with the save-before-write mode."""
from __future__ import annotations

import warnings
from typing import Dict, List

import pytest
import torch
import torch.nn as nn

import fxtrace
from fxtrace.checking import put_back
from fxtrace.checking.put_back import ParameterCopies


class WritesOnLargeBatches(nn.Module):
    """Writes its weight in place only on batches the example (batch 2) does not have."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 3:
            with torch.no_grad():
                self.lin.weight.mul_(2)
        return self.lin(x)


class WritesDataOnLargeBatches(WritesOnLargeBatches):
    """The same write through ``.data``, which moves no version counter."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 3:
            self.lin.weight.data.mul_(2)
        return self.lin(x)


def _params(model: nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def _check(model: nn.Module, modes: List[bool]) -> List[warnings.WarningMessage]:
    """Check a guards=False trace of ``model`` (wrong on large batches: the check fails);
    returns the warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = fxtrace.trace(model, torch.randn(2, 4), guards=False, check_trace=False)
        original = put_back._SaveBeforeWrite.__init__

        def spy(self, writes):  # type: ignore[no-untyped-def]
            modes.append(True)
            original(self, writes)

        put_back._SaveBeforeWrite.__init__ = spy  # type: ignore[method-assign]
        try:
            with pytest.raises(fxtrace.PropertyCheckError):
                fxtrace.check(traced, model, max_examples=30, seed=0, save_load=False,
                              retrace_stable=False, dtypes=False, ranks=False)
        finally:
            put_back._SaveBeforeWrite.__init__ = original  # type: ignore[method-assign]
    return caught


@pytest.mark.parametrize("data", [False, True], ids=["inplace", "data"])
def test_writes_on_later_calls_are_put_back(data: bool, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    """Found (the trace is wrong on large batches), and the weight put back after each run
    and at the end; the search's eager runs run bare unless the write moves no counter."""
    runs = {}
    default = put_back.COPY_BUDGET
    for budget in (default, 0):  # copies; over the budget: the mode
        monkeypatch.setattr(put_back, "COPY_BUDGET", budget)
        model = WritesDataOnLargeBatches() if data else WritesOnLargeBatches()
        before = _params(model)
        modes: List[bool] = []
        caught = _check(model, modes)
        assert all(torch.equal(before[k], v) for k, v in _params(model).items())
        assert not any("forward wrote parameter" in str(w.message) for w in caught)
        runs[budget] = len(modes)
    if data:  # ``.data`` in the class's source: the mode, whatever the budget
        assert runs[0] == runs[default], runs
    else:  # the 30 eager runs of the search (and the shrinking's) ran bare
        assert runs[0] >= runs[default] + 30, runs


def test_parameter_copies_put_back_only_what_moved_and_share_storage() -> None:
    lin = nn.Linear(3, 3)
    model = nn.Sequential(lin, lin)  # one parameter tensor reachable twice: cloned once
    copies = ParameterCopies.of(model)
    assert copies is not None and len(copies.entries) == 2
    weight = lin.weight.detach().clone()
    with torch.no_grad():
        lin.weight.add_(1)
    written = copies.put_back_written()
    assert written == {lin.weight.untyped_storage().data_ptr()}
    assert torch.equal(lin.weight, weight)
    assert copies.put_back_written() == set()  # nothing moved since
    lin.bias.data.fill_(5)  # no version counter moves
    assert copies.put_back_written() == set()
    copies.put_back_all()
    assert not bool((lin.bias == 5).any())
    assert ParameterCopies.of(model, budget=10) is None
    assert ParameterCopies.of(nn.LazyLinear(2)) is None
    assert ParameterCopies.of(None) is None  # a function: the mode watches the trace
    assert ParameterCopies.of(WritesDataOnLargeBatches()) is None  # ``.data`` in its source
