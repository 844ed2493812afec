"""Fixtures and markers. Helpers the tests share live in tests/support/, not here."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="session")
def promtool() -> str:
    """Debian's promtool. Missing, it fails rather than skips: `make test` installs it."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: run `make test` (it installs Debian's prometheus)")
    return path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that asks for promtool is a promtool test, marked or not."""
    for item in items:
        if "promtool" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.promtool)
