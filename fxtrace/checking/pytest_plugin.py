"""pytest plugin: the ``fxtrace_check`` fixture property-checks a trace inside a test suite.

Registered as a ``pytest11`` entry point (``fxtrace = fxtrace.checking.pytest_plugin``); without
the installed entry point, enable it with ``-p fxtrace.checking.pytest_plugin`` or
``pytest_plugins = ["fxtrace.checking.pytest_plugin"]``.

::

    def test_my_trace(fxtrace_check):
        model = MyModel().eval()
        traced = fxtrace.trace(model, torch.rand(2, 3))
        report = fxtrace_check(traced, model)      # fails the test with the report table

The fixture calls :func:`fxtrace.check` with the active Hypothesis settings profile (so
``--hypothesis-profile`` / ``settings.load_profile`` decide ``max_examples``, derandomisation
the seed); ``--fxtrace-examples N`` overrides ``max_examples`` for the whole run.
A failure fails the test with ``pytest.fail`` and the report table, printed once (no
traceback noise, and no "During handling of the above exception" copy of it).
"""
from __future__ import annotations

from typing import Any, Callable

import pytest

__all__ = ["fxtrace_check", "pytest_addoption"]


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("fxtrace")
    group.addoption("--fxtrace-examples", type=int, default=None,
                    help="max_examples of every fxtrace_check call (default: the active "
                         "Hypothesis settings profile)")


@pytest.fixture
def fxtrace_check(request: Any) -> Callable[..., Any]:
    """``fxtrace_check(traced, original, **kwargs)``: :func:`fxtrace.check`, failing the test
    with the report table on a counterexample; returns the report on success."""
    from .properties import PropertyCheckError, check

    examples = request.config.getoption("fxtrace_examples", default=None)

    def run(traced: Any, original: Any, *args: Any, **kwargs: Any) -> Any:
        if examples is not None:
            kwargs.setdefault("max_examples", examples)
        try:
            return check(traced, original, *args, **kwargs)
        except PropertyCheckError as e:
            error = e
        # outside the except block: pytest would print the error's report again as the
        # context of its failure ("During handling of the above exception ...")
        pytest.fail(f"fxtrace.check found a counterexample:{error}", pytrace=False)

    return run
