"""Running Debian's promtool."""

from __future__ import annotations

import subprocess
from pathlib import Path


def run(
    promtool: str, *args: str | Path, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300
    )
