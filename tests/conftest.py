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


@pytest.fixture(scope="session")
def alertmanager() -> tuple[str, str]:
    """Debian's Alertmanager and amtool. Missing, they fail: `make test` installs them."""
    server, amtool = shutil.which("prometheus-alertmanager"), shutil.which("amtool")
    if server is None or amtool is None:
        pytest.fail("alertmanager not found: run `make test` (it installs Debian's "
                    "prometheus-alertmanager)")  # fmt: skip
    return server, amtool


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that asks for promtool (Alertmanager) is a promtool (alertmanager) test."""
    for item in items:
        for fixture in ("promtool", "alertmanager"):
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(getattr(pytest.mark, fixture))
