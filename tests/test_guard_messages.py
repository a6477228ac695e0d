"""What a user reads about a frozen value: the TracerWarning in each guards mode, and the error
of a guard that fires (issue 18, item 4)."""
from __future__ import annotations

import io
import warnings

import pytest
import torch

import fxtrace
from fxtrace.capture.meta import GUARD_TEXT


def branchy(x):
    if x.sum() > 0:
        return x * 2
    return x - 1


def sized(x):
    n = int(x.size(0))
    return x.view(n, -1)


def _tracer_warnings(fn, *args, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = fxtrace.trace(fn, args, **kw)
    return traced, [str(w.message) for w in caught if issubclass(w.category, fxtrace.TracerWarning)]


def test_default_mode_warning_says_other_inputs_raise_and_what_to_do():
    _, texts = _tracer_warnings(branchy, torch.ones(3))
    (text,) = texts
    assert "guards it" in text
    assert f"raises '{GUARD_TEXT} at test_guard_messages.py:16'" in text   # which guard
    assert "torch.where" in text and "torch.jit.script" in text          # what to do
    assert "guards=False gives torch.jit's behaviour" in text


def test_no_guards_warning_does_not_claim_a_guard():
    traced, texts = _tracer_warnings(branchy, torch.ones(3), guards=False)
    (text,) = texts
    assert "guards it" not in text and "raises" not in text.split("To cover")[0]
    assert "silently reuses it" in text and "guards=False" in text
    assert torch.equal(traced(-torch.ones(3)), -torch.ones(3) * 2)       # as the warning says


def test_size_warning_points_at_probe_dynamic():
    _, texts = _tracer_warnings(sized, torch.ones(3, 2))
    assert any("probe_dynamic" in t and "guard failed at test_guard_messages.py:22" in t
               for t in texts)


def _guard_error(module) -> str:
    with pytest.raises(torch.jit.Error) as info:
        module(-torch.ones(3))
    return str(info.value)


@pytest.mark.filterwarnings("ignore:.*torch.jit.*deprecated:DeprecationWarning")
def test_failed_guard_reads_as_one_clean_message():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fxtrace.TracerWarning)
        traced = fxtrace.trace(branchy, (torch.ones(3),))
    buf = io.BytesIO()
    torch.jit.save(traced, buf)
    buf.seek(0)
    loaded = torch.jit.load(buf)
    for text in (_guard_error(traced), _guard_error(loaded)):
        assert "shim-layer" not in text and "_assert" not in text          # no torch internals
        last = text.strip().splitlines()[-1]
        assert last.startswith(f"builtins.RuntimeError: {GUARD_TEXT} at test_guard_messages.py:16")
        assert text.count(GUARD_TEXT) <= 2    # the message, and the generated line quoting it
