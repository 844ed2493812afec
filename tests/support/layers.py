"""The import graph between the repository's folders, read from the source (no import runs).

`python -m tests.support.layers` (or `make import-graph`) prints it: one line per folder
with the folders it imports, and the catalog apart from the rest of exporters/, since it
is the one module every layer may read.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from tests.support.paths import ROOT

NAMESPACE = "llm_slo_stack"
PACKAGES = ("cli", "dashboards", "demo", "exporters", "k8s", "rules", "simulator", "slo", "tracing")
CATALOG = "exporters.catalog"
FOLDERS = (*PACKAGES, "tests", "bench")


def unit(module: str) -> str | None:
    """The folder (or the catalog) a dotted module name belongs to; None if not ours."""
    parts = module.split(".")
    if parts[0] == NAMESPACE:
        parts = parts[1:]
    if not parts or parts[0] not in FOLDERS:
        return None
    if parts[:2] == CATALOG.split("."):
        return CATALOG
    if parts[0] == "tests" and len(parts) > 1 and parts[1] == "support":
        return "tests.support"
    return parts[0]


def imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (imports inside functions count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                module = f"{node.module}.{alias.name}"
                found.add(module if _is_module(module) else node.module)
    return found


def _is_module(dotted: str) -> bool:
    """Whether a dotted name is one of our modules (from X import Y: Y a module, not a name)."""
    parts = dotted.split(".")
    if parts[0] == NAMESPACE:
        parts = parts[1:]
    where = ROOT.joinpath(*parts)
    return where.with_suffix(".py").is_file() or (where / "__init__.py").is_file()


def source_unit(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    unit_name = unit(".".join(relative.parts))
    assert unit_name is not None, path
    return unit_name


def edges() -> dict[tuple[str, str], list[str]]:
    """(importer, imported) -> the files that make that edge, between different units."""
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "golden" in path.parts:
                continue
            source = source_unit(path)
            for module in imports(path):
                target = unit(module)
                if target is not None and target != source:
                    where = str(path.relative_to(ROOT))
                    if where not in found[source, target]:
                        found[source, target].append(where)
    return dict(found)


def main() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for source, target in edges():
        graph[source].add(target)
    for source in sorted(graph):
        print(f"{source:14} -> {', '.join(sorted(graph[source]))}")


if __name__ == "__main__":
    main()
