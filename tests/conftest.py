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


def generate_refused(capsys: pytest.CaptureFixture, out: Path, *specs: Path) -> str:
    """Run `llm-slo generate` expecting it to refuse the specs; returns its stderr.

    Refusing means exit status 1 and not a single file written.
    """
    from slo import cli  # the CLI imports the generators; keep conftest light

    boards = out.parent / "dashboards"
    command = [
        "generate",
        *map(str, specs),
        "--rules-dir",
        str(out),
        "--dashboards-dir",
        str(boards),
    ]
    assert cli.main(command) == cli.EXIT_INVALID
    assert not out.exists() and not boards.exists()
    return capsys.readouterr().err
