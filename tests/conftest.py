"""Shared fixtures: the real promtool, the repository root, and the golden cases."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"


def golden_cases() -> list[str]:
    return sorted(p.name for p in GOLDEN.iterdir() if (p / "spec.yaml").is_file())


@pytest.fixture(scope="session")
def promtool() -> str:
    """Debian's promtool. Missing, it fails rather than skips: `make test` installs it."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: run `make test` (it installs Debian's prometheus)")
    return path


def run_promtool(
    promtool: str, *args: str | Path, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [promtool, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300
    )
