"""Writing generated files all-or-nothing: every file lands whole, or none is touched."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_all(files: dict[Path, str]) -> None:
    """Write every file through a temporary sibling, then rename them all into place.

    A failure before the renames (a full disk, a read-only folder) leaves every target
    as it was; an OSError says which path failed.
    """
    for path in files:
        if path.exists() and not path.is_file():
            raise IsADirectoryError(21, "not a regular file", str(path))
    staged: list[tuple[str, Path]] = []
    try:
        for path, text in sorted(files.items()):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            staged.append((temp, path))
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
                handle.write(text)
    except OSError:
        for temp, _ in staged:
            Path(temp).unlink(missing_ok=True)
        raise
    for temp, path in staged:
        os.chmod(temp, 0o644)
        os.replace(temp, path)


def write_changed(files: dict[Path, str]) -> set[Path]:
    """Write the files whose content differs (all or nothing), the paths written. A file
    already right is left untouched, so its time stamp (and whatever watches it: a config
    reloader, make) stays put."""
    changed = {path: text for path, text in files.items() if not holds(path, text)}
    write_all(changed)
    return set(changed)


def holds(path: Path, text: str) -> bool:
    """Whether `path` is a file with exactly `text` in it."""
    try:
        return path.is_file() and path.read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        return False
