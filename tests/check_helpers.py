"""Helpers shared by the tests of the chapters' checks (imported as `from check_helpers import ...`,
like tests/browser.py: tests/ has no __init__.py on purpose, see conftest.py)."""

from __future__ import annotations

import pytest

from utils.checks import CheckFailed


def fails_with(check, fn, *messages: str) -> str:
    """Run `check(fn)`; it must fail, and its message must contain every one of `messages`."""
    with pytest.raises(CheckFailed) as failure:
        check(fn)
    text = str(failure.value)
    assert text.startswith(f"{check.__name__} failed: "), text
    for message in messages:
        assert message in text, text
    return text


def passes(check, fn, capsys) -> None:
    """Run `check(fn)`; it must pass and say so."""
    check(fn)
    assert f"✅ {check.__name__} passed" in capsys.readouterr().out
